"""Issue 20's failover: a standby promoted while workers drain and a producer enqueues.

A primary and a synchronous streaming standby (tests/faults/replication.py) serve three workers:
- "multi" names both hosts with ``target_session_attrs=read-write``, as the README says to;
- "old" names only the primary's address, as a client reconnecting to the same name after a
  failover might: the old primary comes back there read-only (SQLSTATE 25006);
- "standby" names only the standby's address and starts while it is still a standby: it says so
  in one line and waits for a primary, which the standby becomes.
A producer enqueues with ``outbox_worker.enqueue_async`` through the multi-host URL, retrying a
batch whose transaction failed (its dedup keys make a retried batch a no-op). The primary is
stopped (as a crash), the standby promoted, the old primary started again read-only on its old
port. The ledger (tests/faults/ledger.py) then balances on the new primary: every update
accepted by the stand-in, none dead, none left pending or leased, no attempt spent on the
failover, and every duplicate explained by the failover window. Afterwards `migrate` and
`stats --json`, given the multi-host URL, find the new primary (the demoted one is listed first).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from outbox_worker import migrate
from outbox_worker.errors import DatabaseUnavailable
from outbox_worker.standin import StandIn
from outbox_worker.store.connection import connect, translate_errors
from tests.cases import KEY
from tests.faults.chaos import HTTP_TIMEOUT_S, chaos_env
from tests.faults.driver import Events
from tests.faults.ledger import Ledger, Row, build_ledger
from tests.faults.plan import Plan, build_plan
from tests.faults.replication import Node, primary_and_standby, wait_synchronous, writable_since
from tests.faults.scenario import ACKNOWLEDGED, count, drain, produce, quiet_profile, rows, stop
from tests.pg import admin_execute
from tests.processes import Run, WorkerProcess, acli, free_port, spawn_worker
from tests.waiting import wait_for

DATABASE = "outbox_failover"
FAILOVER_AT_S = 3.0  # after the producer's first batch


@dataclass
class Failover:
    """What the test saw, on this process's monotonic clock."""

    stopped_at: float = 0.0  # the old primary stopped
    promoted_at: float = 0.0  # the new primary first took writes
    reached_after_s: float = 0.0  # promotion -> the first acknowledgement written by a worker
    producer_retries: list[str] = field(default_factory=list)
    commands: list[Run] = field(default_factory=list)  # migrate, stats after the failover
    recovery_answer: str = ""  # how a write on the standby was reported, before promotion


@pytest.mark.faults
@pytest.mark.timeout(240)
async def test_a_failover_costs_time_never_a_message(chaos_seed: int) -> None:
    """Promoting the standby while workers drain and a producer enqueues: the multi-host worker reaches the new primary, a worker on the demoted primary's address waits on 'read-only' without spending an attempt, a worker started on the standby says so once and waits for it to be promoted, and the ledger balances."""
    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="outbox-xdg-"))
    # 600 updates in 10 s through 3 workers; the failover is the plan's one "restart".
    profile = quiet_profile(chaos_seed, updates=600, enqueue_rate=60.0, workers=3)
    plan = build_plan(dataclasses.replace(profile, pg_restarts=(1, 1)))
    with tempfile.TemporaryDirectory(prefix="outbox-failover-") as workdir:
        primary, standby = await asyncio.to_thread(
            primary_and_standby, Path(workdir), (free_port(), free_port())
        )
        try:
            ledger, stored, workers, seen = await _play(plan, primary, standby)
        finally:
            for node in (primary, standby):
                with contextlib.suppress(RuntimeError):
                    await asyncio.to_thread(node.stop)
    print(ledger.table())
    print(f"a worker reached the new primary {seen.reached_after_s:.2f}s after promotion; "
          f"producer retries: {seen.producer_retries}")  # fmt: skip
    assert ledger.ok, "\n" + ledger.table()
    # The one answer each message got spent its one attempt; the failover spent none.
    assert {row.attempts for row in stored} == {1}
    # Operator commands given the same URL skip the demoted primary (its rows are stale there).
    migrated, stats = seen.commands
    assert migrated.code == 0, migrated.err
    assert stats.code == 0, stats.err
    assert stats.json()["acknowledged"] == plan.profile.updates

    # A standby's "cannot execute ... during recovery" is the database unavailable, not a fault.
    assert "during recovery" in seen.recovery_answer
    assert "is read-only" in seen.recovery_answer
    old = workers["old"]
    unavailable = [e for e in old.events if e.get("event") == "database.unavailable"]
    assert any("is read-only" in str(e.get("error")) for e in unavailable), old.lines[-20:]
    standby_log = workers["standby"].events
    waits = [e for e in standby_log if e.get("event") == "database.unavailable"]
    assert len(waits) == 1, waits
    assert "is a standby (in recovery)" in str(waits[0]["error"])
    names = [e.get("event") for e in standby_log]
    assert names.index("database.unavailable") < names.index("worker.started")
    for worker in workers.values():
        assert "delivery.failed" not in worker.event_names()


