"""The worker in this process against real PostgreSQL and a real stand-in server: the answer policy.

Each test starts a Worker on the test's event loop with the production store and sender, so what
is asserted is what an operator sees: rows, states, attempts, recorded errors, requests received.
"""

from __future__ import annotations

import itertools
import json
import statistics
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from structlog.testing import capture_logs

import outbox_worker
from outbox_worker.delivery.sender import USER_AGENT
from outbox_worker.delivery.tracing import AttemptTrace, Tracing
from outbox_worker.models import Message, Settlement
from outbox_worker.settings.config import CircuitSettings
from outbox_worker.standin import StandIn
from tests.cases import KEY, update
from tests.integration.running import running_worker
from tests.waiting import all_acknowledged, wait_for

RunWorker = Callable[..., Any]
# How far the stand-in's monotonic clock and the database's clock may drift apart over a retry's
# delay (well under a second): both run on this machine.
CLOCKS_APART_S = 0.005


@pytest.fixture
def run_worker(database_url: str, standin: StandIn) -> RunWorker:
    """Factory: ``async with run_worker(**setting_changes):`` runs a Worker for the block."""

    def running(**changes: Any) -> Any:
        return running_worker(database_url, standin.url, **changes)

    return running


async def row(pg: asyncpg.Connection, message_id: int) -> asyncpg.Record:
    """The message's row as an operator would query it."""
    record = await pg.fetchrow("SELECT * FROM outbox.messages WHERE id = $1", message_id)
    assert record is not None
    return record


def settled(
    pg: asyncpg.Connection, message_id: int, attempts: int = 1
) -> Callable[[], Awaitable[bool]]:
    """Condition: the row has spent ``attempts`` and no worker holds it."""

    async def check() -> bool:
        r = await row(pg, message_id)
        return bool(r["attempts"] >= attempts and r["lease_token"] is None)

    return check


def retry_settings(**changes: Any) -> Any:
    """RetrySettings with some fields changed."""
    from dataclasses import replace

    from outbox_worker.settings.config import RetrySettings

    return replace(RetrySettings(), **changes)


ANSWERS = [
    # status, final state, attempts spent, last_error contains
    (200, "acknowledged", 1, None),
    (201, "acknowledged", 1, None),
    (204, "acknowledged", 1, None),
    (429, "acknowledged", 1, "429"),
    (400, "dead", 1, "400 Bad Request"),
    (409, "dead", 1, "409"),
    (413, "dead", 1, "413"),
    (422, "dead", 1, "422"),
    (500, "pending", 1, "500"),
    (502, "pending", 1, "502"),
    (503, "pending", 1, "503"),
    (504, "pending", 1, "504"),
    ("drop", "pending", 1, "connection"),
]


@pytest.mark.parametrize(
    ("status", "state", "attempts", "error"), ANSWERS, ids=[str(a[0]) for a in ANSWERS]
)
async def test_each_answer_class_gives_its_state(
    run_worker: RunWorker,
    standin: StandIn,
    pg: asyncpg.Connection,
    status: int | str,
    state: str,
    attempts: int,
    error: str | None,
) -> None:
    """A message answered with this status ends in this state with this attempt count and error."""
    first = await outbox_worker.enqueue_async(pg, update("warm-up"), allow_autocommit=True)
    target = await outbox_worker.enqueue_async(pg, update("target"), allow_autocommit=True)
    standin.script_for("target", [status])  # type: ignore[list-item]
    # A long backoff keeps a retried message pending after its one attempt.
    async with run_worker(
        retry=retry_settings(backoff_base=timedelta(hours=1), backoff_cap=timedelta(hours=1))
    ):
        await wait_for(settled(pg, first), message="warm-up delivered")
        await wait_for(settled(pg, target), message=f"{status} settled")
    r = await row(pg, target)
    assert (r["state"], r["attempts"]) == (state, attempts)
    assert r["last_status"] == (None if status == "drop" else status)
    if error is None:
        assert r["last_error"] is None
    else:
        assert error in r["last_error"]
    assert len(json.loads(r["history"])) == 1
    if state == "pending":
        assert await pg.fetchval(
            "SELECT available_at > now() FROM outbox.messages WHERE id = $1",
            target,
        )
    if state == "dead":
        response = json.loads(r["last_response"])
        assert response["traceId"]
        assert response["message"]
        assert r["dead_at"] is not None


