"""The worker through its two ports: a recording fake Store and a scriptable fake Sender.

No database, process or socket: each test scripts the rows claims return and the answers sends
get, runs ``Worker.run`` as a task on a monotonic clock that moves only when the test says so,
and asserts what the store was asked to write (settlements, releases, claims) and what was logged.
Every test starts with the circuit breaker probing, so the first claim is for one message.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

from outbox_worker.delivery.worker import Worker
from outbox_worker.delivery.writer import Backoff
from outbox_worker.errors import DatabaseUnavailable
from outbox_worker.models import Answer, MessageId, State
from outbox_worker.payload.limits import MAX_PAYLOAD_BYTES
from outbox_worker.settings.config import MIB, CircuitSettings, RetrySettings, WorkerSettings
from tests.unit.fakes import FakeSender, FakeStore, ManualClock, message, number_of, ok
from tests.waiting import wait_for

Log = list[MutableMapping[str, Any]]
UNAVAILABLE = Answer(503, 0.001)

HTTP_TIMEOUT = timedelta(milliseconds=500)
LEASE = timedelta(seconds=6)
# The worker starts a send only with a whole HTTP timeout plus 2 s of the lease left.
SEND_BY_S = (LEASE - HTTP_TIMEOUT - timedelta(seconds=2)).total_seconds()  # 3.5 s


def make_settings(**changes: Any) -> WorkerSettings:
    """Worker settings with millisecond timings; probes 1 s apart on the manual clock."""
    return WorkerSettings(
        concurrency=4,
        batch_size=4,
        http_timeout=HTTP_TIMEOUT,
        lease=LEASE,
        poll_interval=timedelta(milliseconds=20),
        flush_interval=timedelta(milliseconds=5),
        shutdown_grace=timedelta(seconds=10),
        retry=RetrySettings(max_age=timedelta(hours=1)),
        circuit=CircuitSettings(probe_initial=timedelta(seconds=1), probe_cap=timedelta(seconds=8)),
    ).with_changes(**changes)


@dataclass
class Running:
    """A worker's ``run`` task and the event that stops it."""

    stop: asyncio.Event
    task: asyncio.Task[None]


@dataclass
class Rig:
    """The fakes one worker runs against."""

    store: FakeStore = field(default_factory=FakeStore)
    sender: FakeSender = field(default_factory=FakeSender)
    clock: ManualClock = field(default_factory=ManualClock)

    @asynccontextmanager
    async def running(self, **changes: Any) -> AsyncIterator[Running]:
        """Run a Worker (settings changed by ``changes``) for the block; stop it after."""
        worker = Worker(
            make_settings(**changes), self.store, self.sender, clock=self.clock, rng=lambda: 0.5
        )
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop), name="worker")
        try:
            yield Running(stop, task)
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)


def events(logs: Log, name: str) -> Log:
    """The logged events called ``name``."""
    return [e for e in logs if e["event"] == name]


def hold(
    *numbers: int, answer: Callable[[int], Answer] = lambda n: ok()
) -> tuple[dict[int, asyncio.Event], FakeSender]:
    """A sender holding the sends of ``numbers`` until their event is set; ``answer(n)`` for all."""
    gates = {n: asyncio.Event() for n in numbers}

    async def held(n: int) -> Answer:
        await gates[n].wait()
        return answer(n)

    def handler(body: bytes) -> Answer | Awaitable[Answer]:
        n = number_of(body)
        return held(n) if n in gates else answer(n)

    return gates, FakeSender(handler)


# --- One message can only fail itself ------------------------------------------------------


class PayloadBug(Exception):
    """A bug of ours that quotes the payload in its text."""


SENDER_ERRORS = [
    UnicodeEncodeError("utf-8", "secret\ud800", 6, 7, "surrogates not allowed"),
    ValueError("jane@example.com is not a valid header value"),
    PayloadBug("customer jane@example.com"),
]


