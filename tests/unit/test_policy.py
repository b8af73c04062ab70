"""The pure delivery policy: answer classification, retry schedule, settling, poison answers."""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import timedelta
from typing import Any
from uuid import uuid4

import pytest

from outbox_worker.delivery.answers import ERROR_MAX_CHARS
from outbox_worker.delivery.policy import (
    backoff_delay,
    classify,
    internal_failure,
    settlement,
    unsendable,
)
from outbox_worker.models import (
    Answer,
    LeaseToken,
    Message,
    MessageId,
    Outcome,
    State,
    Verdict,
)
from outbox_worker.settings.config import RetrySettings
from tests.cases import RAVELIN_400, TRACE

RETRY = RetrySettings()


def answer(status: int | None, body: bytes = b"", **kwargs: Any) -> Answer:
    """An Answer with a latency nobody cares about."""
    return Answer(status=status, latency_s=0.05, body=body, **kwargs)


def message(*, attempts: int = 0, age: timedelta = timedelta(minutes=1)) -> Message:
    """A claimed message that has spent ``attempts`` attempts and was created ``age`` ago."""
    return Message(
        id=MessageId(7),
        body=b'{"timestamp":1767225600000,"registration":{"success":true}}',
        attempts=attempts,
        age=age,
        lease_token=LeaseToken(uuid4()),
    )


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
        (302, Verdict.PAUSE),
        (307, Verdict.PAUSE),
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
    """A 5xx's clamped Retry-After becomes this message's retry floor, never a slow-down."""
    outcome = classify(answer(503, retry_after=retry_after), RETRY)
    assert outcome.verdict is Verdict.RETRY
    assert outcome.slow_down is None
    floor = outcome.retry_floor
    assert (floor.total_seconds() if floor is not None else None) == floor_s


@pytest.mark.parametrize(
    "reason", ["timeout: no answer within 10s", "connection refused: api.ravelin.com:443"]
)
def test_transport_failure_is_retried_with_its_reason(reason: str) -> None:
    """No HTTP answer (timeout, connection error) is retried, the reason kept on one line."""
    outcome = classify(answer(None, error=reason + "\n  (traceback line)"), RETRY)
    assert outcome == Outcome(
        Verdict.RETRY, None, error=reason + " (traceback line)", transient=True
    )


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
    assert outcome.response == {
        "message": "Customer not found",
        "traceId": TRACE,
        "validationErrors": ["customer.email: invalid", "timestamp: required"],
    }


QUOTED_BODY = json.dumps(
    {"customer": {"customerId": "cust-9", "name": "Maria Lindqvist", "extra": {"x": "Zoë Ñúñez"}}}
).encode()


@pytest.mark.parametrize("status", [400, 401, 422, 429, 503])
def test_error_line_masks_the_values_an_answer_quotes(status: int) -> None:
    """The error line (logs, last_error, history, stats) masks the body's quoted values and
    personal patterns; the traceId survives and ``response`` keeps the answer as it came."""
    quoted = {
        "message": "customer cust-9 'MARIA LINDQVIST' <m.l@example.com> is not valid",
        "traceId": TRACE,
        "validationErrors": [
            {"field": "customer.extra.x", "message": "Zo\u00eb \u00d1\u00fa\u00f1ez?"}
        ],
    }
    outcome = classify(answer(status, json.dumps(quoted).encode()), RETRY, QUOTED_BODY)
    assert outcome.error is not None
    assert outcome.error.endswith(
        f": customer *** '***' <m***@e***.com> is not valid (traceId {TRACE})"
    )
    assert outcome.response == quoted


def test_error_line_without_a_message_masks_the_validation_errors() -> None:
    """With no message, the validation errors that make the error line are masked too."""
    body = json.dumps({"validationErrors": ["name 'Maria Lindqvist' too long"]}).encode()
    outcome = classify(answer(400, body), RETRY, QUOTED_BODY)
    assert outcome.error == "400 Bad Request: name '***' too long"


def test_pause_keeps_ravelins_message() -> None:
    """A wrong key's answer is kept so the loud log line says what Ravelin said."""
    body = b'{"status": 403, "message": "Invalid Request: API Key Incorrect."}'
    outcome = classify(answer(403, body), RETRY)
    assert outcome.error == "403 Forbidden: Invalid Request: API Key Incorrect."


def test_unexpected_status_says_so() -> None:
    """A status Ravelin never gives (1xx, past 599) is retried with an error naming it unexpected."""
    assert classify(answer(103), RETRY).error == "unexpected 103 Early Hints"
    assert classify(answer(600), RETRY).error == "unexpected HTTP 600"


