"""A full outage met with few messages pending: the focused case behind a ledger line of the chaos run.

The chaos run's "dead, reason not injected" line catches it only when an outage window happens to
meet a quiet moment; here it is set up on purpose: the endpoint refuses connections, three messages
are pending (fewer than the outage threshold, so counting distinct failing messages would never
declare the outage), and a worker with 1 s backoff runs whose outage threshold (4) is below its
max attempts (5), as the worker asks (a `config.risky` warning otherwise).

Why those settings and not the default threshold (10) with 4 attempts: the circuit counts
failures in a row, so a threshold below max attempts guarantees the outage is declared before any
message can run out of attempts, whatever order the messages are tried in. With 10 and 4, three
messages have exactly 9 failures to spend (3 each) before the 10th opens the circuit, so it held
only if they took their turns in strict rotation. They are tried in the order they fall due (each
failure's write time plus a jittered backoff); on a quiet machine they fail, are written in one
flush and fall due again in lockstep, on a busy one a slow claim or flush lets one message take a
fourth try before another's third, and it is dead-lettered.
"""

from __future__ import annotations

import asyncpg

from outbox_worker.standin import StandIn
from tests.processes import Enqueue, StartWorker
from tests.waiting import all_acknowledged, count_by_state, wait_for

PENDING = 3
OUTAGE_THRESHOLD = 4  # more than PENDING: the count is of failures, not of distinct messages
MAX_ATTEMPTS = 5  # above the threshold: no message can spend them all before the circuit opens
FAST_GIVE_UP = {
    "OUTBOX_HTTP_TIMEOUT": "1s",
    "OUTBOX_LEASE": "7s",
    "OUTBOX_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
    "OUTBOX_OUTAGE_THRESHOLD": str(OUTAGE_THRESHOLD),
    "OUTBOX_BACKOFF_BASE": "100ms",
    "OUTBOX_BACKOFF_CAP": "1s",
}


async def test_refused_connections_with_few_messages_pending_spend_no_message_its_life(
    pg: asyncpg.Connection, standin: StandIn, start_worker: StartWorker, enqueue: Enqueue
) -> None:
    """While the endpoint refuses every connection, three pending messages are paused, not dead-lettered after max attempts, and all are delivered once it is back."""
    await standin.stop()
    await enqueue(PENDING)
    worker = await start_worker(FAST_GIVE_UP)

    async def paused_or_dead() -> bool:
        dead = (await count_by_state(pg)).get("dead", 0)
        return dead > 0 or "circuit.opened" in worker.event_names()

    # 5 attempts at most 1 s apart: without a pause, a message is dead within about 5 s.
    await wait_for(paused_or_dead, timeout=20, message="the circuit to open or a message to die")
    assert (await count_by_state(pg)).get("dead", 0) == 0, await _rows(pg)
    # The configuration the worker vouches for: no warning about the threshold.
    warnings = [str(e.get("warning")) for e in worker.events if e.get("event") == "config.risky"]
    assert not [w for w in warnings if "OUTBOX_OUTAGE_THRESHOLD" in w], warnings

    await standin.start()
    await wait_for(lambda: all_acknowledged(pg, PENDING), timeout=20, message="all delivered")
    assert await worker.terminate() == 0


async def _rows(pg: asyncpg.Connection) -> list[dict[str, object]]:
    rows = await pg.fetch("SELECT id, state, attempts, last_error FROM outbox.messages ORDER BY id")
    return [dict(r) for r in rows]
