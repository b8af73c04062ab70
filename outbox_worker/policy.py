"""Pure delivery decisions: what an answer means, when to try again, when to stop sending.

No I/O, no asyncio, and no reading of the wall clock or of a global random generator: callers pass
``now`` (an aware datetime), ``clock`` (monotonic seconds, e.g. ``time.monotonic``) and ``rng``
(uniform in [0, 1), e.g. ``random.Random().random``), so every decision is a function of its
inputs and the tests run instantly.

    classify(answer, retry) -> Outcome           the "Answer policy" table of DESIGN.md
    settle(message, outcome, ...) -> Settlement  the row write: acknowledged, later, or dead
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Any

from outbox_worker.config import RetrySettings
from outbox_worker.models import Answer, Message, Outcome, Settlement, State, Verdict

Rng = Callable[[], float]  # uniform in [0, 1)

ERROR_MAX_CHARS = 300  # Outcome.error / last_error: one line, at most this long
# The configuration is at fault: wrong or disabled key (401, 403), wrong URL (404), method (405)
# or Accept header (406). Every message would fail the same way, so none of them is to blame.
PAUSE_STATUSES = frozenset({401, 403, 404, 405, 406})

_DETAIL_MAX_CHARS = 2000  # Ravelin's message as kept in details
_VALIDATION_ERRORS_MAX = 50
_BODY_MAX_BYTES = 1 << 20  # bodies larger than this are not parsed
_RETRY_AFTER_MAX_S = timedelta.max.days * 86400  # absurd Retry-After values stop here
_PHRASES = {s.value: s.phrase for s in HTTPStatus}


# --- The answer policy ---------------------------------------------------------------------


def classify(answer: Answer, retry: RetrySettings) -> Outcome:
    """Decide what one answer means for its message (DESIGN.md, "Answer policy")."""
    status = answer.status
    if status is None:
        reason = _one_line(answer.error or "no HTTP answer")
        return Outcome(Verdict.RETRY, None, error=_truncate(reason, ERROR_MAX_CHARS))
    if 200 <= status < 300:
        return Outcome(Verdict.ACKNOWLEDGE, status, details=_warnings(answer.body))
    details = ravelin_error_details(answer.body)
    error = _summary(status, details)
    if status == 429:
        # Ravelin keeps rate-limited data on an internal queue and processes it when demand
        # drops; it advises against resending, which would only extend the rate limiting. So the
        # message is done (recorded as 429) and the whole sender slows down instead.
        slow_down = _clamp(answer.retry_after, retry)
        if slow_down is None:
            slow_down = retry.rate_limited_pause
        verdict = Verdict.RETRY if retry.retry_on_429 else Verdict.ACKNOWLEDGE
        return Outcome(verdict, status, error=error, details=details, slow_down=slow_down)
    if status in PAUSE_STATUSES:
        return Outcome(Verdict.PAUSE, status, error=error, details=details)
    if 400 <= status < 500:
        return Outcome(Verdict.DEAD_LETTER, status, error=error, details=details)
    if 500 <= status < 600:
        # A Retry-After on a 5xx (503 maintenance) is a floor for this message's next attempt,
        # kept as details["retry_after_s"]; only a 429 slows the whole sender down.
        floor = _clamp(answer.retry_after, retry)
        if floor is not None:
            details["retry_after_s"] = floor.total_seconds()
        return Outcome(Verdict.RETRY, status, error=error, details=details)
    # 1xx/3xx are not answers Ravelin gives; treat them as transient rather than lose the message.
    return Outcome(
        Verdict.RETRY, status, error=f"unexpected {error}"[:ERROR_MAX_CHARS], details=details
    )


def parse_retry_after(value: str | None, now: datetime) -> timedelta | None:
    """Parse a Retry-After header (delta-seconds or HTTP-date); None when absent or unusable.

    A date in the past (often clock skew) is unusable, so None; "0" is a valid zero delay.
    """
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        # Absurdly long numbers never reach int(), which refuses more than 4,300 digits.
        seconds = int(text) if len(text) <= 15 else _RETRY_AFTER_MAX_S
        return timedelta(seconds=min(seconds, _RETRY_AFTER_MAX_S))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    delay = when - now
    return delay if delay > timedelta(0) else None


def ravelin_error_details(body: bytes) -> dict[str, Any]:
    """Ravelin's ``message``, ``traceId`` and ``validationErrors`` from an error body; never raises.

    Empty, ``null``, non-JSON and non-object bodies give ``{}``; unknown fields are ignored.
    Ravelin's Ruby client also reads ``Error`` for the message, so it is the fallback.
    """
    parsed = _json_object(body)
    if parsed is None:
        return {}
    details: dict[str, Any] = {}
    message = parsed.get("message") or parsed.get("Error")
    if message is not None and not isinstance(message, dict | list):
        details["message"] = _truncate(_one_line(str(message)), _DETAIL_MAX_CHARS)
    trace_id = parsed.get("traceId")
    if isinstance(trace_id, str | int) and str(trace_id):
        details["traceId"] = _truncate(_one_line(str(trace_id)), 100)
    errors = parsed.get("validationErrors")
    if isinstance(errors, str):
        errors = [errors]
    if isinstance(errors, list) and errors:
        details["validationErrors"] = [_small(item) for item in errors[:_VALIDATION_ERRORS_MAX]]
    return details


def _json_object(body: bytes) -> dict[str, Any] | None:
    if not body or len(body) > _BODY_MAX_BYTES:
        return None
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):  # bad JSON or bad UTF-8; absurd nesting
        return None
    return parsed if isinstance(parsed, dict) else None


def _warnings(body: bytes) -> dict[str, Any]:
    """``{"warnings": [class, ...]}`` from a 2xx body's ``data.warnings[]``, to log and count."""
    if b"warnings" not in body:  # the common 2xx body costs one substring scan
        return {}
    data = (_json_object(body) or {}).get("data")
    items = data.get("warnings") if isinstance(data, dict) else None
    if not isinstance(items, list):
        return {}
    classes = [str(i["class"]) for i in items if isinstance(i, dict) and i.get("class")]
    return {"warnings": classes} if classes else {}


