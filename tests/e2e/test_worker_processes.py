"""The worker as real processes against real PostgreSQL and the stand-in on a real socket.

Each test is one of DESIGN.md's guarantees or issue 4's acceptance items: exactly-once delivery
across several workers on a healthy endpoint, take-over after SIGKILL once the lease ends,
surviving a PostgreSQL restart, SIGTERM within the grace period, dead letters for rejected
bodies, the circuit breaker on a wrong key, poll-only mode, and configuration errors.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import socket
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

from outbox_worker import migrate
from outbox_worker.standin import StandIn
from tests.cases import KEY, TS, registration_update
from tests.integration.rows import stored_bodies
from tests.pg import EmbeddedServer, admin_execute, with_database
from tests.processes import Enqueue, StartWorker
from tests.waiting import (
    all_acknowledged,
    at_least_in_state,
    count_by_state,
    count_leased,
    in_state,
    leased_at_least,
    states_are,
    wait_for,
)


async def test_three_workers_deliver_each_update_exactly_once(
    pg: asyncpg.Connection, standin: StandIn, start_worker: StartWorker, enqueue: Enqueue
) -> None:
    """Three worker processes deliver 1,000 updates: each stored body arrives once, byte-identical, and every row is acknowledged."""
    workers = await asyncio.gather(*(start_worker() for _ in range(3)))
    await asyncio.gather(*(w.wait_event("worker.started") for w in workers))

    await enqueue(1000)
    await wait_for(lambda: all_acknowledged(pg, 1000), timeout=40, message="1,000 acknowledged")
    codes = await asyncio.gather(*(w.terminate() for w in workers))

    assert codes == [0, 0, 0]
    assert Counter(standin.bodies()) == Counter(await stored_bodies(pg))
    assert standin.counts() == {200: 1000}
    assert await count_by_state(pg) == {"acknowledged": 1000}
    assert await count_leased(pg) == 0


async def test_sigkilled_workers_rows_are_taken_over_after_the_lease(
    pg: asyncpg.Connection, standin: StandIn, start_worker: StartWorker, enqueue: Enqueue
) -> None:
    """A worker killed with rows claimed loses nothing: another worker sends them once the lease ends, resending only what was in flight."""
    concurrency = 8
    env = {
        "OUTBOX_CONCURRENCY": str(concurrency),
        "OUTBOX_BATCH_SIZE": "8",
        "OUTBOX_HTTP_TIMEOUT": "1500ms",
        "OUTBOX_LEASE": "7s",
    }
    standin.set_latency(1.0)
    await enqueue(60)
    first = await start_worker(env)
    # Kill between waves: the start-up probe and a first wave of sends are written down, the
    # next wave is in flight (the stand-in answers after 1 s). A send that was answered but not
    # yet written down is in flight too, as far as the database knows: it would be resent.
    await wait_for(
        lambda: at_least_in_state(pg, "acknowledged", 1 + concurrency),
        timeout=15,
        message="a first wave",
    )
    await wait_for(lambda: count_leased(pg), timeout=5, message="claimed rows")

    first.process.kill()
    killed_at = time.monotonic()
    assert await first.wait_exit() == -9
    held = await pg.fetch(
        "SELECT id, payload::text AS body, available_at AS lease_end FROM outbox.messages"
        " WHERE lease_token IS NOT NULL"
    )
    assert held, "the killed worker held no claimed rows"
    standin.set_latency(0.0)
    second = await start_worker(env)
    await wait_for(lambda: all_acknowledged(pg, 60), timeout=20, message="all acknowledged")
    assert await second.terminate() == 0

    received = Counter(standin.bodies())
    assert set(received) == set(await stored_bodies(pg)), "a message was lost"
    duplicates = {body for body, n in received.items() if n > 1}
    sent_before_kill = {r.body for r in standin.received if r.at < killed_at}
    held_bodies = {r["body"].encode() for r in held}
    assert duplicates == sent_before_kill & held_bodies
    assert len(duplicates) <= concurrency
    assert max(received.values()) <= 2
    taken_early = await pg.fetchval(
        "SELECT count(*) FROM outbox.messages m"
        " JOIN unnest($1::bigint[], $2::timestamptz[]) AS h(id, lease_end) USING (id)"
        " WHERE m.acknowledged_at < h.lease_end",
        [r["id"] for r in held],
        [r["lease_end"] for r in held],
    )
    assert taken_early == 0, "a claimed row was sent again before its lease ended"
    assert await count_leased(pg) == 0


@pytest.fixture
async def private_server(tmp_path: Path) -> AsyncIterator[EmbeddedServer]:
    """An embedded PostgreSQL of this test's own, which it may restart."""
    server = await asyncio.to_thread(EmbeddedServer, tmp_path / "pgdata")
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)


