"""A real worker process on OUTBOX_METRICS_PORT: probes answer, and every queried metric is there."""

from __future__ import annotations

from datetime import timedelta

import asyncpg

from tests.deploy_kit import alert_rules, metric_names, queried_metrics, scraped_names
from tests.integration.rows import insert_message
from tests.probes import get, status_is
from tests.processes import StartWorker, free_port
from tests.waiting import wait_for


async def test_a_running_worker_serves_probes_and_every_alerted_metric(
    pg: asyncpg.Connection, start_worker: StartWorker
) -> None:
    """/healthz and /readyz are 200; /metrics carries each metric of each alert and panel."""
    await insert_message(pg, state="dead", ago=timedelta(minutes=1))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    await start_worker({"OUTBOX_METRICS_PORT": str(port), "OUTBOX_BACKLOG_INTERVAL": "200ms"})

    async def dead_gauge_sampled() -> str | None:
        status, text = await get(f"{base}/metrics")
        return text if status == 200 and "outbox_dead_messages 1.0" in text else None

    text = await wait_for(dead_gauge_sampled, timeout=20, message="the dead gauge at 1")
    exported = scraped_names(text)
    for rule in alert_rules():
        missing = metric_names(rule["expr"]) - exported - {"up"}
        assert not missing, f"alert {rule['alert']} reads {missing}, which no worker exports"
    assert queried_metrics() <= exported
    assert await get(f"{base}/healthz") == (200, "ok\n")
    assert await get(f"{base}/readyz") == (200, "ready\n")


async def test_readyz_fails_when_the_schema_is_no_longer_at_head(
    pg: asyncpg.Connection, start_worker: StartWorker
) -> None:
    """A database moved to another schema revision makes /readyz 503 with the reason."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    await start_worker({"OUTBOX_METRICS_PORT": str(port)})
    await wait_for(lambda: status_is(f"{base}/readyz", 200), timeout=20, message="ready")
    await pg.execute("UPDATE outbox.alembic_version SET version_num = '0001'")
    status, text = await get(f"{base}/readyz")
    assert status == 503
    assert "the outbox schema is at revision 0001" in text
    assert await get(f"{base}/healthz") == (200, "ok\n")  # alive: a restart would not help
