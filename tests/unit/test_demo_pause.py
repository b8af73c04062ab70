"""The demo's outage pause, read from the worker's JSON log lines."""

from __future__ import annotations

import json

from outbox_worker.demo.pause import Pause, outage_pause


def line(event: str, second: float, **fields: object) -> str:
    """One JSON log line as the worker writes it, ``second`` seconds past 12:00:00 UTC."""
    stamp = f"2026-12-05T12:00:{second:09.6f}Z"
    return json.dumps({"event": event, "timestamp": stamp, "level": "info", **fields})


def test_the_first_outage_pause_lasts_from_its_opening_to_the_next_closing() -> None:
    """Re-openings between are failed probes; a later pause is not the scripted one."""
    lines = [
        line("worker.started", 0.0),
        line("circuit.opened", 1.0, reason="outage"),
        line("circuit.opened", 1.1, reason="outage"),
        "not json",
        line("circuit.opened", 1.3, reason="outage"),
        line("circuit.closed", 1.75),
        line("circuit.opened", 5.0, reason="outage"),
        line("circuit.closed", 9.0),
    ]

    assert outage_pause(lines) == Pause(paused_s=0.75, failed_probes=2)


def test_no_pause_without_an_outage_or_without_a_closing() -> None:
    """A configuration pause is not an outage; an outage that never closed has no length."""
    configuration = [line("circuit.opened", 1.0, reason="configuration"), line("circuit.closed", 2)]
    unended = [line("circuit.opened", 1.0, reason="outage")]

    assert outage_pause(configuration) is None
    assert outage_pause(unended) is None
