"""The operator commands run as real subprocesses against real PostgreSQL (and the stand-in)."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import signal
import subprocess
import sys
from datetime import timedelta

import asyncpg
import click
import pytest

from outbox_worker.cli.commands import COMMAND_MODULES, register
from outbox_worker.standin import StandIn
from tests.cases import KEY
from tests.integration.rows import (
    PII_ERROR,
    PII_PAYLOAD,
    PII_VALUES,
    insert_dead_rows,
    insert_message,
    snapshot,
)
from tests.processes import acli, cli, cli_env
from tests.waiting import count_by_state, wait_for_sync

UNREACHABLE_URL = "postgresql://outbox@127.0.0.1:1/outbox"


# --- dead list / dead show ----------------------------------------------------------------------


async def test_dead_list_shows_dead_letters_newest_first(
    pg: asyncpg.Connection, database_url: str
) -> None:
    """`dead list` prints one line per dead letter with id, status and reason, newest first."""
    old = await insert_message(pg, ago=timedelta(hours=2), last_error="Invalid Request: x")
    new = await insert_message(pg, ago=timedelta(minutes=1), last_status=503, last_error="boom")
    await insert_message(pg, state="pending")
    run = cli("dead", "list", db=database_url)
    assert run.code == 0, run.err
    lines = run.out.splitlines()
    assert lines[0].split()[:4] == ["id", "age", "attempts", "status"]
    assert lines[1].split()[0] == str(new)
    assert "503" in lines[1]
    assert "boom" in lines[1]
    assert lines[2].split()[0] == str(old)
    assert len(lines) == 3


async def test_dead_list_json_applies_filters(pg: asyncpg.Connection, database_url: str) -> None:
    """`dead list --json` with filters prints only the matching rows as parseable JSON."""
    await insert_message(pg, last_status=400, last_error="bad field")
    wanted = await insert_message(pg, last_status=503, last_error="Service Unavailable")
    await insert_message(pg, last_status=503, last_error="x", ago=timedelta(days=3))
    run = cli(
        "dead", "list", "--status-code", "503", "--since", "1d", "--error-contains", "unavail",
        "--json", db=database_url,
    )  # fmt: skip
    assert run.code == 0, run.err
    data = run.json()
    assert [m["id"] for m in data["messages"]] == [wanted]
    assert data["total_matching"] == 1
    message = data["messages"][0]
    assert (message["last_status"], message["attempts"]) == (503, 1)
    assert message["reason"] == "Service Unavailable"
    assert message["age_s"] >= 0


async def test_dead_list_limit_says_there_are_more(
    pg: asyncpg.Connection, database_url: str
) -> None:
    """--limit caps the rows and the output says how many match in all."""
    await insert_dead_rows(pg, 5)
    run = cli("dead", "list", "--limit", "2", db=database_url)
    assert run.code == 0, run.err
    assert "showing 2 of 5" in run.out


async def test_dead_show_prints_state_history_body_and_dedup_key(
    pg: asyncpg.Connection, database_url: str
) -> None:
    """`dead show ID` prints the state, every attempt, the body and the dedup key."""
    history = [
        {
            "at": "2024-05-01T10:00:00+00:00",
            "status": 503,
            "error": "unavailable",
            "latency_ms": 41,
        },
        {"at": "2024-05-01T10:00:02+00:00", "status": 400, "error": "bad email", "latency_ms": 17},
    ]
    message_id = await insert_message(pg, history=history, dedup_key="signup-77")
    run = cli("dead", "show", str(message_id), db=database_url)
    assert run.code == 0, run.err
    assert "dead" in run.out
    assert "signup-77" in run.out
    for text in ("2024-05-01T10:00:00", "unavailable", "41ms", "bad email", "17ms", "c-1"):
        assert text in run.out

    data = cli("dead", "show", str(message_id), "--json", db=database_url).json()
    assert data["state"] == "dead"
    assert data["dedup_key"] == "signup-77"
    assert data["history"] == history
    assert data["payload"]["customer"]["customerId"] == "c-1"


async def test_dead_show_of_unknown_id_exits_1(database_url: str) -> None:
    """An id with no message is a runtime failure naming the id."""
    run = cli("dead", "show", "999", db=database_url)
    assert run.code == 1
    assert "no message with id 999" in run.err


@pytest.mark.parametrize(
    "command",
    [["dead", "list"], ["dead", "list", "--json"], ["dead", "show"], ["dead", "show", "--json"]],
)
async def test_pii_is_masked_unless_show_pii(
    pg: asyncpg.Connection, database_url: str, command: list[str]
) -> None:
    """No known personal value appears without --show-pii; with it, they do."""
    message_id = await insert_message(
        pg,
        payload=PII_PAYLOAD,
        last_error=PII_ERROR,
        history=[
            {"at": "2024-05-01T10:00:00Z", "status": 400, "error": PII_ERROR, "latency_ms": 3}
        ],
        last_response={"message": PII_ERROR, "traceId": "trace-1"},
    )
    args = [*command, str(message_id)] if command[1] == "show" else command
    masked = cli(*args, db=database_url)
    assert masked.code == 0, masked.err
    leaked = [value for value in PII_VALUES if value in masked.out]
    assert leaked == []
    assert "cust-42" in masked.out  # ids stay readable

    shown = cli(*args, "--show-pii", db=database_url)
    assert shown.code == 0, shown.err
    assert "john.smith@example.com" in shown.out
    if "show" in command or "--json" in command:  # the full body is printed
        assert "+447700900123" in shown.out
        assert "81.152.33.44" in shown.out


# --- requeue ------------------------------------------------------------------------------------


async def test_requeue_by_id_moves_the_message_to_pending(
    pg: asyncpg.Connection, database_url: str
) -> None:
    """`requeue --id` moves one dead letter to pending and prints the count."""
    message_id = await insert_message(pg, attempts=25)
    run = cli("requeue", "--id", str(message_id), db=database_url)
    assert run.code == 0, run.err
    assert "requeued 1 message(s)" in run.out
    row = await pg.fetchrow(
        "SELECT state, attempts, requeue_count FROM outbox.messages WHERE id = $1", message_id
    )
    assert row is not None
    assert tuple(row) == ("pending", 0, 1)


async def test_requeue_json_reports_counts(pg: asyncpg.Connection, database_url: str) -> None:
    """`requeue --json` prints the number requeued and the named messages that were not dead."""
    dead = [await insert_message(pg) for _ in range(2)]
    pending = await insert_message(pg, state="pending")
    ids = [a for i in [*dead, pending] for a in ("--id", str(i))]
    data = cli("requeue", *ids, "--yes", "--json", db=database_url).json()
    assert data["requeued"] == 2
    assert data["not_dead"] == [{"id": pending, "state": "pending"}]


@pytest.mark.parametrize("state", ["pending", "acknowledged"])
async def test_requeue_of_a_message_not_dead_says_so_and_changes_nothing(
    pg: asyncpg.Connection, database_url: str, state: str
) -> None:
    """Requeueing a message that is not dead names its state and leaves every row alone."""
    message_id = await insert_message(pg, state=state)
    before = await snapshot(pg)
    run = cli("requeue", "--id", str(message_id), db=database_url)
    assert run.code == 0, run.err
    assert f"message {message_id} is {state}, not dead" in run.out
    assert "requeued 0" in run.out
    assert await snapshot(pg) == before


async def test_requeue_of_unknown_id_exits_1(pg: asyncpg.Connection, database_url: str) -> None:
    """An unknown id fails with exit 1 and moves nothing, even next to a dead one."""
    dead = await insert_message(pg)
    before = await snapshot(pg)
    run = cli("requeue", "--id", str(dead), "--id", "4242", "--yes", db=database_url)
    assert run.code == 1
    assert "no message with id 4242" in run.err
    assert await snapshot(pg) == before


async def test_requeue_of_many_without_yes_refuses_off_a_terminal(
    pg: asyncpg.Connection, database_url: str
) -> None:
    """More than one message without --yes and no terminal to ask on: exit 2, nothing moves."""
    await insert_dead_rows(pg, 3)
    before = await snapshot(pg)
    run = cli("requeue", "--all", db=database_url)
    assert run.code == 2
    assert "--yes" in run.err
    assert await snapshot(pg) == before


async def test_requeue_dry_run_changes_nothing(pg: asyncpg.Connection, database_url: str) -> None:
    """--dry-run prints what would move and leaves every row exactly as it was."""
    await insert_dead_rows(pg, 30)
    await insert_message(pg, last_status=400)
    before = await snapshot(pg)
    run = cli("requeue", "--status-code", "503", "--dry-run", db=database_url)
    assert run.code == 0, run.err
    assert "would requeue 30 message(s)" in run.out
    data = cli("requeue", "--all", "--dry-run", "--json", db=database_url).json()
    assert data["dry_run"] is True
    assert data["would_requeue"] == 31
    by_id = cli("requeue", "--id", str(before[0][0]), "--dry-run", "--json", db=database_url)
    assert by_id.json()["would_requeue"] == 1
    assert await snapshot(pg) == before


async def test_requeue_with_filters_moves_only_matches(
    pg: asyncpg.Connection, database_url: str
) -> None:
    """Filters with --yes requeue exactly the dead letters `dead list` shows for them."""
    await insert_dead_rows(pg, 120, last_status=503)
    other = await insert_message(pg, last_status=400)
    run = cli("requeue", "--status-code", "503", "--yes", "--batch-size", "50", db=database_url)
    assert run.code == 0, run.err
    assert "requeued 120 message(s)" in run.out
    assert await count_by_state(pg) == {"pending": 120, "dead": 1}
    assert await pg.fetchval("SELECT state FROM outbox.messages WHERE id = $1", other) == "dead"


async def test_requeue_of_several_ids_without_yes_refuses_off_a_terminal(
    pg: asyncpg.Connection, database_url: str
) -> None:
    """Two named dead letters without --yes and no terminal: exit 2, nothing moves."""
    ids = [await insert_message(pg) for _ in range(2)]
    before = await snapshot(pg)
    run = cli("requeue", "--id", str(ids[0]), "--id", str(ids[1]), db=database_url)
    assert run.code == 2
    assert "this would requeue 2 messages; pass --yes" in run.err
    assert await snapshot(pg) == before


@pytest.mark.parametrize(
    ("command", "printed"),
    [
        (["requeue", "--status-code", "599"], "requeued 0 message(s)"),
        (["purge", "--older-than", "7d", "--include-dead"], "deleted 0 acknowledged and 0 dead"),
    ],
)
async def test_nothing_to_change_needs_no_confirmation(
    pg: asyncpg.Connection, database_url: str, command: list[str], printed: str
) -> None:
    """With no matching rows a bulk command asks nothing, even off a terminal, and says 0."""
    await insert_dead_rows(pg, 3, last_status=503)
    before = await snapshot(pg)
    run = cli(*command, db=database_url)
    assert run.code == 0, run.err
    assert printed in run.out
    assert await snapshot(pg) == before


@pytest.mark.parametrize(
    ("command", "answer", "code", "after"),
    [
        (["requeue", "--all"], "y", 0, {"pending": 3}),
        (["requeue", "--all"], "n", 1, {"dead": 3}),
        (["purge", "--older-than", "7d", "--include-dead"], "y", 0, {}),
        (["purge", "--older-than", "7d", "--include-dead"], "n", 1, {"dead": 3}),
    ],
)
async def test_bulk_change_at_a_terminal_asks_first(
    pg: asyncpg.Connection,
    database_url: str,
    command: list[str],
    answer: str,
    code: int,
    after: dict[str, int],
) -> None:
    """On a terminal, requeue and purge of several rows ask; yes changes them, no aborts (exit 1)."""
    for _ in range(3):
        await insert_message(pg, ago=timedelta(days=8))
    leader, follower = pty.openpty()
    try:
        os.write(leader, f"{answer}\n".encode())
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "outbox_worker", *command,
            env=cli_env(database_url), stdin=follower,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    finally:
        os.close(follower)
        os.close(leader)
    assert proc.returncode == code, err.decode()
    assert "3 messages? [y/N]" in out.decode()
    assert ("aborted" in err.decode()) == (answer == "n")
    assert await count_by_state(pg) == after


@pytest.mark.parametrize(
    "args", [[], ["--all", "--id", "1"], ["--all", "--status-code", "400"], ["--id", "x"]]
)
def test_requeue_needs_exactly_one_selection(args: list[str]) -> None:
    """Nothing, or two ways of naming messages at once, is a usage error (exit 2)."""
    run = cli("requeue", *args, db="postgresql://unused@127.0.0.1:1/x")
    assert run.code == 2


# --- stats --------------------------------------------------------------------------------------


async def test_stats_json_counts(pg: asyncpg.Connection, database_url: str) -> None:
    """`stats --json` has the counts by state, recent windows and top reasons."""
    await insert_message(pg, state="pending")
    await insert_message(pg, state="acknowledged", ago=timedelta(seconds=5))
    await insert_message(pg, ago=timedelta(minutes=5), last_error="Invalid Request: email")
    run = cli("stats", "--json", db=database_url)
    assert run.code == 0, run.err
    data = run.json()
    assert (data["pending"], data["acknowledged"], data["dead"]) == (1, 1, 1)
    assert (data["dead_last_hour"], data["delivered_last_minute"]) == (1, 1)
    assert data["oldest_pending_age_s"] > 0
    assert data["top_dead_reasons"] == [{"reason": "Invalid Request: email", "count": 1}]

    plain = cli("stats", db=database_url)
    assert plain.code == 0, plain.err
    assert "pending" in plain.out
    assert "Invalid Request: email" in plain.out


def test_stats_watch_refreshes_until_ctrl_c(database_url: str) -> None:
    """`stats --watch --json` prints a line per refresh and ends cleanly on SIGINT."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "outbox_worker", "stats", "--watch", "--json", "--interval", "50ms"],
        env=cli_env(database_url),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(3)]
        assert all(json.loads(line)["pending"] == 0 for line in lines)
        proc.send_signal(signal.SIGINT)
        wait_for_sync(lambda: proc.poll() is not None, timeout=15, message="stats to stop")
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


