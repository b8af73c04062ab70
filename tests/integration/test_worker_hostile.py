"""The worker against a hostile world: poison answers, rows other services wrote, outages,
redirects, a skewed host clock. Real PostgreSQL, a real HTTP server on a loopback port, the
worker in this process; what is asserted is what an operator sees in the rows and the logs.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
import time_machine
from aiohttp import web
from structlog.testing import capture_logs

import outbox_worker
from outbox_worker.settings.config import CircuitSettings, RetrySettings
from tests.cases import update
from tests.integration.rows import drop_row_constraints
from tests.integration.running import running_worker
from tests.waiting import all_acknowledged, wait_for

Reply = Callable[[web.Request], web.StreamResponse]
ABSURD_DATE = "Mon, 01 Jan 99999999999 00:00:00 GMT"


def ok(request: web.Request) -> web.StreamResponse:
    """Ravelin's usual 200."""
    return web.json_response({"status": 200, "timestamp": 1764000000000})


def raw(status: int, body: bytes = b"", **headers: str) -> Reply:
    """An answer with exactly this status, body and headers."""
    return lambda _request: web.Response(
        status=status, body=body, headers=headers, content_type="application/json"
    )


class Endpoint:
    """A registration endpoint on a loopback port whose answers each test scripts by message key."""

    def __init__(self) -> None:
        self.replies: dict[str, list[Reply]] = {}
        self.default: Reply = ok
        self.received: list[str] = []  # message keys, in arrival order
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v2/registration"

    async def start(self) -> None:
        """Listen (again, on the same port once one was picked)."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._answer)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        await web.SockSite(runner, sock).start()
        self._runner = runner

    async def stop(self) -> None:
        """Close the port: connections are refused until ``start``."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def count(self, key: str) -> int:
        """How many requests arrived for message ``key``."""
        return self.received.count(key)

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        body = json.loads(await request.read())
        key = str(body["customer"]["customerId"])
        self.received.append(key)
        script = self.replies.get(key)
        return (script.pop(0) if script else self.default)(request)


@pytest.fixture
async def endpoint() -> AsyncIterator[Endpoint]:
    """A scripted endpoint, listening."""
    server = Endpoint()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def enqueue(pg: asyncpg.Connection, *keys: str) -> dict[str, int]:
    """Enqueue one update per key; their message ids by key."""
    return {
        k: await outbox_worker.enqueue_async(pg, update(k), allow_autocommit=True) for k in keys
    }


async def rows(pg: asyncpg.Connection) -> dict[str, asyncpg.Record]:
    """Every row by message key (rows without a customerId under their id)."""
    records = await pg.fetch(
        "SELECT *, coalesce(payload #>> '{customer,customerId}', id::text) AS key"
        " FROM outbox.messages"
    )
    return {r["key"]: r for r in records}


async def settled(pg: asyncpg.Connection, count: int) -> bool:
    """True once ``count`` rows have left pending or spent an attempt, and none is leased."""
    return bool(
        await pg.fetchval(
            "SELECT count(*) FILTER (WHERE state <> 'pending' OR attempts > 0) = $1"
            " AND count(*) FILTER (WHERE lease_token IS NOT NULL) = 0 FROM outbox.messages",
            count,
        )
    )


def fast(**changes: Any) -> dict[str, Any]:
    """Worker settings for quick retries and probes."""
    retry = RetrySettings(
        backoff_base=timedelta(milliseconds=20), backoff_cap=timedelta(milliseconds=200)
    )
    circuit = CircuitSettings(
        probe_initial=timedelta(milliseconds=100), probe_cap=timedelta(milliseconds=400)
    )
    return {"retry": retry, "circuit": circuit, **changes}


GOOD = [f"good-{i}" for i in range(20)]
HUGE = b'{"message":"' + b"x" * 3_000_000 + b'"}'