@pytest.mark.parametrize("error", SENDER_ERRORS, ids=lambda e: type(e).__name__)
async def test_a_send_that_raises_spends_only_its_own_attempt(
    rig: Rig, logs: Log, error: Exception
) -> None:
    """A send raising for one message retries that message with only the exception's type."""

    def handler(body: bytes) -> Answer:
        if number_of(body) == 2:
            raise error
        return ok()

    rig.sender.handler = handler
    rig.store.add(*(message(n) for n in range(1, 5)))
    async with rig.running():
        await wait_for(lambda: len(rig.store.settled) == 4, message="four settlements")
    failed = rig.store.settlement(2)
    assert failed.state is State.PENDING
    assert failed.attempt_spent is True
    assert failed.error == f"internal error while delivering: {type(error).__name__}"
    assert failed.delay == timedelta(seconds=0.5)  # full jitter: rng 0.5 of the 1 s ceiling
    assert [rig.store.settlement(n).state for n in (1, 3, 4)] == [State.ACKNOWLEDGED] * 3
    [logged] = events(logs, "delivery.failed")
    assert (logged["message_id"], logged["error"]) == (2, type(error).__name__)
    assert str(error) not in repr(logs)


async def test_the_worker_keeps_delivering_after_a_send_raised(rig: Rig) -> None:
    """After a send raised, the worker's task is still running and delivers later messages."""

    def handler(body: bytes) -> Answer:
        if number_of(body) == 1:
            raise PayloadBug("boom")
        return ok()

    rig.sender.handler = handler
    rig.store.add(message(1))
    async with rig.running() as run:
        await wait_for(lambda: rig.store.settled_ids() == [1], message="the failure written")
        assert not run.task.done()
        rig.store.add(message(2))
        await wait_for(lambda: 2 in rig.store.settled_ids(), message="a later message")
        assert not run.task.done()
    assert rig.store.settlement(2).state is State.ACKNOWLEDGED


POISON_ANSWERS = [
    # answer, state written
    pytest.param(
        Answer(
            400,
            0.001,
            b'{"message": "bad\\u0000value", "traceId": "t\\ud800",'
            b' "validationErrors": ["\\udfff", NaN, {"k\\u0000": Infinity}]}',
        ),
        State.DEAD,
        id="400-nul-surrogates-nan",
    ),
    pytest.param(
        Answer(503, 0.001, b'{"Error": "\\ud83d", "validationErrors": [-Infinity, "\\u0000"]}'),
        State.PENDING,
        id="503-lone-surrogate-infinity",
    ),
    pytest.param(
        Answer(422, 0.001, b'{"validationErrors": [[[[[[[[[[[["\\u0000", NaN]]]]]]]]]]]]}'),
        State.DEAD,
        id="422-deep-nesting",
    ),
    pytest.param(
        Answer(200, 0.001, b'{"data": {"warnings": [{"class": "w\\u0000\\udc00"}]}}'),
        State.ACKNOWLEDGED,
        id="200-warning-class",
    ),
    pytest.param(
        Answer(400, 0.001, b'\xff\xfe{"message": "not UTF-8"}'), State.DEAD, id="400-not-utf8"
    ),
    pytest.param(
        Answer(None, 0.001, error="reset\x00 by \ud800peer"), State.PENDING, id="transport-nul"
    ),
]


