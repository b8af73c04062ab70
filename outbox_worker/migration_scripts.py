"""What the revisions share: running the SQL files beside them, and DDL that never queues writes.

A revision changes tables that a running fleet writes to all the time. ``ALTER TABLE`` takes an
ACCESS EXCLUSIVE lock, and while it *waits* for that lock (behind one slow transaction, an
autovacuum) every enqueue and every claim queues behind it. So DDL on an existing table goes
through ``locked``: it waits at most ``LOCK_TIMEOUT_MS`` for its lock, and when that runs out it
rolls back to a savepoint, lets the queue drain and tries again. And a lock taken is held until
the migration's transaction commits, so nothing slow may follow it there: a constraint is added
``NOT VALID`` (instant) and validated by ``validate_constraints`` after the commit, in a
transaction of its own (VALIDATE takes SHARE UPDATE EXCLUSIVE, which writes do not wait for).
The rule for a new revision is in migrations/README.md (expand, then contract).
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from typing import Final

import structlog
from alembic import op
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.util import await_only

# SQL_DIR re-exported: the benchmarks read the shipped SQL from here.
from outbox_worker.migrate import SQL_DIR as SQL_DIR

log = structlog.get_logger(__name__)

# The longest any enqueue or claim may queue behind a waiting DDL statement: well below the 1 s
# the upgrade benchmark holds every revision to, well above a healthy fleet's transactions.
LOCK_TIMEOUT_MS: Final = 200
# How long to keep trying before giving up (the migration then rolls back, changing nothing).
LOCK_DEADLINE_S: Final = 120.0
_BACKOFF_FIRST_S, _BACKOFF_CAP_S = 0.05, 2.0
_LOCK_NOT_AVAILABLE: Final = "55P03"
# The migration's own advisory lock (env.py), taken again by each validation transaction so that
# concurrent `migrate` runs validate once, one after the other.
MIGRATION_LOCK_ID: Final = 7_306_020_415_842_311_201


class LockNotTaken(RuntimeError):
    """DDL could not get its table lock within the deadline: something held it all along."""


def run_script(name: str) -> None:
    """Run a multi-statement SQL file (function bodies included) in the migration's transaction."""
    script = (SQL_DIR / name).read_text(encoding="utf-8")
    raw = op.get_bind().connection.driver_connection
    assert raw is not None
    if hasattr(raw, "cursor") and not hasattr(raw, "fetchval"):  # a sync DBAPI (psycopg)
        with raw.cursor() as cursor:
            cursor.execute(script)
    else:  # asyncpg: the simple-query protocol runs many statements at once
        await_only(raw.execute(script))


def locked(statement: str, *, deadline_s: float | None = None) -> None:
    """Run one DDL statement on an existing table, waiting at most LOCK_TIMEOUT_MS for its lock
    at a time: on a timeout, roll back to a savepoint, back off (jittered, doubling to 2 s) and
    try again, until ``deadline_s`` (default LOCK_DEADLINE_S); then raise LockNotTaken. Follow
    it only with fast work: the lock is held until the migration commits."""
    deadline_s = LOCK_DEADLINE_S if deadline_s is None else deadline_s
    bind = op.get_bind()
    previous = bind.scalar(text("SELECT current_setting('lock_timeout')"))
    started, backoff, tries = time.monotonic(), _BACKOFF_FIRST_S, 0
    while True:
        tries += 1
        savepoint = bind.begin_nested()
        try:
            bind.execute(_SET_LOCK_TIMEOUT, {"value": f"{LOCK_TIMEOUT_MS}ms"})
            bind.exec_driver_sql(statement)
        except DBAPIError as exc:
            savepoint.rollback()
            if getattr(exc.orig, "sqlstate", None) != _LOCK_NOT_AVAILABLE:
                raise
            waited = time.monotonic() - started
            if waited + backoff > deadline_s:
                raise LockNotTaken(
                    f"could not take the lock for `{_first_line(statement)}` within "
                    f"{LOCK_TIMEOUT_MS} ms in {tries} tries over {waited:.0f} s: a long "
                    "transaction (or an anti-wraparound vacuum) holds the table; see "
                    "pg_stat_activity, then run migrate again (nothing was changed)"
                ) from None
            pause = backoff * random.uniform(0.5, 1.0)  # jitter, not a secret
            log.warning(
                "migration.lock_timed_out",
                statement=_first_line(statement),
                tries=tries,
                retry_in_s=round(pause, 3),
            )
            time.sleep(pause)
            backoff = min(_BACKOFF_CAP_S, backoff * 2)
            continue
        savepoint.commit()
        bind.execute(_SET_LOCK_TIMEOUT, {"value": previous})
        return


def validate_constraints(
    connection: Connection, table: str, names: Sequence[str], *, repair: str | None = None
) -> None:
    """After the migration's commit: validate whichever of ``names`` (constraints of
    outbox.``table``) are still NOT VALID, in a transaction of its own under the migration's
    advisory lock, first running the ``repair`` SQL file (rows written before the constraints
    existed). Does nothing when all are valid, so every `migrate` may call it: one interrupted
    before this step is completed by the next."""
    with connection.begin():
        connection.execute(_ADVISORY_LOCK, {"id": MIGRATION_LOCK_ID})
        pending = connection.scalars(
            _NOT_VALIDATED, {"table": f"outbox.{table}", "names": list(names)}
        ).all()
        if not pending:
            return
        if repair is not None:
            connection.exec_driver_sql((SQL_DIR / repair).read_text(encoding="utf-8"))
        for name in pending:
            # Identifiers cannot be parameters: the server quotes them (format %I).
            ddl = connection.scalar(_VALIDATE, {"table": table, "name": name})
            connection.exec_driver_sql(ddl)
        log.info("migration.constraints_validated", table=table, constraints=list(pending))


def _first_line(statement: str) -> str:
    return " ".join(statement.split())[:80]


_SET_LOCK_TIMEOUT = text("SELECT set_config('lock_timeout', :value, true)")
_ADVISORY_LOCK = text("SELECT pg_advisory_xact_lock(:id)")
_VALIDATE = text(
    "SELECT format('ALTER TABLE outbox.%I VALIDATE CONSTRAINT %I', "
    "CAST(:table AS text), CAST(:name AS text))"
)
_NOT_VALIDATED = text(
    "SELECT conname FROM pg_constraint WHERE conrelid = to_regclass(:table) "
    "AND conname = ANY(:names) AND NOT convalidated ORDER BY conname"
)