@pytest.mark.parametrize("status", [401, 403, 404, 405, 406])
async def test_configuration_faults_pause_without_spending_attempts(
    run_worker: RunWorker, standin: StandIn, pg: asyncpg.Connection, status: int
) -> None:
    """401/403/404/405/406 open the circuit: nothing dead-lettered, no attempt spent, then delivered."""
    ids = [
        await outbox_worker.enqueue_async(pg, update(f"c{i}"), allow_autocommit=True)
        for i in range(20)
    ]
    standin.set_default_status(status)
    with capture_logs() as logs:
        async with run_worker(circuit=_fast_circuit()):
            await wait_for(lambda: standin.count >= 3, message="a few probes")
            assert (
                await pg.fetchval(
                    "SELECT count(*) FROM outbox.messages WHERE attempts > 0 OR state <> 'pending'"
                )
                == 0
            )
            standin.set_default_status(200)
            await wait_for(
                lambda: all_acknowledged(pg, len(ids)), message="all delivered after the fix"
            )
    refused = [r.at for r in standin.received if r.status == status]
    # One probe at a time, each at least the first probe interval (100 ms) after the one before:
    # never a batch of refused requests. (A lower bound: a busy machine only lengthens the gaps.)
    gaps = [after - before for before, after in itertools.pairwise(refused)]
    assert len(refused) >= 3, refused
    assert all(gap >= 0.09 for gap in gaps), gaps
    assert await pg.fetchval("SELECT max(attempts) FROM outbox.messages") == 1
    events = [e["event"] for e in logs]
    assert events.index("circuit.opened") < events.index("circuit.closed")


def _fast_circuit() -> Any:
    from outbox_worker.settings.config import CircuitSettings

    return CircuitSettings(
        probe_initial=timedelta(milliseconds=100), probe_cap=timedelta(milliseconds=400)
    )


async def test_request_carries_stored_bytes_and_headers(
    run_worker: RunWorker, standin: StandIn, pg: asyncpg.Connection
) -> None:
    """The POST body is the stored payload text byte for byte, with token auth and a User-Agent."""
    message_id = await outbox_worker.enqueue_async(
        pg, update("héllo-ünïcode"), allow_autocommit=True
    )
    async with run_worker():
        await wait_for(settled(pg, message_id))
    stored = await pg.fetchval(
        "SELECT payload::text FROM outbox.messages WHERE id = $1", message_id
    )
    [received] = standin.received
    assert received.body == stored.encode()
    assert received.headers["Authorization"] == f"token {KEY}"
    assert received.headers["Content-Type"].startswith("application/json")
    assert received.headers["User-Agent"] == USER_AGENT
    assert received.headers["Accept-Encoding"] == "identity"
    assert outbox_worker.__version__ in USER_AGENT


@pytest.mark.parametrize("body", ["empty", "null", "extra"])
async def test_unusual_200_bodies_are_acknowledged(
    run_worker: RunWorker, standin: StandIn, pg: asyncpg.Connection, body: str
) -> None:
    """An empty, null or extra-field 200 body still acknowledges the message."""
    standin.set_body(body)
    message_id = await outbox_worker.enqueue_async(pg, update("x"), allow_autocommit=True)
    async with run_worker():
        await wait_for(settled(pg, message_id))
    assert (await row(pg, message_id))["state"] == "acknowledged"