async def test_worker_survives_a_postgresql_restart(
    private_server: EmbeddedServer, standin: StandIn, start_worker: StartWorker
) -> None:
    """The worker rides out a PostgreSQL restart mid-run: it reconnects, keeps running, and every message ends acknowledged."""
    url = with_database(private_server.url, "outbox_restart")
    await asyncio.to_thread(admin_execute, private_server.url, "CREATE DATABASE outbox_restart")
    await asyncio.to_thread(migrate.upgrade, url)
    total = 150
    conn = await asyncpg.connect(url)
    try:
        bodies = [(json.dumps(registration_update(i, f"r-{i}")),) for i in range(total)]
        await conn.executemany("SELECT outbox.enqueue($1::jsonb)", bodies)
        stored = set(await stored_bodies(conn))
    finally:
        await conn.close()
    standin.set_latency(0.1)
    worker = await start_worker({"OUTBOX_DATABASE_URL": url, "OUTBOX_CONCURRENCY": "4"})
    await wait_for(lambda: standin.count >= 20, timeout=15, message="deliveries under way")

    await asyncio.to_thread(private_server.restart)
    assert standin.count < total, "the run was over before the restart"
    await worker.wait_event("database.unavailable", timeout=10)
    await worker.wait_event("database.reconnected", timeout=20)
    await wait_for(
        lambda: states_are(url, {"acknowledged": total}),
        timeout=30,
        interval=0.2,
        message="all acknowledged",
    )

    assert worker.returncode is None, "the worker exited during the restart"
    assert await worker.terminate() == 0
    assert set(standin.bodies()) == stored


async def test_sigterm_finishes_in_flight_sends_and_hands_back_the_rest(
    pg: asyncpg.Connection, standin: StandIn, start_worker: StartWorker, enqueue: Enqueue
) -> None:
    """SIGTERM mid-run: the worker exits 0 within the grace period, in-flight sends are settled and queued claims are pending again with no attempt spent."""
    # Ten times the sends' 1 s: the in-flight sends finish inside it however busy the machine.
    grace = 10.0
    standin.set_latency(1.0)
    await enqueue(60)
    worker = await start_worker(
        {
            "OUTBOX_CONCURRENCY": "8",
            "OUTBOX_BATCH_SIZE": "8",
            "OUTBOX_SHUTDOWN_GRACE": f"{grace:g}s",
        }
    )
    # SIGTERM as the first wave is answered: the next wave is in flight, more claims are queued,
    # and the claimer is often taking the next batch at that very moment.
    await wait_for(lambda: standin.count >= 8, timeout=15, message="a first wave")
    await wait_for(lambda: standin.in_progress > 0, timeout=5, message="a second wave in flight")
    await wait_for(lambda: count_leased(pg), timeout=5, message="claimed rows")

    started = time.monotonic()
    code = await worker.terminate()
    elapsed = time.monotonic() - started

    assert code == 0
    assert elapsed < grace, f"took {elapsed:.2f}s, grace is {grace}s"
    in_flight = [r for r in standin.received if r.at < started < r.answered_at]
    assert in_flight, "no send was in flight at SIGTERM: the scenario did not test finishing"
    leased = await count_leased(pg)
    assert leased == 0, f"{leased} rows are still claimed after the worker exited"
    acknowledged = {
        r["body"].encode()
        for r in await pg.fetch(
            "SELECT payload::text AS body FROM outbox.messages WHERE state = 'acknowledged'"
        )
    }
    assert acknowledged == set(standin.bodies(200)), "an answered send was not settled"
    pending = await pg.fetch(
        "SELECT attempts, last_status FROM outbox.messages WHERE state = 'pending'"
    )
    assert pending, "nothing was left queued: the scenario did not test hand-back"
    assert {(r["attempts"], r["last_status"]) for r in pending} == {(0, None)}
    assert len(acknowledged) + len(pending) == 60
    assert "worker.grace_expired" not in worker.event_names()


# The stand-in's answers in the grace-period test come this late: far past any exit after a
# 0.5 s grace, however busy the machine.
SLOW_ANSWER_S = 60.0


