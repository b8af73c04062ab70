"""The pure delivery policy: answer classification, retry schedule, circuit breaker, rate gate."""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest

from outbox_worker.circuit import CircuitBreaker, CircuitState, RateGate
from outbox_worker.config import CircuitSettings, RetrySettings
from outbox_worker.models import (
    Answer,
    LeaseToken,
    Message,
    MessageId,
    Outcome,
    State,
    Verdict,
)
from outbox_worker.policy import (
    ERROR_MAX_CHARS,
    backoff_delay,
    classify,
    next_attempt_at,
    parse_retry_after,
    ravelin_error_details,
    settle,
    should_give_up,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)  # a Thursday
RETRY = RetrySettings()
TRACE = "9f641b70-47c6-4c1b-a0f4-5e4b7d5e8c11"
RAVELIN_400 = json.dumps(
    {
        "status": 400,
        "message": "Customer not found",
        "traceId": TRACE,
        "timestamp": 1468222819,
        "validationErrors": ["customer.email: invalid", "timestamp: required"],
        "unknownField": {"x": 1},
    }
).encode()


def answer(status: int | None, body: bytes = b"", **kwargs: Any) -> Answer:
    """An Answer with a latency nobody cares about."""
    return Answer(status=status, latency_s=0.05, body=body, **kwargs)


def message(*, attempts: int = 0, age: timedelta = timedelta(minutes=1)) -> Message:
    """A claimed message that has spent ``attempts`` attempts and was created ``age`` ago."""
    return Message(
        id=MessageId(7),
        body=b'{"timestamp":1767225600000,"registration":{"success":true}}',
        attempts=attempts,
        created_at=NOW - age,
        lease_token=LeaseToken(uuid4()),
    )


class FakeClock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# --- classify ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, Verdict.ACKNOWLEDGE),
        (201, Verdict.ACKNOWLEDGE),
        (204, Verdict.ACKNOWLEDGE),
        (299, Verdict.ACKNOWLEDGE),
        (400, Verdict.DEAD_LETTER),
        (402, Verdict.DEAD_LETTER),
        (409, Verdict.DEAD_LETTER),
        (413, Verdict.DEAD_LETTER),
        (418, Verdict.DEAD_LETTER),
        (422, Verdict.DEAD_LETTER),
        (499, Verdict.DEAD_LETTER),
        (401, Verdict.PAUSE),
        (403, Verdict.PAUSE),
        (404, Verdict.PAUSE),
        (405, Verdict.PAUSE),
        (406, Verdict.PAUSE),
        (500, Verdict.RETRY),
        (502, Verdict.RETRY),
        (503, Verdict.RETRY),
        (504, Verdict.RETRY),
        (599, Verdict.RETRY),
        (100, Verdict.RETRY),
        (302, Verdict.RETRY),
    ],
)
def test_status_decides_the_verdict(status: int, verdict: Verdict) -> None:
    """Each HTTP status maps to the verdict of the answer policy table."""
    outcome = classify(answer(status), RETRY)
    assert outcome.verdict is verdict
    assert outcome.status == status
    assert outcome.slow_down is None


@pytest.mark.parametrize(
    ("retry_on_429", "verdict"), [(False, Verdict.ACKNOWLEDGE), (True, Verdict.RETRY)]
)
def test_429_is_acknowledged_unless_set_to_retry_and_always_slows_down(
    retry_on_429: bool, verdict: Verdict
) -> None:
    """A 429 is acknowledged (recorded as 429) or retried by setting, with a global slow-down."""
    retry = RetrySettings(retry_on_429=retry_on_429)
    outcome = classify(answer(429), retry)
    assert outcome.verdict is verdict
    assert outcome.status == 429
    assert outcome.slow_down == retry.rate_limited_pause
    assert outcome.error == "429 Too Many Requests"


@pytest.mark.parametrize(
    ("retry_after", "slow_down"),
    [
        (timedelta(seconds=30), timedelta(seconds=30)),
        (timedelta(hours=1), RETRY.retry_after_max),
        (timedelta(0), timedelta(0)),
        (None, RETRY.rate_limited_pause),
    ],
)
def test_429_slow_down_is_the_clamped_retry_after(
    retry_after: timedelta | None, slow_down: timedelta
) -> None:
    """A 429's slow-down is its Retry-After capped at retry_after_max, else the default pause."""
    assert classify(answer(429, retry_after=retry_after), RETRY).slow_down == slow_down


