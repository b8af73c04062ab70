"""`outbox-worker run` imports only what running needs: each worker process starts quickly."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.cases import KEY
from tests.processes import worker_env

# Run the CLI as the console script would, then list what got imported.
_IMPORTED_BY = """
import json, runpy, sys
sys.argv = ["outbox-worker", *sys.argv[1:]]
try:
    runpy.run_module("outbox_worker", run_name="__main__")
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def _imported_by(*args: str) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", _IMPORTED_BY, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return set(json.loads(result.stderr.strip().splitlines()[-1]))


@pytest.mark.parametrize(
    "module",
    # rich's top-level package alone (no console) comes with structlog when rich is installed.
    [
        "alembic",
        "sqlalchemy.orm",
        "sqlalchemy.ext.asyncio",
        "pydantic",
        "rich.console",
        "psycopg",
        "opentelemetry",
    ],
)
def test_run_does_not_import_what_only_other_commands_need(module: str) -> None:
    """The run command's import graph leaves out migrations, the ORM, validation and rich output."""
    assert module not in _imported_by("run", "--help")


def test_other_commands_are_still_registered() -> None:
    """Without a command every command module is loaded, so --help lists them all."""
    result = subprocess.run(
        [sys.executable, "-m", "outbox_worker", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    for command in ("migrate", "run", "demo", "stats", "dead", "requeue", "purge", "check"):
        assert f"  {command} " in result.stdout


def test_run_refuses_tracing_without_the_otel_extra(database_url: str) -> None:
    """OTEL_* asking for traces where OpenTelemetry is not installed: one line, exit 2."""
    hidden = (  # as if opentelemetry were not installed
        "import runpy, sys; sys.modules['opentelemetry'] = None; sys.argv = ['outbox-worker', 'run']\n"
        "runpy.run_module('outbox_worker', run_name='__main__')"
    )
    env = worker_env(
        {"OUTBOX_DATABASE_URL": database_url, "OUTBOX_API_KEY": KEY,
         "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}
    )  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-c", hidden],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "pip install 'outbox-worker[otel]'" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_worker_built_without_otel_variables_imports_no_opentelemetry(database_url: str) -> None:
    """What `run` builds (settings, store, tracer) with no OTEL_* set leaves OpenTelemetry out."""
    code = (
        "import sys\n"
        "from outbox_worker import assemble\n"
        "from outbox_worker.settings.environment import read_settings\n"
        "built = assemble.parts(read_settings())\n"
        "print(type(built.tracing).__name__, sorted(m for m in sys.modules if 'opentelemetry' in m))"
    )
    env = worker_env({"OUTBOX_DATABASE_URL": database_url, "OUTBOX_API_KEY": KEY})
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout.strip()) == (0, "_NoTrace []"), done.stderr
