"""The chaos driver: carries out a Plan with real processes and writes down what it did.

Worker processes are `python -m outbox_worker run` (started as tests/processes.py starts
them), one supervisor task per worker slot: it restarts a worker the driver killed and also one
that exited by itself, which is recorded as an unexpected exit. Workers are (re)started only
while PostgreSQL is up (``_db_up`` is held during a restart), so that an exit at start-up while
the database is down is not mixed up with a crash.

The schedule's waits are pacing (``_sleep_until``); every "wait until X" is a condition with a
deadline. Times in ``Events`` are ``time.monotonic()`` of this process, the clock the stand-in's
``Received.at`` uses too.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import signal
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg

from outbox_worker.standin import StandIn
from outbox_worker.store.connection import TRANSIENT_ERRORS
from tests.faults.plan import Plan, PlantedRow, Window, WindowKind
from tests.pg import EmbeddedServer
from tests.processes import WorkerProcess, spawn_worker
from tests.waiting import wait_for

_T = TypeVar("_T")
# What the driver's own database calls meet while PostgreSQL restarts.
_DB_DOWN = TRANSIENT_ERRORS
STARTUP_TIMEOUT_S = 60.0
DB_RETRY_DEADLINE_S = 60.0
LOG_TAIL = 15


@dataclass(frozen=True, slots=True)
class Exit:
    """A worker that ended other than by the driver's SIGKILL."""

    pid: int
    code: int | None
    at: float
    log_tail: tuple[str, ...]


@dataclass
class Events:
    """What the driver did and saw, on this process's monotonic clock."""

    started_at: float = 0.0
    kills: list[float] = field(default_factory=list)
    pg_restarts: list[tuple[float, float]] = field(default_factory=list)
    partitions: list[tuple[float, float]] = field(default_factory=list)  # paths blackholed
    windows: list[tuple[WindowKind, float, float]] = field(default_factory=list)
    unexpected_exits: list[Exit] = field(default_factory=list)
    final_exits: list[Exit] = field(default_factory=list)
    planted_ids: dict[int, int] = field(default_factory=dict)  # row id -> index in plan.planted
    refused: list[int] = field(default_factory=list)  # indexes in plan.planted the schema refused
    drained: bool = False
    drain_seconds: float = 0.0
    chaos_seconds: float = 0.0


@dataclass
class _Slot:
    index: int
    worker: WorkerProcess | None = None
    killed: bool = False  # the driver sent SIGKILL to the current worker


