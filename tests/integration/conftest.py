"""Fixtures of the integration tests: the production store on the test's own database, and
logins of this test's own in each outbox role."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import urlsplit

import asyncpg
import pytest

from outbox_worker.store.delivery import PostgresStore


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[PostgresStore]:
    """The worker's store (the production PostgresStore) on this test's database."""
    store = PostgresStore(database_url, history_cap=20)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


LoginAs = Callable[[str], Awaitable[str]]


def _as_user(url: str, user: str, password: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{user}:{password}@{host}").geturl()


@pytest.fixture
async def login_as(pg: asyncpg.Connection, database_url: str) -> AsyncIterator[LoginAs]:
    """Factory: a LOGIN role of this test's own in the given group role; returns its URL."""
    made: list[str] = []

    async def make(group: str) -> str:
        name = f"outbox_login_{uuid.uuid4().hex[:10]}"
        await pg.execute(f"CREATE ROLE {name} LOGIN PASSWORD 'pw' IN ROLE {group}")
        made.append(name)
        return _as_user(database_url, name, "pw")

    try:
        yield make
    finally:
        for name in made:
            await pg.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", name
            )
            await pg.execute(f"DROP ROLE {name}")