# --- purge --------------------------------------------------------------------------------------


async def test_purge_deletes_old_acknowledged_rows(
    pg: asyncpg.Connection, database_url: str
) -> None:
    """`purge --older-than 7d --yes` deletes old acknowledged rows and reports the count."""
    for days in (8, 9, 10):
        await insert_message(pg, state="acknowledged", ago=timedelta(days=days))
    await insert_message(pg, state="acknowledged", ago=timedelta(days=1))
    await insert_message(pg, ago=timedelta(days=30))
    data = cli("purge", "--older-than", "7d", "--yes", "--json", db=database_url).json()
    assert data == {"dry_run": False, "acknowledged": 3, "dead": 0}
    assert await pg.fetchval("SELECT count(*) FROM outbox.messages") == 2

    run = cli("purge", "--older-than", "7d", "--include-dead", "--yes", db=database_url)
    assert run.code == 0, run.err
    assert "deleted 0 acknowledged and 1 dead message(s)" in run.out


async def test_purge_dry_run_and_refusal_change_nothing(
    pg: asyncpg.Connection, database_url: str
) -> None:
    """--dry-run reports the count; without --yes off a terminal purge refuses; rows stay."""
    for days in (8, 9):
        await insert_message(pg, state="acknowledged", ago=timedelta(days=days))
    before = await snapshot(pg)
    run = cli("purge", "--older-than", "7d", "--dry-run", db=database_url)
    assert run.code == 0, run.err
    assert "would delete 2 acknowledged message(s)" in run.out
    refused = cli("purge", "--older-than", "7d", db=database_url)
    assert refused.code == 2
    assert "--yes" in refused.err
    assert await snapshot(pg) == before