def texts(value: Any) -> Iterator[str]:
    """Every string in a parsed JSON value, keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from texts(item)
    elif isinstance(value, list):
        for item in value:
            yield from texts(item)


@pytest.mark.parametrize(("answer", "state"), POISON_ANSWERS)
async def test_a_poison_answer_gives_a_storable_settlement(
    rig: Rig, answer: Answer, state: State
) -> None:
    """NUL, lone surrogates and NaN in an answer never reach the written row."""
    rig.sender.handler = lambda body: answer
    rig.store.add(message(1))
    async with rig.running():
        await wait_for(lambda: rig.store.settled, message="the settlement")
    written = rig.store.settlement(1)
    assert written.state is state
    json.dumps(written.response, allow_nan=False)  # no NaN or infinity
    for text in [written.error or "", *texts(written.response)]:
        assert "\x00" not in text
        text.encode("utf-8")  # no lone surrogate


TWO_XX = [
    pytest.param(Answer(200, 0.002, b'{"status":200,"timestamp":1}'), None, id="200-plain"),
    pytest.param(Answer(204, 0.002), None, id="204-empty"),
    pytest.param(Answer(200, 0.002, b"null"), None, id="200-null"),
    pytest.param(
        Answer(201, 0.002, b'{"status":201,"warnings":"not in data"}'), None, id="201-stray-word"
    ),
    pytest.param(
        Answer(200, 0.002, b'{"data": {"warnings": [{"class": "email"}]}}'),
        {"warnings": ["email"]},
        id="200-warnings",
    ),
]


@pytest.mark.parametrize(("answer", "response"), TWO_XX)
async def test_a_2xx_is_acknowledged_with_its_status_latency_and_any_warnings(
    rig: Rig, answer: Answer, response: dict[str, Any] | None
) -> None:
    """Every 2xx writes the same acknowledgement: status, latency, one attempt, warnings kept."""
    rig.sender.handler = lambda body: answer
    rig.store.add(message(1, attempts=2, age=timedelta(hours=2)))
    async with rig.running():
        await wait_for(lambda: rig.store.settled, message="the settlement")
    written = rig.store.settlement(1)
    assert (written.state, written.status, written.latency_s) == (
        State.ACKNOWLEDGED,
        answer.status,
        answer.latency_s,
    )
    assert (written.attempt_spent, written.delay, written.error) == (True, None, None)
    assert written.response == response


# --- Failing flushes -----------------------------------------------------------------------


async def test_a_rejected_batch_is_written_row_by_row(rig: Rig, logs: Log) -> None:
    """A batch the database refuses is written row by row; only the row at fault is dead."""
    gates, rig.sender = hold(1, 2, 3, 4)
    rig.store.reject_settle.add(MessageId(3))
    rig.store.add(*(message(n) for n in range(5)))
    async with rig.running(flush_interval=timedelta(milliseconds=20)):
        await wait_for(lambda: rig.sender.in_flight == {1, 2, 3, 4}, message="four in flight")
        for gate in gates.values():
            gate.set()  # all four answer together: one flush, one batch
        await wait_for(lambda: rig.store.unwritable, message="the row at fault dead-lettered")
        await wait_for(lambda: len(rig.store.settled) == 4, message="the rest written")
    assert any(3 in batch and len(batch) > 1 for batch in rig.store.settle_calls)
    assert sorted(rig.store.settled_ids()) == [0, 1, 2, 4]
    [(settlement, reason)] = rig.store.unwritable
    assert settlement.message_id == 3
    assert reason == "the outcome could not be written: CheckViolation (SQLSTATE 23514)"
    assert events(logs, "settle.batch_rejected")


async def test_a_row_that_cannot_even_be_dead_lettered_is_logged_and_skipped(
    rig: Rig, logs: Log
) -> None:
    """When dead-lettering the unwritable row is refused too, it is logged and the worker goes on."""
    rig.store.reject_settle.add(MessageId(1))
    rig.store.reject_unwritable.add(MessageId(1))
    rig.store.add(message(1))
    async with rig.running() as run:
        await wait_for(lambda: events(logs, "settle.unwritable"), message="settle.unwritable")
        rig.store.add(message(2))
        await wait_for(lambda: rig.store.settled_ids() == [2], message="the next message")
        assert not run.task.done()
    [logged] = events(logs, "settle.unwritable")
    assert logged["message_id"] == 1
    assert rig.store.unwritable == []


async def test_outcomes_survive_a_database_outage(rig: Rig, logs: Log) -> None:
    """With settle unavailable three times, every outcome is written once it answers again."""
    rig.store.fail("settle", DatabaseUnavailable("connection refused"), times=3)
    rig.store.add(*(message(n) for n in range(5)))
    async with rig.running():
        await wait_for(lambda: len(rig.store.settled) == 5, message="five settlements")
    assert rig.store.failures["settle"] == 3
    assert sorted(rig.store.settled_ids()) == [0, 1, 2, 3, 4]  # each once
    assert events(logs, "database.unavailable")
    assert events(logs, "database.reconnected")


async def test_no_send_starts_while_outcomes_cannot_be_written(rig: Rig, logs: Log) -> None:
    """Once a flush finds the database unavailable (a failover, a partition), queued claims are handed back unsent, not sent into answers nobody could write; sending resumes when it answers."""
    gates, rig.sender = hold(1)
    rig.store.fail("settle", DatabaseUnavailable("read-only"))
    rig.store.add(*(message(n) for n in range(5)))
    async with rig.running(concurrency=1):
        await wait_for(lambda: rig.sender.in_flight == {1} and not rig.store.due)
        await wait_for(lambda: rig.store.failures["settle"] >= 1, message="a failed flush")
        gates[1].set()  # in flight before the outage was seen: it finishes
        await wait_for(lambda: rig.sender.in_flight == set() and rig.store.failures["settle"] >= 3)
        assert sorted(rig.sender.sent) == [0, 1]
        rig.store.answer_again("settle")
        await wait_for(lambda: len(rig.store.settled) == 2, message="both outcomes written")
        await wait_for(lambda: len(rig.store.released) == 3, message="three claims handed back")
    assert sorted(rig.sender.sent) == [0, 1]
    assert sorted(rig.store.released_ids()) == [2, 3, 4]
    assert events(logs, "database.reconnected")


# --- Hand-back at shutdown -----------------------------------------------------------------


async def test_stop_hands_back_queued_claims_and_finishes_sends_in_flight(
    rig: Rig, logs: Log
) -> None:
    """On stop, queued claims are released unsent and sends in flight finish and are written."""
    gates, rig.sender = hold(*range(1, 7))
    rig.store.add(*(message(n) for n in range(7)))
    async with rig.running(concurrency=2) as run:
        await wait_for(lambda: rig.sender.in_flight == {1, 2} and not rig.store.due)
        run.stop.set()
        await wait_for(lambda: len(rig.store.released) == 4, message="queued claims released")
        assert not run.task.done()  # waiting for the two in flight
        for gate in gates.values():
            gate.set()
        await asyncio.wait_for(run.task, 30)
    assert sorted(rig.store.released_ids()) == [3, 4, 5, 6]
    assert sorted(rig.store.settled_ids()) == [0, 1, 2]
    assert sorted(rig.sender.sent) == [0, 1, 2]
    assert all(s.state is State.ACKNOWLEDGED for s in rig.store.settled)
    assert events(logs, "worker.stopped")


async def test_a_claim_in_progress_at_stop_is_handed_back_unsent(rig: Rig) -> None:
    """Rows of a claim that returns after stop was set are released, not sent."""
    rig.store.add(message(0))
    async with rig.running() as run:
        await wait_for(lambda: rig.store.settled_ids() == [0], message="the circuit closed")
        claim_done = rig.store.hold_claims()
        claims = len(rig.store.claims)
        rig.store.add(*(message(n) for n in range(1, 5)))
        await wait_for(lambda: len(rig.store.claims) > claims, message="the claim started")
        run.stop.set()
        claim_done.set()
        await asyncio.wait_for(run.task, 30)
    assert rig.sender.sent == [0]
    assert sorted(rig.store.released_ids()) == [1, 2, 3, 4]


async def test_sends_waiting_out_a_slow_down_at_stop_are_handed_back_unsent(
    rig: Rig, logs: Log
) -> None:
    """Sends paced by a 429 slow-down that ends after stop was set are released, not sent."""
    slow_down = Answer(429, 0.001, retry_after=timedelta(milliseconds=100))
    rig.sender.handler = lambda body: slow_down if number_of(body) == 1 else ok()
    rig.store.add(*(message(n) for n in range(1, 5)))
    async with rig.running() as run:
        await wait_for(lambda: events(logs, "delivery.rate_limited"), message="the slow-down")
        await wait_for(lambda: not rig.store.due, message="the rest claimed")
        run.stop.set()
        await wait_for(lambda: events(logs, "worker.stopping"), message="worker.stopping")
        rig.clock.advance(1)  # the slow-down is over
        await asyncio.wait_for(run.task, 30)
    assert rig.sender.sent == [1]
    assert sorted(rig.store.released_ids()) == [2, 3, 4]


async def test_sends_waiting_for_a_fleet_rate_limit_slot_at_stop_are_handed_back_unsent(
    rig: Rig, logs: Log
) -> None:
    """Sends waiting for a slot of the fleet's schedule stop waiting at stop, not at the grace."""
    rig.store.reserve_answer = 3600.0  # the rest of the fleet has taken the next hour's slots
    rig.store.add(*(message(n) for n in range(1, 4)))
    async with rig.running(rate_limit=50.0, shutdown_grace=timedelta(hours=1)) as run:
        await wait_for(lambda: rig.store.reserved, message="a span of the schedule reserved")
        run.stop.set()
        await asyncio.wait_for(run.task, 30)  # the grace (an hour) is not waited out
    claimed = sorted(rig.store.released_ids())
    assert claimed
    assert rig.sender.sent == []
    assert sorted([*claimed, *(m.id for m in rig.store.due)]) == [1, 2, 3]


