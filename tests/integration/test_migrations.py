"""The alembic history: upgrade, compare with schema.metadata, downgrade, concurrency."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from outbox_worker import migrate
from tests.schemas import schema_diff


def _tables_and_functions(url: str) -> tuple[list[str], list[str]]:
    with psycopg.connect(url) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'outbox' ORDER BY 1"
            )
        ]
        functions = [
            r[0]
            for r in conn.execute(
                "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                "WHERE n.nspname = 'outbox' ORDER BY 1"
            )
        ]
    return tables, functions


def test_upgrade_matches_schema_metadata(empty_database_url: str) -> None:
    """After upgrade to head the database has exactly what schema.py declares."""
    migrate.upgrade(empty_database_url)
    assert schema_diff(empty_database_url) == []


def test_downgrade_to_base_and_upgrade_again(empty_database_url: str) -> None:
    """Downgrade to base removes every object but the version table; upgrade restores them."""
    migrate.upgrade(empty_database_url)
    migrate.downgrade(empty_database_url, "base")
    assert _tables_and_functions(empty_database_url) == (["alembic_version"], [])
    migrate.upgrade(empty_database_url)
    tables, functions = _tables_and_functions(empty_database_url)
    assert tables == [
        "alembic_version",
        "audit_log",
        "compatible_code",
        "messages",
        "pause",
        "send_schedule",
        "workers",
    ]
    assert {
        "enqueue",
        "insert_message",
        "validate_update",
        "normalize_update",
        "history_push",
        "audit_log_guard",
        "purge_expired_audit",
    } <= set(functions)
    assert schema_diff(empty_database_url) == []


def test_upgrade_twice_is_a_no_op(empty_database_url: str) -> None:
    """A second upgrade finds the schema at head and changes nothing."""
    migrate.upgrade(empty_database_url)
    before = _tables_and_functions(empty_database_url)
    migrate.upgrade(empty_database_url)
    assert _tables_and_functions(empty_database_url) == before
    with psycopg.connect(empty_database_url) as conn:
        versions = conn.execute("SELECT version_num FROM outbox.alembic_version").fetchall()
    assert versions == [(migrate.head_revision(),)]


def test_concurrent_migrations_leave_one_clean_schema(empty_database_url: str) -> None:
    """Four processes migrating at once all succeed and leave one schema at head."""
    code = "import sys; from outbox_worker import migrate; migrate.upgrade(sys.argv[1])"
    with ThreadPoolExecutor(4) as pool:
        results = list(
            pool.map(
                lambda _: subprocess.run(
                    [sys.executable, "-c", code, empty_database_url],
                    capture_output=True,
                    text=True,
                    timeout=120,
                    check=False,
                ),
                range(4),
            )
        )
    assert [r.returncode for r in results] == [0, 0, 0, 0], [r.stderr for r in results]
    assert schema_diff(empty_database_url) == []
    with psycopg.connect(empty_database_url) as conn:
        versions = conn.execute("SELECT version_num FROM outbox.alembic_version").fetchall()
    assert versions == [(migrate.head_revision(),)]


@pytest.mark.parametrize("option", ["fillfactor=80", "autovacuum_vacuum_threshold=5000"])
def test_messages_table_has_hot_table_storage_settings(database_url: str, option: str) -> None:
    """The queue table is created with the storage settings of a heavily updated table."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT reloptions FROM pg_class WHERE oid = 'outbox.messages'::regclass"
        ).fetchone()
    assert row is not None
    assert option in row[0]


