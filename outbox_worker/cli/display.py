"""How the operator commands show things: rich tables on a terminal, plain text or JSON otherwise.

Personal data is masked here, on the way out, unless the operator asked for ``--show-pii``
(outbox_worker.pii: payloads by allow-list, endpoint text and dedup keys by pattern). Whatever
the output, control characters are escaped: a producer's dedup key or Ravelin's error text must
not retitle, recolour or rewrite the operator's terminal.
"""

from __future__ import annotations

import json
import re
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

# The console's pages and these commands show ages and control characters the same way.
from outbox_worker.console.html import age as age
from outbox_worker.console.html import visible_code
from outbox_worker.models import Stats
from outbox_worker.pii import mask_answer, mask_payload, mask_text
from outbox_worker.quoted import QuotedValues
from outbox_worker.store.operations import DeadLetter, MessageDetail

REASON_WIDTH = 80

# C0 and C1 controls, DEL, and the Unicode format characters that reorder or hide text
# (bidi overrides and isolates, zero-width marks, the line and paragraph separators).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]")
# In JSON text the C0 controls are already escaped by json.dumps; these are not.
_JSON_UNSAFE = re.compile(r"[\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]")


def printable(text: str) -> str:
    """``text`` with every control character written as an escape: '\\x1b', '\\r', '\\u202e'."""
    return _CONTROL.sub(visible_code, text)


def on_terminal() -> bool:
    """Whether stdout is a terminal (rich tables, progress bars) or a pipe (plain text)."""
    return sys.stdout.isatty()


def console() -> Console:
    """The console for stdout."""
    return Console(highlight=False)


def emit_json(data: Any) -> None:
    """Print ``data`` as JSON on stdout; datetimes become ISO 8601 text, controls escaped."""
    click.echo(json_text(data, indent=2))


def json_text(data: Any, indent: int | None = None) -> str:
    """``data`` as JSON text safe for a terminal: no raw control or bidi character survives."""
    text = json.dumps(data, indent=indent, default=_plain, ensure_ascii=False)
    # These can only sit inside JSON strings, where \\uXXXX means the same character.
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text)


def _plain(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def one_line(
    text: str | None,
    show_pii: bool,
    width: int = REASON_WIDTH,
    known: QuotedValues | None = None,
) -> str:
    """Free text on one line, masked unless ``show_pii``, then shortened to ``width``."""
    if not text:
        return ""
    flat = " ".join(text.split())
    flat = flat if show_pii else mask_text(flat, known or ())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def dedup_key(key: str | None, show_pii: bool) -> str | None:
    """A dedup key as shown: masked as free text unless ``show_pii`` (it often holds an email)."""
    if key is None or show_pii:
        return key
    return mask_text(key)


def _masked(value: Any, show_pii: bool) -> Any:
    return value if show_pii else mask_payload(value)


def _known(payload: Any, show_pii: bool) -> QuotedValues:
    """The payload's values, which an endpoint's text may quote back (rows an older worker
    wrote hold them unmasked; this worker masks them before writing)."""
    return QuotedValues() if show_pii else QuotedValues.of_payload(payload)


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
        "reason": one_line(row.last_error, show_pii, 1000, _known(row.payload, show_pii)),
        "requeue_count": row.requeue_count,
        "dedup_key": dedup_key(row.dedup_key, show_pii),
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
            one_line(r.last_error, show_pii, known=_known(r.payload, show_pii)),
        ]
        for r in rows
    ]
    show_table(headers, lines, title=f"{len(rows)} dead letter(s), newest first")


def show_table(headers: Sequence[str], rows: Sequence[Sequence[str]], title: str = "") -> None:
    """A rich table on a terminal, else aligned plain columns."""
    if on_terminal():
        table = Table(*headers, title=title or None, title_justify="left")
        for row in rows:
            table.add_row(*(Text(printable(cell)) for cell in row))
        console().print(table)
        return
    safe = [[printable(cell) for cell in row] for row in rows]
    widths = [max(len(h), *(len(row[i]) for row in safe)) for i, h in enumerate(headers)]
    for row in [list(headers), *safe]:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def detail_record(m: MessageDetail, show_pii: bool) -> dict[str, Any]:
    """One message as plain data for --json, personal data masked unless ``show_pii``."""
    record = asdict(m)
    known = _known(m.payload, show_pii)
    record["state"] = str(m.state)
    record["dedup_key"] = dedup_key(m.dedup_key, show_pii)
    record["last_error"] = one_line(m.last_error, show_pii, 10_000, known) or None
    if not show_pii:
        record["last_response"] = mask_answer(m.last_response, known)
        record["history"] = mask_answer(m.history, known)
    record["payload"] = _masked(m.payload, show_pii)
    return record


def show_detail(m: MessageDetail, show_pii: bool) -> None:
    """Print one message: its state, dates, attempt history and body."""
    record = detail_record(m, show_pii)
    facts = [
        ("id", str(m.id)),
        ("state", f"{m.state}{' (claimed by a worker)' if m.claimed else ''}"),
        ("attempts", str(m.attempts)),
        ("dedup key", record["dedup_key"] or "-"),
        ("created", _when(m.created_at)),
        ("acknowledged", _when(m.acknowledged_at)),
        ("dead", _when(m.dead_at)),
        ("requeued", f"{m.requeue_count} time(s), last {_when(m.requeued_at)}"),
        ("last status", "-" if m.last_status is None else str(m.last_status)),
        ("last error", record["last_error"] or "-"),
    ]
    if record["last_response"] is not None:
        facts.append(("last response", json_text(record["last_response"])))
    width = max(len(name) for name, _ in facts)
    for name, value in facts:
        click.echo(f"{name.ljust(width)}  {printable(value)}")
    click.echo("")
    history = [
        [
            str(h.get("at", "")),
            "-" if h.get("status") is None else str(h.get("status")),
            _latency(h.get("latency_ms")),
            one_line(str(h.get("error") or ""), show_pii=True),  # already masked above
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
    click.echo(json_text(record["payload"], indent=2))


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


def stats_renderable(s: Stats, extra: Sequence[tuple[str, str]] = ()) -> RenderableType:
    """Stats (and ``extra`` lines: the fleet's) as rich renderables (a terminal and --watch)."""
    table = Table("", "", show_header=False, title="outbox", title_justify="left")
    for label, value in [*stats_lines(s), *extra]:
        table.add_row(label, Text(printable(value)))
    parts: list[RenderableType] = [table]
    if s.top_dead_reasons:
        reasons = Table("count", "top dead-letter reasons", title_justify="left")
        for reason, count in s.top_dead_reasons:
            reasons.add_row(str(count), Text(printable(one_line(reason, show_pii=False))))
        parts.append(reasons)
    return Group(*parts)


def show_stats(s: Stats, extra: Sequence[tuple[str, str]] = ()) -> None:
    """Print stats (and ``extra`` lines: the fleet's) once."""
    if on_terminal():
        console().print(stats_renderable(s, extra))
        return
    lines = [*stats_lines(s), *extra]
    width = max(len(label) for label, _ in lines)
    for label, value in lines:
        click.echo(f"{label.ljust(width)}  {printable(value)}")
    if s.top_dead_reasons:
        click.echo("top dead-letter reasons:")
        for reason, count in s.top_dead_reasons:
            click.echo(f"  {count:>8}  {printable(one_line(reason, show_pii=False))}")


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
