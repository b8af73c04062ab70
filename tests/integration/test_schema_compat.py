"""The start-up check against a schema ahead of this code: run when it declares this version
compatible (revision 0010's outbox.compatible_code), refuse with what to do otherwise."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import asyncpg
import pytest
import structlog

from outbox_worker.errors import SchemaNotReady
from outbox_worker.migrate import SCHEMA_HEAD, SchemaFit
from outbox_worker.store.connection import ensure_schema_ready
from tests.integration.conftest import LoginAs
from tests.processes import acli

# A revision id no release of this code ships: a later release's expand-only revision.
NEWER = "0099"
ROLES = ["outbox_worker", "outbox_operator", "outbox_producer"]


async def move_to_newer(pg: asyncpg.Connection, *, lists_this_version: bool) -> None:
    """Make the database look migrated by a later release: its revision, its own row in the
    marker, and this version's row kept (an expand revision) or deleted (a contract one)."""
    await pg.execute("UPDATE outbox.alembic_version SET version_num = $1", NEWER)
    await pg.execute("INSERT INTO outbox.compatible_code (revision) VALUES ($1)", NEWER)
    if not lists_this_version:
        await pg.execute("DELETE FROM outbox.compatible_code WHERE revision = $1", SCHEMA_HEAD)


async def _fit_as(url: str) -> tuple[SchemaFit, list[MutableMapping[str, Any]]]:
    conn = await asyncpg.connect(url)
    try:
        with structlog.testing.capture_logs() as logs:
            fit = await ensure_schema_ready(conn)
    finally:
        await conn.close()
    return fit, logs


@pytest.mark.parametrize("role", ROLES)
async def test_at_head_every_role_passes_quietly(login_as: LoginAs, role: str) -> None:
    """At this version's head the check passes for every role and logs nothing."""
    fit, logs = await _fit_as(await login_as(role))
    assert (fit, logs) == (SchemaFit.AT_HEAD, [])


@pytest.mark.parametrize("role", ROLES)
async def test_a_newer_schema_that_lists_this_version_passes_with_one_info_line(
    pg: asyncpg.Connection, login_as: LoginAs, role: str
) -> None:
    """A newer revision whose marker lists this version's head passes, saying so once at info."""
    await move_to_newer(pg, lists_this_version=True)
    fit, logs = await _fit_as(await login_as(role))
    assert fit is SchemaFit.AHEAD_COMPATIBLE
    [line] = logs
    assert (line["event"], line["log_level"]) == ("schema.newer_accepted", "info")
    assert line["detail"] == (
        f"schema is at {NEWER}, newer than this version's {SCHEMA_HEAD}, and declares it compatible"
    )


async def test_a_newer_schema_that_does_not_list_this_version_refuses(
    pg: asyncpg.Connection, login_as: LoginAs
) -> None:
    """A newer revision without this version's row (a contract revision) refuses: deploy the
    version that ran migrate, not "run migrate"."""
    await move_to_newer(pg, lists_this_version=False)
    with pytest.raises(SchemaNotReady) as refused:
        await _fit_as(await login_as("outbox_worker"))
    message = str(refused.value)
    assert f"at revision {NEWER}, newer than this version's {SCHEMA_HEAD}" in message
    assert "this version is older than the schema; deploy the version that ran migrate" in message
    assert "run `outbox-worker migrate`" not in message


async def test_an_older_schema_refuses_with_run_migrate(
    pg: asyncpg.Connection, login_as: LoginAs
) -> None:
    """A revision this code ships but older than its head refuses: run migrate."""
    await pg.execute("UPDATE outbox.alembic_version SET version_num = '0008'")
    with pytest.raises(SchemaNotReady) as refused:
        await _fit_as(await login_as("outbox_operator"))
    assert str(refused.value) == (
        f"the outbox schema is at revision 0008, this version needs {SCHEMA_HEAD}; "
        "run `outbox-worker migrate`"
    )


async def test_operator_commands_and_check_accept_a_compatible_newer_schema(
    pg: asyncpg.Connection, database_url: str
) -> None:
    """`stats` runs on a compatible newer schema with its output untouched; `check` passes with
    a line saying why."""
    await move_to_newer(pg, lists_this_version=True)
    stats = await acli("stats", "--json", db=database_url)
    assert stats.code == 0, stats.err
    assert stats.out.lstrip().startswith("{")
    check = await acli("check", db=database_url)
    assert (
        f"ok   schema compatible (schema is at {NEWER}, newer than this version's "
        f"{SCHEMA_HEAD}, and declares it compatible)"
    ) in check.out


async def test_operator_commands_and_check_refuse_an_incompatible_newer_schema(
    pg: asyncpg.Connection, database_url: str
) -> None:
    """On a newer schema without this version's row `stats` exits 2 and `check` fails, both
    saying to deploy the version that ran migrate."""
    await move_to_newer(pg, lists_this_version=False)
    stats = await acli("stats", db=database_url)
    assert stats.code == 2
    assert "deploy the version that ran migrate" in stats.err
    check = await acli("check", db=database_url)
    assert "fail schema compatible: " in check.out
    assert "deploy the version that ran migrate" in check.out