def test_downgrade_to_0001_restores_its_validator(empty_database_url: str) -> None:
    """Downgrading 0002 drops the bounded-input rules and restores 0001's validate_update."""
    big = '{"timestamp": 1512828988826, "registration": {"success": true}, "n": 1' + "0" * 30 + "}"
    query = "SELECT outbox.validate_update(%s::jsonb)"
    migrate.upgrade(empty_database_url)
    with psycopg.connect(empty_database_url) as conn:
        assert conn.execute(query, [big]).fetchone() != ([],)
    migrate.downgrade(empty_database_url, "0001")
    _, functions = _tables_and_functions(empty_database_url)
    assert not {"limit_problem", "big_integer_paths"} & set(functions)
    with psycopg.connect(empty_database_url) as conn:
        assert conn.execute(query, [big]).fetchone() == ([],)
    migrate.upgrade(empty_database_url)
    assert schema_diff(empty_database_url) == []


def test_upgrade_to_0004_repairs_rows_it_would_refuse(empty_database_url: str) -> None:
    """Rows planted before 0004 are repaired as the worker would, so the checks validate."""
    migrate.upgrade(empty_database_url, "0003")
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO outbox.messages (payload, history, attempts) VALUES "
            "('\"text\"', '[]', 0), ('{\"a\": 1}', 'null', 2147483647)"
        )
    migrate.upgrade(empty_database_url)
    with psycopg.connect(empty_database_url) as conn:
        rows = conn.execute(
            "SELECT state, history, attempts, last_error FROM outbox.messages ORDER BY id"
        ).fetchall()
        unvalidated = conn.execute(
            "SELECT count(*) FROM pg_constraint WHERE conrelid = 'outbox.messages'::regclass "
            "AND NOT convalidated"
        ).fetchone()
    assert [(r[0], r[1], r[2]) for r in rows] == [("dead", [], 0), ("pending", [], 1000000)]
    assert rows[0][3].startswith("not sent: the stored payload is a JSON string")
    assert unvalidated == (0,)


def test_downgrade_to_0003_restores_invoker_functions_and_public_execute(
    empty_database_url: str,
) -> None:
    """Downgrading 0004 drops the row checks and restores PUBLIC's EXECUTE; upgrade again works."""
    migrate.upgrade(empty_database_url)
    migrate.downgrade(empty_database_url, "0003")
    with psycopg.connect(empty_database_url) as conn:
        definers = conn.execute(
            "SELECT count(*) FROM pg_proc WHERE prosecdef AND pronamespace = 'outbox'::regnamespace"
        ).fetchone()
        public = conn.execute(
            "SELECT has_function_privilege('public', 'outbox.enqueue(jsonb, text)', 'EXECUTE')"
        ).fetchone()
    assert (definers, public) == ((0,), (True,))
    migrate.upgrade(empty_database_url)
    assert schema_diff(empty_database_url) == []


def test_downgrade_to_0007_drops_fleet_control_and_upgrade_restores_it(
    empty_database_url: str,
) -> None:
    """Downgrading 0008 drops the registry, the pause and the audit log; upgrade brings them back."""
    migrate.upgrade(empty_database_url)
    migrate.downgrade(empty_database_url, "0007")
    tables, functions = _tables_and_functions(empty_database_url)
    assert tables == ["alembic_version", "messages", "send_schedule"]
    assert not {"audit_log_guard", "audit_log_no_truncate", "purge_expired_audit"} & set(functions)
    migrate.upgrade(empty_database_url)
    assert schema_diff(empty_database_url) == []


def test_downgrade_to_0009_drops_the_compatibility_marker_and_upgrade_restores_it(
    empty_database_url: str,
) -> None:
    """Downgrading 0010 drops outbox.compatible_code; upgrade brings it back listing 0009 and 0010."""
    migrate.upgrade(empty_database_url)
    migrate.downgrade(empty_database_url, "0009")
    tables, _ = _tables_and_functions(empty_database_url)
    assert "compatible_code" not in tables
    assert schema_diff(empty_database_url) != []
    migrate.upgrade(empty_database_url)
    assert schema_diff(empty_database_url) == []
    with psycopg.connect(empty_database_url) as conn:
        rows = conn.execute("SELECT revision FROM outbox.compatible_code ORDER BY 1").fetchall()
    assert rows == [("0009",), ("0010",)]