async def test_retry_after_on_429_slows_every_sender(
    run_worker: RunWorker, standin: StandIn, pg: asyncpg.Connection
) -> None:
    """A 429 with Retry-After: 1 holds the next send for at least a second; the 429 is acknowledged."""
    standin.set_retry_after("1", statuses=[429])
    standin.script_for("first", [429])
    first = await outbox_worker.enqueue_async(pg, update("first"), allow_autocommit=True)
    async with run_worker(concurrency=4):
        await wait_for(settled(pg, first))
        second = await outbox_worker.enqueue_async(pg, update("second"), allow_autocommit=True)
        await wait_for(settled(pg, second), timeout=10)
    times = [r.at for r in standin.received]
    assert times[1] - times[0] >= 1.0
    assert (await row(pg, first))["state"] == "acknowledged"
    assert (await row(pg, first))["last_status"] == 429


async def test_retry_on_429_setting_resends(
    run_worker: RunWorker, standin: StandIn, pg: asyncpg.Connection
) -> None:
    """With retry_on_429 a rate-limited message is sent again and acknowledged by the later 200."""
    standin.set_retry_after("0", statuses=[429])
    standin.script_for("again", [429])
    message_id = await outbox_worker.enqueue_async(pg, update("again"), allow_autocommit=True)
    fast = retry_settings(
        retry_on_429=True, backoff_base=timedelta(milliseconds=50), rate_limited_pause=timedelta(0)
    )
    async with run_worker(retry=fast):
        await wait_for(settled(pg, message_id, attempts=2))
    r = await row(pg, message_id)
    assert (r["state"], r["attempts"], r["last_status"]) == ("acknowledged", 2, 200)


class RecordedSettlements:
    """A tracer (the worker's tracing seam) that keeps every row write the worker made, with the
    body of the message it was for: the scheduled delays come from the policy, not a clock."""

    def __init__(self) -> None:
        self.settled: list[tuple[bytes, Settlement]] = []

    def claim_started(self) -> RecordedSettlements:
        """Claims are not recorded."""
        return self

    def claimed(self, messages: Sequence[Message]) -> RecordedSettlements:
        """Attempts are traced from here."""
        return self

    def attempt(self, message: Message) -> AttemptTrace:
        """One attempt of ``message``: its settlement is recorded with the message's body."""
        return _RecordedAttempt(message.body, self.settled)

    async def close(self, within_s: float) -> None:
        """Nothing buffered."""


@dataclass(frozen=True, slots=True)
class _RecordedAttempt:
    """One attempt's trace: keeps its settlement, nothing else."""

    body: bytes
    into: list[tuple[bytes, Settlement]]

    def settled(self, settlement: Settlement) -> None:
        """The row write, kept with the message's body."""
        self.into.append((self.body, settlement))

    def failed(self, error_type: str) -> None:
        """Not recorded."""

    def handed_back(self) -> None:
        """Not recorded."""

    def circuit_changed(self, reason: str | None, next_probe_in_s: float) -> None:
        """Not recorded."""

    def paced(self, waited_s: float) -> None:
        """Not recorded."""

    def slowed_down(self, pause_s: float) -> None:
        """Not recorded."""

    def end(self) -> None:
        """Not recorded."""


