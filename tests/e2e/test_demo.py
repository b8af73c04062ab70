"""`outbox-worker demo` as a real process: it ends by itself, its summary matches the table, and
it leaves nothing behind (no database, no PostgreSQL process), even when interrupted."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.request import urlopen

import psutil  # type: ignore[import-untyped]
import psycopg

from tests.pg import admin_execute
from tests.processes import clean_env
from tests.waiting import wait_for_sync

REPO = Path(__file__).resolve().parents[2]


def demo_env(tmp_path: Path) -> dict[str, str]:
    """This environment without OUTBOX_* variables; temporary files (PGDATA, log) in tmp_path."""
    env = clean_env()
    env.update(TMPDIR=str(tmp_path), PYTHONUNBUFFERED="1")
    env.pop("XDG_RUNTIME_DIR", None)
    return env


def run_demo(tmp_path: Path, *args: str) -> dict[str, Any]:
    """Run `python -m outbox_worker demo --json ARGS`; assert exit 0; return the summary."""
    done = subprocess.run(
        [sys.executable, "-m", "outbox_worker", "demo", "--json", *args],
        env=demo_env(tmp_path),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    summary: dict[str, Any] = json.loads(done.stdout)
    return summary


def assert_consistent(summary: dict[str, Any], count: int) -> None:
    """Every message settled once, dead reasons add up, the faults scripted are the dead."""
    assert summary["outcome"] == "finished"
    assert summary["rows"] == count
    assert summary["delivered"] + summary["dead"] == count
    assert summary["pending"] == 0
    assert summary["dead"] == summary["expected_dead"] > 0
    assert sum(r["count"] for r in summary["dead_reasons"]) == summary["dead"]
    assert summary["retries"] > 0
    assert summary["standin"]["by_status"]["200"] == summary["delivered"]
    assert 0 < summary["latency_ms"]["p50"] <= summary["latency_ms"]["p99"]
    assert_outage_told(summary)


def assert_outage_told(summary: dict[str, Any]) -> None:
    """The scripted outage paused delivery, and the sends it failed while paused cost nothing:
    the stand-in answered more requests than the table counts attempts, by at least the trip
    and every failed probe."""
    outage = summary["outage"]
    assert outage["scripted_failures"] > outage["declared_after"] > 0
    assert outage["paused_s"] > 0
    assert outage["failed_probes"] >= 0
    requests = summary["standin"]["requests"]
    assert outage["sends_without_attempt"] == requests - summary["attempts"]
    assert outage["sends_without_attempt"] >= outage["failed_probes"] + 1


def postgres_processes(under: Path) -> list[psutil.Process]:
    """PostgreSQL server processes whose command line names a path under ``under``."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if proc.info["name"] == "postgres" and str(under) in cmdline:
            found.append(proc)
    return found


def demo_databases(server_url: str) -> set[str]:
    """Names of the demo's throwaway databases on the server."""
    with psycopg.connect(server_url) as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'outbox_demo_%'")
        return {name for (name,) in rows}


def test_demo_on_embedded_postgres_finishes_with_a_consistent_summary(tmp_path: Path) -> None:
    """With no configuration the demo starts its own PostgreSQL, settles every message, exits 0."""
    summary = run_demo(tmp_path, "--count", "120")

    assert_consistent(summary, 120)
    assert summary["database"] == "embedded"
    assert not postgres_processes(tmp_path)
    assert not list(tmp_path.glob("outbox-demo-pg-*"))


def test_demo_summary_matches_the_kept_table(tmp_path: Path, pg_server_url: str) -> None:
    """With --keep-database the rows stay, and the summary's counts are the table's."""
    summary = run_demo(
        tmp_path, "--count", "120", "--database-url", pg_server_url, "--keep-database"
    )
    kept = summary["kept_database_url"]
    try:
        with psycopg.connect(kept) as conn:
            states = conn.execute("SELECT state, count(*) FROM outbox.messages GROUP BY 1")
            rows: dict[str, int] = dict(states.fetchall())
            attempts = conn.execute("SELECT sum(attempts) FROM outbox.messages").fetchone()
    finally:
        admin_execute(
            pg_server_url, f'DROP DATABASE IF EXISTS "{kept.rsplit("/", 1)[1]}" WITH (FORCE)'
        )

    assert_consistent(summary, 120)
    assert rows == {"acknowledged": summary["delivered"], "dead": summary["dead"]}
    assert attempts == (summary["attempts"],)