def _summary(status: int, details: dict[str, Any]) -> str:
    """One line like ``400 Bad Request: <message> (traceId ...)``; the traceId always survives."""
    phrase = _PHRASES.get(status)
    head = f"{status} {phrase}" if phrase else f"HTTP {status}"
    tail = f" (traceId {details['traceId']})" if "traceId" in details else ""
    message = details.get("message") or "; ".join(map(str, details.get("validationErrors", [])[:3]))
    if not message:
        return _truncate(head + tail, ERROR_MAX_CHARS)
    room = ERROR_MAX_CHARS - len(head) - len(tail) - 2
    return f"{head}: {_truncate(_one_line(message), max(room, 20))}{tail}"[:ERROR_MAX_CHARS]


def _clamp(value: timedelta | None, retry: RetrySettings) -> timedelta | None:
    if value is None:
        return None
    return max(timedelta(0), min(value, retry.retry_after_max))


def _small(item: Any) -> Any:
    if isinstance(item, str):
        return _truncate(_one_line(item), ERROR_MAX_CHARS)
    text = json.dumps(item)
    return item if len(text) <= 2 * ERROR_MAX_CHARS else _truncate(text, 2 * ERROR_MAX_CHARS)


def _one_line(text: str) -> str:
    if not text.isprintable():
        text = "".join(c if c.isprintable() else " " for c in text)
    return " ".join(text.split())


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- Retry schedule and giving up ------------------------------------------------------------


