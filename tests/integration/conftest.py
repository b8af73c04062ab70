"""Fixtures of the integration tests: the production store on the test's own database."""

from __future__ import annotations

from collections.abc import AsyncIterator

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