def test_demo_on_a_server_drops_its_throwaway_database(tmp_path: Path, pg_server_url: str) -> None:
    """With --database-url the demo works in a database of its own and drops it afterwards."""
    before = demo_databases(pg_server_url)

    summary = run_demo(tmp_path, "--count", "60", "--database-url", pg_server_url)

    assert_consistent(summary, 60)
    assert summary["kept_database_url"] is None
    assert demo_databases(pg_server_url) == before


def test_ctrl_c_mid_demo_exits_130_and_stops_everything(tmp_path: Path) -> None:
    """SIGINT while delivering: exit 130, no PostgreSQL left running, its data deleted."""
    demo = subprocess.Popen(
        [sys.executable, "-m", "outbox_worker", "demo", "--count", "20000", "--rate", "100"],
        env=demo_env(tmp_path),
        cwd=REPO,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert demo.stderr is not None
        deadline = time.monotonic() + 30
        while "delivered" not in demo.stderr.readline():  # the first progress line
            assert time.monotonic() < deadline, "no progress line within 30 s"
            assert demo.poll() is None, "the demo ended before delivering"
        assert postgres_processes(tmp_path), "the embedded PostgreSQL should be running"

        demo.send_signal(signal.SIGINT)
        code = demo.wait(timeout=20)
    finally:
        demo.kill()
        demo.communicate()

    assert code == 130
    assert not postgres_processes(tmp_path)
    assert not list(tmp_path.glob("outbox-demo-pg-*"))


def test_demo_keep_leaves_postgres_running_with_its_rows_until_stopped(tmp_path: Path) -> None:
    """--keep prints a URL the operator commands work on, and a command that stops it all."""
    done = subprocess.run(
        [sys.executable, "-m", "outbox_worker", "demo", "--count", "60", "--keep"],
        env=demo_env(tmp_path),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = [line.strip() for line in done.stdout.splitlines()]
    told = " ".join(lines[lines.index(next(ln for ln in lines if ln.startswith("outage:"))) :][:3])
    assert re.search(r"delivery paused for \d+\.\d+s after \d+ failures in a row", told), told
    assert "no attempt was spent while paused" in told
    url = next(ln for ln in lines if ln.startswith("export OUTBOX_DATABASE_URL="))
    url = url.split("=", 1)[1].strip("'")
    stop = next(ln for ln in lines if "outbox-worker demo --stop" in ln)
    kept_dir = Path(stop.split("--stop", 1)[1].strip().strip("'"))
    console = next(ln for ln in lines if ln.startswith("The web console runs")).split()[-1]
    try:
        assert postgres_processes(tmp_path), "the embedded PostgreSQL should still run"
        with urlopen(console + "signin", timeout=10) as page:
            assert "Sign-in token" in page.read().decode()
        assert any(ln.startswith("sign in with the token ow_") for ln in lines)
        operator = {**demo_env(tmp_path), "OUTBOX_DATABASE_URL": url}
        runs = [
            subprocess.run(
                [sys.executable, "-m", "outbox_worker", *args],
                env=operator,
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=60,
            )
            for args in (
                ["dead", "list", "--json"],
                ["dead", "show", next(ln.split()[-1] for ln in lines if "dead show" in ln)],
                ["requeue", "--all", "--dry-run"],
            )
        ]
        assert [r.returncode for r in runs] == [0, 0, 0], [r.stderr for r in runs]
        assert json.loads(runs[0].stdout)["total_matching"] > 0
    finally:
        stopped = subprocess.run(
            [sys.executable, "-m", "outbox_worker", "demo", "--stop", str(kept_dir)],
            env=demo_env(tmp_path),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert stopped.returncode == 0, stopped.stderr
    assert not postgres_processes(tmp_path)
    assert not kept_dir.exists()
    wait_for_sync(lambda: not _serving(console + "signin"), message="the console stopped")


def _serving(url: str) -> bool:
    try:
        with urlopen(url, timeout=5):
            return True
    except OSError:
        return False


def test_demo_stop_refuses_a_directory_it_did_not_keep(tmp_path: Path) -> None:
    """--stop on any other directory exits 2 and deletes nothing."""
    done = subprocess.run(
        [sys.executable, "-m", "outbox_worker", "demo", "--stop", str(tmp_path)],
        env=demo_env(tmp_path),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 2
    assert "not a server kept by" in done.stderr
    assert tmp_path.exists()
