"""A real worker process on OUTBOX_METRICS_PORT: probes answer, and every queried metric is there."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

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


async def test_a_worker_started_on_a_read_only_server_says_so_once_and_waits(
    pg: asyncpg.Connection, database_url: str, start_worker: StartWorker
) -> None:
    """On a server that takes no writes (a demoted primary, a standby) a worker logs one line naming it, is alive but not ready, and starts delivering once the server takes writes."""
    database = urlsplit(database_url).path.lstrip("/")
    await pg.execute(f'ALTER DATABASE "{database}" SET default_transaction_read_only = on')
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    worker = await start_worker({"OUTBOX_METRICS_PORT": str(port)})
    waiting = await worker.wait_event("database.unavailable", timeout=20)
    assert "is read-only: waiting for a primary" in waiting["error"]
    status, text = await get(f"{base}/readyz")
    assert (status, await get(f"{base}/healthz")) == (503, (200, "ok\n"))
    assert "is read-only" in text
    await pg.execute(f'ALTER DATABASE "{database}" RESET default_transaction_read_only')
    await worker.wait_event("worker.started", timeout=30)
    assert worker.event_names().count("database.unavailable") == 1
    await wait_for(lambda: status_is(f"{base}/readyz", 200), timeout=20, message="ready")
