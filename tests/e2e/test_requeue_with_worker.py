"""`outbox-worker requeue` while a worker process runs: requeued dead letters are delivered."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import asyncpg

from outbox_worker.standin import StandIn
from tests.processes import Enqueue, StartWorker, worker_env
from tests.waiting import count_by_state, wait_for


async def _states(pg: asyncpg.Connection, expected: dict[str, int]) -> bool:
    return await count_by_state(pg) == expected


async def test_requeued_dead_letters_are_delivered_promptly_by_a_running_worker(
    pg: asyncpg.Connection,
    database_url: str,
    standin: StandIn,
    start_worker: StartWorker,
    enqueue: Enqueue,
) -> None:
    """Dead letters requeued after the fault is fixed are acknowledged, woken by NOTIFY, not by the poll."""
    standin.set_default_status(400)
    # A poll far longer than the wait below: only the requeue's NOTIFY can wake the worker in time.
    worker = await start_worker({"OUTBOX_POLL_INTERVAL": "60s"})
    await worker.wait_event("worker.started")
    await enqueue(20)
    await wait_for(lambda: _states(pg, {"dead": 20}), timeout=15, message="20 dead letters")

    standin.set_default_status(200)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "outbox_worker", "requeue", "--all", "--yes", "--json",
        env=worker_env({"OUTBOX_DATABASE_URL": database_url}),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err.decode()
    assert b'"requeued": 20' in out

    await wait_for(lambda: _states(pg, {"acknowledged": 20}), timeout=10, message="20 acknowledged")
    assert await worker.terminate() == 0
    rows = await pg.fetch(
        "SELECT requeue_count, jsonb_array_length(history) AS n FROM outbox.messages"
    )
    assert {(r["requeue_count"], r["n"]) for r in rows} == {(1, 2)}  # history kept: 400, then 200
    assert standin.counts() == {400: 20, 200: 20}