async def test_sends_outlasting_the_grace_are_handed_back(rig: Rig, logs: Log) -> None:
    """Sends still in flight when the grace period ends are released, and run returns."""
    _, rig.sender = hold(1, 2)
    rig.store.add(*(message(n) for n in range(3)))
    async with rig.running(shutdown_grace=timedelta(milliseconds=200)) as run:
        await wait_for(lambda: rig.sender.in_flight == {1, 2}, message="two held in flight")
        run.stop.set()
        await asyncio.wait_for(run.task, 30)
    assert sorted(rig.store.released_ids()) == [1, 2]
    assert rig.store.settled_ids() == [0]
    [expired] = events(logs, "worker.grace_expired")
    assert expired["abandoned"] == 2


# --- The circuit breaker -------------------------------------------------------------------

CONFIGURATION_FAULTS = [
    # answer, what circuit.opened's error says
    pytest.param(Answer(401, 0.001, b'{"message": "invalid key"}'), "401 Unauthorized", id="401"),
    pytest.param(
        Answer(307, 0.001, redirect_host="login.example.net"),
        "307 redirect to login.example.net not followed",
        id="307",
    ),
]


@pytest.mark.parametrize(("answer", "said"), CONFIGURATION_FAULTS)
async def test_a_configuration_fault_pauses_and_hands_back_queued_claims(
    rig: Rig, answer: Answer, said: str
) -> None:
    """A 401 or a redirect pauses delivery: its message and the queued ones spend no attempt."""
    rig.sender.handler = lambda body: answer if number_of(body) == 1 else ok()
    rig.store.add(*(message(n) for n in range(5)))
    async with rig.running(concurrency=1):
        await wait_for(lambda: len(rig.store.released) == 3, message="queued claims released")
    assert sorted(rig.store.released_ids()) == [2, 3, 4]
    assert rig.sender.sent == [0, 1]
    paused = rig.store.settlement(1)
    assert (paused.state, paused.delay, paused.status) == (
        State.PENDING,
        timedelta(0),
        answer.status,
    )
    assert paused.attempt_spent is False


