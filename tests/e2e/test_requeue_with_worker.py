"""`outbox-worker requeue` while a worker process runs: requeued dead letters are delivered."""

from __future__ import annotations

import asyncpg

from outbox_worker.standin import StandIn
from tests.processes import Enqueue, StartWorker, acli
from tests.waiting import states_are, wait_for


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
    await wait_for(lambda: states_are(pg, {"dead": 20}), timeout=15, message="20 dead letters")

    standin.set_default_status(200)
    run = await acli("requeue", "--all", "--yes", "--json", db=database_url)
    assert run.code == 0, run.err
    assert run.json()["requeued"] == 20

    await wait_for(
        lambda: states_are(pg, {"acknowledged": 20}), timeout=10, message="20 acknowledged"
    )
    assert await worker.terminate() == 0
    rows = await pg.fetch(
        "SELECT requeue_count, jsonb_array_length(history) AS n FROM outbox.messages"
    )
    assert {(r["requeue_count"], r["n"]) for r in rows} == {(1, 2)}  # history kept: 400, then 200
    assert standin.counts() == {400: 20, 200: 20}
