"""`outbox-worker standin`: the local stand-in for Ravelin's registration endpoint."""

from __future__ import annotations

import click


@click.command("standin")
@click.option("--host", default="127.0.0.1", show_default=True, help="Loopback address to bind.")
@click.option(
    "--port", default=8765, show_default=True, type=int, help="Port (0 picks a free one)."
)
@click.option(
    "--api-key", default="sk_test_standin", show_default=True, help="Key the stand-in accepts."
)
@click.option("--ready-file", default=None, help="Write the URL here once listening.")
@click.option("--allow-remote", is_flag=True, help="Allow a non-loopback --host (containers).")
def standin_command(
    host: str, port: int, api_key: str, ready_file: str | None, allow_remote: bool
) -> None:
    """Run the local stand-in for Ravelin's registration endpoint (for trials and benchmarks).

    \b
    Example:
      outbox-worker standin --port 8765 &
      OUTBOX_ENDPOINT_URL=http://127.0.0.1:8765/v2/registration \\
        OUTBOX_API_KEY=sk_test_standin outbox-worker run
    """
    from outbox_worker.standin import serve

    serve(host, port, api_key, ready_file=ready_file, allow_remote=allow_remote)


def register(group: click.Group) -> None:
    """Add `standin` to the CLI group."""
    group.add_command(standin_command)
