"""A real worker's log output carries neither the API key nor any payload PII."""

from __future__ import annotations

import asyncpg

import outbox_worker
from outbox_worker.standin import StandIn
from tests.cases import KEY
from tests.processes import StartWorker
from tests.waiting import states_are, wait_for

PII = {
    "email": "grace.hopper@example.com",
    "telephone": "+447700900123",
    "name": "Grace Hopper",
    "ip": "81.152.92.84",
    "agent": "Mozilla/5.0 (X11; Linux x86_64) HopperBrowser/1.0",
}


def update(customer_id: str) -> dict[str, object]:
    """An update full of known personal data."""
    return {
        "timestamp": 1_764_000_000_000,
        "registration": {"success": False, "username": PII["email"]},
        "customer": {
            "customerId": customer_id,
            "email": PII["email"],
            "telephone": PII["telephone"],
            "name": PII["name"],
        },
        "device": {"ipAddress": PII["ip"], "userAgent": PII["agent"]},
    }


async def test_logs_hold_no_key_and_no_pii(
    pg: asyncpg.Connection, standin: StandIn, start_worker: StartWorker
) -> None:
    """A wrong key (circuit), a fixed key, a rejected and a retried message: no key, no PII logged."""
    standin.set_api_key("sk_test_the_right_one")
    standin.script_for("rejected", [400])
    standin.script_for("retried", [503])
    for key in ("ok", "rejected", "retried"):
        await outbox_worker.enqueue_async(pg, update(key), allow_autocommit=True)
    worker = await start_worker()
    await worker.wait_event("circuit.opened")
    standin.set_api_key(KEY)
    await wait_for(
        lambda: states_are(pg, {"acknowledged": 2, "dead": 1}), timeout=20, message="all settled"
    )
    assert await worker.terminate() == 0
    output = "\n".join(worker.lines)
    assert "delivery.dead_lettered" in output
    assert "circuit.closed" in output
    assert KEY not in output
    for value in PII.values():
        assert value not in output, value
