"""A real PgBouncer in transaction mode in front of the test's PostgreSQL, started per test.

The Debian package `pgbouncer` provides the binary (`.ci/run` installs it when missing; without
it the tests skip with the install command, and fail when CI=true). The
bouncer listens on a free loopback port with a generated configuration and forwards to the
server of the test's database: over TCP, or over the Unix socket of the embedded PostgreSQL.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from tests.processes import free_port
from tests.programs import require_program
from tests.waiting import wait_for_sync

CANDIDATES = ("pgbouncer", "/usr/sbin/pgbouncer", "/usr/bin/pgbouncer")
INSTALL = "apt-get update && apt-get install -y pgbouncer"


def pgbouncer_binary() -> str:
    """The pgbouncer executable; skips the test (fails it with CI=true) when it is missing."""
    return require_program(CANDIDATES, INSTALL, what="pgbouncer")


def _server_target(database_url: str) -> tuple[str, int, str]:
    """Host (or socket directory), port and user of the server behind ``database_url``."""
    parts = urlsplit(database_url)
    query = parse_qs(parts.query)
    host = query.get("host", [parts.hostname or "127.0.0.1"])[0]
    port = int(query.get("port", [str(parts.port or 5432)])[0])
    return host, port, parts.username or "postgres"


def _run_as(host: str, port: int) -> str | None:
    """PgBouncer refuses to run as root: the user to switch to, one that can reach the server."""
    if os.geteuid() != 0:
        return None
    if host.startswith("/"):  # the socket's owner can certainly connect through it
        return pwd.getpwuid(os.stat(Path(host) / f".s.PGSQL.{port}").st_uid).pw_name
    return "nobody"


@contextlib.contextmanager
def pgbouncer(database_url: str, *, pool_size: int = 4, unix_socket: bool = False) -> Iterator[str]:
    """Run PgBouncer (pool_mode = transaction) in front of ``database_url``; yield its URL.

    With ``unix_socket`` the URL reaches PgBouncer through its Unix socket instead of TCP.
    """
    binary = pgbouncer_binary()
    host, port, user = _server_target(database_url)
    listen_port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="outbox-pgbouncer-"))
    workdir.chmod(0o755)  # read by the unprivileged user PgBouncer switches to
    (workdir / "users.txt").write_text(f'"{user}" ""\n', encoding="utf-8")
    settings = {
        "listen_addr": "127.0.0.1",
        "listen_port": str(listen_port),
        "unix_socket_dir": "",
        "auth_type": "trust",
        "auth_file": str(workdir / "users.txt"),
        "pool_mode": "transaction",
        # Few server connections, so clients really share them: what breaks session state.
        "default_pool_size": str(pool_size),
        "max_client_conn": "200",
        "server_reset_query": "",
    }
    socket_dir = workdir / "socket"
    if unix_socket:
        socket_dir.mkdir()
        socket_dir.chmod(0o777)  # PgBouncer creates its socket here as the user it switched to
        settings["unix_socket_dir"] = str(socket_dir)
    run_as = _run_as(host, port)
    if run_as is not None:
        settings["user"] = run_as
    config = "[databases]\n* = host={} port={}\n\n[pgbouncer]\n{}\n".format(
        host, port, "\n".join(f"{key} = {value}" for key, value in settings.items())
    )
    config_file = workdir / "pgbouncer.ini"
    config_file.write_text(config, encoding="utf-8")
    for path in workdir.iterdir():
        if path.is_file():
            path.chmod(0o644)
    log_file = (workdir / "stderr.log").open("w+b")
    process = subprocess.Popen(
        [binary, str(config_file)], stdout=log_file, stderr=subprocess.STDOUT
    )
    try:
        _wait_listening(listen_port, process, log_file)
        database = urlsplit(database_url).path
        if unix_socket:
            wait_for_sync(
                (socket_dir / f".s.PGSQL.{listen_port}").exists,
                timeout=15,
                interval=0.05,
                message="pgbouncer's Unix socket",
            )
            yield f"postgresql://{user}@{database}?host={socket_dir}&port={listen_port}"
        else:
            yield f"postgresql://{user}@127.0.0.1:{listen_port}{database}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log_file.close()
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_listening(port: int, process: subprocess.Popen[bytes], log: object) -> None:
    def listening() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"pgbouncer exited with {process.returncode}: {_tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return True
        return False

    wait_for_sync(listening, timeout=15, interval=0.05, message=f"pgbouncer on port {port}")


def _tail(log: object) -> str:
    with contextlib.suppress(OSError, AttributeError):
        log.seek(0)  # type: ignore[attr-defined]
        text: bytes = log.read()  # type: ignore[attr-defined]
        return text.decode("utf-8", "replace")[-2000:]
    return ""
