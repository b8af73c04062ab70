"""Issue 20's silent partitions: a path whose packets vanish, with no reset and no error.

A TCP proxy (tests/proxy.py) sits between one worker and PostgreSQL, another between it and the
stand-in; ``blackhole()`` stops forwarding and keeps the sockets open. The producer talks to
PostgreSQL directly, and so does a second worker that joins when the partition begins, as the
rest of a fleet would.

- Database: blackholed for longer than the lease. The worker notices within its database
  timeout (OUTBOX_DATABASE_TIMEOUT, 2 s here), stops sending what it can no longer settle, and
  recovers when the path returns; the other worker takes over the rows whose lease ran out.
- Endpoint: blackholed for a few seconds. Sends end at the HTTP timeout and the outage pause
  opens the circuit; it closes when the path returns.
Each ledger (tests/faults/ledger.py) balances: 0 lost, none stuck, and every duplicate explained
by the partition (an outcome that could not be written, or a request held on the dead path that
arrived after the worker gave up on it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from outbox_worker.standin import StandIn
from tests.faults.chaos import HTTP_TIMEOUT_S, chaos_env
from tests.faults.driver import Events
from tests.faults.ledger import Ledger, build_ledger
from tests.faults.plan import Plan, build_plan
from tests.faults.scenario import drain, produce, quiet_profile, rows, stop
from tests.processes import Enqueue, WorkerProcess, spawn_worker, worker_env
from tests.proxy import Proxy, tcp, through, to_database
from tests.waiting import all_acknowledged, wait_for

DATABASE_TIMEOUT_S = 2.0
LEASE_S = 7.0  # chaos_env's lease
PARTITION_AT_S = 2.0


@dataclass
class Partition:
    """When the path went dark and came back, and what the worker logged meanwhile."""

    began: float = 0.0
    noticed: float = 0.0  # the first log line saying the path is gone, as this test saw it
    restored: float = 0.0
    recovered: float = 0.0  # the first log line saying it is back

    def summary(self, what: str) -> str:
        """The measured times, for the test's output and the README."""
        return (
            f"{what}: noticed {self.noticed - self.began:.2f}s after the partition began, "
            f"recovered {self.recovered - self.restored:.2f}s after the path came back"
        )


def _events_after(worker: WorkerProcess, mark: int, name: str) -> Iterator[dict[str, Any]]:
    """``worker``'s log events called ``name`` among its lines from index ``mark`` on."""
    for event in WorkerProcess(worker.process, worker.lines[mark:]).events:
        if event.get("event") == name:
            yield event


async def _seen_after(worker: WorkerProcess, mark: int, name: str, timeout: float) -> float:
    """Wait for a log event ``name`` after line ``mark``; the time this test saw it."""
    await wait_for(
        lambda: next(_events_after(worker, mark, name), None),
        timeout=timeout,
        message=f"{name} from {worker}",
    )
    return time.monotonic()


@asynccontextmanager
async def _proxies(database_url: str, standin: StandIn) -> AsyncIterator[tuple[Proxy, Proxy]]:
    """A proxy to the test's database and one to the stand-in, for the block."""
    database, endpoint = Proxy(to_database(database_url)), Proxy(tcp(standin.host, standin.port))
    await database.start()
    await endpoint.start()
    try:
        yield database, endpoint
    finally:
        await database.stop()
        await endpoint.stop()


def _env(plan: Plan, database_url: str, endpoint_url: str, **extra: str) -> Mapping[str, str]:
    env = chaos_env(plan.profile, database_url, endpoint_url)
    env["OUTBOX_DATABASE_TIMEOUT"] = f"{DATABASE_TIMEOUT_S:g}s"
    env.update(extra)
    return env


def _endpoint_through(standin: StandIn, proxy: Proxy) -> str:
    return standin.url.replace(f":{standin.port}/", f":{proxy.port}/", 1)


async def _settle(
    plan: Plan, database_url: str, workers: list[WorkerProcess], events: Events, standin: StandIn
) -> Ledger:
    try:
        await drain(database_url, events, plan.profile.drain_timeout)
    finally:
        await stop(workers, events)
    stored = await rows(database_url)
    ledger = build_ledger(plan, events, stored, standin.received, http_timeout=HTTP_TIMEOUT_S)
    print(ledger.table())
    return ledger