# --- errors shared by every command --------------------------------------------------------------

DB_COMMANDS = [
    ["dead", "list"],
    ["dead", "show", "1"],
    ["requeue", "--all", "--yes"],
    ["stats"],
    ["purge", "--older-than", "7d", "--yes"],
]


@pytest.mark.parametrize("command", DB_COMMANDS)
def test_no_database_configured_exits_2(command: list[str]) -> None:
    """Without OUTBOX_DATABASE_URL or --database-url: exit 2 saying what to set."""
    run = cli(*command, db=None)
    assert run.code == 2
    assert "OUTBOX_DATABASE_URL is not set" in run.err


@pytest.mark.parametrize("command", DB_COMMANDS)
def test_unreachable_database_exits_1(command: list[str]) -> None:
    """A database that cannot be reached is a runtime failure: exit 1, one line."""
    run = cli(*command, db=UNREACHABLE_URL)
    assert run.code == 1
    assert "unavailable" in run.err
    assert len(run.err.strip().splitlines()) == 1


@pytest.mark.parametrize("command", DB_COMMANDS)
def test_schema_not_migrated_exits_2(empty_database_url: str, command: list[str]) -> None:
    """A database without the outbox schema: exit 2 with "run `outbox-worker migrate`"."""
    run = cli(*command, db=empty_database_url)
    assert run.code == 2
    assert "run `outbox-worker migrate`" in run.err


