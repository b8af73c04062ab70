"""Chaos fixtures: the seed of the run (CHAOS_SEED, else a fixed one), and the e2e fixtures reused.

``start_worker`` and ``enqueue`` are tests/e2e/conftest.py's, imported rather than copied, for
the focused tests here that need one worker and the stand-in (tests/conftest.py) in the test's loop.
"""

from __future__ import annotations

import os

import pytest

from tests.e2e.conftest import enqueue, start_worker

__all__ = ["chaos_seed", "enqueue", "start_worker"]

DEFAULT_SEED = 20261126


@pytest.fixture
def chaos_seed() -> int:
    """The seed of this run: CHAOS_SEED from the environment, else a fixed one (printed)."""
    seed = int(os.environ.get("CHAOS_SEED") or DEFAULT_SEED)
    print(f"chaos seed {seed} (set CHAOS_SEED to replay another)")
    return seed
