"""How much may be sent right now: the circuit breaker and the rate gate. Pure, clock injected.

The circuit breaker stops all sending while the configuration is at fault (401/403/404/405/406)
and probes with one request at growing intervals; the rate gate paces sends to a configured rate
and holds them all during a 429 slow-down. Neither does I/O or reads a clock of its own.
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

    CLOSED = "closed"  # configuration known good: full concurrency
    OPEN = "open"  # configuration at fault: no sends until the probe time
    PROBING = "probing"  # testing the configuration: exactly one send in flight


@dataclass(frozen=True, slots=True)
class Permit:
    """Leave to start one send; hand it back with the answer to a ``CircuitBreaker.record_*``."""

    epoch: int  # the circuit's epoch when issued: answers from an older epoch are ignored
    probe: bool  # True for the single probe of the PROBING state


class CircuitBreaker:
    """Stops all sending while the configuration is at fault (PAUSE), probing with one request.

    It starts PROBING, so a wrong key at start-up costs one request, not a batch. A PAUSE opens
    it; after the probe interval it probes again (one send); the interval starts at
    probe_initial and doubles per failed probe up to probe_cap (1 s, 2 s, 4 s ... 60 s by
    default). An acknowledged answer (2xx, or 429: the key was accepted) closes it and resets
    the interval. A RETRY or DEAD_LETTER answer to the probe says nothing about the
    configuration: the circuit stays PROBING and the next send may probe at once. Only answers
    to sends permitted in the current epoch move it: sends that were in flight when it opened
    come back stale and are ignored, so ``record_*`` returns True exactly once per transition
    (log ``circuit.opened`` / ``circuit.closed`` then). Every permit must be handed back, with
    ``record_other`` for a send abandoned without an answer, or the probe slot stays taken.
    """

    __slots__ = ("_cap", "_clock", "_closed", "_epoch", "_initial", "_interval", "_permit",
                 "_probe_at", "_probe_out")  # fmt: skip

    def __init__(self, settings: CircuitSettings, clock: Clock) -> None:
        self._clock = clock
        self._initial = settings.probe_initial.total_seconds()
        self._cap = settings.probe_cap.total_seconds()
        self._interval = self._initial  # the wait after the next opening
        self._closed = False
        self._epoch = 0
        self._probe_at = clock()  # start-up: the first send is a probe
        self._probe_out = False
        self._permit = Permit(0, probe=False)  # shared by every send while closed

    @property
    def state(self) -> CircuitState:
        """CLOSED, OPEN, or PROBING once the probe time has come."""
        if self._closed:
            return CircuitState.CLOSED
        return CircuitState.OPEN if self._clock() < self._probe_at else CircuitState.PROBING

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

    def record_success(self, permit: Permit) -> bool:
        """An acknowledged answer: close the circuit; True if that changed the state."""
        if permit.epoch != self._epoch or self._closed:
            return False
        self._closed, self._probe_out = True, False
        self._interval = self._initial
        self._epoch += 1
        self._permit = Permit(self._epoch, probe=False)
        return True

    def record_pause(self, permit: Permit) -> bool:
        """A PAUSE answer: open the circuit until the next probe; True if the state changed."""
        if permit.epoch != self._epoch:
            return False
        self._closed, self._probe_out = False, False
        self._probe_at = self._clock() + self._interval
        self._interval = min(self._interval * 2, self._cap)
        self._epoch += 1
        return True

    def record_other(self, permit: Permit) -> bool:
        """A RETRY/DEAD_LETTER answer or an abandoned send: free the probe slot; always False."""
        if permit.probe and permit.epoch == self._epoch:
            self._probe_out = False
        return False

    def record(self, permit: Permit, verdict: Verdict) -> bool:
        """Dispatch on the verdict to ``record_success`` / ``record_pause`` / ``record_other``."""
        if verdict is Verdict.ACKNOWLEDGE:
            return self.record_success(permit)
        if verdict is Verdict.PAUSE:
            return self.record_pause(permit)
        return self.record_other(permit)


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
