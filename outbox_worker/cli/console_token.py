"""`outbox-worker console-token`: make a console sign-in token (its hash goes into a file)."""

from __future__ import annotations

import os
from pathlib import Path

import click


@click.command("console-token", short_help="Make a console sign-in token.")
@click.argument("name")
@click.option(
    "--role",
    type=click.Choice(["viewer", "admin"]),
    default="viewer",
    show_default=True,
    help="viewer reads; admin also requeues, purges, pauses and reveals.",
)
@click.option(
    "--tokens-file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Append the token's hash here (created, owner-only, if missing).",
)
def console_token(name: str, role: str, tokens_file: Path) -> None:
    """Make a sign-in token for NAME: its hash goes into the file, the token is printed once.

    \b
    Example:
      outbox-worker console-token alice --role admin --tokens-file /etc/outbox/tokens
    """
    from outbox_worker.console.tokens import Role, new_token

    token, line = new_token(name, Role(role))
    fd = os.open(tokens_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as out:
        out.write(line + "\n")
    click.echo(token)


def register(group: click.Group) -> None:
    """Add `console-token` to ``group``."""
    group.add_command(console_token)