async def test_5xx_storm_backs_off_with_growing_jittered_gaps(
    run_worker: RunWorker, standin: StandIn, pg: asyncpg.Connection
) -> None:
    """Messages failing with 503 are retried after growing, jittered delays, each within its ceiling, and never sent again before their delay is over."""
    keys = [f"storm{i}" for i in range(16)]
    base = 0.05
    # 16 different messages failing together would be an outage (pause, no attempts spent):
    # this test is about the schedule of messages that fail on their own.
    no_outage = CircuitSettings(outage_threshold=1000)
    recorded = RecordedSettlements()
    tracing: Tracing = recorded
    async with run_worker(
        retry=retry_settings(backoff_base=timedelta(seconds=base)),
        circuit=no_outage,
        tracing=tracing,
    ):
        # A first success closes the start-up probe, so the storm is sent at full concurrency.
        warm_up = await outbox_worker.enqueue_async(pg, update("warm-up"), allow_autocommit=True)
        await wait_for(settled(pg, warm_up), message="warm-up delivered")
        for key in keys:
            standin.script_for(key, [503, 503, 503, 503])
        await pg.executemany(
            "SELECT outbox.enqueue($1::jsonb)", [(json.dumps(update(k)),) for k in keys]
        )
        await wait_for(lambda: all_acknowledged(pg, len(keys) + 1), timeout=30)
    # The delays the worker scheduled (the database adds each to its now()), by attempt spent.
    # They are asserted rather than the gaps the endpoint saw: how long a gap is beyond its
    # delay depends on how busy the machine is (the flush, the claim), so it has no upper bound.
    delays: dict[int, list[float]] = {1: [], 2: [], 3: [], 4: []}
    for key in keys:
        mine = [s for body, s in recorded.settled if f'"customerId": "{key}"' in body.decode()]
        assert [s.status for s in mine] == [503, 503, 503, 503, 200], key
        times = [r.at for r in standin.received if f'"customerId": "{key}"' in r.body.decode()]
        assert len(times) == 5, (key, len(times))  # four failures and the success: no hammering
        for attempt, (failure, (before, after)) in enumerate(
            zip(mine[:4], itertools.pairwise(times), strict=True), start=1
        ):
            assert failure.attempt_spent, (key, failure)
            assert failure.delay is not None, (key, failure)
            delay = failure.delay.total_seconds()
            delays[attempt].append(delay)
            # Not sent again before its delay: the row was not due until then. (A few ms for
            # the stand-in's monotonic clock against the database's wall clock.)
            assert after - before >= delay - CLOCKS_APART_S, (key, attempt, after - before, delay)
    for attempt, values in delays.items():
        ceiling = base * 2 ** (attempt - 1)
        assert all(0 <= v <= ceiling for v in values), (attempt, values)  # full jitter
    assert statistics.mean(delays[4]) > statistics.mean(delays[1])
    assert statistics.pstdev(delays[4]) > 0.01  # full jitter spreads the retries


async def test_gives_up_after_max_attempts(
    run_worker: RunWorker, standin: StandIn, pg: asyncpg.Connection
) -> None:
    """A message that keeps failing is dead-lettered after max_attempts, with the reason."""
    standin.script_for("doomed", [500] * 10)
    message_id = await outbox_worker.enqueue_async(pg, update("doomed"), allow_autocommit=True)
    async with run_worker(
        history_cap=2, retry=retry_settings(max_attempts=3, backoff_base=timedelta(milliseconds=20))
    ):
        await wait_for(settled(pg, message_id, attempts=3))
    r = await row(pg, message_id)
    assert (r["state"], r["attempts"], r["last_status"]) == ("dead", 3, 500)
    assert r["last_error"].startswith("gave up after 3 attempts")
    assert len(json.loads(r["history"])) == 2  # capped at history_cap, newest kept
    assert standin.count == 3


async def test_timeout_is_retried(
    run_worker: RunWorker, standin: StandIn, pg: asyncpg.Connection
) -> None:
    """A send that gets no answer within the HTTP timeout is retried later, not dead-lettered."""
    standin.set_latency(1.5)
    message_id = await outbox_worker.enqueue_async(pg, update("slow"), allow_autocommit=True)
    async with run_worker(http_timeout=timedelta(seconds=0.5), lease=timedelta(seconds=8),
                          retry=retry_settings(backoff_base=timedelta(hours=1), backoff_cap=timedelta(hours=1))):  # fmt: skip
        await wait_for(settled(pg, message_id))
    r = await row(pg, message_id)
    assert (r["state"], r["attempts"], r["last_status"]) == ("pending", 1, None)
    assert "timeout" in r["last_error"]


