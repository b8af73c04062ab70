"""`workers`, `pause`, `resume`, `audit` and the fleet part of `stats`, run as real commands."""

from __future__ import annotations

import uuid

import asyncpg

from outbox_worker.schema import FLEET_PAUSE
from outbox_worker.store import fleet_queries as sql
from tests.integration.rows import insert_dead_rows
from tests.processes import cli

OPERATOR = {"USER": "night-oncall", "LOGNAME": "night-oncall"}


async def test_pause_shows_in_stats_and_workers_and_resume_clears_it(database_url: str) -> None:
    """Who paused, when and why shows in `stats --json` and `workers --json` until resume."""
    run = cli("pause", "--reason", "Ravelin asked to hold", db=database_url, env=OPERATOR)
    assert run.code == 0, run.err
    assert "PAUSED fleet-wide" in run.out
    assert "night-oncall" in run.out
    for command in ("stats", "workers"):
        pause = cli(command, "--json", db=database_url).json()["pause"]
        assert (pause["paused"], pause["reason"], pause["actor"], pause["via"]) == (
            True, "Ravelin asked to hold", "night-oncall", "cli",
        )  # fmt: skip
    text = cli("stats", db=database_url).out
    assert "PAUSED fleet-wide" in text
    assert "Ravelin asked to hold" in text
    resumed = cli("resume", db=database_url, env=OPERATOR)
    assert resumed.code == 0, resumed.err
    assert "delivery resumed" in resumed.out
    assert cli("stats", "--json", db=database_url).json()["pause"]["paused"] is False
    assert "not paused" in cli("resume", db=database_url).out


def test_pause_without_a_reason_is_a_usage_error(database_url: str) -> None:
    """No --reason, or a blank one: exit 2, nothing paused."""
    assert cli("pause", db=database_url).code == 2
    blank = cli("pause", "--reason", "   ", db=database_url)
    assert blank.code == 2
    assert "needs a reason" in blank.err
    assert cli("stats", "--json", db=database_url).json()["pause"]["paused"] is False


async def test_workers_lists_registered_workers_and_stats_counts_them(
    pg: asyncpg.Connection, database_url: str
) -> None:
    """A registered worker appears in `workers` (text and JSON) and in `stats` by state."""
    worker_id = uuid.uuid4()
    await pg.execute(
        sql.HEARTBEAT, worker_id, "web-7", 31337, "9.9.9", "delivering", None, False, 12, 2,
        FLEET_PAUSE,
    )  # fmt: skip
    data = cli("workers", "--json", db=database_url).json()
    [worker] = data["workers"]
    assert (worker["id"], worker["host"], worker["pid"], worker["state"]) == (
        str(worker_id), "web-7", 31337, "delivering",
    )  # fmt: skip
    assert (worker["sends_last_minute"], worker["in_flight"]) == (12, 2)
    text = cli("workers", db=database_url).out
    assert "web-7" in text
    assert "31337" in text
    counts = cli("stats", "--json", db=database_url).json()["workers"]
    assert counts["delivering"] == 1
    assert sum(counts.values()) == 1


async def test_audit_shows_requeue_and_pause_with_who_and_what(
    pg: asyncpg.Connection, database_url: str
) -> None:
    """Each action is one line of `audit`: the OS user, the login, the filter, the count."""
    await insert_dead_rows(pg, 7, last_status=503)
    requeue = cli("requeue", "--status-code", "503", "--yes", "--batch-size", "3",
                  db=database_url, env=OPERATOR)  # fmt: skip
    assert requeue.code == 0, requeue.err
    cli("pause", "--reason", "bad producer data", db=database_url, env=OPERATOR)
    actions = cli("audit", "--json", db=database_url).json()["actions"]
    assert [(a["action"], a["row_count"]) for a in actions] == [("pause", 1), ("requeue", 7)]
    login = await pg.fetchval("SELECT session_user")
    assert {(a["actor"], a["db_role"], a["via"]) for a in actions} == {
        ("night-oncall", login, "cli")
    }
    assert actions[1]["details"]["filters"]["status_code"] == 503
    assert actions[1]["transactions"] == 3
    text = cli("audit", "--since", "1h", db=database_url).out
    assert "status_code=503" in text
    assert "night-oncall" in text


def test_a_reason_with_control_characters_is_refused(database_url: str) -> None:
    """A reason with a terminal escape or a bidi override is refused (exit 2), so it never
    reaches another operator's terminal."""
    for reason in ("x\x1b]0;owned\x07", "hold \u202eevil"):
        run = cli("pause", "--reason", reason, db=database_url)
        assert run.code == 2
        assert "control characters" in run.err
    assert cli("audit", "--json", db=database_url).json()["actions"] == []