POISON = [
    # name, answer, final state, last_status, attempts
    ("nul-2xx", raw(200, b'{"status":200,"data":{"warnings":[{"class":"x\\u0000y"}]}}'),
     "acknowledged", 200),
    ("surrogate-400", raw(400, b'{"message":"m","validationErrors":["\\ud800",{"f":"\\ud800"}]}'),
     "dead", 400),
    ("nan-422", raw(422, b'{"validationErrors":[{"v":NaN,"w":-Infinity}]}'), "dead", 422),
    ("absurd-429", raw(429, b"", **{"Retry-After": ABSURD_DATE}), "acknowledged", 429),
    ("absurd-503", raw(503, b"{}", **{"Retry-After": ABSURD_DATE}), "pending", 503),
    ("absurd-date", raw(200, Date=ABSURD_DATE), "acknowledged", 200),
    ("huge-2xx", raw(200, HUGE), "acknowledged", 200),
    ("huge-400", raw(400, HUGE), "dead", 400),
    ("garbage-5xx", raw(500, b"\xff\xfe\x00 not json \x00"), "pending", 500),
]  # fmt: skip


@pytest.mark.parametrize(("name", "reply", "state", "status"), POISON, ids=[p[0] for p in POISON])
async def test_a_poison_answer_fails_only_its_own_message(
    endpoint: Endpoint,
    pg: asyncpg.Connection,
    database_url: str,
    name: str,
    reply: Reply,
    state: str,
    status: int,
) -> None:
    """Whatever one answer holds, its message gets a row the database accepts, every other
    message is acknowledged once, and the worker keeps running."""
    endpoint.replies[name] = [reply]
    await enqueue(pg, *GOOD[:10], name, *GOOD[10:])
    long_backoff = RetrySettings(backoff_base=timedelta(hours=1), backoff_cap=timedelta(hours=1))
    with capture_logs() as logs:
        async with running_worker(database_url, endpoint.url, retry=long_backoff):
            await wait_for(lambda: settled(pg, 21), message="every message settled")
    by_key = await rows(pg)
    assert (by_key[name]["state"], by_key[name]["last_status"]) == (state, status)
    assert by_key[name]["attempts"] == 1
    assert all(by_key[k]["state"] == "acknowledged" for k in GOOD)
    assert all(endpoint.count(k) == 1 for k in GOOD), "a good message was sent twice"
    assert not [e for e in logs if e["event"] in {"delivery.failed", "worker.unexpected_error"}]


async def test_rows_written_around_enqueue_fail_only_themselves(
    endpoint: Endpoint, pg: asyncpg.Connection, database_url: str
) -> None:
    """Rows other services inserted directly: what cannot be sent is dead-lettered unsent, odd
    bookkeeping columns do not stop a send, and the good messages are delivered."""
    await enqueue(pg, *GOOD)
    huge = json.dumps({**update("huge"), "blob": "x" * (1024 * 1024)})
    planted = {
        "string": ('"just a string"', "[]", 0),
        "array": ('[{"customer": {"customerId": "array"}}]', "[]", 0),
        "huge": (huge, "[]", 0),
        "null-history": (json.dumps(update("null-history")), "null", 0),
        "object-history": (json.dumps(update("object-history")), '{"x": 1}', 0),
        "max-attempts": (json.dumps(update("max-attempts")), "[]", 2147483647),
        "max-attempts-failing": (json.dumps(update("max-attempts-failing")), "[]", 2147483647),
    }
    ids = {}
    await drop_row_constraints(pg)
    for key, (payload, history, attempts) in planted.items():
        ids[key] = await pg.fetchval(
            "INSERT INTO outbox.messages (payload, history, attempts) VALUES ($1::jsonb, $2::jsonb, $3)"
            " RETURNING id",
            payload,
            history,
            attempts,
        )
    endpoint.replies["max-attempts-failing"] = [raw(503)]
    async with running_worker(database_url, endpoint.url, **fast()):
        await wait_for(
            lambda: pg.fetchval("SELECT count(*) = 0 FROM outbox.messages WHERE state = 'pending'"),
            message="nothing pending",
        )
    by_id = {r["id"]: r for r in await pg.fetch("SELECT * FROM outbox.messages")}
    for key in ("string", "array", "huge"):
        row = by_id[ids[key]]
        assert (row["state"], row["attempts"], row["last_status"]) == ("dead", 0, None), key
        assert row["last_error"].startswith("not sent: the stored payload is"), row["last_error"]
    assert "JSON string" in by_id[ids["string"]]["last_error"]
    assert "over the limit of 1048576" in by_id[ids["huge"]]["last_error"]
    assert endpoint.count("array") == endpoint.count("huge") == 0
    for key in ("null-history", "object-history"):
        row = by_id[ids[key]]
        assert row["state"] == "acknowledged"
        assert [e["status"] for e in json.loads(row["history"])] == [200]
    assert (by_id[ids["max-attempts"]]["state"], by_id[ids["max-attempts"]]["attempts"]) == (
        "acknowledged",
        2147483647,
    )
    failing = by_id[ids["max-attempts-failing"]]
    assert failing["state"] == "dead"
    assert failing["last_error"].startswith("gave up after 2147483648 attempts: 503")
    assert all(endpoint.count(k) == 1 for k in GOOD)


