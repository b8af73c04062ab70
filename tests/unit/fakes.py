"""The worker's two ports as test doubles: a recording Store and a scriptable Sender.

Neither is a database or an HTTP server. ``FakeStore`` serves the rows a test gives it to claims,
records every call with its arguments, and fails a call when told to; ``FakeSender`` hands each
body to the test's handler (as httpx's ``MockTransport`` hands each request to a function), which
returns an ``Answer``, raises, or awaits an event to hold the send in flight.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

from outbox_worker.errors import StatementRejected
from outbox_worker.models import (
    Answer,
    Backlog,
    LeaseToken,
    Message,
    MessageId,
    PauseState,
    Settlement,
    State,
    WorkerBeat,
)
from outbox_worker.ports import Hints

TOKEN = LeaseToken(UUID("00000000-0000-4000-8000-000000000001"))


def message(
    number: int,
    *,
    body: bytes | None = None,
    attempts: int = 0,
    age: timedelta = timedelta(0),
    unsendable: str | None = None,
    size: int = 0,
) -> Message:
    """A claimed row whose id is ``number`` and whose body names it (see ``number_of``).

    ``size`` pads the body to that many bytes; an unsendable row has an empty body, as claimed.
    """
    if body is None:
        text = json.dumps({"message": number, "pad": ""})
        padded = text.replace('""', '"' + "x" * (size - len(text)) + '"')
        body = b"" if unsendable else padded.encode()
    return Message(MessageId(number), body, attempts, age, TOKEN, unsendable)


def number_of(body: bytes) -> int:
    """The number a body made by ``message`` names."""
    value = json.loads(body)["message"]
    assert isinstance(value, int)
    return value


class ManualClock:
    """A monotonic clock that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# --- Store ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClaimCall:
    """One claim as the worker asked for it."""

    limit: int
    lease: timedelta
    max_bytes: int