@pytest.mark.parametrize(("answer", "said"), CONFIGURATION_FAULTS)
async def test_circuit_opened_names_the_reason_and_the_redirect_host(
    rig: Rig, logs: Log, answer: Answer, said: str
) -> None:
    """The circuit.opened log says a configuration fault paused delivery, and what the answer was."""
    rig.sender.handler = lambda body: answer
    rig.store.add(message(1))
    async with rig.running():
        await wait_for(lambda: events(logs, "circuit.opened"), message="circuit.opened")
    [opened] = events(logs, "circuit.opened")
    assert opened["reason"] == "configuration"
    assert opened["status"] == answer.status
    assert said in opened["error"]
    assert opened["next_probe_in_s"] == 1.0


async def test_a_paused_worker_claims_one_probe_at_a_time_until_one_succeeds(rig: Rig) -> None:
    """While paused, each probe claims one message; the first success resumes full batches."""
    rig.sender.handler = lambda body: Answer(401, 0.001) if number_of(body) < 2 else ok()
    rig.store.add(message(0))
    async with rig.running():
        await wait_for(lambda: rig.store.settled_ids() == [0], message="the first probe")
        rig.store.add(*(message(n) for n in range(1, 10)))
        rig.clock.advance(60)  # probe time
        await wait_for(lambda: rig.store.settled_ids() == [0, 1], message="the second probe")
        rig.clock.advance(60)
        await wait_for(lambda: len(rig.store.settled) == 10, message="all delivered")
    assert [c.limit for c in rig.store.claims[:3]] == [1, 1, 1]
    assert rig.store.claims[3].limit == 4
    assert [rig.store.settlement(n).attempt_spent for n in (0, 1)] == [False, False]


