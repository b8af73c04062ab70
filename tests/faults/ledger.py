"""The ledger of a chaos run: what the plan implies against what the database and stand-in hold.

Every message is identified by its stand-in key (``customer.customerId``); planted rows without
one are matched by their stored text. A message is *accepted* when the stand-in answered it 2xx
or 429 (Ravelin keeps rate-limited data). A *duplicate* is a second acceptance of one message;
each must be explained by what happened between the earlier request's arrival and the moment
its outcome should have been written (its answer plus ``SETTLE_SLACK_S``):

- a SIGKILL of a worker (the answer, or the send, died with it), up to ``KILL_LEAD_S`` before
  the request's recorded arrival (its bytes were on their way when the worker died);
- a PostgreSQL restart overlapping that span (the write could not be made);
- a slow answer: the earlier request was answered by a ``slow`` step, or later than the
  worker's HTTP timeout (the worker gave up on it; the stand-in still accepted it);
- a partition (``Events.partitions``, tests/faults/test_partition.py) overlapping that span or
  ending up to ``SETTLE_SLACK_S`` before the request arrived: its outcome could not be written,
  or the request itself was held on the dead path and arrived after the worker gave up on it.

Deterministic lines (same seed, same value on a correct worker): enqueued, planted, acknowledged,
every "dead:" line, and every line that must be 0. Duplicates, kills, restarts and request
counts depend on timing and are printed for information.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from outbox_worker.standin import Received
from tests.faults.driver import Events, describe_exit
from tests.faults.plan import DEAD_BY_STATUS, Fate, Plan

# A worker writes an answered send down within this long (generous: a busy 2-core machine).
SETTLE_SLACK_S = 3.0
# A request a worker wrote just before its SIGKILL can still be read by the stand-in after it:
# Received.at is taken when the stand-in's handler starts, in the driver's busy event loop.
KILL_LEAD_S = 1.0
# How a dead row says why; the worker's wording may vary, these are the facts it must name.
GAVE_UP = re.compile(r"gave up|max(imum)?[ _]attempts", re.IGNORECASE)
NOT_OBJECT = re.compile(r"not a JSON object|not an object", re.IGNORECASE)
TOO_LARGE = re.compile(r"too large|too big|larger than|over the limit", re.IGNORECASE)
EXAMPLES = 5


@dataclass(frozen=True, slots=True)
class Row:
    """One outbox.messages row as the ledger needs it."""

    id: int
    key: str | None
    state: str
    attempts: int
    last_status: int | None
    last_error: str | None
    gave_up: bool  # last_response carries "gave_up"
    leased: bool
    body: str | None = None  # stored payload text, fetched for planted rows only


ROWS_QUERY = """
SELECT id,
    coalesce(payload #>> '{customer,customerId}', payload #>> '{supplier,supplierId}') AS key,
    state, attempts, last_status, last_error,
    coalesce(last_response ? 'gave_up', false) AS gave_up,
    lease_token IS NOT NULL AS leased,
    CASE WHEN id = ANY($1::bigint[]) THEN payload::text END AS body
FROM outbox.messages
ORDER BY id
"""


class Cause(StrEnum):
    """What explains a duplicate acceptance."""

    KILL = "a SIGKILL"
    PG_RESTART = "a PostgreSQL restart"
    SLOW = "a slow answer (timeout)"
    PARTITION = "a partition"
    NOTHING = "nothing"


@dataclass(frozen=True, slots=True)
class Line:
    """One ledger line; ``expected`` None means printed for information only."""

    name: str
    actual: int
    expected: int | None = None
    deterministic: bool = True
    examples: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when the line meets its expectation (or has none)."""
        return self.expected is None or self.actual == self.expected


@dataclass
class Ledger:
    """The lines of a run and the run's identity."""

    title: str
    lines: list[Line] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every line meets its expectation."""
        return all(line.ok for line in self.lines)

    def failing(self) -> list[Line]:
        """The lines that miss their expectation."""
        return [line for line in self.lines if not line.ok]

    def table(self) -> str:
        """The ledger as a fixed-width table, failing lines' examples below it."""
        width = max(len(line.name) for line in self.lines)
        head = f"{'line':<{width}}  {'expected':>8}  {'actual':>7}  ok  deterministic"
        out = [self.title, head, "-" * len(head)]
        for line in self.lines:
            expected = "-" if line.expected is None else str(line.expected)
            mark = "  " if line.expected is None else "ok" if line.ok else "XX"
            det = "yes" if line.deterministic else "no (timing)"
            out.append(f"{line.name:<{width}}  {expected:>8}  {line.actual:>7}  {mark}  {det}")
        for line in self.failing():
            out.append(f"\n{line.name}: expected {line.expected}, got {line.actual}")
            out += [f"  {example}" for example in line.examples]
        out.append("\nRESULT: " + ("every line balances" if self.ok else "LEDGER DOES NOT BALANCE"))
        return "\n".join(out)


def dead_fate(row: Row) -> Fate | None:
    """The fault a dead row's record names, or None when it names none the plan could inject."""
    error = row.last_error or ""
    if row.gave_up or GAVE_UP.search(error):
        return Fate.DEAD_GAVE_UP
    if row.last_status is not None:
        return DEAD_BY_STATUS.get(row.last_status)
    if NOT_OBJECT.search(error):
        return Fate.DEAD_NOT_OBJECT
    if TOO_LARGE.search(error):
        return Fate.DEAD_TOO_LARGE
    return None


def accepted(received: Received) -> bool:
    """True when the stand-in took the message: 2xx, or 429 (Ravelin queues rate-limited data)."""
    return 200 <= received.status < 300 or received.status == 429


def explain(earlier: Received, events: Events, *, http_timeout: float) -> Cause:
    """Why a message accepted as ``earlier`` could be sent again (see the module docstring)."""
    if earlier.step == "slow" or earlier.answered_at - earlier.at >= 0.9 * http_timeout:
        return Cause.SLOW
    until = earlier.answered_at + SETTLE_SLACK_S
    if any(earlier.at - KILL_LEAD_S <= at <= until for at in events.kills):
        return Cause.KILL
    if any(began <= until and ended >= earlier.at for began, ended in events.pg_restarts):
        return Cause.PG_RESTART
    if any(
        began <= until and ended + SETTLE_SLACK_S >= earlier.at
        for began, ended in events.partitions
    ):
        return Cause.PARTITION
    return Cause.NOTHING


def build_ledger(
    plan: Plan,
    events: Events,
    rows: Sequence[Row],
    received: Iterable[Received],
    *,
    http_timeout: float,
) -> Ledger:
    """Balance the run: one line per fact the plan lets us predict, plus informational ones."""
    by_key: dict[str, list[Received]] = defaultdict(list)
    by_body: dict[bytes, list[Received]] = defaultdict(list)
    requests = 0
    for r in received:
        requests += 1
        if r.key is not None:
            by_key[r.key].append(r)
        else:
            by_body[r.body].append(r)
    fates = _fates(plan, events, rows)
    profile = plan.profile
    title = (
        f"chaos ledger: seed {profile.seed}, plan {plan.digest()}, {profile.updates} updates, "
        f"{profile.workers} workers, chaos {events.chaos_seconds:.1f}s, "
        f"drain {events.drain_seconds:.1f}s{'' if events.drained else ' (TIMED OUT)'}"
    )
    ledger = Ledger(title)
    ledger.lines += _count_lines(plan, events, rows, fates)
    ledger.lines += _outcome_lines(rows, fates, by_key, by_body, events, plan)
    ledger.lines += _duplicate_lines(by_key, events, http_timeout)
    ledger.lines += _process_lines(events, plan, requests)
    return ledger


def _fates(plan: Plan, events: Events, rows: Sequence[Row]) -> dict[int, Fate]:
    fates: dict[int, Fate] = {}
    for row in rows:
        index = events.planted_ids.get(row.id)
        if index is not None:
            fates[row.id] = plan.planted[index].fate
        elif row.key is not None:
            fates[row.id] = plan.fate(row.key)
    return fates


def _count_lines(
    plan: Plan, events: Events, rows: Sequence[Row], fates: dict[int, Fate]
) -> list[Line]:
    keys = set(plan.keys)
    expected = Counter(plan.fate(key) for key in plan.keys)
    expected.update(row.fate for row in plan.planted)
    stored = len(plan.planted) - expected[Fate.REFUSED]
    lines = [
        Line("enqueued (outbox.enqueue)", sum(r.key in keys for r in rows), len(plan.keys)),
        Line("planted by raw SQL", len(events.planted_ids), stored),
        Line(Fate.REFUSED.value, len(events.refused), expected[Fate.REFUSED]),
        Line(
            "acknowledged",
            sum(r.state == "acknowledged" for r in rows),
            expected[Fate.ACKNOWLEDGED],
        ),
    ]
    dead = [r for r in rows if r.state == "dead"]
    for fate in Fate:
        if fate in (Fate.ACKNOWLEDGED, Fate.REFUSED):
            continue
        matched = sum(dead_fate(r) is fate and fates.get(r.id) is fate for r in dead)
        lines.append(Line(fate.value, matched, expected[fate]))
    return lines


def _outcome_lines(
    rows: Sequence[Row],
    fates: dict[int, Fate],
    by_key: dict[str, list[Received]],
    by_body: dict[bytes, list[Received]],
    events: Events,
    plan: Plan,
) -> list[Line]:
    def was_accepted(row: Row) -> bool:
        answers = by_key.get(row.key, []) if row.key is not None else []
        return any(accepted(r) for r in answers)

    unexplained_dead = [
        r for r in rows if r.state == "dead" and dead_fate(r) is not fates.get(r.id)
    ]
    missed_dead = [
        r
        for r in rows
        if r.state == "acknowledged" and fates.get(r.id, Fate.ACKNOWLEDGED) is not Fate.ACKNOWLEDGED
    ]
    lost = [r for r in rows if r.state != "dead" and not was_accepted(r)]
    pending = [r for r in rows if r.state == "pending"]
    leased = [r for r in rows if r.leased]
    sent_planted = []
    for row in rows:
        index = events.planted_ids.get(row.id)
        if index is None or plan.planted[index].sendable:
            continue
        body = (row.body or "").encode()
        if by_body.get(body) or (row.key is not None and by_key.get(row.key)):
            sent_planted.append(row)
    return [
        Line(
            "dead, reason not injected for that message",
            len(unexplained_dead),
            0,
            examples=_examples(unexplained_dead, fates),
        ),
        Line(
            "acknowledged, though a dead letter was due",
            len(missed_dead),
            0,
            examples=_examples(missed_dead, fates),
        ),
        Line("lost (never accepted, not dead)", len(lost), 0, examples=_examples(lost, fates)),
        Line("pending rows left", len(pending), 0, examples=_examples(pending, fates)),
        Line("leased rows left", len(leased), 0, examples=_examples(leased, fates)),
        Line(
            "planted rows sent though unsendable",
            len(sent_planted),
            0,
            examples=_examples(sent_planted, fates),
        ),
    ]


def _duplicate_lines(
    by_key: dict[str, list[Received]], events: Events, http_timeout: float
) -> list[Line]:
    causes: Counter[Cause] = Counter()
    unexplained: list[str] = []
    for key, answers in by_key.items():
        taken = sorted((r for r in answers if accepted(r)), key=lambda r: r.at)
        for earlier, later in itertools.pairwise(taken):
            cause = explain(earlier, events, http_timeout=http_timeout)
            causes[cause] += 1
            if cause is Cause.NOTHING:
                unexplained.append(_duplicate_example(key, earlier, later, events))
    lines = [
        Line(f"duplicates explained by {cause.value}", causes[cause], deterministic=False)
        for cause in (Cause.KILL, Cause.PG_RESTART, Cause.SLOW, Cause.PARTITION)
    ]
    lines.append(
        Line(
            "duplicates unexplained",
            causes[Cause.NOTHING],
            0,
            examples=tuple(unexplained[:EXAMPLES]),
        )
    )
    return lines


def _process_lines(events: Events, plan: Plan, requests: int) -> list[Line]:
    bad_final = [e for e in events.final_exits if e.code != 0]
    return [
        Line(
            "worker exits besides the driver's kills",
            len(events.unexpected_exits),
            0,
            examples=_exit_examples(events.unexpected_exits),
        ),
        Line(
            "final SIGTERM exits other than 0",
            len(bad_final),
            0,
            examples=_exit_examples(bad_final),
        ),
        Line("stand-in windows", len(events.windows), len(plan.windows)),
        Line("PostgreSQL restarts", len(events.pg_restarts), len(plan.pg_restarts)),
        Line("SIGKILLs sent", len(events.kills), deterministic=False),
        Line("requests received", requests, deterministic=False),
    ]


def _examples(rows: Sequence[Row], fates: dict[int, Fate]) -> tuple[str, ...]:
    return tuple(
        f"id {r.id} key {r.key}: {r.state}, attempts {r.attempts}, last_status {r.last_status},"
        f" expected {fates.get(r.id, '?')}; last_error {(r.last_error or '')[:160]!r}"
        for r in rows[:EXAMPLES]
    )


def _duplicate_example(key: str, earlier: Received, later: Received, events: Events) -> str:
    start = events.started_at
    crashes = [e.at - start for e in events.unexpected_exits if earlier.at <= e.at <= later.at]
    kills = [at - start for at in events.kills if at <= later.at]
    nearest = f"{kills[-1]:.2f}s" if kills else "none"
    return (
        f"key {key}: accepted at {earlier.at - start:.2f}s ({earlier.step}) and again at "
        f"{later.at - start:.2f}s ({later.step}); last SIGKILL before the re-send at {nearest}; "
        f"unexpected worker exits in between at {[round(at, 2) for at in crashes]}"
    )


def _exit_examples(exits: Sequence[Any]) -> tuple[str, ...]:
    out = []
    for e in exits[:EXAMPLES]:
        info = describe_exit(e)
        tail = " | ".join(line[:200] for line in info["log_tail"][-4:])
        out.append(f"pid {info['pid']} exit {info['code']}: {tail}")
    return tuple(out)
