"""How long the claimer waits for work: briefly while rows keep coming, longer when they stop.

Enqueues notify at most once per 10 ms (migration 0006), so a NOTIFY says "work has started",
not "here is every row": the rows of the transactions that did not notify are found by polling.
The rhythm makes that cheap and prompt at once: after a claim that found rows the next one comes
after ``fastest``; each claim that finds nothing doubles the wait, up to ``slowest`` (the poll
interval). An idle worker thus asks the database once per poll interval, and a busy one every
few milliseconds, when asking is worth it. Pure: no clock, no I/O.
"""

from __future__ import annotations

from datetime import timedelta

# Fast enough that a row enqueued mid-flow is claimed within ~20 ms plus a round trip (p99
# enqueue-to-ack target: 50 ms); slow enough that a busy worker claims at most 50 times a second.
DEFAULT_FASTEST = timedelta(milliseconds=20)


class PollRhythm:
    """The wait before the next claim, from whether the last claims found rows."""

    __slots__ = ("_fastest", "_next", "_slowest")

    def __init__(self, slowest: timedelta, fastest: timedelta = DEFAULT_FASTEST) -> None:
        self._slowest = slowest.total_seconds()
        self._fastest = min(fastest.total_seconds(), self._slowest)
        self._next = self._slowest  # a worker starts idle: its LISTEN start wakes it at once

    def after_claim(self, found: int) -> float:
        """Seconds to wait after a claim that found ``found`` rows (and left room for more)."""
        if found:
            self._next = self._fastest
            return self._fastest
        wait = self._next
        self._next = min(self._next * 2, self._slowest)
        return wait