async def test_sigterm_past_the_grace_period_hands_back_unanswered_sends(
    pg: asyncpg.Connection, standin: StandIn, start_worker: StartWorker, enqueue: Enqueue
) -> None:
    """When in-flight sends outlast the grace period, SIGTERM still exits 0 soon after it and hands every claim back with no attempt spent."""
    worker = await start_worker(
        {
            "OUTBOX_CONCURRENCY": "4",
            "OUTBOX_BATCH_SIZE": "4",
            "OUTBOX_HTTP_TIMEOUT": f"{SLOW_ANSWER_S * 2:g}s",
            "OUTBOX_LEASE": f"{SLOW_ANSWER_S * 2 + 10:g}s",
            "OUTBOX_SHUTDOWN_GRACE": "500ms",
        }
    )
    await enqueue(1, prefix="warm-up")  # closes the start-up circuit, so sends go out in full
    await wait_for(lambda: all_acknowledged(pg, 1), timeout=15, message="the warm-up delivered")
    standin.set_latency(SLOW_ANSWER_S)
    await enqueue(20)
    await wait_for(lambda: leased_at_least(pg, 8), timeout=10, message="a full claim")

    started = time.monotonic()
    code = await worker.terminate()
    elapsed = time.monotonic() - started

    assert code == 0
    # It did not wait for the answers: a margin of minutes, not a measure of speed.
    assert elapsed < SLOW_ANSWER_S, f"took {elapsed:.2f}s with a 0.5s grace"
    expired = await worker.wait_event("worker.grace_expired", timeout=0)
    assert expired["abandoned"] == 4
    assert await count_leased(pg) == 0
    rows = await pg.fetch(
        "SELECT state, attempts FROM outbox.messages WHERE state <> 'acknowledged'"
    )
    assert len(rows) == 20
    assert {(r["state"], r["attempts"]) for r in rows} == {("pending", 0)}


async def test_rejected_raw_sql_rows_are_dead_lettered_and_delivery_goes_on(
    pg: asyncpg.Connection, standin: StandIn, start_worker: StartWorker, enqueue: Enqueue
) -> None:
    """Rows inserted by raw SQL that the endpoint answers 400 are dead-lettered with Ravelin's message and traceId, and the others are still delivered."""
    # A body that bypassed validation (a direct INSERT) and one the endpoint rejects by script.
    malformed = {
        "timestamp": TS,
        "registration": {"success": "yes"},
        "customer": {"customerId": "raw-1"},
    }
    await pg.execute(
        "INSERT INTO outbox.messages (payload) VALUES ($1::jsonb)", json.dumps(malformed)
    )
    standin.script_for("raw-2", [400])
    await pg.execute(
        "SELECT outbox.enqueue($1::jsonb)", json.dumps(registration_update(0, "raw-2"))
    )
    worker = await start_worker()
    await wait_for(lambda: in_state(pg, "dead", 2), timeout=15, message="two dead letters")
    await enqueue(30)
    await wait_for(lambda: all_acknowledged(pg, 30), timeout=15, message="the others delivered")
    assert await worker.terminate() == 0

    dead = await pg.fetch(
        "SELECT coalesce(payload #>> '{customer,customerId}', payload #>> '{supplier,supplierId}')"
        " AS key, attempts, last_status, last_error, last_response, dead_at"
        " FROM outbox.messages WHERE state = 'dead' ORDER BY key"
    )
    assert [r["key"] for r in dead] == ["raw-1", "raw-2"]
    for row in dead:
        response = json.loads(row["last_response"])
        assert (row["attempts"], row["last_status"]) == (1, 400)
        assert row["dead_at"] is not None
        uuid.UUID(response["traceId"])
        assert response["traceId"] in row["last_error"]
        assert response["message"]
        assert response["validationErrors"]
    assert "success" in json.dumps(json.loads(dead[0]["last_response"])["validationErrors"])
    assert worker.event_names().count("delivery.dead_lettered") == 2
    assert await count_by_state(pg) == {"acknowledged": 30, "dead": 2}


async def test_wrong_key_pauses_with_one_probe_at_a_time_until_it_is_fixed(
    pg: asyncpg.Connection, standin: StandIn, start_worker: StartWorker, enqueue: Enqueue
) -> None:
    """A 401 at start opens the circuit: single probes at growing intervals, no attempt spent, nothing dead, and all delivered once the key is fixed."""
    standin.set_api_key("sk_test_rotated")
    await enqueue(30)
    worker = await start_worker({"OUTBOX_PROBE_INITIAL": "200ms", "OUTBOX_PROBE_CAP": "1s"})
    await wait_for(lambda: standin.counts().get(401, 0) >= 5, timeout=15, message="5 probes")

    probes = [r.at for r in standin.received if r.status == 401]
    gaps = [later - earlier for earlier, later in itertools.pairwise(probes)]
    # Interval after the n-th refusal: 0.2 s doubling, capped at 1 s; a batch would be 0 s apart.
    for n, gap in enumerate(gaps[:4]):
        assert gap >= 0.9 * min(0.2 * 2**n, 1.0), f"probe gaps {gaps}"
    assert set(standin.counts()) == {401}
    assert await count_by_state(pg) == {"pending": 30}
    assert await pg.fetchval("SELECT max(attempts) FROM outbox.messages") == 0

    standin.set_api_key(KEY)
    await wait_for(lambda: all_acknowledged(pg, 30), timeout=15, message="all delivered")
    assert await worker.terminate() == 0

    assert standin.counts()[200] == 30
    assert {r["attempts"] for r in await pg.fetch("SELECT attempts FROM outbox.messages")} == {1}
    events = worker.event_names()
    assert "circuit.opened" in events
    assert events.index("circuit.opened") < events.index("circuit.closed")


