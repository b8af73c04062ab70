"""Bad settings, as a real process sees them: exit code 2, one line, no traceback, no secret.

Each case runs ``python -m outbox_worker <command>`` with a clean OUTBOX_* environment plus one
bad setting. The database URL points at a closed port, so nothing here needs a database: every
case must be refused while reading the configuration, before any connection is tried.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.processes import clean_env

KEY = "sk_live_Sup3rS3cretKey"
PASSWORD = "dbPa55word"
DATABASE_URL = f"postgresql://app:{PASSWORD}@127.0.0.1:1/app"
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Run:
    """What one command wrote and how it ended."""

    returncode: int
    stdout: str
    stderr: str


def outbox_worker(
    tmp_path: Path, args: list[str], env: dict[str, str], files: dict[str, bytes]
) -> Run:
    """Run ``python -m outbox_worker args`` with only these OUTBOX_* variables set."""
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    clean = clean_env()
    clean |= {"OUTBOX_DATABASE_URL": DATABASE_URL, "OUTBOX_API_KEY": KEY}
    for name, value in env.items():
        clean.pop(name, None)
        if value:
            clean[name] = value.replace("{tmp}", str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-m", "outbox_worker", *args],
        env=clean,
        cwd=REPO,
        capture_output=True,
        timeout=60,
        check=False,
    )
    return Run(
        done.returncode,
        done.stdout.decode(errors="replace"),
        done.stderr.decode(errors="replace"),
    )


def case(
    env: dict[str, str],
    reason: str,
    *,
    id: str,
    secret: str = KEY,
    args: tuple[str, ...] = (),
    files: dict[str, bytes] | None = None,
) -> object:
    """One row of a table: variables to set ('' removes one), expected reason, secret to hide."""
    return pytest.param(env, reason, secret, list(args), files or {}, id=id)


KEY_FILE = {"OUTBOX_API_KEY": "", "OUTBOX_API_KEY_FILE": "{tmp}/key"}

RUN_CASES = [
    case(
        {"OUTBOX_ENDPOINT_URL": "https://alice:hunter2@api.ravelin.com/v2/registration"},
        "must not carry credentials",
        secret="hunter2",
        id="endpoint-with-credentials",
    ),
    case(
        {"OUTBOX_ENDPOINT_URL": "https://api.ravelin.com:99999/v2/registration"},
        "OUTBOX_ENDPOINT_URL is malformed",
        id="endpoint-port-out-of-range",
    ),
    case(
        {"OUTBOX_ENDPOINT_URL": "https://api.ravelin.com:+443/v2/registration"},
        "the port must be a number",
        id="endpoint-signed-port",
    ),
    case(
        {"OUTBOX_ENDPOINT_URL": "https://api ravelin.com/v2/registration"},
        "without spaces",
        id="endpoint-with-space",
    ),
    case(
        {"OUTBOX_ENDPOINT_URL": "https://\u0430pi.ravelin.com/v2/registration"},  # Cyrillic a
        "xn-- form",
        id="endpoint-non-ascii-host",
    ),
    case(
        {"OUTBOX_ENDPOINT_URL": "https:///v2/registration"},
        "with a host",
        id="endpoint-without-host",
    ),
    case(
        {"OUTBOX_ENDPOINT_URL": "https://api.ravelin.com/v2/registration#x"},
        "#fragment",
        id="endpoint-with-fragment",
    ),
    case(
        {"OUTBOX_ENDPOINT_URL": "https://api.ravelin.com/v2/registration?Score=x"},
        "?score=",
        id="endpoint-with-score-any-case",
    ),
    case(
        {"OUTBOX_API_KEY": "sk_live_Sup3r\x01S3cretKey"},
        "printable ASCII",
        secret="S3cretKey",
        id="key-with-control-character",
    ),
    case(
        KEY_FILE,
        "printable ASCII",
        secret="S3cretKey",
        files={"key": b"sk_live_Sup3r\x1bS3cretKey\n"},
        id="key-file-with-control-character",
    ),
    case(
        KEY_FILE,
        "printable ASCII",
        secret="S3cretKey",
        files={"key": b"sk_live_\xffS3cretKey\n"},
        id="key-file-not-utf8",
    ),
    case(KEY_FILE, "is empty", files={"key": b"\n"}, id="key-file-empty"),
    case(
        {"OUTBOX_LEASE": "99999999999d"}, "OUTBOX_LEASE must be from 1s to 1h", id="lease-overflow"
    ),
    case(
        {"OUTBOX_HTTP_TIMEOUT": "1h"},
        "OUTBOX_HTTP_TIMEOUT must be from 100ms to 5m",
        id="http-timeout-too-long",
    ),
    case(
        {"OUTBOX_POLL_INTERVAL": "0"},
        "OUTBOX_POLL_INTERVAL must be from 10ms to 1h",
        id="poll-interval-zero",
    ),
    case(
        {"OUTBOX_CONCURRENCY": "100000"},
        "OUTBOX_CONCURRENCY must be from 1 to 1000",
        id="concurrency-too-high",
    ),
    case(
        {"OUTBOX_BATCH_SIZE": "9" * 5000},
        "OUTBOX_BATCH_SIZE must be from 1 to 10000",
        id="batch-size-5000-digits",
    ),
    case(
        {"OUTBOX_METRICS_PORT": "70000"},
        "OUTBOX_METRICS_PORT must be from 0 to 65535",
        id="metrics-port-too-high",
    ),
    case({"OUTBOX_RATE_LIMIT": "nan"}, "OUTBOX_RATE_LIMIT", id="rate-limit-nan"),
    case({"OUTBOX_RATE_LIMIT": "inf"}, "OUTBOX_RATE_LIMIT", id="rate-limit-inf"),
    case(
        {"OUTBOX_MAX_CLAIMED_BYTES": "2GiB"},
        "OUTBOX_MAX_CLAIMED_BYTES must be from 1MiB to 1GiB",
        id="max-claimed-bytes-too-large",
    ),
    case(
        {"OUTBOX_OUTAGE_THRESHOLD": "0"},
        "OUTBOX_OUTAGE_THRESHOLD must be from 1 to 10000",
        id="outage-threshold-zero",
    ),
    case(
        {},
        "OUTBOX_LEASE must be from 1s to 1h",
        args=("--lease", "99999999999d"),
        id="lease-flag-overflow",
    ),
    case(
        {"OUTBOX_CONCURRENCY": "8"},
        "OUTBOX_CONCURRENCY: 'abc' is not a whole number",
        args=("--concurrency", "abc"),
        id="concurrency-flag-not-a-number",
    ),
    case(
        {"OUTBOX_POLL_ONLY": "maybe"},
        "OUTBOX_POLL_ONLY: 'maybe' is not a boolean",
        id="poll-only-not-a-boolean",
    ),
    case(
        {"OUTBOX_API_KEY_FILE": "{tmp}/key"},
        "set OUTBOX_API_KEY or OUTBOX_API_KEY_FILE, not both",
        files={"key": b"sk_live_Other\n"},
        id="key-and-key-file",
    ),
    case(
        {"OUTBOX_HTTP_TIMEOUT": "1m"},
        "OUTBOX_LEASE (60s) must be longer than OUTBOX_HTTP_TIMEOUT (60s) plus 5s",
        id="lease-not-longer-than-http-timeout",
    ),
]

DATABASE_CASES = [
    case(
        {"OUTBOX_DATABASE_URL": f"postgresql://app:{PASSWORD}@127.0.0.1:54x/app"},
        "bad port",
        secret=PASSWORD,
        id="database-bad-port",
    ),
    case(
        {"OUTBOX_DATABASE_URL": f"postgresql://app:{PASSWORD}/x@127.0.0.1/app"},
        "bad port",
        secret=PASSWORD,
        id="database-slash-in-password",
    ),
    case(
        {"OUTBOX_DATABASE_URL": "postgresql://app:5432/dbPa55word@127.0.0.1/app"},
        "has an @ after the host",
        secret=PASSWORD,
        id="database-numeric-password-prefix",
    ),
    case(
        {"OUTBOX_DATABASE_URL": f"postgresql://app:{PASSWORD}@[::1/app"},
        "IPv6",
        secret=PASSWORD,
        id="database-broken-ipv6",
    ),
    case(
        {"OUTBOX_DATABASE_URL": f"postgresql://app:{PASSWORD}é@127.0.0.1/app"},
        "non-ASCII",
        secret=PASSWORD,
        id="database-non-ascii-password",
    ),
]


def assert_refused_in_one_line(run: Run, reason: str, secret: str) -> None:
    """Exit code 2, one `outbox-worker: ...` line on stderr with the reason, no secret."""
    assert run.returncode == 2, run
    lines = run.stderr.splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("outbox-worker: ")
    assert reason in lines[0]
    assert_nothing_leaked(run, secret)


def assert_nothing_leaked(run: Run, secret: str) -> None:
    """No traceback, and neither the case's secret nor the key nor the password, anywhere."""
    output = run.stdout + run.stderr
    assert "Traceback" not in output
    for hidden in (secret, KEY, PASSWORD):
        assert hidden not in output


