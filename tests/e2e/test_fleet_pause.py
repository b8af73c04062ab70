"""Fleet-wide pause and resume with real worker processes, the real CLI and the stand-in.

Issue 18's figure: three workers deliver; after `pause` no request reaches the stand-in later
than 1 s after it (sends already in flight excepted), no attempt is spent, enqueue keeps working,
/healthz stays healthy; after `resume` delivery restarts within 1 s and every message is
delivered exactly once.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import asyncpg

from outbox_worker.standin import StandIn
from tests.probes import get
from tests.processes import Enqueue, StartWorker, acli, free_port
from tests.waiting import all_acknowledged, wait_for

MESSAGES = 2_000
OBEY_WITHIN_S = 1.0  # the bound for pause and for resume
WATCH_PAUSE_S = 3.0  # how long the paused fleet is watched for a stray request


async def _changed_at(pg: asyncpg.Connection) -> float:
    """When the last pause or resume happened, on this process's monotonic clock (the stand-in's).

    The pause row's changed_at is the database's now(): the start of the transaction that paused,
    just before its commit, so "1 s after it" is measured from no later than the commit. The
    server runs on this host and shares its clock; the offset maps it to time.monotonic().
    """
    changed = await pg.fetchval("SELECT extract(epoch FROM changed_at)::float8 FROM outbox.pause")
    assert isinstance(changed, float)
    return changed - (time.time() - time.monotonic())


async def _workers_report(pg: asyncpg.Connection, state: str, count: int) -> bool:
    """``count`` registered workers, each in ``state`` with nothing in flight."""
    rows = await pg.fetch("SELECT state, in_flight FROM outbox.workers")
    return len(rows) == count and all(r["state"] == state and r["in_flight"] == 0 for r in rows)


async def test_pause_stops_three_workers_within_a_second_and_resume_delivers_the_rest(
    pg: asyncpg.Connection,
    database_url: str,
    standin: StandIn,
    start_worker: StartWorker,
    enqueue: Enqueue,
) -> None:
    """Pause: no new request after 1 s, no attempt spent; resume: all delivered exactly once."""
    standin.set_latency(0.02)
    port = free_port()
    env = {"OUTBOX_CONCURRENCY": "4", "OUTBOX_BATCH_SIZE": "20"}
    probed = {**env, "OUTBOX_METRICS_PORT": str(port), "OUTBOX_LIVENESS_TIMEOUT": "1s"}
    workers = [await start_worker(probed), await start_worker(env), await start_worker(env)]
    await asyncio.gather(*(w.wait_event("listen.started") for w in workers))
    keys = await enqueue(MESSAGES)
    await wait_for(lambda: standin.count >= 200, message="delivery under way")

    paused = await acli("pause", "--reason", "e2e: hold traffic", db=database_url)
    assert paused.code == 0, paused.err
    paused_at = await _changed_at(pg)
    await wait_for(
        lambda: _workers_report(pg, "paused", 3), timeout=20, message="three workers paused"
    )
    more = await enqueue(50, prefix="during-pause")  # enqueue keeps working
    await wait_for(lambda: time.monotonic() > paused_at + WATCH_PAUSE_S, message="a watch")

    last = max(r.at for r in standin.received) - paused_at
    print(f"the last request arrived {last * 1000:.0f} ms after the pause")
    late = [r.at - paused_at for r in standin.received if r.at > paused_at + OBEY_WITHIN_S]
    assert late == [], f"requests {late} s after the pause"
    assert standin.in_progress == 0
    waiting = await pg.fetchval(
        "SELECT count(*) FROM outbox.messages WHERE state = 'pending' AND attempts = 0"
    )
    spent = await pg.fetchval(
        "SELECT count(*) FROM outbox.messages WHERE state = 'pending' AND attempts > 0"
    )
    assert waiting > len(more)  # the pause held back work, which spent nothing
    assert spent == 0
    status, health = await get(f"http://127.0.0.1:{port}/healthz")
    assert (status, health) == (200, "ok\n")
    metrics = (await get(f"http://127.0.0.1:{port}/metrics"))[1]
    assert "outbox_paused 1.0" in metrics
    for worker in workers:
        paused_events = [e for e in worker.events if e["event"] == "fleet.paused"]
        assert paused_events, f"{worker} did not log fleet.paused"

    before_resume = len(standin.received)
    resumed = await acli("resume", db=database_url)
    assert resumed.code == 0, resumed.err
    resumed_at = await _changed_at(pg)
    await wait_for(lambda: len(standin.received) > before_resume, message="a request after resume")
    first_after = min(r.at for r in standin.received[before_resume:])
    print(
        f"the first request after `resume` arrived {(first_after - resumed_at) * 1000:.0f} ms after it"
    )
    assert first_after - resumed_at <= OBEY_WITHIN_S
    assert first_after >= resumed_at  # nothing was sent between the pause and the resume
    total = MESSAGES + len(more)
    await wait_for(lambda: all_acknowledged(pg, total), timeout=60, message="all delivered")

    arrived = Counter(r.key for r in standin.received)
    assert set(arrived) == set(keys) | set(more)
    assert set(arrived.values()) == {1}  # exactly once
    assert standin.counts() == {200: total}
    assert await pg.fetchval("SELECT max(attempts) FROM outbox.messages") == 1
    await wait_for(lambda: _workers_report(pg, "delivering", 3), message="delivering again")
    actions = await pg.fetch("SELECT action FROM outbox.audit_log ORDER BY id DESC")
    assert [r["action"] for r in actions] == ["resume", "pause"]


async def test_a_worker_started_during_a_pause_waits_for_resume(
    pg: asyncpg.Connection,
    database_url: str,
    standin: StandIn,
    start_worker: StartWorker,
    enqueue: Enqueue,
) -> None:
    """The pause holds for a worker that starts after it: it registers paused and sends nothing."""
    assert (await acli("pause", "--reason", "before any worker", db=database_url)).code == 0
    keys = await enqueue(20)
    worker = await start_worker()
    await worker.wait_event("fleet.paused")
    await wait_for(lambda: _workers_report(pg, "paused", 1), message="registered paused")
    assert standin.count == 0
    assert (await acli("resume", db=database_url)).code == 0
    await wait_for(lambda: all_acknowledged(pg, 20), message="delivered after resume")
    assert sorted(str(r.key) for r in standin.received) == sorted(keys)
