"""Is the claim loop alive? What /healthz answers, kept by the worker without any HTTP.

Before each wait the claim loop announces how long it means to be away (a poll interval, a
database backoff, the next circuit probe); before each claim statement it announces that it is
back (``next_within=0``), so a statement that hangs counts as lateness. It is *stalled* when it
is later than announced by more than the liveness timeout while work is due. A worker paused by
an open circuit or waiting out a database outage is not stalled (it keeps its promises), so a
restart is never requested for a fault a restart cannot fix.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class ClaimProgress:
    """The claim loop's last sign of life on the monotonic clock, and whether work is due."""

    __slots__ = ("_back_by", "_clock", "last_progress", "work_due")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.last_progress = clock()  # monotonic time the loop last reported
        self._back_by = self.last_progress  # monotonic time it promised to report again by
        self.work_due = False  # the last backlog sample saw due rows

    def progressed(self, *, next_within: float) -> None:
        """The loop is alive now and will report again within ``next_within`` seconds."""
        self.last_progress = self._clock()
        self._back_by = self.last_progress + next_within

    def late_by(self) -> float:
        """Seconds the loop is past its promise (0 when on time)."""
        return max(0.0, self._clock() - self._back_by)

    def stalled(self, timeout: float) -> bool:
        """True when work is due and the loop is more than ``timeout`` seconds late."""
        return self.work_due and self.late_by() > timeout
