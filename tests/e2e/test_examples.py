"""The producers in examples/ (Node.js with `pg`, a shell script with psql), run for real.

Each registers a user and enqueues its update in one transaction through ``outbox.enqueue`` on the
test's database: a commit keeps both rows, ``--dry-run`` (a rollback) and a refused update keep
neither, and a refused update fails with the SQL function's error. ``npm install`` runs once per
session in a temporary copy of examples/node. Without node, npm or psql the tests skip with the
install command; under CI they fail instead (tests/programs.py).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from outbox_worker.enqueue import serialize
from tests.cases import registration_update
from tests.processes import REPO, Run, clean_env
from tests.programs import require_program

EXAMPLES = REPO / "examples"
INSTALL_NODE = "apt-get update && apt-get install -y nodejs npm"
INSTALL_PSQL = "apt-get update && apt-get install -y postgresql-client"
# A refused update: two rule violations, and personal data that no error message may repeat.
REFUSED: dict[str, Any] = {
    "timestamp": 1_764_000_000_000,
    "registration": {"success": "no", "username": "canary-username-x9e"},
    "customer": {"customerId": "c-1", "telephone": "canary-phone-x9e"},
}

# Runs one example: (database URL, arguments) -> the finished process.
Producer = Callable[[str, list[str]], Run]


@pytest.fixture(scope="session")
def node_example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of examples/node with its npm packages installed (once per session)."""
    require_program("node", INSTALL_NODE)
    npm = require_program("npm", INSTALL_NODE)
    folder = tmp_path_factory.mktemp("node-example") / "node"
    shutil.copytree(EXAMPLES / "node", folder, ignore=shutil.ignore_patterns("node_modules"))
    done = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=folder, env=clean_env(), capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"npm install failed:\n{done.stdout}\n{done.stderr}"
    return folder


def _run(command: list[str], database_url: str) -> Run:
    env = {**clean_env(), "OUTBOX_DATABASE_URL": database_url}
    done = subprocess.run(
        command, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    return Run(done.returncode, done.stdout, done.stderr)


@pytest.fixture(params=["node", "psql"])
def producer(request: pytest.FixtureRequest) -> Producer:
    """Each example as a function of the database URL and its arguments."""
    if request.param == "node":
        folder: Path = request.getfixturevalue("node_example")
        node = require_program("node", INSTALL_NODE)
        return lambda url, args: _run([node, str(folder / "enqueue.js"), *args], url)
    require_program("psql", INSTALL_PSQL)
    script = str(EXAMPLES / "psql" / "enqueue.sh")
    return lambda url, args: _run(["bash", script, *args], url)


def _rows(database_url: str) -> tuple[list[tuple[int, Any, str | None]], int]:
    """The outbox rows (id, payload, dedup_key) and the number of application rows."""
    with psycopg.connect(database_url) as conn:
        messages = conn.execute(
            "SELECT id, payload, dedup_key FROM outbox.messages ORDER BY id"
        ).fetchall()
        users = conn.execute("SELECT count(*) FROM example_users").fetchone()
    assert users is not None
    return messages, users[0]


def test_commit_stores_the_update_and_the_application_row(
    producer: Producer, database_url: str
) -> None:
    """A commit stores the application's row and the update, normalized as Python would store it."""
    update = registration_update(0, "ex-commit")

    run = producer(database_url, [json.dumps(update), "attempt-1"])

    assert run.code == 0, run.err
    messages, users = _rows(database_url)
    assert [(payload, key) for _, payload, key in messages] == [
        (json.loads(serialize(update)), "attempt-1")
    ]
    assert users == 1
    assert f"outbox message {messages[0][0]}" in run.out


def test_same_dedup_key_returns_the_first_message(producer: Producer, database_url: str) -> None:
    """The same dedup key again stores no second update and answers with the first one's id."""
    body = json.dumps(registration_update(1, "ex-dedup"))

    first = producer(database_url, [body, "attempt-2"])
    second = producer(database_url, [body, "attempt-2"])

    assert (first.code, second.code) == (0, 0), first.err + second.err
    messages, users = _rows(database_url)
    assert len(messages) == 1
    assert users == 2  # the application's own rows are not deduplicated
    assert f"outbox message {messages[0][0]}" in first.out
    assert f"outbox message {messages[0][0]}" in second.out


def test_rollback_enqueues_nothing(producer: Producer, database_url: str) -> None:
    """--dry-run rolls the transaction back: neither the application row nor the update stays."""
    run = producer(database_url, [json.dumps(registration_update(2, "ex-dry")), "--dry-run"])

    assert run.code == 0, run.err
    assert "rolled back" in run.out
    assert _rows(database_url) == ([], 0)


def test_refused_update_fails_with_the_sql_error_and_stores_nothing(
    producer: Producer, database_url: str
) -> None:
    """A bad update exits non-zero with outbox.enqueue's message; its values are never echoed."""
    run = producer(database_url, [json.dumps(REFUSED), "attempt-3"])

    assert run.code != 0
    assert "invalid registration update (2 problems)" in run.err
    assert "registration.success: must be a boolean" in run.err
    assert "customer.telephone" in run.err
    assert "canary" not in run.out + run.err
    assert _rows(database_url) == ([], 0)


def test_text_that_is_not_json_is_refused_without_echoing_it(
    producer: Producer, database_url: str
) -> None:
    """Text PostgreSQL cannot read as JSON fails with its error, and the text is not repeated."""
    run = producer(database_url, ['{"canary-x9e": tru'])

    assert run.code != 0
    assert "invalid input syntax for type json" in run.err
    assert "canary" not in run.out + run.err
    assert _rows(database_url) == ([], 0)


def test_node_example_reports_sqlstate(node_example: Path, database_url: str) -> None:
    """The Node.js example names the SQLSTATE (22023) a caller would branch on."""
    node = require_program("node", INSTALL_NODE)

    run = _run([node, str(node_example / "enqueue.js"), json.dumps(REFUSED)], database_url)

    assert run.code == 1
    assert "SQLSTATE 22023" in run.err


def test_examples_refuse_to_run_without_a_database_url(producer: Producer) -> None:
    """Without OUTBOX_DATABASE_URL each example exits 2 and names the variable."""
    run = producer("", ["{}"])

    assert run.code == 2
    assert "OUTBOX_DATABASE_URL is not set" in run.err
