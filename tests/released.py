"""The last release, built from git history, for the rolling-upgrade test and the migration bench.

RELEASED_COMMIT is the commit on main before the first schema change after the release (a commit
id, not a walk of history: merges go both ways here, so no parent line leads to it). Bump both
constants when a release ships (migrations/README.md, "Expand, then contract").
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RELEASED_COMMIT = "a4d6ec98de32b4f3f03436eacfefe408bf665415"
RELEASED_SCHEMA_HEAD = "0007"
_REVISION_FILE = re.compile(r"^migrations/versions/(\d{4})_\w+\.py$")

# A worker of the release as `outbox-worker run` builds it, without the start-up check that the
# schema is exactly its head (the migration bench runs it on older schemas too). Written against
# the release's modules: run it with the released tree first on the path.
SERVE_RELEASED_WORKER = """
import asyncio, signal
from outbox_worker.assemble import opened_worker
from outbox_worker.config import Settings

async def serve():
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with opened_worker(Settings.from_env()) as worker:
        await worker.run(stop)

asyncio.run(serve())
"""


class ReleaseUnavailable(RuntimeError):
    """This checkout cannot give the released tree (not a git checkout, or a shallow clone)."""


def git(*args: str) -> str:
    """Run git in this checkout; its stdout."""
    done = subprocess.run(
        ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True, timeout=60
    )
    return done.stdout


def schema_head_at(commit: str) -> str | None:
    """The newest revision under top-level migrations/versions at ``commit`` (None if none)."""
    names = git("ls-tree", "-r", "--name-only", commit, "--", "migrations/versions").split()
    found = [m.group(1) for name in names if (m := _REVISION_FILE.match(name))]
    return max(found, default=None)


def extract_release(dest: Path) -> Path:
    """Write the released tree into ``dest`` (an empty directory); return it."""
    try:
        shallow = git("rev-parse", "--is-shallow-repository").strip()
    except (OSError, subprocess.CalledProcessError) as exc:
        raise ReleaseUnavailable(
            "not a git checkout: the released worker is built from git history"
        ) from exc
    if shallow == "true":
        raise ReleaseUnavailable("a shallow clone lacks the released commit: git fetch --unshallow")
    head = schema_head_at(RELEASED_COMMIT)
    assert head == RELEASED_SCHEMA_HEAD, (
        f"{RELEASED_COMMIT} is at {head}, not {RELEASED_SCHEMA_HEAD}"
    )
    archive = dest / "release.tar"
    git("archive", "--format=tar", "-o", str(archive), RELEASED_COMMIT)
    subprocess.run(["tar", "-xf", str(archive), "-C", str(dest)], check=True, timeout=60)
    archive.unlink()
    return dest
