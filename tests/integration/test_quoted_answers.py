"""Answers that quote the body back: what the worker writes and logs, and how `stats` groups them.

Real PostgreSQL, a real HTTP server that quotes each message's own values in its 400, the worker
in this process. Logs are captured before the log processor's masking runs, so what is asserted
is what the worker itself hands to a log line.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from structlog.testing import capture_logs

import outbox_worker
from outbox_worker.store import operations as ops
from tests.cases import update
from tests.integration.rows import insert_message
from tests.integration.running import running_worker
from tests.integration.test_worker_hostile import Endpoint, raw, settled
from tests.waiting import wait_for

PEOPLE = {
    "cust-a": {"name": "Maria Lindqvist", "email": "maria@lindqvist.example"},
    "cust-b": {"name": "山田 太郎", "email": "taro@yamada.example"},
}
REASON = "400 Bad Request: customer *** named '***' <***> is not valid"


@pytest.fixture
async def endpoint() -> AsyncIterator[Endpoint]:
    """An endpoint whose answers each test scripts by message key."""
    server = Endpoint()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def quoting_400(key: str, person: dict[str, str]) -> bytes:
    """Ravelin's 400 for ``key``, quoting the person's name and email back, with a traceId."""
    message = f"customer {key} named '{person['name']}' <{person['email']}> is not valid"
    return json.dumps({"status": 400, "message": message, "traceId": f"trace-{key}"}).encode()


async def test_answers_differing_only_by_quoted_values_are_one_reason(
    endpoint: Endpoint, pg: asyncpg.Connection, database_url: str
) -> None:
    """Two 400s that differ only by the customer they quote: last_error, history and the log
    masked, one line in stats, and the answer as it came kept in last_response."""
    for key, person in PEOPLE.items():
        endpoint.replies[key] = [raw(400, quoting_400(key, person))]
        await outbox_worker.enqueue_async(
            pg, update(key, customer={"customerId": key, **person}), allow_autocommit=True
        )
    with capture_logs() as logs:
        async with running_worker(database_url, endpoint.url):
            await wait_for(lambda: settled(pg, 2), message="both messages dead-lettered")
    rows = await pg.fetch(
        "SELECT payload #>> '{customer,customerId}' AS key, state, last_error,"
        " history::text AS history, last_response::text AS response FROM outbox.messages"
    )
    for row in rows:
        assert row["state"] == "dead"
        assert row["last_error"] == f"{REASON} (traceId trace-{row['key']})"
        assert REASON in json.loads(row["history"])[-1]["error"]
        assert json.loads(row["response"])["message"].startswith(f"customer {row['key']} named")
    assert (await ops.stats(pg)).top_dead_reasons == [(REASON, 2)]
    logged = json.dumps([e for e in logs if e["event"] == "delivery.dead_lettered"])
    assert "delivery.dead_lettered" in logged
    assert leaked(logged) == []


def leaked(text: str) -> list[str]:
    """The people's values that appear in ``text``."""
    return [v for p in PEOPLE.values() for v in p.values() if v in text]


async def test_stats_masks_and_merges_reasons_an_older_worker_wrote(pg: asyncpg.Connection) -> None:
    """Rows written unmasked (by a worker before this version) are masked by their own values
    and merged: one reason, no name."""
    for key, person in PEOPLE.items():
        payload: dict[str, Any] = update(key, customer={"customerId": key, **person})
        message = json.loads(quoting_400(key, person))["message"]
        await insert_message(pg, payload=payload, last_error=f"400 Bad Request: {message}")
    s = await ops.stats(pg)
    assert s.top_dead_reasons == [(REASON, 2)]
    assert leaked(repr(s)) == []