@pytest.mark.parametrize(
    ("retry_after", "floor_s"),
    [(timedelta(seconds=30), 30.0), (timedelta(hours=1), 300.0), (None, None)],
)
def test_5xx_retry_after_is_a_per_message_floor(
    retry_after: timedelta | None, floor_s: float | None
) -> None:
    """A 5xx's clamped Retry-After lands in details["retry_after_s"], never in slow_down."""
    outcome = classify(answer(503, retry_after=retry_after), RETRY)
    assert outcome.verdict is Verdict.RETRY
    assert outcome.slow_down is None
    assert outcome.details.get("retry_after_s") == floor_s


@pytest.mark.parametrize(
    "reason", ["timeout: no answer within 10s", "connection refused: api.ravelin.com:443"]
)
def test_transport_failure_is_retried_with_its_reason(reason: str) -> None:
    """No HTTP answer (timeout, connection error) is retried, the reason kept on one line."""
    outcome = classify(answer(None, error=reason + "\n  (traceback line)"), RETRY)
    assert outcome == Outcome(Verdict.RETRY, None, error=reason + " (traceback line)")


def test_transport_failure_reason_is_truncated() -> None:
    """A long transport error is cut to ERROR_MAX_CHARS."""
    error = classify(answer(None, error="reset " * 200), RETRY).error
    assert error is not None
    assert len(error) == ERROR_MAX_CHARS
    assert error.endswith("…")


def test_transport_failure_without_a_reason_still_says_something() -> None:
    """A transport failure with no error text gets a generic one."""
    assert classify(answer(None), RETRY).error == "no HTTP answer"


def test_dead_letter_keeps_ravelins_message_trace_id_and_validation_errors() -> None:
    """A 400's error line and details carry what Ravelin said, without unknown fields."""
    outcome = classify(answer(400, RAVELIN_400), RETRY)
    assert outcome.error == f"400 Bad Request: Customer not found (traceId {TRACE})"
    assert outcome.details == {
        "message": "Customer not found",
        "traceId": TRACE,
        "validationErrors": ["customer.email: invalid", "timestamp: required"],
    }


def test_pause_keeps_ravelins_message() -> None:
    """A wrong key's answer is kept so the loud log line says what Ravelin said."""
    body = b'{"status": 403, "message": "Invalid Request: API Key Incorrect."}'
    outcome = classify(answer(403, body), RETRY)
    assert outcome.error == "403 Forbidden: Invalid Request: API Key Incorrect."


def test_unexpected_status_says_so() -> None:
    """A 1xx/3xx answer is retried with an error naming it unexpected."""
    assert classify(answer(302), RETRY).error == "unexpected 302 Found"


def test_error_never_echoes_a_non_json_body() -> None:
    """A body that is not Ravelin's JSON (it may echo the payload) stays out of the error line."""
    outcome = classify(answer(502, b"<html>alice@example.com +447700900123</html>"), RETRY)
    assert outcome.error == "502 Bad Gateway"
    assert outcome.details == {}


def test_huge_message_is_truncated_but_the_trace_id_survives() -> None:
    """The error line stays under ERROR_MAX_CHARS and still ends with the traceId."""
    body = json.dumps({"message": "x" * 10_000, "traceId": TRACE}).encode()
    outcome = classify(answer(422, body), RETRY)
    assert outcome.error is not None
    assert len(outcome.error) <= ERROR_MAX_CHARS
    assert outcome.error.startswith("422 Unprocessable Entity: xxx")
    assert outcome.error.endswith(f"… (traceId {TRACE})")
    assert len(outcome.details["message"]) <= 2000


def test_2xx_warnings_are_kept_by_class() -> None:
    """data.warnings[] classes on a 2xx are kept for logging and counting; still acknowledged."""
    body = b'{"status":200,"data":{"warnings":[{"class":"customer-not-found","msg":"m"}]}}'
    outcome = classify(answer(200, body), RETRY)
    assert outcome.verdict is Verdict.ACKNOWLEDGE
    assert outcome.details == {"warnings": ["customer-not-found"]}