async def test_rolled_back_enqueue_is_never_sent(
    run_worker: RunWorker, standin: StandIn, pg: asyncpg.Connection, database_url: str
) -> None:
    """An update whose transaction rolled back is never sent, while a committed one is."""
    other = await asyncpg.connect(database_url)
    try:
        async with run_worker():
            tx = other.transaction()
            await tx.start()
            await outbox_worker.enqueue_async(other, update("rolled-back"))
            await tx.rollback()
            kept = await outbox_worker.enqueue_async(pg, update("kept"), allow_autocommit=True)
            await wait_for(settled(pg, kept))
    finally:
        await other.close()
    assert [json.loads(b)["customer"]["customerId"] for b in standin.bodies()] == ["kept"]


async def _listen_backends(pg: asyncpg.Connection) -> list[int]:
    rows = await pg.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
        "AND application_name = 'outbox-worker-listen'"
    )
    return [r["pid"] for r in rows]


async def test_lost_listen_connection_is_replaced(
    run_worker: RunWorker, standin: StandIn, pg: asyncpg.Connection
) -> None:
    """When the LISTEN connection is killed the worker reconnects, and NOTIFY wakes it again."""
    async with run_worker(poll_interval=timedelta(hours=1)):
        [old] = await wait_for(lambda: _listen_backends(pg), message="LISTEN connection")
        await pg.execute("SELECT pg_terminate_backend($1)", old)
        await wait_for(lambda: _new_listener(pg, old), message="a new LISTEN connection")
        message_id = await outbox_worker.enqueue_async(
            pg, update("after-reconnect"), allow_autocommit=True
        )
        # Far sooner than the hourly poll: only a notification can have woken the worker.
        await wait_for(settled(pg, message_id), timeout=60)
    assert (await row(pg, message_id))["state"] == "acknowledged"


async def _new_listener(pg: asyncpg.Connection, old: int) -> bool:
    pids = await _listen_backends(pg)
    return bool(pids) and old not in pids


async def test_poll_finds_work_when_no_notification_arrives(
    run_worker: RunWorker, standin: StandIn, pg: asyncpg.Connection
) -> None:
    """In poll-only mode a message is picked up by the poll: no notification can wake the worker."""
    async with run_worker(listen=False, poll_interval=timedelta(milliseconds=300)):
        assert await _listen_backends(pg) == []
        message_id = await outbox_worker.enqueue_async(pg, update("polled"), allow_autocommit=True)
        await wait_for(settled(pg, message_id))
    assert (await row(pg, message_id))["state"] == "acknowledged"


async def test_metrics_count_outcomes_and_answers(
    run_worker: RunWorker, standin: StandIn, pg: asyncpg.Connection
) -> None:
    """The Prometheus counters match what happened: acknowledged, dead, retried, by status class."""
    standin.script_for("bad", [400])
    standin.script_for("flaky", [503])
    ids = [
        await outbox_worker.enqueue_async(pg, update(k), allow_autocommit=True)
        for k in ("ok1", "ok2", "bad", "flaky")
    ]
    async with run_worker(retry=retry_settings(backoff_base=timedelta(milliseconds=10))) as worker:
        await wait_for(lambda: _all_settled(pg, ids), message="all settled")
        sample = worker.metrics.registry.get_sample_value
        # Counted when the outcomes are written, one flush after the rows changed.
        await wait_for(lambda: sample("outbox_deliveries_total", {"outcome": "acknowledged"}) == 3)
        assert sample("outbox_deliveries_total", {"outcome": "acknowledged"}) == 3
        assert sample("outbox_deliveries_total", {"outcome": "dead"}) == 1
        assert sample("outbox_deliveries_total", {"outcome": "retry"}) == 1
        assert sample("outbox_responses_total", {"status_class": "4xx"}) == 1
        assert sample("outbox_responses_total", {"status_class": "5xx"}) == 1
        assert sample("outbox_send_seconds_count") == 5


async def _all_settled(pg: asyncpg.Connection, ids: list[int]) -> bool:
    return bool(
        await pg.fetchval(
            "SELECT count(*) FROM outbox.messages WHERE id = ANY($1) AND state <> 'pending'", ids
        )
        == len(ids)
    )