OUTAGES = ["503", "drop", "refused"]


@pytest.mark.parametrize("kind", OUTAGES)
async def test_an_outage_pauses_delivery_and_spends_no_attempts(
    endpoint: Endpoint, pg: asyncpg.Connection, database_url: str, kind: str
) -> None:
    """While the endpoint is down for everyone, delivery pauses and probes one message at a time;
    no message is dead-lettered and at most a few spend an attempt; recovery delivers all."""
    keys = [f"m{i}" for i in range(60)]
    await enqueue(pg, *keys)
    if kind == "503":
        endpoint.default = raw(503, b'{"message":"down"}')
    elif kind == "drop":
        endpoint.default = _drop
    else:
        await endpoint.stop()
    settings = fast(
        retry=RetrySettings(max_attempts=3, backoff_base=timedelta(milliseconds=20)),
        concurrency=8,
        batch_size=10,
    )
    with capture_logs() as logs:
        async with running_worker(database_url, endpoint.url, **settings):
            await wait_for(
                lambda: sum(e["event"] == "circuit.opened" for e in logs) >= 4,
                message="the outage declared and probed a few times",
            )
            spent = await pg.fetchval("SELECT count(*) FROM outbox.messages WHERE attempts > 0")
            if kind == "refused":
                await endpoint.start()
            endpoint.default = ok
            await wait_for(
                lambda: all_acknowledged(pg, 60),
                timeout=30,
                message="everything delivered after the outage",
            )
    opened = [e for e in logs if e["event"] == "circuit.opened"]
    assert opened[0]["reason"] == "outage"
    # The start-up probe and the messages before the threshold pay; no one else does.
    assert spent <= 10 + 8, spent
    assert await pg.fetchval("SELECT max(attempts) FROM outbox.messages") <= 2
    assert "circuit.closed" in [e["event"] for e in logs]


def _drop(request: web.Request) -> web.StreamResponse:
    """Close the connection without an answer."""
    if request.transport is not None:
        request.transport.close()
    return web.Response()


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_redirects_are_never_followed(
    endpoint: Endpoint, pg: asyncpg.Connection, database_url: str, status: int
) -> None:
    """A redirect pauses delivery like a wrong key: nothing reaches the other origin, nothing is
    acknowledged or charged, the log names the host; after the fix everything is delivered."""
    elsewhere = Endpoint()
    await elsewhere.start()
    try:
        await enqueue(pg, *GOOD)
        endpoint.default = raw(
            status, Location=f"http://localhost:{elsewhere.port}/v2/registration"
        )
        with capture_logs() as logs:
            async with running_worker(database_url, endpoint.url, **fast()):
                await wait_for(lambda: len(endpoint.received) >= 3, message="a few probes")
                assert (
                    await pg.fetchval(
                        "SELECT count(*) FROM outbox.messages WHERE state <> 'pending' OR attempts > 0"
                    )
                    == 0
                )
                endpoint.default = ok
                await wait_for(lambda: settled(pg, len(GOOD)), message="delivered after the fix")
    finally:
        await elsewhere.stop()
    assert elsewhere.received == []
    opened = next(e for e in logs if e["event"] == "circuit.opened")
    assert opened["reason"] == "configuration"
    assert opened["error"].startswith(f"{status} redirect to localhost not followed")
    assert await pg.fetchval("SELECT max(attempts) FROM outbox.messages") == 1