@pytest.mark.parametrize(
    ("body", "details"),
    [
        (b"", {}),
        (b"null", {}),
        (b"not json at all", {}),
        (b"<html>502</html>", {}),
        (b"\xff\xfe\x00garbage", {}),
        (b"[1, 2, 3]", {}),
        (b'"a string"', {}),
        (b"42", {}),
        (b"[" * 100_000, {}),
        (b'{"status": 400, "unknownField": "x"}', {}),
        (b'{"message": "Bad\\nthing\\there", "extra": [1]}', {"message": "Bad thing here"}),
        (b'{"Error": "old style"}', {"message": "old style"}),
        (b'{"message": null, "traceId": 12345}', {"traceId": "12345"}),
        (b'{"message": {"nested": 1}, "traceId": ""}', {}),
        (b'{"validationErrors": "one"}', {"validationErrors": ["one"]}),
        (b'{"validationErrors": [{"field": "x"}]}', {"validationErrors": [{"field": "x"}]}),
        (b'{"validationErrors": []}', {}),
        (
            RAVELIN_400,
            {
                "message": "Customer not found",
                "traceId": TRACE,
                "validationErrors": ["customer.email: invalid", "timestamp: required"],
            },
        ),
    ],
)
def test_error_details_from_any_body(body: bytes, details: dict[str, Any]) -> None:
    """Detail extraction never raises and keeps only Ravelin's known fields."""
    assert ravelin_error_details(body) == details


def test_validation_errors_are_capped() -> None:
    """A flood of validation errors keeps the first 50, each cut short."""
    body = json.dumps({"validationErrors": ["e" * 1000] * 500}).encode()
    kept = ravelin_error_details(body)["validationErrors"]
    assert len(kept) == 50
    assert all(len(item) <= ERROR_MAX_CHARS for item in kept)


# --- Retry-After ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("120", timedelta(seconds=120)),
        (" 5 ", timedelta(seconds=5)),
        ("0", timedelta(0)),
        ("Thu, 01 Jan 2026 00:02:00 GMT", timedelta(seconds=120)),
        ("Thu, 01 Jan 2026 00:00:30 +0000", timedelta(seconds=30)),
        ("Wed, 31 Dec 2025 23:59:00 GMT", None),  # in the past
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        ("", None),
        ("٣", None),  # a non-ASCII digit
        (None, None),
        ("99999999999999999999", timedelta(days=timedelta.max.days)),
        ("9" * 5000, timedelta(days=timedelta.max.days)),
    ],
)
def test_parse_retry_after(header: str | None, expected: timedelta | None) -> None:
    """Retry-After is delta-seconds or an HTTP-date; negative, past or garbage values are None."""
    assert parse_retry_after(header, NOW) == expected


def test_parse_retry_after_accepts_a_naive_now_as_utc() -> None:
    """A naive ``now`` is read as UTC rather than failing the comparison."""
    naive = NOW.replace(tzinfo=None)
    assert parse_retry_after("Thu, 01 Jan 2026 00:01:00 GMT", naive) == timedelta(minutes=1)


# --- Backoff and giving up -----------------------------------------------------------------

CEILINGS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600, 600]


@pytest.mark.parametrize(("attempt", "ceiling"), list(enumerate(CEILINGS, start=1)))
def test_backoff_ceiling_doubles_up_to_the_cap(attempt: int, ceiling: int) -> None:
    """With rng at 1.0 the delay is the ceiling: 1 s, doubling, capped at 10 minutes."""
    assert backoff_delay(attempt, RETRY, lambda: 1.0) == timedelta(seconds=ceiling)


@pytest.mark.parametrize("attempt", [1, 2, 10, 25, 1000])
def test_backoff_with_rng_at_zero_is_immediate(attempt: int) -> None:
    """Full jitter reaches down to zero."""
    assert backoff_delay(attempt, RETRY, lambda: 0.0) == timedelta(0)


def test_backoff_below_one_attempt_counts_as_one() -> None:
    """Attempt 0 or below gets the first ceiling rather than a fraction of it."""
    assert backoff_delay(0, RETRY, lambda: 1.0) == timedelta(seconds=1)