def backoff_delay(attempt: int, retry: RetrySettings, rng: Rng) -> timedelta:
    """Delay before the next try after ``attempt`` spent attempts: exponential, full jitter.

    ``attempt`` counts every attempt spent, including the one that just failed (1 after the
    first failure; below 1 counts as 1). ``ceiling = min(backoff_cap, backoff_base *
    2 ** (attempt - 1))`` and the delay is ``rng() * ceiling``, uniform in [0, ceiling): full
    jitter spreads the retries of a failed batch instead of sending them back together.
    With the defaults (base 1 s, cap 10 min) the ceilings are:

        attempt   1   2   3   4   5    6    7    8     9     10    11 and later
        ceiling   1s  2s  4s  8s  16s  32s  64s  128s  256s  512s  600s

    So the first retry comes within a second, then the wait doubles until the 10-minute cap.
    With max_attempts 25, a message that always fails waits at most 9,423 s (about 2.6 h;
    half that on average) in total before it is dead-lettered, unless max_age comes first.
    """
    exponent = min(max(attempt, 1) - 1, 64)
    ceiling = min(
        retry.backoff_cap.total_seconds(), retry.backoff_base.total_seconds() * 2.0**exponent
    )
    return timedelta(seconds=min(max(rng(), 0.0), 1.0) * ceiling)


def next_attempt_at(
    attempts: int,
    now: datetime,
    retry: RetrySettings,
    rng: Rng,
    *,
    at_least: timedelta | None = None,
) -> datetime:
    """When to try again after ``attempts`` spent attempts, no sooner than ``at_least``."""
    delay = backoff_delay(attempts, retry, rng)
    if at_least is not None and at_least > delay:
        delay = at_least
    return now + delay


def should_give_up(
    attempts: int, created_at: datetime, now: datetime, retry: RetrySettings
) -> bool:
    """True once ``attempts`` reaches max_attempts or the message is older than max_age."""
    return _give_up_reason(attempts, created_at, now, retry) is not None


def _give_up_reason(
    attempts: int, created_at: datetime, now: datetime, retry: RetrySettings
) -> str | None:
    if attempts >= retry.max_attempts:
        return "max_attempts"
    if now - created_at >= retry.max_age:
        return "max_age"
    return None


def settle(
    message: Message,
    outcome: Outcome,
    *,
    latency_s: float,
    now: datetime,
    retry: RetrySettings,
    rng: Rng,
) -> Settlement:
    """The row write for one answered attempt: a RETRY becomes DEAD once giving up applies.

    ACKNOWLEDGE -> acknowledged; DEAD_LETTER -> dead; PAUSE -> pending again at ``now`` with no
    attempt spent (the circuit breaker, not the row, decides when sending resumes); RETRY ->
    pending at ``next_attempt_at`` (``details["retry_after_s"]`` as its floor), or dead with
    ``details["gave_up"]`` = "max_attempts" or "max_age".
    """
    verdict = outcome.verdict
    error, details = outcome.error, outcome.details
    spent, available_at = True, None
    if verdict is Verdict.ACKNOWLEDGE:
        state = State.ACKNOWLEDGED
    elif verdict is Verdict.DEAD_LETTER:
        state = State.DEAD
    elif verdict is Verdict.PAUSE:
        state, spent, available_at = State.PENDING, False, now
    else:
        attempts = message.attempts + 1
        reason = _give_up_reason(attempts, message.created_at, now, retry)
        if reason is None:
            state = State.PENDING
            floor = details.get("retry_after_s")
            at_least = timedelta(seconds=floor) if floor is not None else None
            available_at = next_attempt_at(attempts, now, retry, rng, at_least=at_least)
        else:
            state = State.DEAD
            if reason == "max_attempts":
                why = f"after {attempts} attempts"
            else:
                why = f"at max age {_age(retry.max_age)}"
            error = _truncate(f"gave up {why}: {error or 'no error'}", ERROR_MAX_CHARS)
            details = {**details, "gave_up": reason}
    return Settlement(
        message_id=message.id,
        lease_token=message.lease_token,
        state=state,
        attempt_spent=spent,
        available_at=available_at,
        status=outcome.status,
        error=error,
        latency_s=latency_s,
        details=details,
    )


def _age(value: timedelta) -> str:
    seconds = value.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"
