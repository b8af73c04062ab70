"""Composition root: the `outbox-worker` command.

Commands are thin: they read settings (config.py), have assemble.py build the store, sender and
worker, and run it.
This is the one place that turns an OutboxError into an exit code and one line on stderr:
0 success, 1 runtime failure, 2 usage or configuration error.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from outbox_worker.errors import OutboxError
from outbox_worker.version import __version__

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


def database_option(func: F) -> F:
    """The --database-url option every database command takes (else OUTBOX_DATABASE_URL)."""
    return click.option(
        "--database-url",
        metavar="URL",
        default=None,
        help="postgresql:// URL of the database [env: OUTBOX_DATABASE_URL]",
    )(func)


def json_option(func: F) -> F:
    """The --json option of read commands."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(func)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="outbox-worker")
def cli() -> None:
    """Deliver account registration outcomes to Ravelin through a transactional outbox.

    \b
    Start here:
      outbox-worker demo             see the whole flow locally, no setup
      outbox-worker migrate          create or upgrade the outbox schema
      outbox-worker run              run the delivery worker (a daemon)
      outbox-worker stats            what is pending, delivered, dead
    """


def _register_commands(argv: list[str] | None) -> None:
    from outbox_worker.cli import commands

    args = sys.argv[1:] if argv is None else argv
    command = args[0] if args else None
    if command == "run" and "structlog" not in sys.modules:
        _import_structlog_without_rich()
    commands.register(cli, command)


def _import_structlog_without_rich() -> None:
    # structlog imports rich's console and traceback (~0.2 s of every worker's start) when rich
    # is installed, for pretty tracebacks; the daemon formats (and masks) exceptions itself
    # before rendering (observability.py). rich is hidden only while structlog is imported, so
    # whatever needs it later (the one-line error output) still finds it.
    hidden = "rich" not in sys.modules
    if hidden:
        sys.modules["rich"] = None  # type: ignore[assignment]
    try:
        import structlog  # noqa: F401
    finally:
        if hidden:
            del sys.modules["rich"]


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; OutboxError becomes one stderr line and its exit code."""
    _register_commands(argv)
    try:
        cli.main(args=argv, prog_name="outbox-worker", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(EXIT_FAILURE)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except OutboxError as exc:
        from outbox_worker.cli.display import printable

        click.echo(f"outbox-worker: {printable(str(exc))}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    sys.exit(EXIT_OK)