@pytest.mark.parametrize("status", [300, 301, 302, 303, 307, 308])
def test_redirects_are_a_configuration_fault_naming_the_host(status: int) -> None:
    """A 3xx pauses delivery like a wrong URL, naming only where it pointed."""
    outcome = classify(answer(status, redirect_host="elsewhere.example"), RETRY)
    assert outcome.verdict is Verdict.PAUSE
    assert (
        outcome.error
        == f"{status} redirect to elsewhere.example not followed: check OUTBOX_ENDPOINT_URL"
    )
    assert outcome.response is None


def test_error_never_echoes_a_non_json_body() -> None:
    """A body that is not Ravelin's JSON (it may echo the payload) stays out of the error line."""
    outcome = classify(answer(502, b"<html>alice@example.com +447700900123</html>"), RETRY)
    assert outcome.error == "502 Bad Gateway"
    assert outcome.response is None


def test_huge_message_is_truncated_but_the_trace_id_survives() -> None:
    """The error line stays under ERROR_MAX_CHARS and still ends with the traceId."""
    body = json.dumps({"message": "x" * 10_000, "traceId": TRACE}).encode()
    outcome = classify(answer(422, body), RETRY)
    assert outcome.error is not None
    assert len(outcome.error) <= ERROR_MAX_CHARS
    assert outcome.error.startswith("422 Unprocessable Entity: xxx")
    assert outcome.error.endswith(f"… (traceId {TRACE})")
    assert outcome.response is not None
    assert len(outcome.response["message"]) <= 2000


def test_2xx_warnings_are_kept_by_class() -> None:
    """data.warnings[] classes on a 2xx are kept for logging and counting; still acknowledged."""
    body = b'{"status":200,"data":{"warnings":[{"class":"customer-not-found","msg":"m"}]}}'
    outcome = classify(answer(200, body), RETRY)
    assert outcome.verdict is Verdict.ACKNOWLEDGE
    assert outcome.response == {"warnings": ["customer-not-found"]}


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
    ("attempts_before", "age", "give_up"),
    [
        (0, timedelta(0), False),
        (23, timedelta(hours=1), False),
        (24, timedelta(hours=1), True),
        (29, timedelta(hours=1), True),
        (2, timedelta(hours=23, minutes=59), False),
        (2, timedelta(hours=24), True),
        (2, timedelta(days=3), True),
    ],
)
def test_a_retry_gives_up_at_max_attempts_or_max_age(
    attempts_before: int, age: timedelta, give_up: bool
) -> None:
    """A retry is dead-lettered on its 25th attempt (max_attempts) or at 24 h old (max_age)."""
    outcome = classify(answer(503), RETRY)
    s = settlement(
        message(attempts=attempts_before), outcome, latency_s=0.1, age=age, retry=RETRY,
        rng=lambda: 1.0,
    )  # fmt: skip
    assert (s.state is State.DEAD) is give_up


# --- settle --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "state"), [(200, State.ACKNOWLEDGED), (429, State.ACKNOWLEDGED), (400, State.DEAD)]
)
def test_settle_final_verdicts(status: int, state: State) -> None:
    """Acknowledged and dead-lettered answers end the message and spend the attempt."""
    msg = message(attempts=2)
    outcome = classify(answer(status, RAVELIN_400 if status == 400 else b""), RETRY)
    s = settlement(msg, outcome, latency_s=0.2, age=msg.age, retry=RETRY, rng=lambda: 1.0)
    assert (s.message_id, s.lease_token) == (msg.id, msg.lease_token)
    assert (s.state, s.attempt_spent, s.delay) == (state, True, None)
    assert (s.status, s.error, s.response, s.latency_s) == (
        status,
        outcome.error,
        outcome.response,
        0.2,
    )


def test_settle_pause_spends_no_attempt() -> None:
    """A paused message goes back to pending at once, its attempts unchanged."""
    s = settlement(
        message(attempts=24),
        classify(answer(401), RETRY),
        latency_s=0.1,
        age=timedelta(minutes=1),
        retry=RETRY,
        rng=lambda: 1.0,
    )
    assert (s.state, s.attempt_spent, s.delay) == (State.PENDING, False, timedelta(0))


def test_settle_retry_the_circuit_took_the_blame_for_spends_no_attempt() -> None:
    """A transient failure during an outage goes back to pending at once, never dead-lettered."""
    s = settlement(
        message(attempts=24, age=timedelta(days=3)),
        classify(answer(503), RETRY),
        latency_s=0.1,
        age=timedelta(days=3),
        retry=RETRY,
        rng=lambda: 1.0,
        spend=False,
    )
    assert (s.state, s.attempt_spent, s.delay) == (State.PENDING, False, timedelta(0))
    assert s.error == "503 Service Unavailable"


def test_settle_retry_schedules_the_next_attempt() -> None:
    """A retried message goes back to pending after the backoff for its attempt count."""
    s = settlement(
        message(attempts=2),
        classify(answer(503), RETRY),
        latency_s=0.1,
        age=timedelta(minutes=1),
        retry=RETRY,
        rng=lambda: 1.0,
    )
    assert (s.state, s.attempt_spent) == (State.PENDING, True)
    assert s.delay == timedelta(seconds=4)  # third attempt spent: ceiling 4 s


