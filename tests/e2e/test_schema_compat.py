"""A rolling upgrade's older pods: workers of this version keep running, and start again after a
restart, once `migrate` of a later release has taken the database to a newer revision that lists
this version in outbox.compatible_code (simulated: the revision id and the marker's row)."""

from __future__ import annotations

from pathlib import Path

import asyncpg

from outbox_worker.migrate import SCHEMA_HEAD
from tests.browser.harness import console_process
from tests.integration.conftest import LoginAs, login_as  # noqa: F401 (a fixture)
from tests.integration.test_schema_compat import NEWER, move_to_newer
from tests.probes import get, status_is
from tests.processes import Enqueue, StartWorker, free_port
from tests.waiting import all_acknowledged, wait_for


async def test_workers_keep_running_and_restart_on_a_newer_compatible_schema(
    pg: asyncpg.Connection, start_worker: StartWorker, enqueue: Enqueue
) -> None:
    """After a later release migrates (expand-only), a running worker stays ready and delivers,
    and a worker started then (a restarted pod) says so in one info line, starts and delivers."""
    running_port, restarted_port = free_port(), free_port()
    running = await start_worker({"OUTBOX_METRICS_PORT": str(running_port)})
    running_ready = f"http://127.0.0.1:{running_port}/readyz"
    await wait_for(lambda: status_is(running_ready, 200), timeout=20, message="ready")
    await enqueue(5, prefix="before")
    await wait_for(lambda: all_acknowledged(pg, 5), timeout=30, message="5 acknowledged")

    await move_to_newer(pg, lists_this_version=True)
    assert await get(running_ready) == (200, "ready\n")
    restarted = await start_worker({"OUTBOX_METRICS_PORT": str(restarted_port)})
    accepted = await restarted.wait_event("schema.newer_accepted", timeout=20)
    assert accepted["detail"] == (
        f"schema is at {NEWER}, newer than this version's {SCHEMA_HEAD}, and declares it compatible"
    )
    await restarted.wait_event("worker.started", timeout=20)
    restarted_ready = f"http://127.0.0.1:{restarted_port}/readyz"
    await wait_for(lambda: status_is(restarted_ready, 200), timeout=20, message="ready")

    await enqueue(20, prefix="after")
    await wait_for(lambda: all_acknowledged(pg, 25), timeout=30, message="25 acknowledged")
    assert (running.returncode, restarted.returncode) == (None, None)
    assert restarted.event_names().count("schema.newer_accepted") == 1
    assert "schema.newer_accepted" not in running.event_names()  # /readyz asks quietly


async def test_a_restarted_worker_refuses_a_newer_schema_that_does_not_list_it(
    pg: asyncpg.Connection, start_worker: StartWorker
) -> None:
    """After a contract revision (this version's row deleted) a worker exits 2 with one line
    saying to deploy the version that ran migrate."""
    await move_to_newer(pg, lists_this_version=False)
    worker = await start_worker()
    assert await worker.wait_exit() == 2
    assert len(worker.lines) == 1, worker.lines
    assert "deploy the version that ran migrate" in worker.lines[0]


async def test_the_console_starts_on_a_newer_compatible_schema(
    pg: asyncpg.Connection,
    login_as: LoginAs,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
) -> None:
    """The console, as outbox_operator, starts on a newer schema listing this version and says
    so in its log."""
    await move_to_newer(pg, lists_this_version=True)
    async with console_process(await login_as("outbox_operator"), tmp_path / "tokens") as console:
        status, _ = await get(f"{console.url}/")
    assert status == 200  # the sign-in page
    assert "schema.newer_accepted" in console.log
