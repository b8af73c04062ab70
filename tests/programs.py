"""System programs some tests need (pgbouncer, Chromium, node): found, skipped, or failed in CI.

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


def require_program(candidates: Iterable[str], *, what: str, install: str) -> str:
    """The first candidate found on PATH (or as a path); else skip, or fail in CI, with ``install``."""
    for candidate in candidates:
        found = shutil.which(candidate)
        if found:
            return found
    message = f"{what} is not installed; install it with `{install}` to run this test"
    if in_ci():
        pytest.fail(f"{message} (CI=true: .ci/run should have installed it)", pytrace=False)
    pytest.skip(message)