class FakeStore:
    """Records what the worker asks of the database and answers from a script.

    Claims take rows from ``due`` in order, up to ``limit`` and while their bodies fit in
    ``max_bytes`` (the Store contract); a row is served once, and released rows do not come back
    unless the test adds them again. Settlements, releases and dead-lettered rows are recorded
    only when the call succeeds; ``settle_calls`` records every batch tried.
    """

    def __init__(self) -> None:
        self.due: list[Message] = []
        self.claims: list[ClaimCall] = []
        self.settle_calls: list[list[MessageId]] = []
        self.settled: list[Settlement] = []
        self.released: list[Message] = []
        self.unwritable: list[tuple[Settlement, str]] = []
        self.reserved: list[float] = []  # spans of the send schedule asked for
        self.reserve_answer = 0.0  # seconds until the reserved span starts (0: at once)
        self.failures: Counter[str] = Counter()  # failures raised so far, by method
        # Statements the database refuses: settle (any batch holding the id), dead-lettering.
        self.reject_settle: set[MessageId] = set()
        self.reject_unwritable: set[MessageId] = set()
        self.claim_gate: asyncio.Event | None = None  # while set to an event, claims wait on it
        self._fail: dict[str, tuple[Exception, int | None]] = {}
        self._wake: Callable[[], None] | None = None
        self._fleet_hint: Callable[[], None] | None = None
        self.beats: list[WorkerBeat] = []  # every heartbeat written, in order
        self.pause_reads = 0  # reads of the pause alone (between heartbeats)
        self.pause = PauseState(paused=False)  # what heartbeats read: set with set_pause()

    # --- scripting ---

    def add(self, *messages: Message) -> None:
        """Make rows due, and notify a listening worker (as an enqueue's NOTIFY does)."""
        self.due.extend(messages)
        if self._wake is not None:
            self._wake()

    def set_pause(self, paused: bool, reason: str = "test") -> None:
        """Pause or resume the fleet, and notify a listening worker (as `pause` does)."""
        self.pause = PauseState(paused=paused, reason=reason if paused else None)
        if self._fleet_hint is not None:
            self._fleet_hint()

    def fail(self, method: str, error: Exception, *, times: int | None = None) -> None:
        """Raise ``error`` from the next ``times`` calls of ``method`` (every call if None)."""
        self._fail[method] = (error, times)

    def answer_again(self, method: str) -> None:
        """Stop failing ``method``."""
        self._fail.pop(method, None)

    def hold_claims(self) -> asyncio.Event:
        """Make claims wait (a slow claim statement) until the returned event is set."""
        self.claim_gate = asyncio.Event()
        return self.claim_gate

    # --- views ---

    def settlement(self, number: int) -> Settlement:
        """The one settlement written for message ``number``."""
        found = [s for s in self.settled if s.message_id == number]
        assert len(found) == 1, f"message {number} settled {len(found)} times"
        return found[0]

    def settled_ids(self) -> list[int]:
        return [s.message_id for s in self.settled]

    def released_ids(self) -> list[int]:
        return [m.id for m in self.released]

    # --- the Store port ---

    async def claim(self, limit: int, lease: timedelta, max_bytes: int) -> list[Message]:
        self.claims.append(ClaimCall(limit, lease, max_bytes))
        self._maybe_fail("claim")
        taken: list[Message] = []
        size = 0
        while self.due and len(taken) < limit and size + len(self.due[0].body) <= max_bytes:
            size += len(self.due[0].body)
            taken.append(self.due.pop(0))
        if self.claim_gate is not None:
            await self.claim_gate.wait()
        return taken

    async def settle(self, settlements: Sequence[Settlement]) -> int:
        self.settle_calls.append([s.message_id for s in settlements])
        self._maybe_fail("settle")
        if any(s.message_id in self.reject_settle for s in settlements):
            self.failures["settle"] += 1
            raise StatementRejected("CheckViolation (SQLSTATE 23514)", sqlstate="23514")
        self.settled.extend(settlements)
        return len(settlements)

    async def dead_letter_unwritable(self, settlement: Settlement, reason: str) -> int:
        self._maybe_fail("dead_letter_unwritable")
        if settlement.message_id in self.reject_unwritable:
            self.failures["dead_letter_unwritable"] += 1
            raise StatementRejected("DataError (SQLSTATE 22000)", sqlstate="22000")
        self.unwritable.append((settlement, reason))
        return 1

    async def release(self, messages: Sequence[Message]) -> int:
        self._maybe_fail("release")
        self.released.extend(messages)
        return len(messages)

    async def seconds_until_due(self) -> float | None:
        self._maybe_fail("seconds_until_due")
        return 0.0 if self.due else None

    async def backlog(self) -> Backlog:
        self._maybe_fail("backlog")
        due = sum(1 for _ in self.due)
        return Backlog(due=due, not_due=0, oldest_pending_s=0.0, dead=0)

    async def purge_expired(self, state: State, older_than: timedelta, limit: int) -> int | None:
        self._maybe_fail("purge_expired")
        return 0

    async def reserve_send_time(self, span_s: float) -> float:
        self._maybe_fail("reserve_send_time")
        self.reserved.append(span_s)
        return self.reserve_answer

    async def purge_expired_audit(self, older_than: timedelta, limit: int) -> int | None:
        self._maybe_fail("purge_expired_audit")
        return 0

    async def heartbeat(self, beat: WorkerBeat) -> PauseState:
        self._maybe_fail("heartbeat")
        self.beats.append(beat)
        return self.pause

    async def fleet_pause(self) -> PauseState:
        self._maybe_fail("fleet_pause")
        self.pause_reads += 1
        return self.pause

    async def forget_workers(self, older_than: timedelta) -> int:
        self._maybe_fail("forget_workers")
        return 0

    async def listen(self, hints: Hints) -> None:
        self._wake = hints.work
        self._fleet_hint = hints.fleet
        hints.listening(True)
        await asyncio.Event().wait()  # until cancelled

    def _maybe_fail(self, method: str) -> None:
        if method not in self._fail:
            return
        error, times = self._fail[method]
        if times is not None:
            if times <= 1:
                del self._fail[method]
            else:
                self._fail[method] = (error, times - 1)
        self.failures[method] += 1
        raise error


# --- Sender --------------------------------------------------------------------------------

Handler = Callable[[bytes], Answer | Awaitable[Answer]]


def ok(body: bytes = b"") -> Answer:
    """A 200 with an empty body."""
    return Answer(200, 0.001)


class FakeSender:
    """Answers each send with the test's handler: an Answer, an exception, or a held await."""

    def __init__(self, handler: Handler = ok) -> None:
        self.handler = handler
        self.sent: list[int] = []  # message numbers, in the order their sends started
        self.in_flight: set[int] = set()

    async def send(self, body: bytes) -> Answer:
        number = number_of(body)
        self.sent.append(number)
        self.in_flight.add(number)
        try:
            result = self.handler(body)
            return result if isinstance(result, Answer) else await result
        finally:
            self.in_flight.discard(number)


# --- Environment ---------------------------------------------------------------------------


class Recording(dict[str, str]):
    """An environment that remembers every name looked up in it."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)
