"""How `workers`, `pause`, `resume`, `audit` and the fleet part of `stats` show things.

Text the operators typed (a pause reason, a filter) and what workers reported (host, version) is
shown with its control characters escaped, as every CLI output is (display.printable).
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

import click

from outbox_worker.cli.display import age, printable, show_table
from outbox_worker.models import WorkerState
from outbox_worker.store.audit import AuditEntry
from outbox_worker.store.fleet import FleetSummary, PauseState, WorkerInfo

IDS_SHOWN = 5


def pause_record(p: PauseState) -> dict[str, Any]:
    """The pause as plain data for --json."""
    return asdict(p)


def pause_line(p: PauseState, now: datetime) -> str:
    """One line: whether delivery is paused fleet-wide, since when, by whom and why."""
    if not p.paused:
        return "delivery: running (not paused)"
    since = "" if p.paused_at is None else f" for {age((now - p.paused_at).total_seconds())}"
    return f"delivery: PAUSED fleet-wide{since} by {who(p.db_role, p.via, p.actor)}: {p.reason}"


def who(db_role: str | None, via: str | None, actor: str | None) -> str:
    """'alice (cli, login app_ops)': the person, how, and the database login."""
    person = actor or "unknown user"
    return f"{person} ({via or '?'}, login {db_role or '?'})"


def fleet_record(summary: FleetSummary) -> dict[str, Any]:
    """What `stats --json` adds: workers by state and the pause."""
    return {
        "workers": {str(state): n for state, n in summary.workers.items()},
        "pause": pause_record(summary.pause),
    }


def fleet_lines(summary: FleetSummary, now: datetime) -> list[tuple[str, str]]:
    """What `stats` adds, as (label, value) pairs: workers by state, then the pause."""
    counts = [f"{n} {state}" for state, n in summary.workers.items() if n]
    return [
        ("workers", ", ".join(counts) if counts else "none registered"),
        ("delivery", pause_line(summary.pause, now).removeprefix("delivery: ")),
    ]


def worker_record(w: WorkerInfo) -> dict[str, Any]:
    """One worker as plain data for --json."""
    record = asdict(w)
    record["id"] = str(w.id)
    return record


def show_workers(workers: list[WorkerInfo], pause: PauseState, now: datetime) -> None:
    """The pause line, then one row per worker."""
    print_line(pause_line(pause, now))
    if not workers:
        print_line("no worker has registered (none running since the last `migrate`?)")
        return
    rows = [
        [
            str(w.id)[:8],
            w.host,
            str(w.pid),
            w.version,
            _state(w),
            age((now - w.started_at).total_seconds()),
            age(w.seen_ago_s),
            str(w.sends_last_minute),
            str(w.in_flight),
            "yes" if w.listening else "no (polls)",
        ]
        for w in workers
    ]
    headers = ["id", "host", "pid", "version", "state", "up", "seen", "sends/min", "in flight",
               "listen"]  # fmt: skip
    alive = sum(w.state not in (WorkerState.GONE, WorkerState.STOPPED) for w in workers)
    show_table(headers, rows, title=f"{len(workers)} worker(s), {alive} alive")


def _state(w: WorkerInfo) -> str:
    return (
        f"{w.state} ({w.paused_by})" if w.paused_by and w.state is WorkerState.PAUSED else w.state
    )


def audit_record(e: AuditEntry) -> dict[str, Any]:
    """One audit entry as plain data for --json."""
    record = asdict(e)
    record["operation"] = str(e.operation)
    return record


def what(details: dict[str, Any]) -> str:
    """An audit entry's details on one line: filters, a few ids, a reason."""
    parts = []
    for key, value in details.items():
        if key == "ids" and isinstance(value, list):
            more = f" (+{len(value) - IDS_SHOWN} more)" if len(value) > IDS_SHOWN else ""
            parts.append(f"ids {','.join(str(i) for i in value[:IDS_SHOWN])}{more}")
        elif isinstance(value, dict):
            parts.extend(f"{k}={v}" for k, v in value.items() if v is not None)
        elif value is not None:
            parts.append(f"{key}={value}")
    return " ".join(" ".join(parts).split())


def show_audit(entries: list[AuditEntry]) -> None:
    """One row per operation, newest first."""
    if not entries:
        print_line("no operator action recorded in that window")
        return
    rows = [
        [
            e.at.isoformat(timespec="seconds"),
            who(e.db_role, e.via, e.actor),
            e.action,
            str(e.row_count),
            what(e.details),
        ]
        for e in entries
    ]
    show_table(
        ["at", "who", "action", "rows", "what"], rows, title="operator actions, newest first"
    )


def print_line(text: str) -> None:
    """One line on stdout, controls escaped."""
    click.echo(printable(text))