def test_backoff_full_jitter_spreads_delays_over_the_whole_range() -> None:
    """Delays after attempt 5 are spread uniformly over [0, 16 s), not bunched near the ceiling."""
    rng = random.Random(1234)
    delays = [backoff_delay(5, RETRY, rng.random).total_seconds() for _ in range(4000)]
    assert all(0 <= d < 16 for d in delays)
    assert 7.5 < sum(delays) / len(delays) < 8.5
    quarters = Counter(int(d // 4) for d in delays)
    assert all(850 < quarters[q] < 1150 for q in range(4)), quarters


def test_backoff_follows_configured_base_and_cap() -> None:
    """Base and cap come from RetrySettings."""
    retry = RetrySettings(
        backoff_base=timedelta(milliseconds=250), backoff_cap=timedelta(seconds=1)
    )
    delays = [backoff_delay(n, retry, lambda: 1.0).total_seconds() for n in range(1, 6)]
    assert delays == [0.25, 0.5, 1.0, 1.0, 1.0]


@pytest.mark.parametrize(
    ("at_least", "expected"),
    [
        (None, NOW + timedelta(seconds=4)),
        (timedelta(seconds=60), NOW + timedelta(seconds=60)),
        (timedelta(seconds=1), NOW + timedelta(seconds=4)),
    ],
)
def test_next_attempt_at_uses_retry_after_as_a_floor(
    at_least: timedelta | None, expected: datetime
) -> None:
    """The next attempt comes after the backoff, or after Retry-After when that is later."""
    assert next_attempt_at(3, NOW, RETRY, lambda: 1.0, at_least=at_least) == expected


@pytest.mark.parametrize(
    ("attempts", "age", "give_up"),
    [
        (1, timedelta(0), False),
        (24, timedelta(hours=1), False),
        (25, timedelta(hours=1), True),
        (30, timedelta(hours=1), True),
        (3, timedelta(hours=23, minutes=59), False),
        (3, timedelta(hours=24), True),
        (3, timedelta(days=3), True),
    ],
)
def test_should_give_up_at_max_attempts_or_max_age(
    attempts: int, age: timedelta, give_up: bool
) -> None:
    """Giving up applies after max_attempts (25) attempts or at max_age (24 h)."""
    assert should_give_up(attempts, NOW - age, NOW, RETRY) is give_up


# --- settle --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "state"), [(200, State.ACKNOWLEDGED), (429, State.ACKNOWLEDGED), (400, State.DEAD)]
)
def test_settle_final_verdicts(status: int, state: State) -> None:
    """Acknowledged and dead-lettered answers end the message and spend the attempt."""
    msg = message(attempts=2)
    outcome = classify(answer(status, RAVELIN_400 if status == 400 else b""), RETRY)
    s = settle(msg, outcome, latency_s=0.2, now=NOW, retry=RETRY, rng=lambda: 1.0)
    assert (s.message_id, s.lease_token) == (msg.id, msg.lease_token)
    assert (s.state, s.attempt_spent, s.available_at) == (state, True, None)
    assert (s.status, s.error, s.details, s.latency_s) == (
        status,
        outcome.error,
        outcome.details,
        0.2,
    )


def test_settle_pause_spends_no_attempt() -> None:
    """A paused message goes back to pending at once, its attempts unchanged."""
    s = settle(
        message(attempts=24),
        classify(answer(401), RETRY),
        latency_s=0.1,
        now=NOW,
        retry=RETRY,
        rng=lambda: 1.0,
    )
    assert (s.state, s.attempt_spent, s.available_at) == (State.PENDING, False, NOW)


def test_settle_retry_schedules_the_next_attempt() -> None:
    """A retried message goes back to pending after the backoff for its attempt count."""
    s = settle(
        message(attempts=2),
        classify(answer(503), RETRY),
        latency_s=0.1,
        now=NOW,
        retry=RETRY,
        rng=lambda: 1.0,
    )
    assert (s.state, s.attempt_spent) == (State.PENDING, True)
    assert s.available_at == NOW + timedelta(seconds=4)  # third attempt spent: ceiling 4 s


def test_settle_retry_honours_a_5xx_retry_after() -> None:
    """A 503's Retry-After holds the message back at least that long."""
    outcome = classify(answer(503, retry_after=timedelta(seconds=90)), RETRY)
    s = settle(message(), outcome, latency_s=0.1, now=NOW, retry=RETRY, rng=lambda: 1.0)
    assert s.available_at == NOW + timedelta(seconds=90)


@pytest.mark.parametrize(
    ("attempts", "age", "reason", "error"),
    [
        (24, timedelta(hours=1), "max_attempts", "gave up after 25 attempts: 500 Internal"),
        (3, timedelta(hours=25), "max_age", "gave up at max age 1d: 500 Internal"),
    ],
)
def test_settle_gives_up_into_dead(attempts: int, age: timedelta, reason: str, error: str) -> None:
    """A retry past max_attempts or max_age becomes a dead letter that says why."""
    outcome = classify(answer(500, b'{"traceId": "t-1"}'), RETRY)
    s = settle(
        message(attempts=attempts, age=age),
        outcome,
        latency_s=0.1,
        now=NOW,
        retry=RETRY,
        rng=lambda: 1.0,
    )
    assert (s.state, s.attempt_spent, s.available_at) == (State.DEAD, True, None)
    assert s.error is not None
    assert s.error.startswith(error)
    assert s.details == {"traceId": "t-1", "gave_up": reason}
    assert outcome.details == {"traceId": "t-1"}  # the outcome itself is left alone


def test_settle_gives_up_on_a_transport_failure_too() -> None:
    """Timeouts count towards max_attempts like 5xx answers."""
    outcome = classify(answer(None, error="timeout"), RETRY)
    s = settle(message(attempts=24), outcome, latency_s=10.0, now=NOW, retry=RETRY, rng=lambda: 0)
    assert (s.state, s.error) == (State.DEAD, "gave up after 25 attempts: timeout")


# --- Circuit breaker -----------------------------------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    """A monotonic clock under the test's control."""
    return FakeClock()


@pytest.fixture
def circuit(clock: FakeClock) -> CircuitBreaker:
    """A circuit breaker with the default probe intervals (1 s doubling to 60 s)."""
    return CircuitBreaker(CircuitSettings(), clock)


def state_of(circuit: CircuitBreaker) -> CircuitState:
    """The circuit's state read afresh (a call, so type narrowing does not stick to it)."""
    return circuit.state


def fail_probe(circuit: CircuitBreaker, clock: FakeClock) -> float:
    """Wait for the probe, let it fail with a PAUSE, and return the next probe interval."""
    clock.advance(circuit.next_probe_in())
    permit = circuit.acquire()
    assert permit is not None
    assert permit.probe
    assert circuit.record_pause(permit) is True
    return circuit.next_probe_in()


def test_circuit_starts_probing_with_one_permit(circuit: CircuitBreaker) -> None:
    """At start-up one send may go, so a wrong key costs one request, not a batch."""
    assert circuit.state is CircuitState.PROBING
    assert circuit.permits() == 1
    assert circuit.next_probe_in() == 0.0
    probe = circuit.acquire()
    assert probe is not None
    assert probe.probe
    assert circuit.permits() == 0
    assert circuit.acquire() is None


def test_pause_opens_the_circuit_until_the_first_interval(
    circuit: CircuitBreaker, clock: FakeClock
) -> None:
    """A PAUSE opens the circuit: no sends for 1 s, then one probe."""
    probe = circuit.acquire()
    assert probe is not None
    assert circuit.record_pause(probe) is True
    assert circuit.state is CircuitState.OPEN
    assert (circuit.permits(), circuit.acquire(), circuit.next_probe_in()) == (0, None, 1.0)
    clock.advance(0.5)
    assert circuit.acquire() is None
    clock.advance(0.5)
    assert state_of(circuit) is CircuitState.PROBING
    assert circuit.permits() == 1


def test_failed_probes_double_the_interval_up_to_the_cap(
    circuit: CircuitBreaker, clock: FakeClock
) -> None:
    """Each failed probe doubles the wait: 1, 2, 4 ... 32, then 60 s from there on."""
    intervals = [fail_probe(circuit, clock) for _ in range(9)]
    assert intervals == [1, 2, 4, 8, 16, 32, 60, 60, 60]


def test_success_closes_and_resets_the_interval(circuit: CircuitBreaker, clock: FakeClock) -> None:
    """A successful probe closes the circuit once; a later pause starts again at 1 s."""
    for _ in range(4):
        fail_probe(circuit, clock)
    clock.advance(circuit.next_probe_in())
    probe = circuit.acquire()
    assert probe is not None
    assert circuit.record_success(probe) is True
    assert circuit.state is CircuitState.CLOSED
    assert (circuit.permits(), circuit.next_probe_in()) == (None, 0.0)
    sends = [circuit.acquire() for _ in range(100)]
    assert all(p is not None and not p.probe for p in sends)
    assert [circuit.record_success(p) for p in sends if p] == [False] * 100
    assert circuit.record_pause(sends[0]) is True  # type: ignore[arg-type]
    assert circuit.next_probe_in() == 1.0


def test_answers_in_flight_when_the_circuit_opened_are_ignored(
    circuit: CircuitBreaker, clock: FakeClock
) -> None:
    """Of many PAUSE answers from one batch, only the first opens the circuit."""
    probe = circuit.acquire()
    assert probe is not None
    circuit.record_success(probe)
    batch = [circuit.acquire() for _ in range(64)]
    changes = [circuit.record_pause(p) for p in batch if p]
    assert changes == [True] + [False] * 63
    assert circuit.next_probe_in() == 1.0  # not doubled 63 times
    clock.advance(1.0)
    late = circuit.acquire()
    assert late is not None
    assert circuit.record_success(batch[1]) is False  # type: ignore[arg-type]
    assert circuit.state is CircuitState.PROBING
    assert circuit.record_success(late) is True


def test_other_answer_to_a_probe_keeps_probing(circuit: CircuitBreaker) -> None:
    """A 5xx or timeout on the probe says nothing about the key: free the slot, keep probing."""
    probe = circuit.acquire()
    assert probe is not None
    assert circuit.record_other(probe) is False
    assert circuit.state is CircuitState.PROBING
    assert circuit.permits() == 1
    assert circuit.next_probe_in() == 0.0


@pytest.mark.parametrize(
    ("verdict", "state"),
    [
        (Verdict.ACKNOWLEDGE, CircuitState.CLOSED),
        (Verdict.PAUSE, CircuitState.OPEN),
        (Verdict.RETRY, CircuitState.PROBING),
        (Verdict.DEAD_LETTER, CircuitState.PROBING),
    ],
)
def test_record_dispatches_on_the_verdict(
    circuit: CircuitBreaker, verdict: Verdict, state: CircuitState
) -> None:
    """record(permit, verdict) moves the circuit as the matching record_* would."""
    probe = circuit.acquire()
    assert probe is not None
    circuit.record(probe, verdict)
    assert circuit.state is state


def test_custom_probe_settings(clock: FakeClock) -> None:
    """probe_initial and probe_cap come from CircuitSettings."""
    settings = CircuitSettings(probe_initial=timedelta(seconds=5), probe_cap=timedelta(seconds=12))
    circuit = CircuitBreaker(settings, clock)
    assert [fail_probe(circuit, clock) for _ in range(4)] == [5, 10, 12, 12]


# --- Rate gate -----------------------------------------------------------------------------


def test_rate_gate_without_a_limit_never_waits() -> None:
    """Rate 0 means no pacing at all."""
    gate = RateGate(0)
    for _ in range(1000):
        assert gate.delay(5.0) == 0.0
        gate.take(5.0)


def test_rate_gate_paces_at_ten_per_second() -> None:
    """At 10/s each send may start 0.1 s after the previous one."""
    gate, now, starts = RateGate(10), 100.0, []
    for _ in range(5):
        now += gate.delay(now)
        starts.append(now)
        gate.take(now)
    assert [round(t - 100.0, 6) for t in starts] == [0.0, 0.1, 0.2, 0.3, 0.4]
    assert gate.delay(100.45) == pytest.approx(0.05)


def test_rate_gate_earns_no_burst_from_idle_time() -> None:
    """After a quiet spell, sends are still spaced by the interval."""
    gate = RateGate(10)
    gate.take(0.0)
    gate.take(60.0)
    assert gate.delay(60.0) == pytest.approx(0.1)


def test_rate_gate_pause_until_holds_all_sends_and_keeps_the_later() -> None:
    """A 429 slow-down holds every send; an earlier pause never shortens a later one."""
    gate = RateGate(0)
    gate.pause_until(30.0)
    gate.pause_until(20.0)
    assert gate.delay(10.0) == 20.0
    gate.pause_until(40.0)
    assert gate.delay(10.0) == 30.0
    assert gate.delay(45.0) == 0.0


def test_rate_gate_combines_pacing_and_pause() -> None:
    """The wait is the longer of the pacing interval and the pause."""
    gate = RateGate(1)
    gate.take(0.0)
    gate.pause_until(0.5)
    assert gate.delay(0.0) == 1.0
    gate.pause_until(3.0)
    assert gate.delay(0.0) == 3.0


def test_rate_gate_rejects_a_negative_rate() -> None:
    """A negative rate is a programming error."""
    with pytest.raises(ValueError, match="negative"):
        RateGate(-1)
