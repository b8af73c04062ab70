"""System programs some tests need (pgbouncer, Chromium, node, psql): found, skipped, or failed in CI.

A newcomer's machine has only Python, so there a test that needs a missing program is skipped
with the command that installs it. CI (``CI=true``) installs them in `.ci/run`, so there a missing
program fails the test instead: a skip in CI would hide that nothing ran.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable

import pytest


def in_ci() -> bool:
    """True when the CI variable says so (``CI=true``, as .ci/run's environment sets it)."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def require_program(candidates: str | Iterable[str], install: str, *, what: str = "") -> str:
    """The first candidate found on PATH (or as a path); else skip, or fail in CI, naming ``install``."""
    names = (candidates,) if isinstance(candidates, str) else tuple(candidates)
    for candidate in names:
        found = shutil.which(candidate)
        if found:
            return found
    message = (
        f"{what or names[0]} is not installed; install it (as root: {install}) to run this test"
    )
    if in_ci():
        pytest.fail(f"{message}; CI must run it (.ci/run installs it)", pytrace=False)
    pytest.skip(message)
