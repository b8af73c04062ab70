"""The operating settings: backlog sampling, liveness and retention windows."""

from __future__ import annotations

from datetime import timedelta

import pytest

from outbox_worker.settings.config import (
    DEFAULT_BACKLOG_INTERVAL,
    DEFAULT_LIVENESS_TIMEOUT,
    DEFAULT_RETAIN_ACKNOWLEDGED,
    DEFAULT_RETAIN_AUDIT,
    DEFAULT_RETAIN_DEAD,
    DEFAULT_RETENTION_INTERVAL,
)
from tests.unit.test_config import refused, settings


def test_operating_defaults() -> None:
    """Acknowledged rows are kept 7 days, dead letters 30, audit rows 400; a pass every 10
    minutes."""
    built = settings()
    assert built.retain_audit == DEFAULT_RETAIN_AUDIT == timedelta(days=400)
    assert built.retain_acknowledged == DEFAULT_RETAIN_ACKNOWLEDGED == timedelta(days=7)
    assert built.retain_dead == DEFAULT_RETAIN_DEAD == timedelta(days=30)
    assert built.retention_interval == DEFAULT_RETENTION_INTERVAL == timedelta(minutes=10)
    assert built.backlog_interval == DEFAULT_BACKLOG_INTERVAL == timedelta(seconds=5)
    assert built.liveness_timeout == DEFAULT_LIVENESS_TIMEOUT == timedelta(seconds=60)


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("retain_acknowledged", "2d", timedelta(days=2)),
        ("retain_dead", "90d", timedelta(days=90)),
        ("retention_interval", "1h", timedelta(hours=1)),
        ("backlog_interval", "15s", timedelta(seconds=15)),
        ("liveness_timeout", "2m", timedelta(minutes=2)),
    ],
)
def test_operating_settings_are_read(name: str, text: str, expected: timedelta) -> None:
    """Each OUTBOX_* operating variable sets its field."""
    assert getattr(settings(**{name: text}), name) == expected


def test_retention_windows_shorter_than_an_hour_are_refused() -> None:
    """A missing unit ('7' meaning 7 seconds) cannot delete the rows an operator is reading."""
    assert refused(retain_acknowledged="7") == (
        "OUTBOX_RETAIN_ACKNOWLEDGED must be from 1h to 3650d, got 7s"
    )
    assert refused(retain_dead="30m").startswith("OUTBOX_RETAIN_DEAD must be from 1h")


def test_audit_retention_under_90_days_is_refused() -> None:
    """The database keeps audit rows 90 days at least; a shorter setting fails at start."""
    assert refused(retain_audit="30d") == "OUTBOX_RETAIN_AUDIT must be from 90d to 3650d, got 30d"
