"""A rolling upgrade: a worker of the last release keeps delivering while `migrate` takes the
schema to this version's head, then a worker of this version joins. Every message arrives once.

The released worker is built from git history (tests/released.py: ``git archive`` of a pinned
commit) and runs from that tree with this environment's dependencies.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from outbox_worker import migrate
from outbox_worker.standin import StandIn
from tests.cases import registration_update
from tests.processes import WorkerProcess, acli, spawn_worker, worker_env
from tests.released import RELEASED_SCHEMA_HEAD, ReleaseUnavailable, extract_release
from tests.waiting import count_by_state, wait_for

ENQUEUE_EVERY_S = 0.01  # one update per transaction, about 100 a second


@pytest.fixture(scope="module")
def released_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The last release's source tree, extracted from git history."""
    try:
        return extract_release(tmp_path_factory.mktemp("released"))
    except ReleaseUnavailable as exc:
        pytest.skip(str(exc))


@contextlib.asynccontextmanager
async def producing(url: str) -> AsyncIterator[list[str]]:
    """Enqueue distinct updates one per transaction until the block ends; yields their keys."""
    keys: list[str] = []
    stop = asyncio.Event()

    async def produce() -> None:
        conn = await asyncpg.connect(url)
        try:
            while not stop.is_set():
                key = f"u-{len(keys)}"
                body = json.dumps(registration_update(len(keys), key))
                await conn.execute("SELECT outbox.enqueue($1::jsonb)", body)
                keys.append(key)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), ENQUEUE_EVERY_S)
        finally:
            await conn.close()

    task = asyncio.create_task(produce(), name="producer")
    try:
        yield keys
    finally:
        stop.set()
        await task


async def acknowledged(pg: asyncpg.Connection) -> int:
    """Rows acknowledged so far."""
    return (await count_by_state(pg)).get("acknowledged", 0)


async def test_a_released_worker_delivers_through_migrate_and_a_new_worker_joins(
    empty_database_url: str, standin: StandIn, released_tree: Path
) -> None:
    """The released schema and worker; producers enqueue all along; `migrate` of this version
    runs; the released worker alone delivers what came after it; this version's worker joins;
    each update reaches the stand-in exactly once and every row ends acknowledged."""
    url = empty_database_url
    released = {"PYTHONPATH": str(released_tree)}
    ran = await acli("migrate", db=url, env=released, cwd=released_tree)
    assert ran.code == 0, ran.err
    assert f"revision {RELEASED_SCHEMA_HEAD}" in ran.out  # the released code ran, not this one
    base = {"OUTBOX_DATABASE_URL": url, "OUTBOX_ENDPOINT_URL": standin.url}
    workers: list[WorkerProcess] = []
    pg = await asyncpg.connect(url)
    try:
        old = await spawn_worker(worker_env({**base, **released}), cwd=released_tree)
        workers.append(old)
        await old.wait_event("worker.started")
        async with producing(url) as keys:
            await wait_for(lambda: _at_least(pg, 50), message="50 delivered by the released worker")

            ran = await acli("migrate", db=url)
            assert ran.code == 0, ran.err
            assert migrate.SCHEMA_HEAD in ran.out
            after_migrate = len(keys) + 50
            await wait_for(
                lambda: _at_least(pg, after_migrate),
                message="the released worker delivering after the migration",
            )

            new = await spawn_worker(worker_env(base))
            workers.append(new)
            await new.wait_event("worker.started")
            joined = len(keys) + 50
            await wait_for(lambda: _at_least(pg, joined), message="both workers delivering")
        await wait_for(
            lambda: _at_least(pg, len(keys)), timeout=60, message="every update acknowledged"
        )
        codes = [await worker.terminate() for worker in workers]
        states = await count_by_state(pg)
    finally:
        await pg.close()
        for worker in workers:
            if worker.returncode is None:
                worker.process.kill()
            print(f"--- {worker} exited {worker.returncode}; its log:")
            print("\n".join(worker.lines))

    assert codes == [0, 0]
    received = Counter(record.key for record in standin.received)
    assert set(received) == set(keys), "an update was lost"
    assert [key for key, n in received.items() if n > 1] == [], "an update arrived twice"
    assert states == {"acknowledged": len(keys)}
    assert "worker.unexpected_error" not in old.event_names() + new.event_names()


async def _at_least(pg: asyncpg.Connection, count: int) -> bool:
    return await acknowledged(pg) >= count
