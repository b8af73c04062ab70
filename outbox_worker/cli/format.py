"""How the operator commands show things: rich tables on a terminal, plain text or JSON otherwise.

Personal data is masked here, on the way out, unless the operator asked for ``--show-pii``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime
from typing import Any

import click
from rich.console import Console, Group, RenderableType
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from outbox_worker.models import Stats
from outbox_worker.redact import mask_payload, mask_text
from outbox_worker.store.operations import DeadLetter, MessageDetail

REASON_WIDTH = 80


def on_terminal() -> bool:
    """Whether stdout is a terminal (rich tables, progress bars) or a pipe (plain text)."""
    return sys.stdout.isatty()


def console() -> Console:
    """The console for stdout."""
    return Console(highlight=False)


def emit_json(data: Any) -> None:
    """Print ``data`` as JSON on stdout; datetimes become ISO 8601 text."""
    click.echo(json.dumps(data, indent=2, default=_plain, ensure_ascii=False))


def _plain(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def age(seconds: float | None) -> str:
    """'45s', '12m', '3h', '2d' (or '-' when there is no age)."""
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def one_line(text: str | None, show_pii: bool, width: int = REASON_WIDTH) -> str:
    """A reason on one line, shortened to ``width`` and masked unless ``show_pii``."""
    if not text:
        return ""
    flat = " ".join(text.split())
    flat = flat if show_pii else mask_text(flat)
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _masked(value: Any, show_pii: bool) -> Any:
    return value if show_pii else mask_payload(value)


def _subject(payload: Any) -> str:
    """Whom a message is about: its customer or supplier id, else its username."""
    if not isinstance(payload, dict):
        return ""
    for part, key in (("customer", "customerId"), ("supplier", "supplierId")):
        value = (payload.get(part) or {}).get(key)
        if value is not None:
            return f"{part} {value}"
    username = (payload.get("registration") or {}).get("username")
    return f"user {username}" if username is not None else ""


def dead_letter_record(row: DeadLetter, now: datetime, show_pii: bool) -> dict[str, Any]:
    """One dead letter as plain data for --json."""
    return {
        "id": row.id,
        "dead_at": row.dead_at,
        "age_s": round((now - row.dead_at).total_seconds(), 3),
        "attempts": row.attempts,
        "last_status": row.last_status,
        "reason": one_line(row.last_error, show_pii, width=1000),
        "requeue_count": row.requeue_count,
        "dedup_key": row.dedup_key,
        "payload": _masked(row.payload, show_pii),
    }


def show_dead_list(rows: Sequence[DeadLetter], now: datetime, show_pii: bool) -> None:
    """Print dead letters as a table, newest first."""
    if not rows:
        click.echo("no dead letters match")
        return
    headers = ["id", "age", "attempts", "status", "subject", "reason"]
    lines = [
        [
            str(r.id),
            age((now - r.dead_at).total_seconds()),
            str(r.attempts),
            "-" if r.last_status is None else str(r.last_status),
            _subject(_masked(r.payload, show_pii)),
            one_line(r.last_error, show_pii),
        ]
        for r in rows
    ]
    show_table(headers, lines, title=f"{len(rows)} dead letter(s), newest first")


def show_table(headers: Sequence[str], rows: Sequence[Sequence[str]], title: str = "") -> None:
    """A rich table on a terminal, else aligned plain columns."""
    if on_terminal():
        table = Table(*headers, title=title or None, title_justify="left")
        for row in rows:
            table.add_row(*(Text(cell) for cell in row))
        console().print(table)
        return
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    for row in [list(headers), *rows]:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def detail_record(m: MessageDetail, show_pii: bool) -> dict[str, Any]:
    """One message as plain data for --json, personal data masked unless ``show_pii``."""
    record = asdict(m)
    record["state"] = str(m.state)
    record["last_error"] = one_line(m.last_error, show_pii, width=10_000) or None
    record["last_response"] = _masked(m.last_response, show_pii)
    record["history"] = _masked(m.history, show_pii)
    record["payload"] = _masked(m.payload, show_pii)
    return record


def show_detail(m: MessageDetail, show_pii: bool) -> None:
    """Print one message: its state, dates, attempt history and body."""
    record = detail_record(m, show_pii)
    facts = [
        ("id", str(m.id)),
        ("state", f"{m.state}{' (claimed by a worker)' if m.claimed else ''}"),
        ("attempts", str(m.attempts)),
        ("dedup key", m.dedup_key or "-"),
        ("created", _when(m.created_at)),
        ("acknowledged", _when(m.acknowledged_at)),
        ("dead", _when(m.dead_at)),
        ("requeued", f"{m.requeue_count} time(s), last {_when(m.requeued_at)}"),
        ("last status", "-" if m.last_status is None else str(m.last_status)),
        ("last error", record["last_error"] or "-"),
    ]
    if record["last_response"] is not None:
        facts.append(("last response", json.dumps(record["last_response"], ensure_ascii=False)))
    width = max(len(name) for name, _ in facts)
    for name, value in facts:
        click.echo(f"{name.ljust(width)}  {value}")
    click.echo("")
    history = [
        [
            str(h.get("at", "")),
            "-" if h.get("status") is None else str(h.get("status")),
            _latency(h.get("latency_ms")),
            one_line(h.get("error"), show_pii=True),  # already masked above
        ]
        for h in record["history"]
        if isinstance(h, dict)
    ]
    if history:
        show_table(["at", "status", "latency", "error"], history, title="attempt history")
    else:
        click.echo("attempt history: none")
    click.echo("")
    click.echo("body:")
    click.echo(json.dumps(record["payload"], indent=2, ensure_ascii=False))


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.isoformat(timespec="seconds")


def _latency(value: object) -> str:
    return f"{value:.0f}ms" if isinstance(value, int | float) else "-"


def stats_record(s: Stats) -> dict[str, Any]:
    """Stats as plain data for --json."""
    record = asdict(s)
    record["top_dead_reasons"] = [
        {"reason": mask_text(reason), "count": count} for reason, count in s.top_dead_reasons
    ]
    return record


def stats_lines(s: Stats) -> list[tuple[str, str]]:
    """Stats as (label, value) pairs in reading order."""
    return [
        ("pending", f"{s.pending} ({s.claimed} claimed by workers)"),
        ("oldest pending", age(s.oldest_pending_age_s)),
        ("acknowledged", str(s.acknowledged)),
        ("dead", str(s.dead)),
        ("dead, last hour / day", f"{s.dead_last_hour} / {s.dead_last_day}"),
        ("delivered, last minute / hour", f"{s.delivered_last_minute} / {s.delivered_last_hour}"),
    ]


def stats_renderable(s: Stats) -> RenderableType:
    """Stats as rich renderables (for a terminal and --watch)."""
    table = Table("", "", show_header=False, title="outbox", title_justify="left")
    for label, value in stats_lines(s):
        table.add_row(label, value)
    parts: list[RenderableType] = [table]
    if s.top_dead_reasons:
        reasons = Table("count", "top dead-letter reasons", title_justify="left")
        for reason, count in s.top_dead_reasons:
            reasons.add_row(str(count), Text(one_line(reason, show_pii=False)))
        parts.append(reasons)
    return Group(*parts)


def show_stats(s: Stats) -> None:
    """Print stats once."""
    if on_terminal():
        console().print(stats_renderable(s))
        return
    lines = stats_lines(s)
    width = max(len(label) for label, _ in lines)
    for label, value in lines:
        click.echo(f"{label.ljust(width)}  {value}")
    if s.top_dead_reasons:
        click.echo("top dead-letter reasons:")
        for reason, count in s.top_dead_reasons:
            click.echo(f"  {count:>8}  {one_line(reason, show_pii=False)}")


@contextmanager
def progress_bar(total: int, label: str) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr when it is a terminal; the callback advances it by n rows."""
    if not sys.stderr.isatty():
        yield lambda n: None
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as progress:
        task = progress.add_task(label, total=total)
        yield lambda n: progress.advance(task, n)
