"""The worker's side of fleet control: its row in the workers registry, and the fleet's pause.

Every REGISTRY_HEARTBEAT (5 s) the watch writes the worker's row (its state, sends in the last
minute, sends in flight) and reads the fleet's pause, in one round trip. A NOTIFY on the fleet
channel (pause, resume) makes it read the pause at once, so a listening worker obeys within one
round trip; a worker without LISTEN (behind a transaction pooler) reads it every poll interval
when that is shorter than the heartbeat, so it obeys within its poll interval. Those in-between
reads are one cheap SELECT: the row is written only every heartbeat (and at once when the
worker's state changes), so a short poll interval does not turn into a stream of writes.

Until a beat has succeeded the pause is unknown and the watch is ``holding``: a worker started
during a pause claims nothing before it has read the pause. A beat that fails changes nothing (the
last pause read stands, as a circuit's state does through a database outage): the next one tries
again.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from outbox_worker.errors import DatabaseUnavailable, StatementRejected
from outbox_worker.models import (
    REGISTRY_HEARTBEAT,
    PausedBy,
    PauseState,
    WorkerBeat,
    WorkerState,
)
from outbox_worker.observability import Metrics
from outbox_worker.ports import Store
from outbox_worker.version import __version__

log = structlog.get_logger("outbox_worker.worker")

# The last beat, written as the worker stops, may take this long before it is given up.
FINAL_BEAT_TIMEOUT_S = 2.0
RECENT_WINDOW_S = 60.0


@dataclass(frozen=True, slots=True)
class Status:
    """What the worker says about itself at a beat."""

    state: WorkerState
    paused_by: PausedBy | None
    in_flight: int
    sends: int  # sends started since the worker started (a running total)


class RecentCount:
    """How much a running total grew in the last minute, from the samples taken at each beat."""

    __slots__ = ("_clock", "_samples", "_window_s")

    def __init__(self, clock: Callable[[], float], window_s: float = RECENT_WINDOW_S) -> None:
        self._clock = clock
        self._window_s = window_s
        self._samples: deque[tuple[float, int]] = deque([(clock(), 0)])

    def add(self, total: int) -> int:
        """Record ``total`` now; return its growth since the newest sample a window ago (or
        since the start, in the first minute)."""
        now = self._clock()
        self._samples.append((now, total))
        # Keep one sample at or before the window's start: it is the baseline.
        while len(self._samples) > 1 and self._samples[1][0] <= now - self._window_s:
            self._samples.popleft()
        return total - self._samples[0][1]


class FleetWatch:
    """Keeps the worker's registry row fresh and tells it when the fleet's pause changes."""

    def __init__(
        self,
        store: Store,
        metrics: Metrics,
        *,
        status: Callable[[], Status],
        paused_changed: Callable[[bool], None],
        poll_interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._status = status
        self._paused_changed = paused_changed
        self._poll_s = poll_interval_s
        self._next_beat = 0.0  # loop time of the next row write (0: at once)
        self._recent = RecentCount(clock)
        self._hinted = asyncio.Event()
        self._listening = False
        self.worker_id = uuid.uuid4()
        self._host = socket.gethostname()
        self._pid = os.getpid()
        self.pause: PauseState | None = None  # None until a beat has read it

    @property
    def holding(self) -> bool:
        """Whether the worker must start no send: paused fleet-wide, or not known yet."""
        return self.pause is None or self.pause.paused

    @property
    def paused(self) -> bool:
        """Whether an operator paused the fleet (as last read)."""
        return self.pause is not None and self.pause.paused

    def hint(self) -> None:
        """The pause may have changed (a NOTIFY, or LISTEN just began): read it now."""
        self._hinted.set()

    def listening(self, on: bool) -> None:
        """Whether NOTIFY reaches this worker (shown in the registry)."""
        self._listening = on

    async def run(self) -> None:
        """Beat every heartbeat; read the pause when hinted, and every poll interval without
        LISTEN; until cancelled."""
        loop = asyncio.get_running_loop()
        heartbeat_s = REGISTRY_HEARTBEAT.total_seconds()
        while True:
            self._hinted.clear()
            wait = heartbeat_s if self._listening else min(self._poll_s, heartbeat_s)
            if loop.time() >= self._next_beat:
                self._next_beat = loop.time() + heartbeat_s
                if not await self.beat():  # try again at the next turn, not a heartbeat later
                    self._next_beat = loop.time() + min(self._poll_s, heartbeat_s)
            else:
                await self._read_pause()
            try:
                async with asyncio.timeout(min(wait, max(0.0, self._next_beat - loop.time()))):
                    await self._hinted.wait()
            except TimeoutError:
                pass

    async def beat(self, state: WorkerState | None = None) -> bool:
        """Write the row (with ``state`` instead of the worker's own, if given) and read the
        pause; whether that worked."""
        status = self._status()
        beat = WorkerBeat(
            worker_id=self.worker_id,
            host=self._host[:255],
            pid=self._pid,
            version=__version__[:64],
            state=state or status.state,
            paused_by=None if state else status.paused_by,
            listening=self._listening,
            sends_last_minute=self._recent.add(status.sends),
            in_flight=status.in_flight,
        )
        return await self._ask(self._store.heartbeat(beat), "heartbeat")

    async def _read_pause(self) -> bool:
        return await self._ask(self._store.fleet_pause(), "pause")

    async def _ask(self, question: Awaitable[PauseState], during: str) -> bool:
        """Take the pause from ``question``'s answer; a failure changes nothing."""
        try:
            pause = await question
        except (DatabaseUnavailable, StatementRejected) as exc:
            self._metrics.db_errors.inc()
            log.debug("registry.unavailable", error=str(exc))
            return False
        except Exception as exc:  # no bug in the registry may stop delivery
            log.error("worker.unexpected_error", during=during, error=type(exc).__name__)
            return False
        self._read(pause)
        return True

    async def final_beat(self) -> None:
        """Say the worker stopped (best effort: a database that is gone is not waited for)."""
        try:
            async with asyncio.timeout(FINAL_BEAT_TIMEOUT_S):
                await self.beat(WorkerState.STOPPED)
        except TimeoutError:
            log.debug("registry.unavailable", error="the last heartbeat timed out")

    def _read(self, pause: PauseState) -> None:
        was = self.pause
        self.pause = pause
        self._metrics.paused.set(1 if pause.paused else 0)
        since = pause.paused_at.timestamp() if pause.paused and pause.paused_at else 0
        self._metrics.paused_since.set(since)
        if was is not None and was.paused == pause.paused:
            return
        if pause.paused:
            log.warning(
                "fleet.paused",
                reason=pause.reason,
                by=pause.actor,
                via=pause.via,
                db_role=pause.db_role,
                since=pause.paused_at.isoformat() if pause.paused_at else None,
                hint="`outbox-worker resume` restarts delivery",
            )
        elif was is not None:
            log.info("fleet.resumed", by=pause.actor, via=pause.via, db_role=pause.db_role)
        self._paused_changed(pause.paused)
        self._next_beat = 0.0  # write the row at once: the registry shows the new state
        self._hinted.set()
