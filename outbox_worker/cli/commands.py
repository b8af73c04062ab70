"""Attach the command modules' commands to the `outbox-worker` group."""

from __future__ import annotations

import importlib

import click

# The module that defines each command. A command names its module so that `outbox-worker run`
# (every worker process, every restart) imports only what running needs: not alembic, rich or
# the SQLAlchemy ORM that the operator commands and the demo use.
COMMAND_MODULES = {
    "migrate": "outbox_worker.cli.migrate",
    "run": "outbox_worker.cli.run",
    "standin": "outbox_worker.cli.standin",
    "dead": "outbox_worker.cli.dead",
    "stats": "outbox_worker.cli.stats",
    "purge": "outbox_worker.cli.purge",
    "requeue": "outbox_worker.cli.requeue",
    "check": "outbox_worker.cli.check",
    "workers": "outbox_worker.cli.workers",
    "pause": "outbox_worker.cli.pause",
    "resume": "outbox_worker.cli.resume",
    "audit": "outbox_worker.cli.audit",
    "console": "outbox_worker.cli.console",
    "console-token": "outbox_worker.cli.console_token",
    "demo": "outbox_worker.demo.command",
}


def register(group: click.Group, command: str | None = None) -> None:
    """Import the module of ``command`` (every module when None or unknown) into ``group``."""
    module = COMMAND_MODULES.get(command or "")
    names = [module] if module else sorted(set(COMMAND_MODULES.values()))
    for name in names:
        importlib.import_module(name).register(group)