def test_settle_retry_honours_a_5xx_retry_after() -> None:
    """A 503's Retry-After holds the message back at least that long."""
    outcome = classify(answer(503, retry_after=timedelta(seconds=90)), RETRY)
    s = settlement(
        message(), outcome, latency_s=0.1, age=timedelta(0), retry=RETRY, rng=lambda: 1.0
    )
    assert s.delay == timedelta(seconds=90)


def test_settle_retry_after_shorter_than_the_backoff_changes_nothing() -> None:
    """A Retry-After shorter than the backoff leaves the backoff in force."""
    outcome = classify(answer(503, retry_after=timedelta(seconds=1)), RETRY)
    s = settlement(message(attempts=2), outcome, latency_s=0.1, age=timedelta(0), retry=RETRY,
               rng=lambda: 1.0)  # fmt: skip
    assert s.delay == timedelta(seconds=4)


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
    s = settlement(
        message(attempts=attempts, age=age),
        outcome,
        latency_s=0.1,
        age=age,
        retry=RETRY,
        rng=lambda: 1.0,
    )
    assert (s.state, s.attempt_spent, s.delay) == (State.DEAD, True, None)
    assert s.error is not None
    assert s.error.startswith(error)
    assert s.response == {"traceId": "t-1"}  # what the endpoint said, and only that


def test_settle_gives_up_on_a_transport_failure_too() -> None:
    """Timeouts count towards max_attempts like 5xx answers."""
    outcome = classify(answer(None, error="timeout"), RETRY)
    s = settlement(message(attempts=24), outcome, latency_s=10.0, age=timedelta(0), retry=RETRY,
               rng=lambda: 0)  # fmt: skip
    assert (s.state, s.error) == (State.DEAD, "gave up after 25 attempts: timeout")


# --- Poison answers: whatever the endpoint sends, what is kept can be stored ----------------


def _storable_everywhere(value: Any) -> bool:
    """True if ``value``'s JSON text holds no NUL, no lone surrogate and no NaN/Infinity."""
    text = json.dumps(value, allow_nan=False)  # raises on NaN/Infinity
    text.encode("utf-8")  # raises on a lone surrogate
    return "\\u0000" not in text and "\x00" not in text and "\\ud8" not in text


POISON_BODIES = [
    (200, b'{"status":200,"data":{"warnings":[{"class":"x\\u0000y"}]}}'),
    (200, b'{"data":{"warnings":[{"class":"\\ud800"}]}}'),
    (400, b'{"message":"bad \\u0000","traceId":"t\\ud800","validationErrors":["\\ud800"]}'),
    (400, b'{"validationErrors":[{"field":"\\u0000","v":NaN,"w":Infinity,"k\\ud800":1}]}'),
    (422, b'{"validationErrors":[{"deep":' + b"[" * 50 + b"]" * 50 + b"}]}"),
    (400, b'{"validationErrors":[{"n":' + b"9" * 30 + b"}]}"),
    (503, b'{"message":"' + b"\\u0000" * 10_000 + b'"}'),
]


@pytest.mark.parametrize(("status", "body"), POISON_BODIES)
def test_poison_answer_bodies_give_storable_rows(status: int, body: bytes) -> None:
    """NUL, lone surrogates, NaN, deep nesting and huge numbers never reach a row unescaped."""
    outcome = classify(answer(status, body), RETRY)
    assert outcome.error is None or outcome.error.isprintable()
    assert _storable_everywhere(outcome.response)


def test_unsendable_row_is_dead_unsent_with_the_reason() -> None:
    """A stored row another service wrote that cannot be sent is dead-lettered, no attempt spent."""
    msg = Message(
        id=MessageId(3),
        body=b"",
        attempts=2147483647,
        age=timedelta(0),
        lease_token=LeaseToken(uuid4()),
        unsendable="the stored payload is a JSON string, not an object",
    )
    s = unsendable(msg)
    assert (s.state, s.attempt_spent, s.status) == (State.DEAD, False, None)
    assert s.error == "not sent: the stored payload is a JSON string, not an object"


def test_internal_failure_spends_an_attempt_and_names_only_the_type() -> None:
    """Our own failure with one message is retried later; its text never quotes the exception."""
    exc = UnicodeEncodeError("utf-8", "alice@example.com\ud800", 17, 18, "surrogates")
    s = internal_failure(message(attempts=1), exc, age=timedelta(0), latency_s=0.1, retry=RETRY,
                         rng=lambda: 1.0)  # fmt: skip
    assert (s.state, s.attempt_spent, s.delay) == (State.PENDING, True, timedelta(seconds=2))
    assert s.error == "internal error while delivering: UnicodeEncodeError"
