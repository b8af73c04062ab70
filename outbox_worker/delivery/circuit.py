"""How much may be sent right now: the circuit breaker and the rate gate. Pure, clock injected.

The circuit breaker stops all sending while the configuration is at fault (401/403/404/405/406,
a redirect) or the endpoint is down (transient failures across many messages), and probes with
one request at growing intervals; the rate gate holds sends during a 429 slow-down; the send
slots spend the process's share of the fleet-wide rate limit. None does I/O or reads a clock
of its own.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from outbox_worker.models import Verdict
from outbox_worker.settings.config import CircuitSettings

Clock = Callable[[], float]  # monotonic seconds


# --- Circuit breaker -------------------------------------------------------------------------


class CircuitState(StrEnum):
    """How much sending the circuit breaker allows right now."""

    CLOSED = "closed"  # endpoint and configuration known good: full concurrency
    OPEN = "open"  # paused: no sends until the probe time
    PROBING = "probing"  # testing: exactly one send in flight


class PauseReason(StrEnum):
    """Why the circuit is not closed."""

    STARTING = "starting"  # nothing is known yet: the first send is a probe
    CONFIGURATION = "configuration"  # 401/403/404/405/406 or a redirect: key, URL or method
    OUTAGE = "outage"  # many sends in a row failed transiently, nothing else between: endpoint down


@dataclass(frozen=True, slots=True)
class Permit:
    """Leave to start one send; hand it back with the answer to ``CircuitBreaker.record``."""

    epoch: int  # the circuit's epoch when issued: answers from an older epoch are stale
    probe: bool  # True for the single probe of the PROBING state


@dataclass(frozen=True, slots=True)
class Recorded:
    """What one answer did to the circuit, and whether its message pays an attempt for it."""

    changed: bool  # the circuit opened or closed with this answer: log it once
    spend: bool  # False: a pause takes the blame for a transient failure, no attempt is spent


class CircuitBreaker:
    """Pauses all sending while the configuration is at fault or the endpoint is down.

    It starts PROBING, so a wrong key or a dead endpoint at start-up costs one request, not a
    batch. It opens on a PAUSE answer (configuration), or when ``outage_threshold`` sends in a
    row fail transiently (5xx, timeout, connection failure) with no other answer between them
    (outage). While open it probes with one send after probe_initial, doubling per
    failed probe up to probe_cap (1 s, 2 s, 4 s ... 60 s by default). An acknowledged answer
    closes it and resets the interval; during an outage any non-transient answer closes it too
    (the endpoint answers again), while during a configuration pause a 4xx/5xx to the probe says
    nothing about the key and the next send may probe at once.

    Transient failures do not spend attempts once an outage is declared: the failure that trips
    it, every failure of a send that was in flight then (stale), and failed outage probes. A
    message that fails while others succeed never trips it (every other answer resets the
    count), so it spends its attempts as usual; so do failures while starting or paused for the
    configuration, until they add up to an outage.

    Only answers to sends permitted in the current epoch move it; ``Recorded.changed`` is True
    exactly once per transition (log ``circuit.opened`` / ``circuit.closed`` then). Every permit
    must be handed back, with ``record_other`` for a send abandoned without an answer, or the
    probe slot stays taken.
    """

    __slots__ = ("_cap", "_clock", "_closed", "_epoch", "_initial", "_interval", "_permit",
                 "_probe_at", "_probe_out", "_reason", "_streak", "_threshold")  # fmt: skip

    def __init__(self, settings: CircuitSettings, clock: Clock) -> None:
        self._clock = clock
        self._initial = settings.probe_initial.total_seconds()
        self._cap = settings.probe_cap.total_seconds()
        self._threshold = settings.outage_threshold
        self._interval = self._initial  # the wait after the next opening
        self._closed = False
        self._reason = PauseReason.STARTING
        self._epoch = 0
        self._probe_at = clock()  # start-up: the first send is a probe
        self._probe_out = False
        self._permit = Permit(0, probe=False)  # shared by every send while closed
        self._streak = 0  # transient failures in a row, with no other answer between

    @property
    def state(self) -> CircuitState:
        """CLOSED, OPEN, or PROBING once the probe time has come."""
        if self._closed:
            return CircuitState.CLOSED
        return CircuitState.OPEN if self._clock() < self._probe_at else CircuitState.PROBING

    @property
    def reason(self) -> PauseReason | None:
        """Why the circuit is not closed; None when it is."""
        return None if self._closed else self._reason

    def permits(self) -> int | None:
        """How many more sends may start now: None (no limit) when closed, else 1 or 0."""
        if self._closed:
            return None
        return 0 if self._probe_out or self._clock() < self._probe_at else 1

    def next_probe_in(self) -> float:
        """Seconds until a probe may start; 0.0 when closed or due (a probe may be in flight)."""
        return 0.0 if self._closed else max(0.0, self._probe_at - self._clock())

    def acquire(self) -> Permit | None:
        """A permit to start one send, or None: always one when closed, else the single probe."""
        if self._closed:
            return self._permit
        if self._probe_out or self._clock() < self._probe_at:
            return None
        self._probe_out = True
        return Permit(self._epoch, probe=True)

    def record(self, permit: Permit, verdict: Verdict, *, transient: bool = False) -> Recorded:
        """Take one answer and say what it changed."""
        if verdict is Verdict.ACKNOWLEDGE:
            return Recorded(self.record_success(permit), spend=True)
        if verdict is Verdict.PAUSE:
            return Recorded(self.record_pause(permit), spend=False)
        if verdict is Verdict.RETRY and transient:
            return self._record_failure(permit)
        return Recorded(self._record_answer(permit), spend=True)

    def record_success(self, permit: Permit) -> bool:
        """An acknowledged answer: close the circuit; True if that changed the state."""
        if permit.epoch != self._epoch:
            return False
        self._streak = 0
        if self._closed:
            return False
        self._closed, self._probe_out = True, False
        self._interval = self._initial
        self._next_epoch()
        return True

    def record_pause(self, permit: Permit) -> bool:
        """A PAUSE answer: open the circuit until the next probe; True if the state changed."""
        return self._open(permit, PauseReason.CONFIGURATION)

    def record_other(self, permit: Permit) -> bool:
        """A send abandoned without an answer: free the probe slot; always False."""
        if permit.probe and permit.epoch == self._epoch:
            self._probe_out = False
        return False

    def _record_failure(self, permit: Permit) -> Recorded:
        if permit.epoch != self._epoch:
            # In flight when the circuit moved: if it is paused now, the pause takes the blame.
            return Recorded(False, spend=self._closed)
        if self._reason is PauseReason.OUTAGE and not self._closed:
            # The probe failed: the endpoint is still down. Its message goes back due at once,
            # behind older due rows, so the next probe tries another message: one message that
            # always fails cannot hold delivery paused.
            return Recorded(self._open(permit, PauseReason.OUTAGE), spend=False)
        # Closed, starting or paused for the configuration: the message may be the one at fault,
        # so it pays, until enough failures in a row with no other answer between say the
        # endpoint is down. Failures are counted, not distinct messages: with only a message or
        # two pending, an outage must still be recognised before they run out of attempts. A
        # message failing alone cannot be told from an outage then, and pausing costs nothing:
        # nothing waits behind it, and a newer message probes next (see above).
        self._streak += 1
        if self._streak >= self._threshold:
            return Recorded(self._open(permit, PauseReason.OUTAGE), spend=False)
        self.record_other(permit)
        return Recorded(False, spend=True)

    def _record_answer(self, permit: Permit) -> bool:
        """A 4xx, or a non-transient RETRY: the endpoint answers, the message is to blame."""
        if permit.epoch != self._epoch:
            return False
        if self._closed:
            self._streak = 0
            return False
        if self._reason is PauseReason.OUTAGE:
            return self.record_success(permit)
        return self.record_other(permit)

    def _open(self, permit: Permit, reason: PauseReason) -> bool:
        if permit.epoch != self._epoch:
            return False
        self._closed, self._probe_out, self._reason = False, False, reason
        self._streak = 0
        self._probe_at = self._clock() + self._interval
        self._interval = min(self._interval * 2, self._cap)
        self._next_epoch()
        return True

    def _next_epoch(self) -> None:
        self._epoch += 1
        self._permit = Permit(self._epoch, probe=False)


# --- Rate gate -------------------------------------------------------------------------------


class RateGate:
    """Holds every send of this process during a slow-down (a 429); the rate limit itself is the
    fleet's (pacing.py). Times are monotonic seconds from the caller's clock."""

    __slots__ = ("_paused_until",)

    def __init__(self) -> None:
        self._paused_until = float("-inf")

    def delay(self, now: float) -> float:
        """Seconds to wait before the next send may start (0.0: send now)."""
        return max(0.0, self._paused_until - now)

    def pause_until(self, until: float) -> None:
        """Hold all sending until ``until`` (a 429's slow-down); the later of two pauses wins."""
        self._paused_until = max(self._paused_until, until)


# --- Fleet send slots ------------------------------------------------------------------------

# A reservation covers this much of the fleet's schedule (at least one slot): few round trips to
# the shared row (about 1 / BATCH_SPAN_S a second for a busy fleet), little reserved and unused.
BATCH_SPAN_S = 0.25
# A slot may start its send until this long after its time, then it is dropped: the lateness
# that bunches sends, so it bounds the burst (see SendSlots).
SLOT_GRACE_S = 0.25


class SendSlots:
    """This process's reserved slots on the schedule all workers share for OUTBOX_RATE_LIMIT.

    The fleet's sends are laid one per slot on one schedule in PostgreSQL, a slot every 1/rate
    seconds, never two workers on one slot; a worker reserves a few consecutive slots at a time
    (``wanted``) and starts one send per slot, no earlier than the slot's time and no later than
    ``grace`` after it (a slot found later is dropped). So any window of T seconds holds at most
    rate * (T + grace) + 1 sends: for one second at 20/s, 26. An idle schedule restarts at the
    present, so idle time earns no catch-up burst.
    """

    __slots__ = ("_grace", "_interval", "_slots", "batch")

    def __init__(self, rate: float, *, grace: float = SLOT_GRACE_S) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self._interval = 1.0 / rate
        self._grace = grace
        self._slots: deque[float] = deque()
        self.batch = max(1, math.floor(rate * BATCH_SPAN_S))

    def wanted(self, waiting: int) -> int:
        """How many slots to reserve for ``waiting`` senders: one each, up to a batch."""
        return min(max(1, waiting), self.batch)

    def span(self, count: int) -> float:
        """Seconds of schedule that ``count`` slots take."""
        return count * self._interval

    def add(self, first_at: float, count: int) -> None:
        """Record ``count`` consecutive slots reserved from ``first_at`` (caller's clock)."""
        self._slots.extend(first_at + i * self._interval for i in range(count))

    def take(self, now: float) -> float | None:
        """The next slot still usable at ``now``, removed; None when none is left."""
        while self._slots:
            slot = self._slots.popleft()
            if self.usable(slot, now):
                return slot
        return None

    def usable(self, slot: float, now: float) -> bool:
        """Whether a send may still start at ``now`` in ``slot``."""
        return now <= slot + self._grace

    def __len__(self) -> int:
        return len(self._slots)
