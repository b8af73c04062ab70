"""Chaos fixtures: the seed of the run (CHAOS_SEED, else a fixed one) and its working directory."""

from __future__ import annotations

import os

import pytest

DEFAULT_SEED = 20261126


@pytest.fixture
def chaos_seed() -> int:
    """The seed of this run: CHAOS_SEED from the environment, else a fixed one (printed)."""
    seed = int(os.environ.get("CHAOS_SEED") or DEFAULT_SEED)
    print(f"chaos seed {seed} (set CHAOS_SEED to replay another)")
    return seed


# The e2e fixtures (a stand-in in the test's loop, worker subprocesses, enqueue), reused as they are.
from tests.e2e.conftest import enqueue, standin, start_worker  # noqa: E402, F401