@pytest.mark.parametrize(
    "args",
    [
        ["dead", "list", "--since", "yesterday"],
        ["purge", "--older-than", "7x"],
        ["requeue", "--since", "soon", "--dry-run"],
        ["stats", "--watch", "--interval", "fast"],
    ],
)
def test_bad_duration_exits_2(args: list[str]) -> None:
    """A duration that is not one is a usage error naming the option."""
    run = cli(*args, db=UNREACHABLE_URL)
    assert run.code == 2
    assert "is not a duration" in run.err


@pytest.mark.parametrize(
    "command",
    [["dead", "list"], ["dead", "show"], ["requeue"], ["stats"], ["purge"], ["check"], ["dead"]],
)
def test_every_command_has_help_with_an_example(command: list[str]) -> None:
    """`--help` works without any configuration and shows an example."""
    run = cli(*command, "--help", db=None)
    assert run.code == 0
    assert "Example" in run.out
    assert f"outbox-worker {' '.join(command)}" in run.out


@pytest.mark.parametrize("command", sorted(COMMAND_MODULES))
def test_each_command_comes_from_the_module_named_for_it(command: str) -> None:
    """Registering one command by name (as `outbox-worker NAME` does) adds exactly that command."""
    group = click.Group()
    register(group, command)
    assert list(group.commands) == [command]


