"""How much may be sent right now: the circuit breaker and the rate gate. Pure, clock injected.

The circuit breaker stops all sending while the configuration is at fault (401/403/404/405/406,
a redirect) or the endpoint is down (transient failures across many messages), and probes with
one request at growing intervals; the rate gate paces sends to a configured rate and holds them
all during a 429 slow-down. Neither does I/O or reads a clock of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from outbox_worker.config import CircuitSettings
from outbox_worker.models import Verdict

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
    OUTAGE = "outage"  # many different messages in a row failed transiently: endpoint down


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
    batch. It opens on a PAUSE answer (configuration), or when ``outage_threshold`` different
    messages in a row fail transiently (5xx, timeout, connection failure) with no other answer
    between them (outage). While open it probes with one send after probe_initial, doubling per
    failed probe up to probe_cap (1 s, 2 s, 4 s ... 60 s by default). An acknowledged answer
    closes it and resets the interval; during an outage any non-transient answer closes it too
    (the endpoint answers again), while during a configuration pause a 4xx/5xx to the probe says
    nothing about the key and the next send may probe at once.

    Transient failures do not spend attempts once an outage is declared: the failure that trips
    it, every failure of a send that was in flight then (stale), and failed outage probes. A
    message that fails while others succeed never trips it, so it spends its attempts as usual;
    so do failures while starting or paused for the configuration, until they add up to an
    outage (one message failing alone at start-up is no outage).

    Only answers to sends permitted in the current epoch move it; ``Recorded.changed`` is True
    exactly once per transition (log ``circuit.opened`` / ``circuit.closed`` then). Every permit
    must be handed back, with ``record_other`` for a send abandoned without an answer, or the
    probe slot stays taken.
    """

    __slots__ = ("_cap", "_clock", "_closed", "_epoch", "_failing", "_initial", "_interval",
                 "_permit", "_probe_at", "_probe_out", "_reason", "_threshold")  # fmt: skip

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
        self._failing: set[int] = set()  # messages failing transiently in a row while closed

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

    def record(
        self, permit: Permit, verdict: Verdict, *, transient: bool = False, key: int = 0
    ) -> Recorded:
        """Take one answer (``key`` names its message) and say what it changed."""
        if verdict is Verdict.ACKNOWLEDGE:
            return Recorded(self.record_success(permit), spend=True)
        if verdict is Verdict.PAUSE:
            return Recorded(self.record_pause(permit), spend=False)
        if verdict is Verdict.RETRY and transient:
            return self._record_failure(permit, key)
        return Recorded(self._record_answer(permit), spend=True)

    def record_success(self, permit: Permit) -> bool:
        """An acknowledged answer: close the circuit; True if that changed the state."""
        if permit.epoch != self._epoch:
            return False
        self._failing.clear()
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

    def _record_failure(self, permit: Permit, key: int) -> Recorded:
        if permit.epoch != self._epoch:
            # In flight when the circuit moved: if it is paused now, the pause takes the blame.
            return Recorded(False, spend=self._closed)
        if self._reason is PauseReason.OUTAGE and not self._closed:
            # The probe failed: the endpoint is still down. Its message goes back due at once,
            # behind older due rows, so the next probe tries another message: one message that
            # always fails cannot hold delivery paused.
            return Recorded(self._open(permit, PauseReason.OUTAGE), spend=False)
        # Closed, starting or paused for the configuration: the message may be the one at fault,
        # so it pays, until enough different messages in a row say the endpoint is down.
        self._failing.add(key)
        if len(self._failing) >= self._threshold:
            return Recorded(self._open(permit, PauseReason.OUTAGE), spend=False)
        self.record_other(permit)
        return Recorded(False, spend=True)

    def _record_answer(self, permit: Permit) -> bool:
        """A 4xx, or a non-transient RETRY: the endpoint answers, the message is to blame."""
        if permit.epoch != self._epoch:
            return False
        if self._closed:
            self._failing.clear()
            return False
        if self._reason is PauseReason.OUTAGE:
            return self.record_success(permit)
        return self.record_other(permit)

    def _open(self, permit: Permit, reason: PauseReason) -> bool:
        if permit.epoch != self._epoch:
            return False
        self._closed, self._probe_out, self._reason = False, False, reason
        self._failing.clear()
        self._probe_at = self._clock() + self._interval
        self._interval = min(self._interval * 2, self._cap)
        self._next_epoch()
        return True

    def _next_epoch(self) -> None:
        self._epoch += 1
        self._permit = Permit(self._epoch, probe=False)


# --- Rate gate -------------------------------------------------------------------------------


class RateGate:
    """Paces sends to ``rate`` per second (0: no limit) and holds them all during a slow-down.

    Times are monotonic seconds from the caller's clock. Strict pacing (no burst): after a send
    at ``t`` the next may start at ``t + 1/rate``; a late send does not earn a catch-up burst.
    """

    __slots__ = ("_interval", "_next_at", "_paused_until")

    def __init__(self, rate: float = 0.0) -> None:
        if rate < 0:
            raise ValueError(f"rate must not be negative, got {rate}")
        self._interval = 1.0 / rate if rate else 0.0
        self._next_at = float("-inf")
        self._paused_until = float("-inf")

    def delay(self, now: float) -> float:
        """Seconds to wait before the next send may start (0.0: send now)."""
        return max(0.0, self._next_at - now, self._paused_until - now)

    def take(self, now: float) -> None:
        """Record a send starting at ``now``."""
        if self._interval:
            self._next_at = max(self._next_at, now) + self._interval

    def pause_until(self, until: float) -> None:
        """Hold all sending until ``until`` (a 429's slow-down); the later of two pauses wins."""
        self._paused_until = max(self._paused_until, until)
