"""The worker's two seams: where it meets the database and where it meets HTTP."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from outbox_worker.models import (
    Answer,
    Backlog,
    Message,
    PauseState,
    Settlement,
    State,
    WorkerBeat,
)


def _ignore(*_args: object) -> None:
    return None


@dataclass(frozen=True, slots=True)
class Hints:
    """What LISTEN hears, as calls: work may be due, the fleet's pause changed, and whether
    notifications reach this process at all (True once LISTEN works, False when it does not)."""

    work: Callable[[], None]
    fleet: Callable[[], None] = _ignore
    listening: Callable[[bool], None] = _ignore


class Store(Protocol):
    """The outbox table as the worker sees it.

    Every method raises DatabaseUnavailable when the database cannot be reached (the worker
    retries; it never drops an outcome) and StatementRejected when the database refused the
    statement itself (bad data, a constraint, a timeout: retrying the same write will not help).
    """

    async def claim(self, limit: int, lease: timedelta, max_bytes: int) -> list[Message]:
        """Take up to ``limit`` due rows (pending, or with an expired lease) under a new lease,
        their bodies adding up to at most ``max_bytes``."""
        ...

    async def settle(self, settlements: Sequence[Settlement]) -> int:
        """Write outcomes in one statement; only rows still held under their lease change."""
        ...

    async def dead_letter_unwritable(self, settlement: Settlement, reason: str) -> int:
        """Dead-letter one held row whose outcome the database refused, touching nothing else."""
        ...

    async def release(self, messages: Sequence[Message]) -> int:
        """Hand claimed rows back unsent: due again at once, no attempt spent."""
        ...

    async def seconds_until_due(self) -> float | None:
        """Seconds until the next pending row becomes due (0 if one is due); None if none."""
        ...

    async def reserve_send_time(self, span_s: float) -> float:
        """Reserve the next ``span_s`` seconds of the send schedule every worker of the database
        shares (OUTBOX_RATE_LIMIT); returns the seconds from now until the span begins (>= 0)."""
        ...

    async def listen(self, hints: Hints) -> None:
        """Call ``hints.work`` on every enqueue notification and ``hints.fleet`` on every change
        of the fleet's pause; runs until cancelled, reconnecting.

        When notifications cannot reach this process (a transaction pooler in between) it says
        so once (``hints.listening(False)``) and keeps checking now and then: the worker finds
        work, and reads the pause, by polling meanwhile.
        """
        ...

    async def backlog(self) -> Backlog:
        """Sample the queue in one cheap statement: due, not yet due, oldest age, dead."""
        ...

    async def purge_expired(self, state: State, older_than: timedelta, limit: int) -> int | None:
        """Delete up to ``limit`` rows in ``state`` older than ``older_than`` in one short
        transaction; None when another process holds the fleet's retention lock."""
        ...

    async def purge_expired_audit(self, older_than: timedelta, limit: int) -> int | None:
        """Delete up to ``limit`` audit rows older than ``older_than`` (at least 90 days), as
        purge_expired does; None when another process holds the retention lock."""
        ...

    async def heartbeat(self, beat: WorkerBeat) -> PauseState:
        """Register or refresh this worker's row in the registry and read the fleet's pause,
        in one round trip."""
        ...

    async def fleet_pause(self) -> PauseState:
        """Read the fleet's pause (one SELECT; nothing written)."""
        ...

    async def forget_workers(self, older_than: timedelta) -> int:
        """Delete the registry rows of workers not seen for ``older_than``; how many."""
        ...


class Sender(Protocol):
    """The registration endpoint as the worker sees it."""

    async def send(self, body: bytes) -> Answer:
        """POST ``body`` unchanged; transport failures come back as an Answer without status."""
        ...
