"""What `outbox-worker demo` shows: live progress on stderr, then the summary on stdout.

Progress is a rich bar on a terminal and a plain line a second otherwise (CI logs, pipes). The
summary is text, or JSON with ``--json``; every number in it was read from outbox.messages.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from outbox_worker.demo.pause import Pause
from outbox_worker.demo.queries import Latency, Tally
from outbox_worker.demo.scenario import Scenario
from outbox_worker.settings.config import redact_url
from outbox_worker.settings.urls import with_database

PLAIN_EVERY_S = 1.0
_FIELDS = (
    "delivered {task.fields[delivered]}  retried {task.fields[retried]}  dead {task.fields[dead]}"
)


@dataclass(frozen=True, slots=True)
class Report:
    """The demo's result: how it ended and what the table says."""

    outcome: str  # finished | timed_out | interrupted
    scenario: Scenario
    tally: Tally
    dead_reasons: list[tuple[str, int]]
    latency: Latency
    elapsed_s: float
    standin_statuses: dict[int, int]  # status -> requests answered so (0: connection dropped)
    server_url: str | None  # None: the embedded PostgreSQL
    kept_database_url: str | None
    log_file: Path
    kept_server_dir: Path | None = None  # an embedded server left running (demo --keep)
    first_dead_id: int | None = None
    pause: Pause | None = None  # the scripted outage's pause, from the worker's log

    @property
    def unspent_sends(self) -> int:
        """Requests that cost their message no attempt: the outage's pause took the blame."""
        return sum(self.standin_statuses.values()) - self.tally.attempts

    @property
    def pending(self) -> int:
        """Rows neither acknowledged nor dead."""
        return self.tally.pending

    @property
    def stop_command(self) -> str | None:
        """The command that stops a kept embedded server and deletes its data, if one runs."""
        if self.kept_server_dir is None:
            return None
        return f"outbox-worker demo --stop '{self.kept_server_dir}'"

    def as_dict(self) -> dict[str, Any]:
        """The summary as plain values, for --json."""
        t, lat = self.tally, self.latency
        return {
            "outcome": self.outcome,
            "count": len(self.scenario.updates),
            "elapsed_s": round(self.elapsed_s, 3),
            "enqueued": {str(kind): n for kind, n in self.scenario.kinds.most_common()},
            "rows": t.total,
            "delivered": t.acknowledged,
            "dead": t.dead,
            "pending": t.pending,
            "attempts": t.attempts,
            "retries": t.retries,
            "expected_dead": self.scenario.expected_dead,
            "dead_reasons": [{"reason": r, "count": n} for r, n in self.dead_reasons],
            "outage": self._outage(),
            "latency_ms": {
                "p50": _round(lat.p50_ms),
                "p99": _round(lat.p99_ms),
                "max": _round(lat.max_ms),
            },
            "standin": {
                "requests": sum(self.standin_statuses.values()),
                "by_status": {_status(s): n for s, n in sorted(self.standin_statuses.items())},
            },
            "database": redact_url(self.server_url) if self.server_url else "embedded",
            "kept_database_url": self.kept_database_url,
            "stop_command": self.stop_command,
            "log_file": str(self.log_file),
            "next_steps": next_steps(self),
        }

    def _outage(self) -> dict[str, Any]:
        pause = self.pause
        return {
            "scripted_failures": len(self.scenario.outage),
            "declared_after": self.scenario.outage_threshold,
            "paused_s": None if pause is None else round(pause.paused_s, 3),
            "failed_probes": None if pause is None else pause.failed_probes,
            "sends_without_attempt": self.unspent_sends,
        }


@contextmanager
def live_progress(total: int) -> Iterator[Callable[[Tally], None]]:
    """Yield ``show(tally)``: a rich bar on a terminal, a plain line a second elsewhere."""
    if sys.stderr.isatty():
        with Progress(
            TextColumn("settled"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(_FIELDS),
            TimeElapsedColumn(),
            console=Console(stderr=True),
        ) as bar:
            task = bar.add_task("settled", total=total, delivered=0, retried=0, dead=0)

            def show_bar(t: Tally) -> None:
                bar.update(
                    task,
                    completed=t.acknowledged + t.dead,
                    delivered=t.acknowledged,
                    retried=t.retries,
                    dead=t.dead,
                )

            yield show_bar
        return
    started, last = time.monotonic(), -PLAIN_EVERY_S

    def show_line(t: Tally) -> None:
        nonlocal last
        now = time.monotonic() - started
        if now - last >= PLAIN_EVERY_S or (t.total == total and t.pending == 0):
            last = now
            line = (
                f"[{now:5.1f}s] enqueued {t.total}/{total}  delivered {t.acknowledged}  "
                f"retried {t.retries}  dead {t.dead}  pending {t.pending}"
            )
            click.echo(line, err=True)

    yield show_line


def print_report(report: Report, *, as_json: bool) -> None:
    """Print the summary on stdout, as text or JSON."""
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2, ensure_ascii=False))
        return
    click.echo("\n".join(_text(report)))


