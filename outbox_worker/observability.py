"""Logs and metrics: the structlog processor chain (with redaction) and Prometheus metrics.

Log events are dotted nouns with past verbs (``delivery.dead_lettered``, ``circuit.opened``) and
key/values. Nothing here ever sees a payload, but the redaction processor is the safety net: any
key that names PII or a secret is masked before a line is rendered.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from outbox_worker.redact import mask_text

# Keys never logged in clear, whatever the caller passes (compared lower-case, without _ or -).
REDACTED_KEYS = frozenset(
    {
        "apikey", "authorization", "token", "secret", "password", "passwordhashed",
        "payload", "body", "email", "username", "telephone", "phone", "name", "givenname",
        "familyname", "ipaddress", "ip", "useragent", "location", "latitude", "longitude",
    }
)  # fmt: skip
REDACTED = "***"
_SECRET_IN_TEXT = re.compile(r"(token\s+|sk_(?:live|test)_)[A-Za-z0-9_\-]+", re.IGNORECASE)


# Values that are ours, not a payload's: left as they are (an endpoint's loopback IP is no PII).
_TRUSTED_KEYS = frozenset(
    {"event", "level", "timestamp", "endpoint_url", "database_url", "channel"}
)


def redact(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask PII/secret keys, and emails, phones, IPs and keys inside text."""
    for key, value in list(event_dict.items()):
        if key.replace("_", "").replace("-", "").lower() in REDACTED_KEYS:
            event_dict[key] = REDACTED
        elif isinstance(value, str) and key not in _TRUSTED_KEYS:
            # Ravelin's error messages may quote a field's value back.
            value = mask_text(value)
            if "sk_" in value or "token" in value.lower():
                value = _SECRET_IN_TEXT.sub(lambda m: m.group(1)[:3] + REDACTED, value)
            event_dict[key] = value
    return event_dict


def configure_logging(
    *, level: str = "info", json: bool | None = None, stream: TextIO | None = None
) -> None:
    """Set up structlog: JSON lines when not on a terminal (or json=True), readable otherwise."""
    out = stream or sys.stderr
    as_json = (not out.isatty()) if json is None else json
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=True,
    )


class Metrics:
    """The worker's Prometheus metrics, in a registry of their own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.deliveries = Counter(
            "outbox_deliveries_total",
            "Delivery attempts by outcome (acknowledged, retry, dead, paused).",
            ["outcome"],
            registry=self.registry,
        )
        self.responses = Counter(
            "outbox_responses_total",
            "Answers from the endpoint by HTTP status class (2xx, 4xx, 429, 5xx, transport).",
            ["status_class"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "outbox_send_seconds",
            "Time from POST to answer.",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.claimed = Counter("outbox_claimed_total", "Rows claimed.", registry=self.registry)
        self.lost_leases = Counter(
            "outbox_settle_skipped_total",
            "Outcomes not written because the lease had been taken over.",
            registry=self.registry,
        )
        self.circuit_open = Gauge(
            "outbox_circuit_open",
            "1 while delivery is paused by a configuration fault (401/403/404/405/406).",
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "outbox_in_flight", "Sends in flight in this process.", registry=self.registry
        )
        self.db_errors = Counter(
            "outbox_database_errors_total", "Database calls that failed.", registry=self.registry
        )
        self._backlog_metrics()
        # Every outcome exists from the start at 0, so increase() sees the first dead letter.
        for outcome in DELIVERY_OUTCOMES:
            self.deliveries.labels(outcome)
        for answer in STATUS_CLASSES:
            self.responses.labels(answer)

    def _backlog_metrics(self) -> None:
        # Sampled from the table by every worker (the same values from each: aggregate with max).
        self.pending = Gauge(
            "outbox_pending_messages",
            "Pending messages: due now (due=true) or later, retrying or claimed (due=false).",
            ["due"],
            registry=self.registry,
        )
        self.oldest_pending = Gauge(
            "outbox_oldest_pending_seconds",
            "Age of the oldest pending message (0 when none is pending).",
            registry=self.registry,
        )
        self.dead = Gauge(
            "outbox_dead_messages", "Dead letters in the table.", registry=self.registry
        )
        self.backlog_sampled = Gauge(
            "outbox_backlog_sampled_timestamp_seconds",
            "Unix time of this worker's last successful backlog sample.",
            registry=self.registry,
        )
        self.claim_loop_late = Gauge(
            "outbox_claim_loop_late_seconds",
            "How far the claim loop is past the time it said it would report again.",
            registry=self.registry,
        )
        self.retention_deleted = Counter(
            "outbox_retention_deleted_total",
            "Rows deleted by retention, by state (acknowledged, dead).",
            ["state"],
            registry=self.registry,
        )
        for state in ("acknowledged", "dead"):
            self.retention_deleted.labels(state)


DELIVERY_OUTCOMES = ("acknowledged", "retry", "dead", "paused")
STATUS_CLASSES = ("2xx", "3xx", "429", "4xx", "5xx", "other", "transport")  # status_class() labels


def status_class(status: int | None) -> str:
    """The label for an answer: 2xx, 429, 4xx, 5xx, other or transport."""
    if status is None:
        return "transport"
    if status == 429:
        return "429"
    return f"{status // 100}xx" if 200 <= status < 600 else "other"