# --- check --------------------------------------------------------------------------------------


async def test_check_passes_with_the_right_key(database_url: str) -> None:
    """Every check is ok against a healthy stand-in with the right key: exit 0."""
    async with StandIn(KEY) as server:
        env = {"OUTBOX_ENDPOINT_URL": server.url, "OUTBOX_API_KEY": KEY}
        run = await acli("check", db=database_url, env=env)
        assert run.code == 0, run.out + run.err
        lines = run.out.splitlines()
        assert [line.split()[0] for line in lines] == ["ok"] * 5
        assert any("key accepted" in line for line in lines)
        assert KEY not in run.out + run.err
        data = (await acli("check", "--json", db=database_url, env=env)).json()
        assert data["ok"] is True
        assert {c["check"].split(" (")[0] for c in data["checks"]} == {
            "configuration", "database reachable", "schema at head", "endpoint reachable",
            "key accepted",
        }  # fmt: skip
        assert server.count == 2
        assert server.bodies() == [b"{}", b"{}"]  # no registration was sent


async def test_check_fails_with_a_wrong_key(database_url: str) -> None:
    """A key the endpoint refuses: `fail key accepted`, exit 1, the key never printed."""
    async with StandIn(KEY) as server:
        env = {"OUTBOX_ENDPOINT_URL": server.url, "OUTBOX_API_KEY": "sk_wrong_key"}
        run = await acli("check", db=database_url, env=env)
    assert run.code == 1
    assert "fail key accepted: the endpoint refused the key (HTTP 401)" in run.out
    assert "ok   endpoint reachable" in run.out
    assert "sk_wrong_key" not in run.out + run.err


async def test_check_reports_an_unreachable_endpoint_and_unmigrated_schema(
    empty_database_url: str,
) -> None:
    """A closed port and a bare database are each a `fail` line with the reason: exit 1."""
    env = {"OUTBOX_ENDPOINT_URL": "http://127.0.0.1:1/v2/registration", "OUTBOX_API_KEY": KEY}
    run = await acli("check", db=empty_database_url, env=env)
    assert run.code == 1
    assert "ok   database reachable" in run.out
    assert (
        "fail schema at head: the outbox schema does not exist; run `outbox-worker migrate`"
        in run.out
    )
    assert "fail endpoint reachable" in run.out


async def test_check_without_a_key_is_a_configuration_failure(database_url: str) -> None:
    """No API key: `fail configuration` saying what to set, database still checked, exit 2."""
    run = await acli("check", db=database_url)
    assert run.code == 2
    assert "fail configuration: OUTBOX_API_KEY is not set" in run.out
    assert "ok   database reachable" in run.out


async def test_check_of_an_unreachable_database_fails(database_url: str) -> None:
    """A database that cannot be reached is a `fail` line and exit 1."""
    async with StandIn(KEY) as server:
        env = {"OUTBOX_ENDPOINT_URL": server.url, "OUTBOX_API_KEY": KEY}
        run = await acli("check", db=UNREACHABLE_URL, env=env)
    assert run.code == 1
    assert "fail database reachable" in run.out
    assert "ok   key accepted" in run.out


@pytest.mark.parametrize("as_json", [False, True])
async def test_control_characters_in_a_dedup_key_are_shown_escaped(
    pg: asyncpg.Connection, database_url: str, as_json: bool
) -> None:
    """A dedup key carrying a terminal escape (retitle, bell, bidi override) is printed escaped."""
    message_id = await insert_message(pg, dedup_key="\x1b]0;pwned\x07\u202e\x9b")
    json_flag = ["--json"] if as_json else []
    shown = cli("dead", "show", str(message_id), "--show-pii", *json_flag, db=database_url)
    assert shown.code == 0, shown.err
    assert [c for c in "\x1b\x07\u202e\x9b" if c in shown.out] == []
    if as_json:
        assert shown.json()["dedup_key"] == "\x1b]0;pwned\x07\u202e\x9b"
    else:
        assert "\\x1b]0;pwned\\x07\\u202e\\x9b" in shown.out
