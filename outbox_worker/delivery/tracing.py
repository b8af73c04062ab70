"""The worker's tracing seam: what it tells a tracer about claims and delivery attempts.

``NO_TRACING`` is the default: chosen once when the worker is built, its methods do nothing, so
a worker without tracing pays a few empty calls per delivery and imports nothing.
``outbox_worker.integrations.otel.lean`` implements the seam for OpenTelemetry when OTEL_* asks
for it (``spans.start_tracing``; README "Tracing"). No I/O here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Protocol

from outbox_worker.models import Message, Settlement


class AttemptTrace(Protocol):
    """One delivery attempt of one message, from its dispatch to its row write or hand-back."""

    def settled(self, settlement: Settlement) -> None:
        """The attempt's outcome, as written to the row (status, state, whether it counted)."""
        ...

    def failed(self, error_type: str) -> None:
        """Our own failure while handling the message (the exception's type name only)."""
        ...

    def handed_back(self) -> None:
        """The claim was released unsent (circuit open, lease too short, stopping)."""
        ...

    def circuit_changed(self, reason: str | None, next_probe_in_s: float) -> None:
        """This attempt's answer opened the circuit (``reason``) or closed it (None)."""
        ...

    def paced(self, waited_s: float) -> None:
        """The send waited ``waited_s`` for the fleet's rate limit or a 429 slow-down."""
        ...

    def slowed_down(self, pause_s: float) -> None:
        """This attempt's answer (a 429, a Retry-After) paused every send for ``pause_s``."""
        ...

    def end(self) -> None:
        """The attempt is over: nothing more is recorded on it."""
        ...


class ClaimTrace(Protocol):
    """One claim statement, started before it runs."""

    def claimed(self, messages: Sequence[Message]) -> AttemptSource:
        """The rows the claim took; returns what their attempts are traced from."""
        ...


class AttemptSource(Protocol):
    """Where the attempts of one claim's messages start their traces."""

    def attempt(self, message: Message) -> AttemptTrace:
        """Start tracing one delivery attempt of ``message`` (claimed by this claim)."""
        ...


class Tracing(Protocol):
    """A tracer for the worker: claims and the delivery attempts they lead to."""

    def claim_started(self) -> ClaimTrace:
        """A claim statement is about to run."""
        ...

    async def close(self, within_s: float) -> None:
        """Send what is still buffered and stop (at the worker's exit), giving up after
        ``within_s`` seconds (a collector that is down must not hold the exit up)."""
        ...


class _NoTrace:
    """Every seam at once, doing nothing: one object, no allocation per delivery."""

    __slots__ = ()

    def settled(self, settlement: Settlement) -> None:
        """Nothing is recorded."""

    def failed(self, error_type: str) -> None:
        """Nothing is recorded."""

    def handed_back(self) -> None:
        """Nothing is recorded."""

    def circuit_changed(self, reason: str | None, next_probe_in_s: float) -> None:
        """Nothing is recorded."""

    def paced(self, waited_s: float) -> None:
        """Nothing is recorded."""

    def slowed_down(self, pause_s: float) -> None:
        """Nothing is recorded."""

    def end(self) -> None:
        """Nothing is recorded."""

    def claimed(self, messages: Sequence[Message]) -> _NoTrace:
        """Nothing is recorded."""
        return self

    def attempt(self, message: Message) -> _NoTrace:
        """Nothing is recorded."""
        return self

    def claim_started(self) -> _NoTrace:
        """Nothing is recorded."""
        return self

    async def close(self, within_s: float) -> None:
        """Nothing to send."""


NO_TRACING: Final = _NoTrace()
"""The tracer of a worker without tracing (and every trace it hands out)."""
