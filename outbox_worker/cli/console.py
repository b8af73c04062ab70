"""`outbox-worker console`: the web console (sign-in tokens: cli/console_token.py)."""

from __future__ import annotations

import click

from outbox_worker.cli import database_option


@click.command("console", short_help="Serve the web console.")
@click.option("--host", default=None, help="Address to listen on [default: 127.0.0.1] "
              "[env: OUTBOX_CONSOLE_HOST]")  # fmt: skip
@click.option("--port", default=None, type=int, help="Port (0 picks a free one) [default: 8089] "
              "[env: OUTBOX_CONSOLE_PORT]")  # fmt: skip
@click.option(
    "--tokens-file",
    default=None,
    metavar="FILE",
    help="Hashed sign-in tokens (see console-token) [env: OUTBOX_CONSOLE_TOKENS_FILE]",
)
@click.option(
    "--trusted-proxy",
    default=None,
    metavar="ADDRESS[,...]",
    help="Trust the SSO user header from these proxy addresses only "
    "[env: OUTBOX_CONSOLE_TRUSTED_PROXY]",
)
@click.option(
    "--session-ttl",
    default=None,
    metavar="DURATION",
    help="Sign-in lifetime [default: 8h] [env: OUTBOX_CONSOLE_SESSION_TTL]",
)
@click.option(
    "--show-pii",
    is_flag=True,
    help="Let an admin reveal one message's personal data (audited).",
)
@click.option(
    "--secure-cookies",
    is_flag=True,
    help="Mark cookies Secure even when TLS ends before the console (behind a proxy).",
)
@database_option
def console(**flags: object) -> None:
    """Serve the web console: overview, dead letters, requeue, purge, pause and resume.

    It listens on 127.0.0.1 by default. With no --tokens-file and no --trusted-proxy it makes
    one admin token for its own lifetime and prints it; on any other address it refuses to
    start without one of them. It runs as the outbox_operator database role.

    \b
    Examples:
      outbox-worker console
      outbox-worker console-token alice --role admin --tokens-file /etc/outbox/tokens
      outbox-worker console --host 0.0.0.0 --tokens-file /etc/outbox/tokens
    """
    from outbox_worker.cli.run import run_async
    from outbox_worker.console.settings import read_console_settings
    from outbox_worker.console.tokens import ephemeral_book, load_tokens
    from outbox_worker.observability import configure_logging

    settings = read_console_settings(flags)
    token = None
    if settings.tokens_file is not None:
        book = load_tokens(settings.tokens_file)
    elif settings.trusted_proxies:
        book = None
    else:
        token, book = ephemeral_book()
    configure_logging(level="info")

    def announce(port: int) -> None:
        click.echo(f"console: http://{_url_host(settings.host)}:{port}/", nl=True)
        if token is not None:
            click.echo(f"sign-in token (valid while this console runs): {token}")

    from outbox_worker.console.server import serve_forever

    try:
        run_async(lambda: serve_forever(settings, book, announce))
    except KeyboardInterrupt:
        return


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def register(group: click.Group) -> None:
    """Add `console` to ``group``."""
    group.add_command(console)
