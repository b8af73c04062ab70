"""Pure delivery decisions: what an answer means, when to try again, when to stop sending.

No I/O, no asyncio, and no reading of a clock or of a global random generator: callers pass ages
(measured on the database's clock) and ``rng`` (uniform in [0, 1), e.g.
``random.Random().random``), so every decision is a function of its inputs and the tests run
instantly; what the endpoint said is made safe in ``answers`` first. Due times are never computed
here: a settlement carries a delay, and the database adds it to its own ``now()``, so a worker
host's clock changes nothing.

    classify(answer, retry, sent) -> Outcome     the "Answer policy" table of DESIGN.md
    plain_acknowledgement(message, answer)       the common answer's write, or None: a shortcut
    settlement(message, outcome, ...) -> Settlement  the row write: acknowledged, later, or dead
    unsendable(message) -> Settlement            a stored row that cannot be sent: dead, unsent
    internal_failure(message, exc, ...)          our own failure with one message: a spent attempt
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from outbox_worker.delivery.answers import (
    ERROR_MAX_CHARS,
    one_line,
    ravelin_error_details,
    summary,
    truncate,
    warnings,
)
from outbox_worker.models import Answer, Message, Outcome, Settlement, State, Verdict
from outbox_worker.settings.config import RetrySettings

Rng = Callable[[], float]  # uniform in [0, 1)

# The configuration is at fault: wrong or disabled key (401, 403), wrong URL (404), method (405)
# or Accept header (406). Every message would fail the same way, so none of them is to blame.
PAUSE_STATUSES = frozenset({401, 403, 404, 405, 406})


# --- The answer policy ---------------------------------------------------------------------


def classify(answer: Answer, retry: RetrySettings, sent: bytes = b"") -> Outcome:
    """Decide what one answer means for its message (DESIGN.md, "Answer policy").

    ``sent`` is the body the answer is about: its values are masked wherever the answer's text
    quotes them, in the error line (``last_error``, the history, logs); ``response`` keeps the
    text as it came, for ``dead show --show-pii``.
    """
    status = answer.status
    if status is None:
        reason = one_line(answer.error or "no HTTP answer")
        return Outcome(Verdict.RETRY, None, error=truncate(reason, ERROR_MAX_CHARS), transient=True)
    if 200 <= status < 300:
        return Outcome(Verdict.ACKNOWLEDGE, status, response=warnings(answer.body))
    if 300 <= status < 400:
        # Following a redirect would send the body, personal data included, to another origin
        # (307/308) or turn the POST into a GET and lose the update (301/302/303). The URL is
        # wrong or moved: a configuration fault, like a 404.
        where = f" to {answer.redirect_host}" if answer.redirect_host else ""
        error = f"{status} redirect{where} not followed: check OUTBOX_ENDPOINT_URL"
        return Outcome(Verdict.PAUSE, status, error=truncate(one_line(error), ERROR_MAX_CHARS))
    response = ravelin_error_details(answer.body)
    error = summary(status, response, sent)
    stored = response or None
    if status == 429:
        # Ravelin keeps rate-limited data on an internal queue and processes it when demand
        # drops; it advises against resending, which would only extend the rate limiting. So the
        # message is done (recorded as 429) and the whole sender slows down instead.
        slow_down = _clamp(answer.retry_after, retry)
        if slow_down is None:
            slow_down = retry.rate_limited_pause
        verdict = Verdict.RETRY if retry.retry_on_429 else Verdict.ACKNOWLEDGE
        return Outcome(verdict, status, error=error, response=stored, slow_down=slow_down)
    if status in PAUSE_STATUSES:
        return Outcome(Verdict.PAUSE, status, error=error, response=stored)
    if 400 <= status < 500:
        return Outcome(Verdict.DEAD_LETTER, status, error=error, response=stored)
    if 500 <= status < 600:
        # A Retry-After on a 5xx (503 maintenance) is a floor for this message's next attempt;
        # only a 429 slows the whole sender down.
        floor = _clamp(answer.retry_after, retry)
        return Outcome(
            Verdict.RETRY, status, error=error, response=stored, retry_floor=floor, transient=True
        )
    # 1xx and statuses past 599 are not answers Ravelin gives (a proxy's, perhaps): transient
    # rather than lose the message.
    return Outcome(
        Verdict.RETRY,
        status,
        error=f"unexpected {error}"[:ERROR_MAX_CHARS],
        response=stored,
        transient=True,
    )


def plain_acknowledgement(message: Message, answer: Answer) -> Settlement | None:
    """The row write for a plain 2xx (no warnings to keep), or None for any other answer.

    A shortcut for the common answer: the same write as ``settlement(message, classify(answer,
    retry), ...)`` gives it, without building the Outcome (an acknowledgement needs no age, no
    backoff and no retry settings).
    """
    status = answer.status
    if status is None or not 200 <= status < 300 or b"warnings" in answer.body:
        return None
    return Settlement(
        message.id, message.lease_token, State.ACKNOWLEDGED, True, None, status, None,
        answer.latency_s,
    )  # fmt: skip


def _clamp(value: timedelta | None, retry: RetrySettings) -> timedelta | None:
    if value is None:
        return None
    return max(timedelta(0), min(value, retry.retry_after_max))


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


def _give_up_reason(attempts: int, age: timedelta, retry: RetrySettings) -> str | None:
    if attempts >= retry.max_attempts:
        return "max_attempts"
    if age >= retry.max_age:
        return "max_age"
    return None


def settlement(
    message: Message,
    outcome: Outcome,
    *,
    latency_s: float,
    age: timedelta,
    retry: RetrySettings,
    rng: Rng,
    spend: bool = True,
) -> Settlement:
    """The row write for one answered attempt: a RETRY becomes DEAD once giving up applies.

    ACKNOWLEDGE -> acknowledged; DEAD_LETTER -> dead; PAUSE -> pending again at once with no
    attempt spent (the circuit breaker, not the row, decides when sending resumes); RETRY ->
    pending after ``backoff_delay`` (``outcome.retry_floor`` as its floor), or dead once
    ``max_attempts`` or ``max_age`` is reached. ``age`` is the message's age now, on the
    database's clock. ``spend=False`` (an outage the circuit breaker took the blame for) turns a
    RETRY into a pause: pending again at once, no attempt spent, never dead-lettered.
    """
    verdict = outcome.verdict
    error = outcome.error
    spent, delay = True, None
    if verdict is Verdict.ACKNOWLEDGE:
        state = State.ACKNOWLEDGED
    elif verdict is Verdict.DEAD_LETTER:
        state = State.DEAD
    elif verdict is Verdict.PAUSE or not spend:
        state, spent, delay = State.PENDING, False, timedelta(0)
    else:
        attempts = message.attempts + 1
        reason = _give_up_reason(attempts, age, retry)
        if reason is None:
            state = State.PENDING
            delay = backoff_delay(attempts, retry, rng)
            if outcome.retry_floor is not None and outcome.retry_floor > delay:
                delay = outcome.retry_floor
        else:
            state = State.DEAD
            if reason == "max_attempts":
                why = f"after {attempts} attempts"
            else:
                why = f"at max age {_age(retry.max_age)}"
            error = truncate(f"gave up {why}: {error or 'no error'}", ERROR_MAX_CHARS)
    return Settlement(
        message_id=message.id,
        lease_token=message.lease_token,
        state=state,
        attempt_spent=spent,
        delay=delay,
        status=outcome.status,
        error=error,
        latency_s=latency_s,
        response=outcome.response,
    )


def unsendable(message: Message) -> Settlement:
    """Dead-letter a stored row that cannot be sent (``message.unsendable`` says why), unsent."""
    reason = message.unsendable or "the stored row cannot be sent"
    return Settlement(
        message_id=message.id,
        lease_token=message.lease_token,
        state=State.DEAD,
        attempt_spent=False,
        delay=None,
        status=None,
        error=truncate(one_line(f"not sent: {reason}"), ERROR_MAX_CHARS),
        latency_s=0.0,
    )


def internal_failure(
    message: Message,
    exc: BaseException,
    *,
    age: timedelta,
    latency_s: float,
    retry: RetrySettings,
    rng: Rng,
) -> Settlement:
    """Our own failure while handling one message: an attempt spent, retried, dead at the limit.

    The error text names the exception's type only: its message might quote the payload.
    """
    error = f"internal error while delivering: {type(exc).__name__}"
    outcome = Outcome(Verdict.RETRY, None, error=error)
    return settlement(message, outcome, latency_s=latency_s, age=age, retry=retry, rng=rng)


def _age(value: timedelta) -> str:
    seconds = value.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"
