"""System programs some tests need (Node.js, psql): found on PATH, or the test says how to get them.

On a developer's machine a missing program skips the test with the command that installs it; with
``CI=true`` (as CI services set it) the same test fails instead, so a CI machine without the
program cannot pass by skipping. ``.ci/run`` installs the programs when they are missing.
"""

from __future__ import annotations

import os
import shutil

import pytest


def in_ci() -> bool:
    """True when the CI environment variable is set to a true value."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def require_program(name: str, install: str) -> str:
    """The path of program ``name``; skips (fails under CI) naming ``install`` when it is missing."""
    found = shutil.which(name)
    if found:
        return found
    message = f"{name} is not installed; install it (as root: {install}) to run this test"
    if in_ci():
        pytest.fail(f"{message}; CI must run it (.ci/run installs it)")
    pytest.skip(message)
