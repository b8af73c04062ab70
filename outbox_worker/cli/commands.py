"""Attach every command module's commands to the `outbox-worker` group."""

from __future__ import annotations

import click


def register(group: click.Group) -> None:
    """Import the command modules (each adds its commands to ``group``)."""
    from outbox_worker.cli import check, daemon, demo, operate, requeue

    for module in (daemon, operate, requeue, check, demo):
        module.register(group)
