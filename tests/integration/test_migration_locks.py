"""DDL on a table the fleet is using: it waits for its lock only briefly, so writes never queue
behind it for long; it retries until the table is free, and gives up cleanly if it never is."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager

import psycopg
import pytest

from outbox_worker import migrate, migration_scripts
from tests.schemas import schema_diff
from tests.waiting import wait_for_sync

ROW_RULES = ("messages_attempts_bounded", "messages_history_array", "messages_payload_object")
UPDATE = '{"timestamp": 1512828988826, "registration": {"success": true}}'
# The ALTER of revision 0004, waiting for its lock (not yet granted).
_ALTER_WAITING = """
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND wait_event_type = 'Lock'
  AND query LIKE '%ALTER TABLE outbox.messages%'
"""


@contextmanager
def table_held(url: str) -> Iterator[psycopg.Connection]:
    """A transaction reading outbox.messages, left open: its lock stops any ALTER TABLE."""
    with psycopg.connect(url) as holder:
        holder.execute("SELECT count(*) FROM outbox.messages")
        yield holder


@contextmanager
def migrating(url: str) -> Iterator[Future[None]]:
    """``migrate.upgrade(url)`` to head in a thread of its own."""
    with ThreadPoolExecutor(1) as pool:
        yield pool.submit(migrate.upgrade, url)


def constraints(url: str) -> list[tuple[str, bool]]:
    """Revision 0004's row constraints on outbox.messages, and whether each is validated."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT conname, convalidated FROM pg_constraint "
            "WHERE conrelid = 'outbox.messages'::regclass AND conname = ANY(%s) ORDER BY 1",
            [list(ROW_RULES)],
        ).fetchall()
    return [(name, valid) for name, valid in rows]


def test_writes_pass_while_ddl_waits_for_a_busy_table(empty_database_url: str) -> None:
    """A long reader holds the table: the migration's ALTER keeps timing out and retrying, and
    inserts meanwhile go through instead of queueing behind it; once the reader ends, the
    migration finishes with every constraint validated and the inserted rows kept."""
    url = empty_database_url
    migrate.upgrade(url, "0003")
    with table_held(url) as holder, migrating(url) as migration:
        wait_for_sync(lambda: _alter_waiting(url), message="the migration's ALTER waiting")
        with psycopg.connect(url, autocommit=True) as writer:
            writer.execute("SET statement_timeout = '60s'")  # blocked for good: fail, not hang
            for _ in range(5):
                writer.execute("INSERT INTO outbox.messages (payload) VALUES (%s)", [UPDATE])
                wait_for_sync(lambda: _alter_waiting(url), message="the ALTER retried")
        assert not migration.done()
        holder.rollback()
        migration.result(timeout=120)

    assert constraints(url) == [(name, True) for name in ROW_RULES]
    assert schema_diff(url) == []
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM outbox.messages").fetchone() == (5,)


def test_ddl_gives_up_when_the_table_stays_busy(
    empty_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past its deadline the migration fails with a line that says what to look at, and the
    schema stays at the revision before: nothing half-done."""
    url = empty_database_url
    migrate.upgrade(url, "0003")
    monkeypatch.setattr(migration_scripts, "LOCK_DEADLINE_S", 1.0)
    with table_held(url), pytest.raises(migration_scripts.LockNotTaken) as refused:
        migrate.upgrade(url)

    assert "pg_stat_activity" in str(refused.value)
    assert constraints(url) == []
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT version_num FROM outbox.alembic_version").fetchone() == (
            "0003",
        )


def _alter_waiting(url: str) -> bool:
    with psycopg.connect(url) as conn:
        row = conn.execute(_ALTER_WAITING).fetchone()
    return row is not None and row[0] > 0
