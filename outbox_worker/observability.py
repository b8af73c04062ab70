"""Logs and metrics: the structlog processor chain (with PII masking) and Prometheus metrics.

Log events are dotted nouns with past verbs (``delivery.dead_lettered``, ``circuit.opened``) and
key/values. The ``mask_pii`` processor runs at every level, debug included, and recurses into
nested values: a key that names a secret is hidden whole, a key that holds a payload is masked by
the payload allow-list (outbox_worker.pii), and every other string is masked as free text.
Metric labels are fixed words (outcomes, status classes), never a value from a message.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, Final, TextIO

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from outbox_worker.pii import MASK, mask_payload, mask_text, normal_key

# Keys never logged in clear at any depth, whatever the caller passes (compared as normal_key).
SECRET_KEYS: Final = frozenset(
    {"apikey", "authorization", "token", "secret", "password", "passwordhashed", "sslpassword"}
)
# Keys that hold a registration update, or one of its personal fields: masked by the payload
# allow-list (a payload's personal field is never on it, so it becomes ***).
PAYLOAD_KEYS: Final = frozenset(
    {
        "payload", "body", "update", "email", "username", "telephone", "phone", "name",
        "givenname", "familyname", "ipaddress", "ip", "useragent", "location", "latitude",
        "longitude", "dateofbirth", "address",
    }
)  # fmt: skip
# Values that are ours, not a message's, left as they are: structlog's own fields, and URLs the
# settings already redacted (an endpoint's loopback IP is no PII).
_TRUSTED_KEYS: Final = frozenset(
    {"event", "level", "timestamp", "logger", "endpoint_url", "database_url", "channel"}
)


def mask_pii(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: hide secrets and mask PII in every value, at any depth."""
    for key, value in list(event_dict.items()):
        if key not in _TRUSTED_KEYS:
            event_dict[key] = _masked(key, value)
    return event_dict


def _masked(key: object, value: Any) -> Any:
    name = normal_key(str(key))
    if name in SECRET_KEYS:
        return MASK
    if name in PAYLOAD_KEYS:
        return mask_payload({name: value})[name]
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {k: _masked(k, item) for k, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_masked(key, item) for item in value]
    if isinstance(value, BaseException):
        return mask_text(str(value))
    return value


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
            # After format_exc_info, so exception text is masked as well.
            structlog.processors.format_exc_info,
            mask_pii,
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
        self.paused = Gauge(
            "outbox_paused",
            "1 while delivery is paused fleet-wide by an operator (`outbox-worker pause`).",
            registry=self.registry,
        )
        self.paused_since = Gauge(
            "outbox_paused_since_timestamp_seconds",
            "Unix time the fleet-wide pause began (the database's clock); 0 when not paused.",
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