async def test_an_outage_pauses_without_spending_attempts_and_resumes_on_success(
    rig: Rig, logs: Log
) -> None:
    """Different messages failing 503 pause delivery: the tripping and in-flight ones pay nothing."""
    failing = {1, 2, 3, 4, 5}  # 1, 2, 3 trip the outage; 4 is in flight then; 5 is a probe
    gates, rig.sender = hold(1, 2, 3, 4, answer=lambda n: UNAVAILABLE if n in failing else ok())
    rig.store.add(*(message(n) for n in range(5)))
    threshold_3 = CircuitSettings(
        probe_initial=timedelta(seconds=1), probe_cap=timedelta(seconds=8), outage_threshold=3
    )
    async with rig.running(circuit=threshold_3):
        await wait_for(lambda: rig.sender.in_flight == {1, 2, 3, 4}, message="four in flight")
        gates[1].set()
        await wait_for(lambda: rig.store.settled_ids() == [0, 1], message="503 for 1")
        gates[2].set()
        await wait_for(lambda: rig.store.settled_ids() == [0, 1, 2], message="503 for 2")
        gates[3].set()
        await wait_for(lambda: events(logs, "circuit.opened"), message="circuit.opened")
        gates[4].set()
        await wait_for(lambda: 4 in rig.store.settled_ids(), message="the send in flight")
        claimed_before = len(rig.store.claims)
        rig.store.add(*(message(n) for n in range(5, 12)))
        rig.clock.advance(60)  # probe: 503 again
        await wait_for(lambda: 5 in rig.store.settled_ids(), message="the failed probe")
        rig.clock.advance(60)  # probe: 200
        await wait_for(lambda: len(rig.store.settled) == 12, message="all settled")
    assert events(logs, "circuit.opened")[0]["reason"] == "outage"
    assert [rig.store.settlement(n).attempt_spent for n in (1, 2, 3)] == [True, True, False]
    for n in (3, 4, 5):  # trips it; in flight then; the failed probe
        written = rig.store.settlement(n)
        assert (written.state, written.delay) == (State.PENDING, timedelta(0))
        assert written.attempt_spent is False
    limits = [c.limit for c in rig.store.claims[claimed_before:]]
    assert limits[:2] == [1, 1]
    assert limits[2] == 4  # the probe succeeded: full batches again


# --- Leases ----------------------------------------------------------------------------------

SLOW_CLAIMS = [
    # seconds the claim statement takes, sent?
    pytest.param(SEND_BY_S - 0.1, True, id="just-in-time"),
    pytest.param(SEND_BY_S + 0.1, False, id="too-late"),
]


@pytest.mark.parametrize(("claim_s", "sent"), SLOW_CLAIMS)
async def test_the_send_deadline_counts_from_before_the_claim(
    rig: Rig, claim_s: float, sent: bool
) -> None:
    """A claim that took so long the lease cannot cover an HTTP timeout hands its rows back unsent."""
    claim_done = rig.store.hold_claims()
    rig.store.add(message(1))
    async with rig.running():
        await wait_for(lambda: rig.store.claims, message="the claim started")
        rig.clock.advance(claim_s)
        claim_done.set()
        await wait_for(lambda: rig.store.settled or rig.store.released, message="an outcome")
    if sent:
        assert rig.sender.sent == [1]
        assert rig.store.released == []
    else:
        assert rig.sender.sent == []
        assert rig.store.released_ids() == [1]
        assert rig.store.settled == []


# --- The final write at shutdown -------------------------------------------------------------

FINAL_FLUSH = [
    # grace, seconds after which the final flush is still trying, seconds after which it gave up
    pytest.param(timedelta(milliseconds=200), 4.5, 5.5, id="short-grace-5s-floor"),
    pytest.param(timedelta(seconds=8), 7.5, 8.5, id="grace"),
]


def flush_loop_running() -> bool:
    """Whether a worker's "flush" task is still running (it ends just before the final flush)."""
    return any(t.get_name() == "flush" for t in asyncio.all_tasks())


@pytest.mark.parametrize(("grace", "trying_s", "gave_up_s"), FINAL_FLUSH)
async def test_the_final_write_gives_up_after_the_grace_or_5_seconds(
    rig: Rig, logs: Log, grace: timedelta, trying_s: float, gave_up_s: float
) -> None:
    """With the database down at shutdown, run returns once max(grace, 5 s) has passed."""
    rig.store.fail("settle", DatabaseUnavailable("connection refused"))
    rig.store.add(message(1))
    async with rig.running(shutdown_grace=grace) as run:
        await wait_for(lambda: rig.store.failures["settle"], message="a failed write")
        run.stop.set()
        await wait_for(lambda: not flush_loop_running(), message="the final flush")
        tries = rig.store.failures["settle"]
        await wait_for(lambda: rig.store.failures["settle"] >= tries + 2, message="retries")
        rig.clock.advance(trying_s)
        tries = rig.store.failures["settle"]
        await wait_for(lambda: rig.store.failures["settle"] >= tries + 2, message="more retries")
        assert not run.task.done()
        rig.clock.advance(gave_up_s - trying_s)
        await asyncio.wait_for(run.task, 30)
    [failed] = events(logs, "worker.final_write_failed")
    assert (failed["unwritten"], failed["error"]) == (1, "connection refused")
    assert rig.store.settled == []


