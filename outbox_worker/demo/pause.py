"""The demo's scripted outage as the worker met it, read back from the worker's own log.

The circuit breaker logs ``circuit.opened`` (reason ``outage``) when failures in a row declare
the endpoint down and again after each failed probe, then ``circuit.closed`` when a probe gets
an answer. Those events are the pause: when it began, how long it held, how many probes it took.
Pure: lines in, a value out.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class Pause:
    """Delivery paused by an outage: for how long, and how many probes failed before one got
    an answer."""

    paused_s: float
    failed_probes: int


def outage_pause(log_lines: Iterable[str]) -> Pause | None:
    """The first outage pause in a worker's JSON log lines, or None if delivery never paused for
    an outage or never resumed (lines that are not JSON events are skipped)."""
    opened: datetime | None = None
    reopened = 0
    for event in _events(log_lines):
        name, at = event.get("event"), _timestamp(event)
        if at is None:
            continue
        if name == "circuit.opened" and event.get("reason") == "outage":
            if opened is None:
                opened = at
            else:
                reopened += 1  # each failed probe opens the circuit again
        elif name == "circuit.closed" and opened is not None:
            return Pause(paused_s=(at - opened).total_seconds(), failed_probes=reopened)
    return None


def _events(lines: Iterable[str]) -> Iterable[dict[str, Any]]:
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            yield event


def _timestamp(event: dict[str, Any]) -> datetime | None:
    value = event.get("timestamp")
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
