"""The worker's write side: outcomes and hand-backs, gathered and written in few statements.

Senders hand their row writes (``Settlement``) and unsent claims (``Message``) to an
``OutcomeWriter``; its loop writes what gathered every flush interval, in one statement for the
outcomes and one for the releases. Nothing handed over is dropped on a database outage: it stays
queued and is written on the next try; meanwhile ``database_down`` tells the dispatcher to start
no send (its answer could not be written either), and a claim that succeeds again cuts the
writer's backoff short (``database_answered``). A batch the database refuses (bad data in one
row, a row another service wrote) is written again row by row, so only the row at fault is
dead-lettered, with the database's reason.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable

import structlog

from outbox_worker.errors import DatabaseUnavailable, StatementRejected
from outbox_worker.models import Message, Settlement, State
from outbox_worker.observability import Metrics, status_class
from outbox_worker.ports import Store

log = structlog.get_logger("outbox_worker.writer")

DB_RETRY_INITIAL_S = 0.2
DB_RETRY_CAP_S = 15.0
# The final flush at shutdown tries at least this long, even with a short grace period.
FINAL_FLUSH_MIN_S = 5.0


class OutcomeWriter:
    """Writes the outcomes and releases handed to it, batched, until its loop is cancelled."""

    def __init__(
        self,
        store: Store,
        metrics: Metrics,
        *,
        flush_interval_s: float,
        clock: Callable[[], float],
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._interval = flush_interval_s
        self._clock = clock
        self._writes: list[Settlement] = []
        self._releases: list[Message] = []
        self._dirty = asyncio.Event()  # something waits to be written
        self._answered = asyncio.Event()  # the database answered another statement: retry now
        self._database_down = False

    def write(self, settlement: Settlement) -> None:
        """Queue one row write."""
        self._writes.append(settlement)
        self._dirty.set()

    def release(self, message: Message) -> None:
        """Queue one claim to hand back unsent."""
        self._releases.append(message)
        self._dirty.set()

    @property
    def database_down(self) -> bool:
        """True while outcomes wait because the last flush found the database unavailable."""
        return self._database_down

    def database_answered(self) -> None:
        """The database answered another statement (a claim): retry a failed flush at once."""
        self._answered.set()

    @property
    def backlog(self) -> int:
        """Writes and releases not yet written."""
        return len(self._writes) + len(self._releases)

    async def run(self) -> None:
        """Flush whatever gathered every flush interval, backing off while the database is down."""
        backoff = Backoff()
        while True:
            await self._dirty.wait()
            await asyncio.sleep(self._interval)  # let a flush gather many outcomes into one UPDATE
            try:
                await self.flush()
            except DatabaseUnavailable as exc:
                self._database_down = True
                self._metrics.db_errors.inc()
                await self._retry_after(backoff.next("flush", exc))
            except Exception as exc:  # a bug must not stop every later write
                log.error("worker.unexpected_error", during="flush", error=_kind(exc))
                await asyncio.sleep(backoff.next("flush", exc))
            else:
                self._database_down = False
                backoff.reset()

    async def _retry_after(self, seconds: float) -> None:
        """Wait ``seconds`` before the next flush, or less if the database answers meanwhile."""
        self._answered.clear()
        try:
            async with asyncio.timeout(seconds):
                await self._answered.wait()
        except TimeoutError:
            pass

    async def flush(self) -> None:
        """Write gathered outcomes and releases; on failure they stay queued for the next try."""
        self._dirty.clear()
        writes, self._writes = self._writes, []
        releases, self._releases = self._releases, []
        try:
            if writes:
                await self._write_outcomes(writes)
            if releases:
                await self._release(releases)
        finally:
            if writes or releases:  # what was not written goes back to the front of the queue
                self._writes[:0] = writes
                self._releases[:0] = releases
                self._dirty.set()

    async def final_flush(self, grace_s: float) -> None:
        """Write everything queued, retrying for about ``grace_s``; then give up loudly."""
        deadline = self._clock() + max(grace_s, FINAL_FLUSH_MIN_S)
        while self._writes or self._releases:
            try:
                await self.flush()
            except (DatabaseUnavailable, StatementRejected) as exc:
                if self._clock() > deadline:
                    log.error(
                        "worker.final_write_failed",
                        error=str(exc),
                        unwritten=len(self._writes),
                        unreleased=len(self._releases),
                        note="their leases run out and another worker takes them",
                    )
                    return
                await asyncio.sleep(0.2)

    async def _write_outcomes(self, writes: list[Settlement]) -> None:
        """Write ``writes``, emptying the list as rows are written (what is left is unwritten)."""
        try:
            applied = await self._store.settle(writes)
        except DatabaseUnavailable:
            raise
        except Exception as exc:  # StatementRejected, or a row we cannot encode
            log.warning("settle.batch_rejected", count=len(writes), error=_reason(exc),
                        note="writing the rows one by one")  # fmt: skip
            while writes:
                await self._write_alone(writes[0])
                writes.pop(0)
            return
        self._counted(writes, applied)
        writes.clear()

    async def _write_alone(self, settlement: Settlement) -> None:
        try:
            applied = await self._store.settle([settlement])
        except DatabaseUnavailable:
            raise
        except Exception as exc:  # this row alone is at fault
            await self._dead_letter_unwritable(settlement, exc)
            return
        self._counted([settlement], applied)

    async def _dead_letter_unwritable(self, settlement: Settlement, exc: Exception) -> None:
        reason = f"the outcome could not be written: {_reason(exc)}"[:300]
        try:
            applied = await self._store.dead_letter_unwritable(settlement, reason)
        except StatementRejected as again:
            # Nothing more can be written for this row: its lease runs out and it is tried again.
            log.error("settle.unwritable", message_id=settlement.message_id, error=str(again))
            return
        if applied:
            self._metrics.deliveries.labels("dead").inc()
            log.error("delivery.dead_lettered", message_id=settlement.message_id, error=reason)

    async def _release(self, releases: list[Message]) -> None:
        try:
            await self._store.release(releases)
        except StatementRejected as exc:
            # A hand-back only shortens a wait: without it the leases run out on their own.
            log.error("release.rejected", count=len(releases), error=str(exc))
        releases.clear()

    def _counted(self, writes: list[Settlement], applied: int) -> None:
        """Metrics for written outcomes, counted per flush rather than per send."""
        if applied < len(writes):
            self._metrics.lost_leases.inc(len(writes) - applied)
            log.warning("settle.skipped", count=len(writes) - applied,
                        reason="lease taken over by another worker")  # fmt: skip
        # Counted by kind first (a flush holds few kinds), then labelled once per kind.
        kinds = Counter([(w.state, w.attempt_spent, w.status) for w in writes])
        outcomes: Counter[str] = Counter()
        answers: Counter[str] = Counter()
        for (state, spent, status), n in kinds.items():
            outcomes[_settled_label(state, spent)] += n
            answers[status_class(status)] += n
        observe = self._metrics.latency.observe
        for w in writes:
            observe(w.latency_s)
        for label, n in outcomes.items():
            self._metrics.deliveries.labels(label).inc(n)
        for label, n in answers.items():
            self._metrics.responses.labels(label).inc(n)


def _settled_label(state: State, attempt_spent: bool) -> str:
    if state is State.PENDING:
        return "retry" if attempt_spent else "paused"
    return "acknowledged" if state is State.ACKNOWLEDGED else "dead"


def _kind(exc: BaseException) -> str:
    # The type only: an exception's text may quote a payload or a row.
    return type(exc).__name__


def _reason(exc: Exception) -> str:
    """Our own errors' text (written to be safe), else only the exception's type."""
    return str(exc) if isinstance(exc, StatementRejected) else _kind(exc)


class Backoff:
    """Capped exponential waits (with jitter) while the database is unreachable; logs each kind
    of failure once per outage."""

    def __init__(self) -> None:
        self._delay = 0.0
        self._kind = ""

    def next(self, during: str, exc: Exception) -> float:
        """The next wait in seconds; logged as a warning when it starts a series or its kind of
        failure changes (a failover: refused connections, then a read-only server), else debug."""
        kind = type(exc.__cause__ or exc).__name__
        loud = self._delay == 0.0 or kind != self._kind
        self._kind = kind
        self._delay = min(DB_RETRY_CAP_S, max(DB_RETRY_INITIAL_S, self._delay * 2))
        wait = self._delay * (0.5 + random.random() / 2)
        error = str(exc) if isinstance(exc, DatabaseUnavailable) else _reason(exc)
        (log.warning if loud else log.debug)(
            "database.unavailable", during=during, error=error, retry_in_s=round(wait, 2)
        )
        return wait

    def reset(self) -> None:
        """The database answered again."""
        if self._delay:
            log.info("database.reconnected")
        self._delay = 0.0
        self._kind = ""
