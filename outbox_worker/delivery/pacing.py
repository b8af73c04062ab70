"""The fleet-wide rate limit on the worker's side: wait for a slot of the shared send schedule.

Senders that want to send call ``FleetPacer.acquire``. Slots come from ``SendSlots`` (pure,
circuit.py); when this process has none left, one sender reserves a batch for everyone waiting
through ``Store.reserve_send_time``: one round trip to PostgreSQL per batch, never per send.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from outbox_worker.delivery.circuit import SendSlots
from outbox_worker.delivery.writer import Backoff
from outbox_worker.errors import DatabaseUnavailable, StatementRejected
from outbox_worker.ports import Store


class FleetPacer:
    """Starts each send in a slot of the schedule every worker of the database shares."""

    def __init__(self, store: Store, rate: float, clock: Callable[[], float]) -> None:
        self._store = store
        self._clock = clock
        self._slots = SendSlots(rate)
        self._reserving = asyncio.Lock()  # one reservation at a time, for every sender waiting
        self._waiting = 0  # senders without a slot
        self._backoff = Backoff()

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Wait until this process may start one send; False if ``stop`` was set meanwhile."""
        self._waiting += 1
        try:
            while not stop.is_set():
                slot = self._slots.take(self._clock())
                if slot is None:
                    await self._reserve(stop)
                    continue
                self._waiting -= 1
                try:
                    if await stopped_within(stop, slot - self._clock()):
                        return False
                finally:
                    self._waiting += 1
                if self._slots.usable(slot, self._clock()):
                    return True
                # Woken too late (a busy event loop): sending now could bunch with the slots
                # after it, so the slot is dropped and the sender takes another.
            return False
        finally:
            self._waiting -= 1

    async def _reserve(self, stop: asyncio.Event) -> None:
        async with self._reserving:
            if len(self._slots) or stop.is_set():
                return  # another sender reserved while this one waited for the lock
            count = self._slots.wanted(self._waiting)
            span = self._slots.span(count)
            try:
                starts_in = await self._store.reserve_send_time(span)
            except (DatabaseUnavailable, StatementRejected) as exc:
                # No slot, no send: the messages wait (or go back when their lease runs short).
                await stopped_within(stop, self._backoff.next("rate_limit", exc))
                return
            self._backoff.reset()
            # Counted from the answer's arrival, so the slots start no earlier than the
            # database placed them (later by the answer's transit time at most).
            self._slots.add(self._clock() + starts_in, count)


async def stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    """Wait ``seconds`` or until ``stop`` is set, whichever comes first; whether it was set."""
    if seconds > 0 and not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()