async def test_poll_only_worker_finds_new_rows_by_polling(
    pg: asyncpg.Connection, standin: StandIn, start_worker: StartWorker, enqueue: Enqueue
) -> None:
    """In poll-only mode the worker never LISTENs, yet an update enqueued while it idles is found by its poll and delivered."""
    worker = await start_worker({"OUTBOX_POLL_ONLY": "true", "OUTBOX_POLL_INTERVAL": "500ms"})
    await enqueue(1, prefix="warm-up")
    await wait_for(lambda: all_acknowledged(pg, 1), timeout=15, message="the warm-up delivered")

    for round_ in range(1, 4):
        await enqueue(1, prefix=f"round-{round_}")
        await wait_for(
            functools.partial(all_acknowledged, pg, round_ + 1),
            message=f"round {round_} delivered by a poll",
        )
    listeners = await pg.fetchval(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND application_name = 'outbox-worker-listen'"
    )
    assert listeners == 0
    assert await worker.terminate() == 0


CONFIG_ERRORS = [
    pytest.param({"OUTBOX_API_KEY": None}, "OUTBOX_API_KEY is not set", id="missing-api-key"),
    pytest.param(
        {"OUTBOX_HTTP_TIMEOUT": "2s", "OUTBOX_LEASE": "7s"},
        "OUTBOX_LEASE (7s) must be longer than OUTBOX_HTTP_TIMEOUT (2s) plus 5s",
        id="lease-not-longer-than-timeout-plus-5s",
    ),
    pytest.param(
        {"OUTBOX_ENDPOINT_URL": "http://api.example.com/v2/registration"},
        "uses plain http to api.example.com",
        id="plain-http-to-remote-host",
    ),
    pytest.param(
        {"OUTBOX_DATABASE_URL": "not a url"},
        "OUTBOX_DATABASE_URL must be a postgresql:// URL",
        id="database-url-without-scheme",
    ),
    pytest.param(
        {"OUTBOX_DATABASE_URL": "postgresql://app@localhost:54x/app"},
        "OUTBOX_DATABASE_URL",
        id="database-url-with-bad-port",
    ),
    pytest.param(
        {"OUTBOX_DATABASE_URL": "postgresql://app@[::1/app"},
        "OUTBOX_DATABASE_URL",
        id="database-url-with-broken-ipv6-host",
    ),
    pytest.param(
        {"OUTBOX_DATABASE_URL": "postgresql://app@127.0.0.1/app?sslmode=bogus"},
        "`sslmode` parameter must be one of",
        id="database-url-with-bad-sslmode",
    ),
]


@pytest.mark.parametrize(("env", "reason"), CONFIG_ERRORS)
async def test_bad_configuration_exits_2_with_one_line(
    start_worker: StartWorker, env: dict[str, str | None], reason: str
) -> None:
    """A bad setting stops the worker at start with exit code 2 and a one-line reason on stderr."""
    worker = await start_worker(env)
    assert await worker.wait_exit() == 2
    assert len(worker.lines) == 1, worker.lines
    assert worker.lines[0].startswith("outbox-worker: ")
    assert reason in worker.lines[0]


async def test_unmigrated_database_exits_2_naming_the_migrate_command(
    empty_database_url: str, start_worker: StartWorker
) -> None:
    """A database without the outbox schema stops the worker with exit code 2 telling to run `outbox-worker migrate`."""
    worker = await start_worker({"OUTBOX_DATABASE_URL": empty_database_url})
    assert await worker.wait_exit() == 2
    assert len(worker.lines) == 1, worker.lines
    assert "run `outbox-worker migrate`" in worker.lines[0]


async def test_worker_started_while_the_database_is_down_waits_for_it(
    start_worker: StartWorker,
) -> None:
    """A worker whose database is unreachable at start waits (logging it) instead of exiting."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once the socket is closed
    worker = await start_worker(
        {"OUTBOX_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{port}/x"}
    )
    event = await worker.wait_event("database.unavailable")
    assert event["during"] == "start"
    assert worker.returncode is None
    assert await worker.terminate() == 0


async def test_missing_database_exits_2(start_worker: StartWorker, database_url: str) -> None:
    """A database that does not exist is a configuration error at start: exit 2, one line."""
    missing = urlsplit(database_url)._replace(path="/outbox_no_such_database").geturl()
    worker = await start_worker({"OUTBOX_DATABASE_URL": missing})
    assert await worker.wait_exit() == 2
    assert worker.lines[-1].startswith("outbox-worker: database ")
    assert worker.lines[-1].endswith("does not exist")
