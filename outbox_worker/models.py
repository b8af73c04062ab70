"""Domain values shared by the worker, the policy and the store. No I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final, NewType
from uuid import UUID

MessageId = NewType("MessageId", int)
LeaseToken = NewType("LeaseToken", UUID)


class State(StrEnum):
    """Where a message is in its lifecycle (the ``state`` column)."""

    # enqueue() puts rows here; the worker claims them (a lease, state unchanged) and either
    # settles them out or puts them back with a later available_at; requeue brings dead rows back.
    PENDING = "pending"
    # The worker moves rows here on 2xx (and on 429 unless 429 is set to retry). Final; purge
    # deletes old ones.
    ACKNOWLEDGED = "acknowledged"
    # The worker moves rows here on a message-at-fault answer or when retries run out; only
    # requeue (back to pending) or purge --include-dead move them again. Retention deletes them
    # after OUTBOX_RETAIN_DEAD, as it deletes acknowledged rows after OUTBOX_RETAIN_ACKNOWLEDGED.
    DEAD = "dead"


class Verdict(StrEnum):
    """What the answer policy decided for one delivery attempt."""

    ACKNOWLEDGE = "acknowledge"  # done: never send again
    RETRY = "retry"  # transient: send again after a backoff
    DEAD_LETTER = "dead_letter"  # the message is at fault: stop, keep it for an operator
    PAUSE = "pause"  # the configuration is at fault: open the circuit, spend no attempt


@dataclass(frozen=True, slots=True)
class Message:
    """One claimed outbox row, as the worker needs it to send."""

    id: MessageId
    body: bytes  # the stored payload text, sent unchanged
    attempts: int  # attempts spent before this claim
    # The message's age on the database's clock when it was claimed (from enqueue, or from the
    # last requeue): max_age is judged on it, never on the worker host's clock.
    age: timedelta
    lease_token: LeaseToken  # the claim's token; the lease's end is kept by the worker's clock
    # Why a stored row cannot be sent at all (another service wrote it: not a JSON object, or past
    # the size limit); its body is then empty and the worker dead-letters it without sending.
    unsendable: str | None = None
    # The producer's W3C trace context at enqueue (revision 0009), as stored: text another
    # service wrote, parsed (or ignored) only by a tracer that wants it.
    traceparent: str | None = None
    tracestate: str | None = None


@dataclass(frozen=True, slots=True)
class Answer:
    """What came back for one POST: an HTTP answer, or a transport failure (status None)."""

    status: int | None
    latency_s: float
    body: bytes = b""
    retry_after: timedelta | None = None  # parsed Retry-After, if the answer carried one
    error: str | None = None  # transport failure reason when status is None
    redirect_host: str | None = None  # a 3xx's Location host (never followed), if it had one


# What the endpoint said in an answer, as stored in last_response: Ravelin's message, traceId and
# validationErrors, or a 2xx's warning classes. Always storable (no NUL, no lone surrogate).
Response = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Outcome:
    """The policy's decision for one answer, with what to record on the row."""

    verdict: Verdict
    status: int | None
    error: str | None = None  # one line for last_error / dead list
    response: Response | None = None  # what the endpoint said, for last_response
    slow_down: timedelta | None = None  # global pause asked for (429 / Retry-After)
    retry_floor: timedelta | None = None  # this message's next try no sooner (5xx Retry-After)
    # The answer says the endpoint may be down (5xx, timeout, connection failure): many in a row
    # across different messages pause delivery instead of spending attempts.
    transient: bool = False


@dataclass(frozen=True, slots=True)
class Settlement:
    """The row write for one finished attempt: what the store applies under the lease."""

    message_id: MessageId
    lease_token: LeaseToken
    state: State
    attempt_spent: bool  # False when a pause (circuit) takes the blame: attempts stay as they were
    # Next try, from the database's now() when the row is written; None for final states.
    delay: timedelta | None
    status: int | None
    error: str | None
    latency_s: float
    response: Response | None = None


@dataclass(frozen=True, slots=True)
class Stats:
    """Counts and ages an operator sees in `outbox-worker stats`."""

    pending: int
    claimed: int
    acknowledged: int
    dead: int
    oldest_pending_age_s: float | None
    dead_last_hour: int
    dead_last_day: int
    delivered_last_minute: int
    delivered_last_hour: int
    top_dead_reasons: list[tuple[str, int]]


@dataclass(frozen=True, slots=True)
class Backlog:
    """One sample of the queue, as every worker exports it (the database's clock)."""

    due: int  # pending and due now: work nobody has claimed yet
    not_due: int  # pending but later: a retry's backoff, or claimed under a lease
    oldest_pending_s: float  # age of the oldest pending message; 0 when none is pending
    dead: int  # dead letters waiting for an operator


# The workers registry's clock. A worker refreshes its row at least every REGISTRY_HEARTBEAT; one
# not seen for REGISTRY_GONE_AFTER (six missed beats: a long GC pause or a slow database does not
# make a worker look dead) is shown as gone; after REGISTRY_FORGET_AFTER its row is deleted by the
# other workers, so a crashed worker stays visible long enough to be noticed, and a fleet that
# churns pods does not list them forever.
REGISTRY_HEARTBEAT: Final = timedelta(seconds=5)
REGISTRY_GONE_AFTER: Final = timedelta(seconds=30)
REGISTRY_FORGET_AFTER: Final = timedelta(hours=1)


class WorkerState(StrEnum):
    """What a worker reports in the registry (``outbox.workers.state``), plus GONE: not seen."""

    STARTING = "starting"  # registered; probing the endpoint with one message before full speed
    DELIVERING = "delivering"
    PAUSED = "paused"  # sends nothing new: see PausedBy
    STOPPING = "stopping"  # told to stop: finishing what is in flight
    STOPPED = "stopped"  # stopped cleanly; the row stays until workers forget it
    # Not a state a worker writes: its row was not refreshed for a while (crashed, killed,
    # frozen, cut off from the database). Shown by the readers only.
    GONE = "gone"


class PausedBy(StrEnum):
    """Why a worker sends nothing new (``outbox.workers.paused_by``)."""

    CONFIGURATION = "configuration"  # the circuit: the endpoint refuses the key, URL or method
    OUTAGE = "outage"  # the circuit: the endpoint is down, probed now and then
    OPERATOR = "operator"  # `outbox-worker pause` (or the console) paused the whole fleet


@dataclass(frozen=True, slots=True)
class PauseState:
    """The fleet's pause: on or off, and who changed it last, when and (when on) why."""

    paused: bool
    reason: str | None = None  # while paused
    paused_at: datetime | None = None  # while paused: when this pause began
    changed_at: datetime | None = None  # the last pause or resume; None if never paused
    db_role: str | None = None  # the database login that changed it last
    via: str | None = None  # cli or console
    actor: str | None = None  # the OS user or the console's signed-in user


@dataclass(frozen=True, slots=True)
class WorkerBeat:
    """What a worker writes to the registry at each heartbeat."""

    worker_id: UUID
    host: str
    pid: int
    version: str
    state: WorkerState
    paused_by: PausedBy | None
    listening: bool  # NOTIFY reaches it (a pause within a second, not a poll interval)
    sends_last_minute: int
    in_flight: int