# --- Memory: the claimed-bytes budget --------------------------------------------------------

BODY = 900 * 1024  # three fit in 3 MiB; after three, less than one payload's room is left


async def test_claims_stay_within_the_byte_budget(rig: Rig) -> None:
    """Claims ask for the budget minus the bytes held, and none is made with under 1 MiB left."""
    gates, rig.sender = hold(1, 2, 3, 4)
    rig.store.add(message(0), *(message(n, size=BODY) for n in range(1, 5)))
    async with rig.running(max_claimed_bytes=3 * MIB):
        await wait_for(lambda: rig.sender.in_flight == {1, 2, 3}, message="three held")
        assert rig.store.claims[1].max_bytes == 3 * MIB  # nothing held
        assert [m.id for m in rig.store.due] == [4]  # did not fit
        held_three = len(rig.store.claims)
        gates[1].set()
        await wait_for(lambda: rig.sender.in_flight == {2, 3, 4}, message="the fourth claimed")
        for gate in gates.values():
            gate.set()
        await wait_for(lambda: len(rig.store.settled) == 5, message="all delivered")
    assert rig.store.claims[held_three].max_bytes == 3 * MIB - 2 * BODY  # bytes given back
    assert all(c.max_bytes >= MAX_PAYLOAD_BYTES for c in rig.store.claims)


# --- Rows that cannot be sent, and ages ----------------------------------------------------


async def test_an_unsendable_row_is_dead_lettered_unsent(rig: Rig, logs: Log) -> None:
    """A stored row that cannot be sent is dead-lettered without a send or a spent attempt."""
    rig.store.add(message(1, unsendable="the stored payload is a JSON array, not an object"))
    async with rig.running():
        await wait_for(lambda: rig.store.settled, message="the settlement")
    assert rig.sender.sent == []
    dead = rig.store.settlement(1)
    assert (dead.state, dead.attempt_spent, dead.delay) == (State.DEAD, False, None)
    assert dead.error == "not sent: the stored payload is a JSON array, not an object"
    assert events(logs, "delivery.dead_lettered")[0]["message_id"] == 1


AGES = [
    # age when claimed, monotonic seconds the send takes, state written
    pytest.param(timedelta(seconds=3599), 0.5, State.PENDING, id="young-enough"),
    pytest.param(timedelta(seconds=3599), 2.0, State.DEAD, id="claimed-age-plus-elapsed"),
    pytest.param(timedelta(0), 3601.0, State.DEAD, id="elapsed-alone"),
]


@pytest.mark.parametrize(("age", "send_s", "state"), AGES)
async def test_a_retry_past_max_age_is_dead_lettered(
    rig: Rig, age: timedelta, send_s: float, state: State
) -> None:
    """A retry is given up once the claimed age plus monotonic time elapsed reaches max_age."""

    def handler(body: bytes) -> Answer:
        rig.clock.advance(send_s)  # the only clock the worker reads
        return Answer(503, 0.001)

    rig.sender.handler = handler
    rig.store.add(message(1, age=age))
    async with rig.running():  # max_age 1 h
        await wait_for(lambda: rig.store.settled, message="the settlement")
    written = rig.store.settlement(1)
    assert written.state is state
    assert written.attempt_spent is True
    if state is State.DEAD:
        assert written.error == "gave up at max age 1h: 503 Service Unavailable"


def _unavailable(cause: Exception) -> DatabaseUnavailable:
    try:
        raise DatabaseUnavailable(f"database is unavailable: {type(cause).__name__}") from cause
    except DatabaseUnavailable as exc:
        return exc


def test_an_outage_warns_once_per_kind_of_failure(logs: Log) -> None:
    """A series of database failures warns at its start and when its kind changes (refused, then read-only after a failover); repeats are debug lines; the end is one info line."""
    backoff = Backoff()
    refused = _unavailable(ConnectionRefusedError())
    for _ in range(3):
        backoff.next("claim", refused)
    backoff.next("claim", _unavailable(PermissionError("read-only")))
    backoff.reset()
    assert [(e["event"], e["log_level"]) for e in logs] == [
        ("database.unavailable", "warning"),
        ("database.unavailable", "debug"),
        ("database.unavailable", "debug"),
        ("database.unavailable", "warning"),
        ("database.reconnected", "info"),
    ]