@pytest.mark.faults
@pytest.mark.timeout(240)
async def test_a_database_partition_longer_than_the_lease_costs_time_never_a_message(
    chaos_seed: int, database_url: str, standin: StandIn
) -> None:
    """With its database path blackholed past the lease, a worker notices within its database timeout, sends nothing it could not settle, and recovers when the path returns; another worker takes over; the ledger balances."""
    plan = build_plan(quiet_profile(chaos_seed, updates=400, enqueue_rate=40.0, workers=2))
    # Answers slow enough that sends are in flight when the path goes dark: their outcomes
    # cannot be written, and the rows go to the other worker when their lease runs out.
    standin.set_latency((0.2, 0.5))
    events, seen, retries = Events(), Partition(), list[str]()
    async with _proxies(database_url, standin) as (database, endpoint):
        cut_off = await spawn_worker(
            _env(plan, through(database_url, database), _endpoint_through(standin, endpoint))
        )
        workers = [cut_off]
        await cut_off.wait_event("worker.started", timeout=60)
        events.started_at = time.monotonic()

        async def partition() -> None:
            await asyncio.sleep(PARTITION_AT_S)  # pacing: the schedule's one event
            mark = len(cut_off.lines)
            seen.began = time.monotonic()
            database.blackhole()
            # The rest of the fleet: it takes the rows whose lease runs out meanwhile.
            workers.append(await spawn_worker(_env(plan, database_url, standin.url)))
            seen.noticed = await _seen_after(cut_off, mark, "database.unavailable", 30)
            await asyncio.sleep(seen.began + LEASE_S + 3.0 - time.monotonic())  # pacing
            seen.restored = time.monotonic()
            database.restore()
            events.partitions.append((seen.began, seen.restored))
            seen.recovered = await _seen_after(cut_off, mark, "database.reconnected", 60)

        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(produce(plan, database_url, events, retries))
            tasks.create_task(partition())
        events.chaos_seconds = time.monotonic() - events.started_at
        ledger = await _settle(plan, database_url, workers, events, standin)
        sent = list(endpoint.sent)
    print(seen.summary("database partition"))
    assert ledger.ok, "\n" + ledger.table()
    # Once noticed, and the writes in flight then have met the same timeout, nothing is sent
    # whose outcome could not be written until the path is back.
    quiet_from = seen.noticed + DATABASE_TIMEOUT_S + 0.5
    late = [round(at - seen.began, 2) for at in sent if quiet_from < at < seen.restored]
    assert not late, f"sends during the partition, seconds after it began: {late}"
    assert any(at < seen.began for at in sent)  # it was delivering when the path went dark
    assert "delivery.failed" not in cut_off.event_names()


@pytest.mark.faults
@pytest.mark.timeout(240)
async def test_an_endpoint_partition_times_out_pauses_and_resumes(
    chaos_seed: int, database_url: str, standin: StandIn
) -> None:
    """With its endpoint path blackholed, a worker's sends end at the HTTP timeout, the outage pause opens the circuit, and delivery resumes when the path returns; the ledger balances."""
    plan = build_plan(quiet_profile(chaos_seed, updates=300, enqueue_rate=40.0, workers=1))
    standin.set_latency(plan.profile.latency)
    events, seen, retries = Events(), Partition(), list[str]()
    async with _proxies(database_url, standin) as (_database, endpoint):
        worker = await spawn_worker(
            _env(
                plan,
                database_url,
                _endpoint_through(standin, endpoint),
                OUTBOX_OUTAGE_THRESHOLD="3",
                OUTBOX_MAX_ATTEMPTS="10",
            )
        )
        await worker.wait_event("worker.started", timeout=60)
        events.started_at = time.monotonic()

        async def partition() -> None:
            await asyncio.sleep(PARTITION_AT_S)  # pacing: the schedule's one event
            mark = len(worker.lines)
            seen.began = time.monotonic()
            endpoint.blackhole()
            seen.noticed = await _seen_after(worker, mark, "circuit.opened", 30)
            await asyncio.sleep(seen.began + 5.0 - time.monotonic())  # pacing
            seen.restored = time.monotonic()
            endpoint.restore()
            events.partitions.append((seen.began, seen.restored))
            seen.recovered = await _seen_after(worker, mark, "circuit.closed", 60)

        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(produce(plan, database_url, events, retries))
            tasks.create_task(partition())
        events.chaos_seconds = time.monotonic() - events.started_at
        ledger = await _settle(plan, database_url, [worker], events, standin)
    print(seen.summary("endpoint partition"))
    assert ledger.ok, "\n" + ledger.table()
    opened = [e for e in worker.events if e.get("event") == "circuit.opened"]
    assert any(e.get("reason") == "outage" for e in opened), opened
    assert timedelta(seconds=seen.noticed - seen.began) >= timedelta(seconds=HTTP_TIMEOUT_S)


@pytest.mark.faults
@pytest.mark.timeout(120)
async def test_a_worker_started_behind_a_dead_database_path_says_so_and_starts_when_it_returns(
    database_url: str, standin: StandIn, enqueue: Enqueue, pg: asyncpg.Connection
) -> None:
    """A worker whose database path is blackholed at start logs the outage within its database timeout (no crash, no hang), and starts and delivers once the path returns."""
    await enqueue(5)
    async with _proxies(database_url, standin) as (database, _endpoint):
        database.blackhole()
        began = time.monotonic()
        worker = await spawn_worker(
            worker_env(
                {
                    "OUTBOX_DATABASE_URL": through(database_url, database),
                    "OUTBOX_ENDPOINT_URL": standin.url,
                    "OUTBOX_DATABASE_TIMEOUT": f"{DATABASE_TIMEOUT_S:g}s",
                }
            )
        )
        try:
            event = await worker.wait_event("database.unavailable", timeout=30)
            noticed = time.monotonic() - began
            assert event["during"] == "start"
            assert worker.returncode is None
            database.restore()
            await worker.wait_event("worker.started", timeout=60)
            await wait_for(lambda: all_acknowledged(pg, 5), timeout=30, message="all delivered")
        finally:
            code = await worker.terminate(timeout=30)
            print("\n".join(worker.lines))
    print(f"a worker started behind a dead path noticed it after {noticed:.2f}s")
    assert code == 0