def _text(report: Report) -> list[str]:
    t, lat, count = report.tally, report.latency, len(report.scenario.updates)
    ended = "all settled" if report.outcome == "finished" else "NOT all settled"
    lines = [
        f"\noutbox-worker demo: {count} registration updates, {ended} in {report.elapsed_s:.1f}s",
        "",
        "Enqueued (a few per transaction, as signups arrive)",
    ]
    lines += [f"  {n:6}  {kind}" for kind, n in report.scenario.kinds.most_common()]
    lines += [
        "",
        "Outcome (read from outbox.messages)",
        f"  {t.acknowledged:6}  delivered: acknowledged by the stand-in",
        f"  {t.dead:6}  dead-lettered, by reason:",
    ]
    for reason, n in report.dead_reasons:
        lines += [f"  {'':6}    {n:4}  {reason}", f"  {'':6}          {_gloss(reason)}"]
    lines.append(f"  {t.retries:6}  retries: 5xx answers and dropped connections, with backoff")
    lines += _outage_lines(report)
    if t.pending:
        lines.append(f"  {t.pending:6}  still pending")
    lines.append(
        f"  latency, enqueue to acknowledged: p50 {_ms(lat.p50_ms)}, "
        f"p99 {_ms(lat.p99_ms)}, max {_ms(lat.max_ms)}"
    )
    answered = ", ".join(f"{_status(s)} x{n}" for s, n in sorted(report.standin_statuses.items()))
    lines += [f"  the stand-in answered: {answered}", "", "Next steps"]
    lines += [f"  {line}" if line else "" for line in next_steps(report)]
    lines += ["", f"worker log: {report.log_file}"]
    return lines


def _outage_lines(report: Report) -> list[str]:
    """What the scripted outage did: delivery paused, for how long, and no attempt spent."""
    failed, declared = len(report.scenario.outage), report.scenario.outage_threshold
    if not failed:
        return []
    head = f"  outage: the stand-in failed the first {failed} requests (5xx, dropped connections)"
    pause = report.pause
    if pause is None:
        return [head, f"  {'':6}  delivery never paused for it (see the worker log)"]
    return [
        head,
        f"  {'':6}  delivery paused for {pause.paused_s:.1f}s after {declared} failures in a row; "
        f"{pause.failed_probes} probes failed, the next got through",
        f"  {'':6}  no attempt was spent while paused "
        f"({report.unspent_sends} failed sends cost their message nothing)",
    ]


def next_steps(report: Report) -> list[str]:
    """What to try next: operator commands on kept rows, or how to keep them; production use."""
    steps: list[str] = []
    if report.kept_database_url:
        url = redact_url(report.kept_database_url)
        show = report.first_dead_id if report.first_dead_id is not None else "ID"
        steps += [
            "The demo's database is kept. Look at the dead letters and send them again:",
            f"  export OUTBOX_DATABASE_URL='{url}'",
            "  outbox-worker dead list",
            f"  outbox-worker dead show {show}",
            "  outbox-worker requeue --all --dry-run",
            "  outbox-worker requeue --all --yes",
            "Requeued messages wait for a worker; to deliver them, start a stand-in and a worker:",
            "  outbox-worker standin --port 8765 &",
            "  OUTBOX_ENDPOINT_URL=http://127.0.0.1:8765/v2/registration \\",
            "    OUTBOX_API_KEY=sk_test_standin outbox-worker run",
        ]
        if report.stop_command is not None:
            steps.append(
                f"Stop the PostgreSQL and delete its data when done: {report.stop_command}"
            )
        else:
            steps.append("Or look and act in a browser: outbox-worker console (it prints a token)")
            steps.append(
                f"Drop the database when done: psql '{with_database(url, 'postgres')}' "
                f"-c 'DROP DATABASE {_database(url)}'"
            )
    else:
        where = "embedded PostgreSQL" if report.server_url is None else "demo's database"
        server = (
            redact_url(report.server_url)
            if report.server_url
            else "postgresql://me@localhost/postgres"
        )
        steps += [
            f"The {where} is gone. To try the operator commands (dead list, requeue) on the",
            "demo's rows, keep them (the embedded PostgreSQL keeps running):",
            "  outbox-worker demo --keep",
            f"or in a database of their own on a server you have: --database-url '{server}' --keep",
            "then, for example, with the URL it prints:",
            "  OUTBOX_DATABASE_URL=<that URL> outbox-worker requeue --all --dry-run",
        ]
    steps += [
        "",
        "For real: point the worker at your database and Ravelin (the default endpoint):",
        "  export OUTBOX_DATABASE_URL=postgresql://app@db.example.com/app",
        "  outbox-worker migrate",
        "  OUTBOX_API_KEY_FILE=/run/secrets/ravelin_key outbox-worker run",
    ]
    return steps


def _gloss(reason: str) -> str:
    if reason.startswith("gave up"):
        return "(a transient failure every time: retried with backoff until the limit)"
    if reason.startswith("4"):
        return "(the message is at fault: dead-lettered at once, never retried)"
    return ""


def _status(status: int) -> str:
    return "dropped" if status == 0 else str(status)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _ms(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.0f} ms" if value < 10_000 else f"{value / 1000:.1f} s"


def _database(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).path.lstrip("/")