async def _play(
    plan: Plan, primary: Node, standby: Node
) -> tuple[Ledger, list[Row], dict[str, WorkerProcess], Failover]:
    await wait_synchronous(primary)
    await asyncio.to_thread(admin_execute, primary.url(), f'CREATE DATABASE "{DATABASE}"')
    await asyncio.to_thread(migrate.upgrade, primary.url(DATABASE))
    hosts = f"127.0.0.1:{primary.port},127.0.0.1:{standby.port}"
    multi = f"postgresql://postgres@{hosts}/{DATABASE}?target_session_attrs=read-write"
    urls = {"multi": multi, "old": primary.url(DATABASE), "standby": standby.url(DATABASE)}
    events, seen = Events(), Failover()
    async with StandIn(KEY, seed=plan.profile.seed) as standin:
        # Sends in flight when the primary stops: their outcomes wait for the new primary.
        standin.set_latency((0.1, 0.3))
        workers = {
            name: await spawn_worker(chaos_env(plan.profile, url, standin.url))
            for name, url in urls.items()
        }
        try:
            for name in ("multi", "old"):
                await workers[name].wait_event("worker.started", timeout=60)
            await workers["standby"].wait_event("database.unavailable", timeout=60)
            seen.recovery_answer = await _write_on(urls["standby"])
            events.started_at = time.monotonic()
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(produce(plan, multi, events, seen.producer_retries))
                tasks.create_task(_fail_over(primary, standby, events, seen))
            events.chaos_seconds = time.monotonic() - events.started_at
            await drain(standby.url(DATABASE), events, plan.profile.drain_timeout)
            commands = await _operator_commands(multi)
        finally:
            await stop(list(workers.values()), events)
        stored = await rows(standby.url(DATABASE))
        received = standin.received
    ledger = build_ledger(plan, events, stored, received, http_timeout=HTTP_TIMEOUT_S)
    seen.commands = commands
    return ledger, stored, workers, seen


async def _write_on(url: str) -> str:
    """What a write on a hot standby raises, as the store reports it."""
    conn = await connect(url)
    try:
        with pytest.raises(DatabaseUnavailable) as refused, translate_errors(url):
            await conn.execute("SELECT pg_notify('outbox_probe', '')")
    finally:
        await conn.close()
    return str(refused.value)


async def _operator_commands(url: str) -> list[Run]:
    """`migrate` and `stats --json` with the multi-host URL, the demoted primary listed first."""
    return [await acli("migrate", db=url), await acli("stats", "--json", db=url)]


async def _fail_over(primary: Node, standby: Node, events: Events, seen: Failover) -> None:
    """Stop the primary (a crash), promote the standby, bring the old one back read-only."""
    await asyncio.sleep(FAILOVER_AT_S)  # pacing: the schedule's one event
    seen.stopped_at = time.monotonic()
    await asyncio.to_thread(primary.stop)
    await asyncio.to_thread(standby.promote)
    seen.promoted_at = await writable_since(standby)
    new_primary = standby.url(DATABASE)
    before = await count(new_primary, ACKNOWLEDGED)
    await asyncio.to_thread(primary.start, "-c", "default_transaction_read_only=on")
    events.pg_restarts.append((seen.stopped_at, time.monotonic()))

    async def acknowledged_more() -> bool:
        return await count(new_primary, ACKNOWLEDGED) > before

    await wait_for(acknowledged_more, timeout=60, interval=0.05, message="a delivery after it")
    seen.reached_after_s = time.monotonic() - seen.promoted_at