class Driver:
    """Runs one Plan against a database, an embedded server it may restart, and a stand-in."""

    def __init__(
        self,
        plan: Plan,
        *,
        database_url: str,
        server: EmbeddedServer,
        standin: StandIn,
        worker_env: Mapping[str, str],
    ) -> None:
        self.plan = plan
        self.events = Events()
        self._url = database_url
        self._server = server
        self._standin = standin
        self._env = dict(worker_env)
        self._db_up = asyncio.Lock()
        self._slots = [_Slot(i) for i in range(plan.profile.workers)]
        self._stopping = False
        self._conn: asyncpg.Connection | None = None

    async def run(self) -> Events:
        """Start the workers, plant rows, play the schedule, heal, drain, stop the workers."""
        supervisors = [
            asyncio.create_task(self._supervise(slot), name=f"slot-{slot.index}")
            for slot in self._slots
        ]
        try:
            await wait_for(self._all_started, timeout=STARTUP_TIMEOUT_S, message="workers up")
            await self._plant()
            self.events.started_at = time.monotonic()
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._enqueue_all(), name="enqueue")
                tasks.create_task(self._play_windows(), name="windows")
                tasks.create_task(self._play_kills(), name="kills")
                tasks.create_task(self._play_pg_restarts(), name="pg-restarts")
            self.events.chaos_seconds = time.monotonic() - self.events.started_at
            await self._heal()
            await self._drain()
        finally:
            await self._stop_workers(supervisors)
            if self._conn is not None:
                self._conn.terminate()
        return self.events

    # --- workers ----------------------------------------------------------------------------

    async def _supervise(self, slot: _Slot) -> None:
        while not self._stopping:
            async with self._db_up:
                worker = await spawn_worker(self._env)
                slot.worker, slot.killed = worker, False
                await wait_for(
                    functools.partial(_started_or_gone, worker),
                    timeout=STARTUP_TIMEOUT_S,
                    interval=0.05,
                    message=f"{worker} to start",
                )
            code = await worker.process.wait()
            if worker.reader is not None:
                await worker.reader
            if self._stopping:
                return
            if not slot.killed:
                self.events.unexpected_exits.append(exit_record(worker, code))

    async def _all_started(self) -> bool:
        return all(
            s.worker is not None and "worker.started" in _events(s.worker) for s in self._slots
        )

    async def _play_kills(self) -> None:
        for kill in self.plan.kills:
            await self._sleep_until(kill.at)
            slot = self._slots[kill.worker]
            worker = slot.worker
            if worker is None or worker.returncode is not None or slot.killed:
                continue
            slot.killed = True
            self.events.kills.append(time.monotonic())
            worker.process.send_signal(signal.SIGKILL)

    async def _stop_workers(self, supervisors: list[asyncio.Task[None]]) -> None:
        self._stopping = True
        for task in supervisors:
            task.cancel()
        await asyncio.gather(*supervisors, return_exceptions=True)
        for slot in self._slots:
            worker = slot.worker
            if worker is None:
                continue
            # A worker still importing has no SIGTERM handler yet: let it start (or fail) first.
            with contextlib.suppress(AssertionError):
                await wait_for(
                    functools.partial(_started_or_gone, worker),
                    timeout=STARTUP_TIMEOUT_S,
                    interval=0.05,
                    message=f"{worker} to start",
                )
            if worker.returncode is None:
                worker.process.send_signal(signal.SIGTERM)
            elif not slot.killed:
                self.events.unexpected_exits.append(exit_record(worker, worker.returncode))
                continue
            try:
                code = await worker.wait_exit(timeout=30)
            except TimeoutError:  # SIGTERM ignored: recorded with the SIGKILL's code
                worker.process.kill()
                code = await worker.wait_exit(timeout=30)
            self.events.final_exits.append(exit_record(worker, code))

    # --- PostgreSQL -------------------------------------------------------------------------

    async def _play_pg_restarts(self) -> None:
        for at in self.plan.pg_restarts:
            await self._sleep_until(at)
            async with self._db_up:
                began = time.monotonic()
                await asyncio.to_thread(self._server.restart)
                self.events.pg_restarts.append((began, time.monotonic()))

    async def _db(self, work: Callable[[asyncpg.Connection], Awaitable[_T]]) -> _T:
        """Run ``work`` on the driver's connection, reconnecting while PostgreSQL restarts."""
        deadline = time.monotonic() + DB_RETRY_DEADLINE_S
        while True:
            try:
                if self._conn is None or self._conn.is_closed():
                    self._conn = await asyncpg.connect(self._url, timeout=10)
                return await work(self._conn)
            except _DB_DOWN:
                if self._conn is not None:
                    self._conn.terminate()
                    self._conn = None
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)  # pacing between reconnection attempts

    async def _plant(self) -> None:
        for index, row in enumerate(self.plan.planted):
            plant = functools.partial(_plant_row, row=row)
            try:
                self.events.planted_ids[await self._db(plant)] = index
            except asyncpg.CheckViolationError:
                self.events.refused.append(index)

    async def _enqueue_all(self) -> None:
        for batch in self.plan.batches:
            await self._sleep_until(batch.at)
            rows = [
                (json.dumps(self.plan.body(i)), self.plan.keys[i])
                for i in range(batch.first, batch.last)
            ]
            await self._db(functools.partial(_enqueue, rows=rows))

    async def _drain(self) -> None:
        """Wait (with a deadline) until no row is pending and none is leased."""
        began = time.monotonic()
        with contextlib.suppress(AssertionError):
            await wait_for(
                self._settled,
                timeout=self.plan.profile.drain_timeout,
                interval=0.5,
                message="every row settled",
            )
            self.events.drained = True
        self.events.drain_seconds = time.monotonic() - began

    async def _settled(self) -> bool:
        return await self._db(_open_rows) == 0

    # --- the stand-in -----------------------------------------------------------------------

    async def _play_windows(self) -> None:
        for window in self.plan.windows:
            await self._sleep_until(window.start)
            began = time.monotonic()
            await self._open(window)
            await self._sleep_until(window.end)
            await self._heal()
            self.events.windows.append((window.kind, began, time.monotonic()))

    async def _open(self, window: Window) -> None:
        standin = self._standin
        match window.kind:
            case WindowKind.STORM_503:
                standin.set_default_status(503)
            case WindowKind.OUTAGE:
                await standin.stop()
            case WindowKind.DROP:
                standin.set_default_status("drop")
            case WindowKind.UNAUTHORIZED:
                standin.set_default_status(401)
            case WindowKind.BURST_429:
                standin.set_retry_after("1", statuses=[429])
                standin.set_script([429] * self.plan.profile.burst_429)
            case WindowKind.SLOW:
                standin.set_default_status("slow")

    async def _heal(self) -> None:
        standin = self._standin
        standin.set_default_status(200)
        standin.set_script([])
        standin.set_retry_after(None, statuses=[429])
        if not standin.running:
            await standin.start()

    async def _sleep_until(self, offset: float) -> None:
        # Pacing, not synchronization: the schedule's next action is due at ``offset``.
        delay = self.events.started_at + offset - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


async def _plant_row(conn: asyncpg.Connection, *, row: PlantedRow) -> int:
    row_id: int = await conn.fetchval(
        "INSERT INTO outbox.messages (payload, history, attempts)"
        " VALUES ($1::jsonb, $2::jsonb, $3) RETURNING id",
        row.payload,
        row.history,
        row.attempts,
    )
    return row_id


async def _enqueue(conn: asyncpg.Connection, *, rows: list[tuple[str, str]]) -> None:
    # The dedup key makes a batch retried after a lost commit answer a no-op.
    await conn.executemany("SELECT outbox.enqueue($1::jsonb, $2)", rows)


async def _open_rows(conn: asyncpg.Connection) -> int:
    count: int = await conn.fetchval(
        "SELECT count(*) FROM outbox.messages WHERE state = 'pending' OR lease_token IS NOT NULL"
    )
    return count


def _started_or_gone(worker: WorkerProcess) -> bool:
    return worker.returncode is not None or "worker.started" in _events(worker)


def _events(worker: WorkerProcess) -> set[str]:
    """The event names of a worker's first log lines (start-up)."""
    names = set()
    for line in worker.lines[:50]:
        with contextlib.suppress(ValueError):
            value = json.loads(line)
            if isinstance(value, dict):
                names.add(str(value.get("event")))
    return names


def exit_record(worker: WorkerProcess, code: int | None) -> Exit:
    """How ``worker`` ended, with the last lines of its log."""
    return Exit(worker.pid, code, time.monotonic(), tuple(worker.lines[-LOG_TAIL:]))


def describe_exit(exit_: Exit) -> dict[str, Any]:
    """An exit as a plain mapping, for the ledger's details."""
    return {"pid": exit_.pid, "code": exit_.code, "log_tail": list(exit_.log_tail)}
