"""Fixtures shared by every suite: the databases, the stand-in for Ravelin's endpoint, workers.

One migrated template database per run, cloned for each test; the stand-in accepts tests.cases.KEY.
``start_worker(env)`` starts ``python -m outbox_worker run`` (tests/processes.py) against this
test's database and stand-in; ``env`` overrides or (with None) removes OUTBOX_* variables;
teardown SIGKILLs whatever still runs and prints every worker's log, which pytest shows when the
test fails.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterator, Mapping

import asyncpg
import pytest

from outbox_worker import migrate
from outbox_worker.standin import StandIn
from tests.cases import KEY, registration_update
from tests.pg import admin_execute, server_url, unique_name, with_database
from tests.processes import Enqueue, StartWorker, WorkerProcess, spawn_worker, worker_env


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """Admin URL of the PostgreSQL server this run uses."""
    with server_url() as url:
        yield url


@pytest.fixture(scope="session")
def template_database(pg_server_url: str) -> Iterator[str]:
    """Name of a database migrated to head, cloned for each test."""
    name = unique_name("outbox_tpl")
    admin_execute(pg_server_url, f'CREATE DATABASE "{name}"')
    try:
        migrate.upgrade(with_database(pg_server_url, name))
        yield name
    finally:
        admin_execute(pg_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _fresh_database(server: str, template: str | None) -> Iterator[str]:
    name = unique_name("outbox_t")
    clause = f' TEMPLATE "{template}"' if template else ""
    admin_execute(server, f'CREATE DATABASE "{name}"{clause}')
    try:
        yield with_database(server, name)
    finally:
        admin_execute(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database_url(pg_server_url: str, template_database: str) -> Iterator[str]:
    """URL of a database of this test's own, migrated to head."""
    yield from _fresh_database(pg_server_url, template_database)


@pytest.fixture
def empty_database_url(pg_server_url: str) -> Iterator[str]:
    """URL of a database of this test's own with no outbox schema at all."""
    yield from _fresh_database(pg_server_url, None)


@pytest.fixture
async def pg(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """An asyncpg connection to this test's migrated database."""
    conn = await asyncpg.connect(database_url)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def standin() -> AsyncIterator[StandIn]:
    """The Ravelin stand-in on a loopback port, served by the test's own loop, accepting KEY."""
    async with StandIn(KEY) as server:
        yield server


@pytest.fixture
async def start_worker(database_url: str, standin: StandIn) -> AsyncIterator[StartWorker]:
    """Factory: start a worker on this test's database and stand-in, ``env`` overriding."""
    workers: list[WorkerProcess] = []

    async def start(env: Mapping[str, str | None] | None = None) -> WorkerProcess:
        defaults: dict[str, str | None] = {
            "OUTBOX_DATABASE_URL": database_url,
            "OUTBOX_ENDPOINT_URL": standin.url,
        }
        worker = await spawn_worker(worker_env({**defaults, **(env or {})}))
        workers.append(worker)
        return worker

    try:
        yield start
    finally:
        for worker in workers:
            if worker.returncode is None:
                worker.process.kill()
            with contextlib.suppress(TimeoutError):
                await worker.wait_exit(timeout=10)
            print(f"--- {worker} exited {worker.returncode}; its log:")
            print("\n".join(worker.lines))


@pytest.fixture
def enqueue(pg: asyncpg.Connection) -> Enqueue:
    """Factory: enqueue ``count`` distinct updates with ``outbox.enqueue``; returns their keys."""

    async def enqueue_updates(count: int, *, prefix: str = "c") -> list[str]:
        keys = [f"{prefix}-{i}" for i in range(count)]
        bodies = [(json.dumps(registration_update(i, k)),) for i, k in enumerate(keys)]
        await pg.executemany("SELECT outbox.enqueue($1::jsonb)", bodies)
        return keys

    return enqueue_updates