@pytest.mark.parametrize(("env", "reason", "secret", "args", "files"), RUN_CASES + DATABASE_CASES)
def test_run_refuses_a_bad_setting_in_one_line(
    tmp_path: Path,
    env: dict[str, str],
    reason: str,
    secret: str,
    args: list[str],
    files: dict[str, bytes],
) -> None:
    """`run` with a bad setting exits 2 with one stderr line that names it and hides secrets."""
    run = outbox_worker(tmp_path, ["run", *args], env, files)
    assert_refused_in_one_line(run, reason, secret)


@pytest.mark.parametrize(("env", "reason", "secret", "args", "files"), DATABASE_CASES)
def test_migrate_refuses_a_bad_database_url_in_one_line(
    tmp_path: Path,
    env: dict[str, str],
    reason: str,
    secret: str,
    args: list[str],
    files: dict[str, bytes],
) -> None:
    """`migrate` with a malformed database URL exits 2 with one line and never the password."""
    run = outbox_worker(tmp_path, ["migrate", *args], env, files)
    assert_refused_in_one_line(run, reason, secret)


CHECK_CASES = [
    RUN_CASES[0],  # endpoint credentials
    RUN_CASES[8],  # control character in the key
    RUN_CASES[12],  # lease overflow
    DATABASE_CASES[1],  # slash in the database password
]


@pytest.mark.parametrize(("env", "reason", "secret", "args", "files"), CHECK_CASES)
def test_check_reports_a_bad_setting_as_its_configuration_line(
    tmp_path: Path,
    env: dict[str, str],
    reason: str,
    secret: str,
    args: list[str],
    files: dict[str, bytes],
) -> None:
    """`check` exits 2 and prints the reason on its one `fail configuration` line, no secret."""
    run = outbox_worker(tmp_path, ["check", *args], env, files)
    assert run.returncode == 2, run
    failed = [line for line in run.stdout.splitlines() if line.startswith("fail configuration")]
    assert len(failed) == 1, run.stdout
    assert reason in failed[0]
    assert run.stderr == ""
    assert_nothing_leaked(run, secret)
