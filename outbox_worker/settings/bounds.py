"""Allowed ranges of the settings, by field name (the variable is OUTBOX_<NAME>), and their check.

Wide enough for any sane deployment and for tests' millisecond timings; narrow enough that a typo
(a missing unit, an extra digit) fails at start instead of stalling or flooding.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from datetime import timedelta
from typing import Any, Final

from outbox_worker.payload.limits import MAX_PAYLOAD_BYTES
from outbox_worker.settings.parsing import parse_duration, parse_int, parse_number, parse_size

MS: Final = timedelta(milliseconds=1)
KIB: Final = 1024
MIB: Final = 1024 * KIB
GIB: Final = 1024 * MIB

DURATION_BOUNDS: Final[Mapping[str, tuple[timedelta, timedelta]]] = {
    "http_timeout": (100 * MS, timedelta(minutes=5)),
    "lease": (timedelta(seconds=1), timedelta(hours=1)),
    "poll_interval": (10 * MS, timedelta(hours=1)),
    "shutdown_grace": (100 * MS, timedelta(hours=1)),
    "flush_interval": (1 * MS, timedelta(seconds=10)),
    "backoff_base": (1 * MS, timedelta(hours=1)),
    "backoff_cap": (1 * MS, timedelta(days=7)),
    "max_age": (timedelta(seconds=1), timedelta(days=30)),
    "retry_after_max": (timedelta(0), timedelta(days=1)),
    "rate_limited_pause": (timedelta(0), timedelta(hours=1)),
    "probe_initial": (10 * MS, timedelta(hours=1)),
    "probe_cap": (10 * MS, timedelta(days=1)),
    "backlog_interval": (10 * MS, timedelta(minutes=10)),
    "liveness_timeout": (100 * MS, timedelta(hours=1)),
    "database_timeout": (100 * MS, timedelta(minutes=10)),
    # At least an hour: a typo must not delete the rows an operator is still reading.
    "retain_acknowledged": (timedelta(hours=1), timedelta(days=3650)),
    "retain_dead": (timedelta(hours=1), timedelta(days=3650)),
    # The database refuses to delete audit rows younger than 90 days (revision 0008).
    "retain_audit": (timedelta(days=90), timedelta(days=3650)),
    "retention_interval": (10 * MS, timedelta(days=1)),
}
INT_BOUNDS: Final[Mapping[str, tuple[int, int]]] = {
    "concurrency": (1, 1000),
    "batch_size": (1, 10_000),
    "max_attempts": (1, 1000),
    "history_cap": (1, 1000),
    "metrics_port": (0, 65535),
    "outage_threshold": (1, 10_000),
}
CLAIMED_BYTES_BOUNDS: Final = (MAX_PAYLOAD_BYTES, GIB)
RATE_LIMIT_MAX: Final = 10_000.0  # sends per second, fleet-wide; Ravelin documents 50/s live
# Every setting with bounds: the ones ``bounded`` parses and checks.
BOUNDED: Final = frozenset({*DURATION_BOUNDS, *INT_BOUNDS, "max_claimed_bytes", "rate_limit"})


def env_name(name: str) -> str:
    """The variable of a setting: ``lease`` -> ``OUTBOX_LEASE``."""
    return f"OUTBOX_{name.upper()}"


def bounded(name: str, value: Any) -> Any:
    """A setting's text or typed value parsed and checked against its bounds; others unchanged."""
    # The parsers take typed values as well as text, so the settings' own check (check_bounds)
    # and the environment's parsing share this table walk and its error messages.
    variable = env_name(name)
    if name in DURATION_BOUNDS:
        low, high = DURATION_BOUNDS[name]
        return parse_duration(value, name=variable, minimum=low, maximum=high)
    if name in INT_BOUNDS:
        low_count, high_count = INT_BOUNDS[name]
        return parse_int(value, name=variable, minimum=low_count, maximum=high_count)
    if name == "max_claimed_bytes":
        low_size, high_size = CLAIMED_BYTES_BOUNDS
        return parse_size(value, name=variable, minimum=low_size, maximum=high_size)
    if name == "rate_limit":
        return parse_number(value, name=variable, minimum=0.0, maximum=RATE_LIMIT_MAX)
    return value


def check_bounds(settings: Any) -> None:
    """Check every duration, count, size and rate of a settings dataclass against its bounds."""
    for item in fields(settings):
        bounded(item.name, getattr(settings, item.name))
