"""Fixtures the worker's unit tests share (test_worker, test_fleet_watch): a rig, its logs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from structlog.testing import capture_logs

from tests.unit.test_worker import Log, Rig


@pytest.fixture
def rig() -> Rig:
    """Fresh fakes and a manual clock."""
    return Rig()


@pytest.fixture
def logs() -> Iterator[Log]:
    """Every structlog event logged during the test."""
    with capture_logs() as captured:
        yield captured