@pytest.mark.parametrize("skew", [timedelta(minutes=-15), timedelta(0), timedelta(minutes=15)])
async def test_a_skewed_host_clock_changes_nothing(
    endpoint: Endpoint, pg: asyncpg.Connection, database_url: str, skew: timedelta
) -> None:
    """With the worker host's clock 15 minutes off either way, due times and ages still come
    from the database: failures back off as scheduled and nothing gives up early."""
    keys = [f"s{i}" for i in range(5)]
    await enqueue(pg, "warm-up")
    for key in keys:
        endpoint.replies[key] = [raw(503), raw(503)]
    settings = fast(
        retry=RetrySettings(
            max_age=timedelta(minutes=10),
            backoff_base=timedelta(seconds=1),
            backoff_cap=timedelta(seconds=1),
        ),
        # Ten failures in a row would be an outage (no attempt spent): not this test's subject.
        circuit=CircuitSettings(outage_threshold=100),
    )
    with time_machine.travel(datetime.now(UTC) + skew, tick=True):
        async with running_worker(database_url, endpoint.url, **settings):
            await wait_for(lambda: settled(pg, 1), message="warm-up delivered")
            await enqueue(pg, *keys)
            await wait_for(
                lambda: pg.fetchval(
                    "SELECT count(*) = 5 FROM outbox.messages WHERE attempts >= 1"
                    " AND payload #>> '{customer,customerId}' LIKE 's%'"
                ),
                message="each message failed once",
            )
            due_in = await pg.fetch(
                "SELECT extract(epoch FROM available_at - now()) AS s FROM outbox.messages"
                " WHERE payload #>> '{customer,customerId}' LIKE 's%' AND state = 'pending'"
                " AND lease_token IS NULL"
            )
            await wait_for(
                lambda: all_acknowledged(pg, 6),
                timeout=30,
                message="all delivered on their third attempt",
            )
    # Backoff ceilings of 1 s, measured from the database's now(): never 15 minutes out. (No lower
    # bound: a due row may wait for the next claim as long as a busy machine makes it.)
    assert all(r["s"] <= 1.0 for r in due_in), [r["s"] for r in due_in]
    attempts = await pg.fetch(
        "SELECT attempts FROM outbox.messages WHERE payload #>> '{customer,customerId}' LIKE 's%'"
    )
    assert [r["attempts"] for r in attempts] == [3] * 5


async def test_a_batch_the_database_refuses_is_written_row_by_row(
    endpoint: Endpoint, pg: asyncpg.Connection, database_url: str
) -> None:
    """When the database refuses one row's outcome, the rest of the flush is written and only
    that row is dead-lettered, with the database's reason."""
    ids = await enqueue(pg, *GOOD, "refused")
    await pg.execute(
        """
        CREATE FUNCTION outbox.test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'no' USING ERRCODE = 'check_violation'; END $$;
        """
    )
    await pg.execute(
        "CREATE TRIGGER refuse BEFORE UPDATE OF state ON outbox.messages FOR EACH ROW"
        f" WHEN (NEW.id = {ids['refused']} AND NEW.state = 'acknowledged')"
        " EXECUTE FUNCTION outbox.test_refuse()"
    )
    with capture_logs() as logs:
        async with running_worker(database_url, endpoint.url):
            await wait_for(
                lambda: pg.fetchval(
                    "SELECT count(*) = 0 FROM outbox.messages WHERE state = 'pending'"
                ),
                message="every row written",
            )
    by_key = await rows(pg)
    assert all(by_key[k]["state"] == "acknowledged" for k in GOOD)
    refused = by_key["refused"]
    assert refused["state"] == "dead"
    assert refused["last_error"].startswith(
        "the outcome could not be written: CheckViolationError (SQLSTATE 23514)"
    )
    assert "settle.batch_rejected" in [e["event"] for e in logs]
    assert all(endpoint.count(k) == 1 for k in [*GOOD, "refused"])
