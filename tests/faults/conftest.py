"""Chaos fixtures: the seed of the run (CHAOS_SEED, else a fixed one).

The focused tests here use ``standin``, ``start_worker`` and ``enqueue`` from tests/conftest.py.
"""

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
