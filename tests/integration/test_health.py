"""Liveness and readiness as the orchestrator sees them: /healthz, /readyz and /metrics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta

import pytest

from outbox_worker.delivery.health import ReadinessCheck, health_app, serving
from outbox_worker.delivery.liveness import ClaimProgress
from outbox_worker.delivery.worker import Worker
from outbox_worker.errors import ConfigError
from outbox_worker.models import Answer, Backlog, Message, PauseState, Settlement, State, WorkerBeat
from outbox_worker.observability import Metrics
from outbox_worker.ports import Hints
from outbox_worker.settings.config import Secret, Settings
from tests.probes import get, status_is
from tests.unit.fakes import ManualClock
from tests.waiting import wait_for


async def _ready() -> str | None:
    return None


@asynccontextmanager
async def served(
    progress: ClaimProgress,
    ready: ReadinessCheck | None = None,
    *,
    metrics: Metrics | None = None,
    liveness_timeout_s: float = 60.0,
) -> AsyncIterator[str]:
    """The health app on a free loopback port; yields its base URL."""
    app = health_app(
        progress,
        (metrics or Metrics()).registry,
        ready or _ready,
        liveness_timeout_s=liveness_timeout_s,
        ready_timeout_s=0.2,
    )
    async with serving(app, 0, host="127.0.0.1") as port:
        yield f"http://127.0.0.1:{port}"


async def test_healthz_answers_ok_and_503_when_the_claim_loop_stalls() -> None:
    """/healthz is 200 while the loop keeps its promises and 503 once it is late with work due."""
    clock = ManualClock()
    progress = ClaimProgress(clock)
    async with served(progress, liveness_timeout_s=60) as base:
        assert await get(f"{base}/healthz") == (200, "ok\n")
        progress.work_due = True
        clock.now += 61
        status, text = await get(f"{base}/healthz")
    assert status == 503
    assert "claim loop stalled: 61.0s late" in text


async def test_readyz_reports_the_reason_it_is_not_ready() -> None:
    """/readyz is 200 when the check passes, else 503 with the check's reason, or its timeout."""

    async def behind() -> str | None:
        return "the outbox schema is at revision 0001, this version needs 0002"

    async def hangs() -> str | None:
        await asyncio.Event().wait()
        return None

    progress = ClaimProgress()
    async with served(progress) as base:
        assert await get(f"{base}/readyz") == (200, "ready\n")
    async with served(progress, behind) as base:
        assert await get(f"{base}/readyz") == (
            503,
            "not ready: the outbox schema is at revision 0001, this version needs 0002\n",
        )
    async with served(progress, hangs) as base:
        assert await get(f"{base}/readyz") == (503, "not ready: readiness check took over 0.2s\n")


async def test_metrics_are_served_from_the_same_server() -> None:
    """/metrics answers in the Prometheus text format with the worker's registry."""
    metrics = Metrics()
    metrics.oldest_pending.set(42)
    async with served(ClaimProgress(), metrics=metrics) as base:
        status, text = await get(f"{base}/metrics")
    assert status == 200
    assert "outbox_oldest_pending_seconds 42.0" in text


async def test_a_port_in_use_is_a_configuration_error() -> None:
    """Serving on a port another server holds fails with one line naming the setting."""
    async with served(ClaimProgress()) as base:
        port = int(base.rsplit(":", 1)[1])
        app = health_app(ClaimProgress(), Metrics().registry, _ready, liveness_timeout_s=1)
        with pytest.raises(ConfigError, match=f"OUTBOX_METRICS_PORT {port} cannot be served"):
            async with serving(app, port, host="127.0.0.1"):
                pass


class StuckStore:
    """A Store whose claim statement never returns (a wedged connection); work is due."""

    def __init__(self, *, claim_hangs: bool) -> None:
        self.claim_hangs = claim_hangs
        self.claims = 0

    async def claim(self, limit: int, lease: timedelta, max_bytes: int) -> list[Message]:
        self.claims += 1
        if self.claim_hangs:
            await asyncio.Event().wait()
        return []  # due rows, all locked by other workers

    async def settle(self, settlements: Sequence[Settlement]) -> int:
        return len(settlements)

    async def dead_letter_unwritable(self, settlement: Settlement, reason: str) -> int:
        return 1

    async def release(self, messages: Sequence[Message]) -> int:
        return len(messages)

    async def seconds_until_due(self) -> float | None:
        return 0.0

    async def listen(self, hints: Hints) -> None:
        await asyncio.Event().wait()

    async def backlog(self) -> Backlog:
        return Backlog(due=3, not_due=0, oldest_pending_s=5.0, dead=0)

    async def purge_expired(self, state: State, older_than: timedelta, limit: int) -> int | None:
        return 0

    async def purge_expired_audit(self, older_than: timedelta, limit: int) -> int | None:
        return 0

    async def heartbeat(self, beat: WorkerBeat) -> PauseState:
        return PauseState(paused=False)

    async def fleet_pause(self) -> PauseState:
        return PauseState(paused=False)

    async def forget_workers(self, older_than: timedelta) -> int:
        return 0

    async def reserve_send_time(self, span_s: float) -> float:
        return 0.0


class NoSender:
    """A Sender that is never reached in these tests."""

    async def send(self, body: bytes) -> Answer:
        raise AssertionError("nothing is claimed, so nothing is sent")


@asynccontextmanager
async def worker_with_health(store: StuckStore) -> AsyncIterator[str]:
    """A Worker on ``store`` with a 300 ms liveness timeout, and its health server."""
    settings = Settings(
        database_url="postgresql://unused@127.0.0.1/x",
        api_key=Secret("sk_test_health"),
        poll_interval=timedelta(milliseconds=50),
        backlog_interval=timedelta(milliseconds=20),
        liveness_timeout=timedelta(milliseconds=300),
        shutdown_grace=timedelta(milliseconds=200),
    )
    worker = Worker(settings, store, NoSender())
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        async with served(worker.progress, liveness_timeout_s=0.3) as base:
            yield base
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def test_a_wedged_claim_statement_fails_liveness() -> None:
    """A worker whose claim never returns while work is due turns /healthz to 503."""
    async with worker_with_health(StuckStore(claim_hangs=True)) as base:
        await wait_for(
            lambda: status_is(f"{base}/healthz", 503), timeout=10, message="/healthz to fail"
        )


async def test_an_idle_loop_that_finds_nothing_to_claim_stays_alive() -> None:
    """Due rows that other workers hold: the loop polls on schedule and /healthz stays 200."""
    store = StuckStore(claim_hangs=False)
    async with worker_with_health(store) as base:
        await wait_for(lambda: store.claims >= 20, timeout=10, message="20 claims")
        assert await get(f"{base}/healthz") == (200, "ok\n")
