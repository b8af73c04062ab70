"""The worker's upkeep beside delivery: backlog gauges and retention, through the Store port.

- ``sample_backlog`` runs one cheap statement every OUTBOX_BACKLOG_INTERVAL and sets the
  Prometheus gauges (every worker exports the same values; alerts aggregate with max) and the
  claim loop's ``work_due`` flag that /healthz reads.
- ``retain`` deletes acknowledged rows older than OUTBOX_RETAIN_ACKNOWLEDGED and dead letters
  older than OUTBOX_RETAIN_DEAD: a first pass within a minute of start (at a random point, so a
  fleet started together spreads out), then one every OUTBOX_RETENTION_INTERVAL. Each batch is
  its own short transaction under the fleet's retention lock, so two workers never delete at
  the same time and nothing waits on a long lock. The same pass deletes audit rows older than
  OUTBOX_RETAIN_AUDIT and the registry rows of workers not seen for REGISTRY_FORGET_AFTER.
Neither loop ever ends on a database error: it logs, counts and tries again at its next turn.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import timedelta

import structlog

from outbox_worker.delivery.liveness import ClaimProgress
from outbox_worker.errors import DatabaseUnavailable, StatementRejected
from outbox_worker.models import REGISTRY_FORGET_AFTER, State
from outbox_worker.observability import Metrics
from outbox_worker.ports import Store
from outbox_worker.settings.config import RETENTION_BATCH_SIZE, RETENTION_FIRST_PASS, WorkerSettings

log = structlog.get_logger("outbox_worker.upkeep")


async def sample_backlog(
    settings: WorkerSettings, store: Store, metrics: Metrics, progress: ClaimProgress
) -> None:
    """Set the backlog gauges and ``progress.work_due`` from the table, forever."""
    while True:
        try:
            backlog = await store.backlog()
        except (DatabaseUnavailable, StatementRejected) as exc:
            # Keep the last values: a gauge dropping to 0 in an outage would hide a backlog.
            metrics.db_errors.inc()
            log.debug("backlog.unavailable", error=str(exc))
        except Exception as exc:  # no bug in upkeep may stop delivery
            log.error("worker.unexpected_error", during="backlog", error=type(exc).__name__)
        else:
            metrics.pending.labels("true").set(backlog.due)
            metrics.pending.labels("false").set(backlog.not_due)
            metrics.oldest_pending.set(backlog.oldest_pending_s)
            metrics.dead.set(backlog.dead)
            metrics.backlog_sampled.set(time.time())
            progress.work_due = backlog.due > 0
        await asyncio.sleep(settings.backlog_interval.total_seconds())


async def retain(
    settings: WorkerSettings, store: Store, metrics: Metrics, rng: Callable[[], float]
) -> None:
    """Delete expired acknowledged and dead rows: first within a minute, then every interval."""
    interval = settings.retention_interval.total_seconds()
    await asyncio.sleep(rng() * min(RETENTION_FIRST_PASS.total_seconds(), interval))
    while True:
        try:
            await retention_pass(settings, store, metrics)
        except (DatabaseUnavailable, StatementRejected) as exc:
            metrics.db_errors.inc()
            log.warning("retention.failed", error=str(exc), retry_in_s=interval)
        except Exception as exc:  # no bug in upkeep may stop delivery
            log.error("worker.unexpected_error", during="retention", error=type(exc).__name__)
        await asyncio.sleep(interval)


async def retention_pass(
    settings: WorkerSettings, store: Store, metrics: Metrics
) -> dict[str, int]:
    """One pass: batches until nothing expired is left or another worker holds the lock."""
    deleted: dict[str, int] = {}
    windows = {State.ACKNOWLEDGED: settings.retain_acknowledged, State.DEAD: settings.retain_dead}
    for state, older_than in windows.items():
        count = await _purge_state(state, older_than, store, metrics)
        if count is None:
            log.debug("retention.skipped", reason="another worker holds the retention lock")
            break
        deleted[state.value] = count
    else:  # not skipped: this worker holds the turn, so it also does the rarer chores
        deleted.update(await _purge_audit(settings.retain_audit, store))
        deleted["workers"] = await store.forget_workers(REGISTRY_FORGET_AFTER)
    if any(deleted.values()):
        log.info("retention.purged", **deleted)
    return deleted


async def _purge_audit(older_than: timedelta, store: Store) -> dict[str, int]:
    total = 0
    while (count := await store.purge_expired_audit(older_than, RETENTION_BATCH_SIZE)) is not None:
        total += count
        if count < RETENTION_BATCH_SIZE:
            break
    return {"audit": total}


async def _purge_state(
    state: State, older_than: timedelta, store: Store, metrics: Metrics
) -> int | None:
    total = 0
    while True:
        count = await store.purge_expired(state, older_than, RETENTION_BATCH_SIZE)
        if count is None:
            return None if total == 0 else total
        total += count
        metrics.retention_deleted.labels(state.value).inc(count)
        if count < RETENTION_BATCH_SIZE:
            return total
