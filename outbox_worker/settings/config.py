"""Configuration as data: frozen dataclasses with their defaults and bounds, checked when built.

``Settings`` is everything `outbox-worker run` needs; ``Settings.worker`` is the part the delivery
core reads (``WorkerSettings``: counts, durations, retry and circuit), without the database URL or
the API key, which go only to the store and the sender. environment.py is the only reader of
the ``OUTBOX_*`` variables (``environment.read_settings``); every value is checked here, at
start, against the bounds in bounds.py, so a bad setting fails with one line instead of at the
first delivery.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass, replace
from datetime import timedelta
from typing import Any, Final, Self
from urllib.parse import urlsplit

from outbox_worker.errors import ConfigError
from outbox_worker.settings.bounds import CLAIMED_BYTES_BOUNDS as CLAIMED_BYTES_BOUNDS
from outbox_worker.settings.bounds import DURATION_BOUNDS as DURATION_BOUNDS
from outbox_worker.settings.bounds import INT_BOUNDS as INT_BOUNDS
from outbox_worker.settings.bounds import MIB as MIB
from outbox_worker.settings.bounds import check_bounds

# Re-exported: callers import these from config, where settings come from.
from outbox_worker.settings.parsing import Secret as Secret
from outbox_worker.settings.parsing import check_api_key
from outbox_worker.settings.parsing import parse_duration as parse_duration
from outbox_worker.settings.urls import asyncpg_dsn as asyncpg_dsn
from outbox_worker.settings.urls import check_database_url as check_database_url
from outbox_worker.settings.urls import check_endpoint_url
from outbox_worker.settings.urls import is_loopback as is_loopback
from outbox_worker.settings.urls import redact_url as redact_url
from outbox_worker.settings.urls import sqlalchemy_url as sqlalchemy_url

DEFAULT_ENDPOINT_URL = "https://api.ravelin.com/v2/registration"
LISTEN_DATABASE_URL_VAR: Final = "OUTBOX_LISTEN_DATABASE_URL"

DEFAULT_CONCURRENCY = 64
DEFAULT_BATCH_SIZE = 100
DEFAULT_HTTP_TIMEOUT = timedelta(seconds=10)
# The lease must outlive a send that starts just before it runs out: HTTP timeout + this margin.
LEASE_MARGIN = timedelta(seconds=5)
DEFAULT_LEASE = timedelta(seconds=60)
DEFAULT_POLL_INTERVAL = timedelta(seconds=5)
# A send the endpoint already received must be allowed to finish on SIGTERM, or its answer is
# lost and the message is sent again: the grace covers a whole HTTP timeout plus this margin.
SHUTDOWN_MARGIN = timedelta(seconds=5)
DEFAULT_SHUTDOWN_GRACE = DEFAULT_HTTP_TIMEOUT + SHUTDOWN_MARGIN
DEFAULT_FLUSH_INTERVAL = timedelta(milliseconds=20)
# The worker's memory ceiling: bytes of claimed payloads not yet sent. At least one payload of
# the largest size enqueue accepts, or such a message could never be claimed.
DEFAULT_MAX_CLAIMED_BYTES = 16 * MIB

DEFAULT_BACKOFF_BASE = timedelta(seconds=1)
DEFAULT_BACKOFF_CAP = timedelta(minutes=10)
DEFAULT_MAX_ATTEMPTS = 25
DEFAULT_MAX_AGE = timedelta(hours=24)
DEFAULT_RETRY_AFTER_MAX = timedelta(minutes=5)
# 429 slows every sender down for this long when Ravelin sends no Retry-After.
DEFAULT_RATE_LIMITED_PAUSE = timedelta(seconds=5)

DEFAULT_PROBE_INITIAL = timedelta(seconds=1)
DEFAULT_PROBE_CAP = timedelta(seconds=60)
# This many sends in a row failing transiently (5xx, timeout, connection failure) with no other
# answer between them mean the endpoint itself is down: pause and probe instead of spending
# every message's attempts on an outage. Below OUTBOX_MAX_ATTEMPTS, so that even a message
# pending alone is still alive when the outage is recognised.
DEFAULT_OUTAGE_THRESHOLD = 10

DEFAULT_HISTORY_CAP = 20
# The longest the worker waits on one database statement or new connection before it takes the
# database for unavailable. A silent partition (packets dropped, no reset) never errors by itself:
# this bounds how long the worker waits on it, well inside the default lease.
DEFAULT_DATABASE_TIMEOUT = timedelta(seconds=10)

# Every worker samples the backlog (pending due / not yet due, oldest pending age, dead count) in
# one statement this often, for its Prometheus gauges and its liveness check.
DEFAULT_BACKLOG_INTERVAL = timedelta(seconds=5)
# /healthz fails when work is due and the claim loop is this late: it announces how long it will
# wait (poll, backoff, circuit probe) before each wait, so only a wedged loop is ever late.
DEFAULT_LIVENESS_TIMEOUT = timedelta(seconds=60)

# Retention: the fleet deletes rows older than these itself. Acknowledged rows are only history
# (and the dedup window: a dedup key is remembered as long as its row is kept). Dead letters are
# work an operator still owes, so they stay longer: 30 days outlasts a holiday, a monthly review
# and the longest OUTBOX_MAX_AGE, and covers Ravelin support questions quoting a traceId.
DEFAULT_RETAIN_ACKNOWLEDGED = timedelta(days=7)
DEFAULT_RETAIN_DEAD = timedelta(days=30)
# The operators' audit log (requeue, purge, pause, resume, console sign-ins) is evidence, not
# work: 400 days covers a full year of history, as PCI DSS 10.5.1 and most SOC 2 auditors ask
# (12 months), with a month to spare for the audit that reads it. The database keeps at least
# 90 days whatever this says (outbox.purge_expired_audit refuses less).
DEFAULT_RETAIN_AUDIT = timedelta(days=400)
# One pass this often per fleet (whichever worker's turn comes first); the first pass of a
# worker starts within RETENTION_FIRST_PASS of its start, at a random point to spread a fleet.
DEFAULT_RETENTION_INTERVAL = timedelta(minutes=10)
RETENTION_FIRST_PASS: Final = timedelta(minutes=1)
# Rows deleted per transaction: each batch holds its row locks for milliseconds, not minutes.
RETENTION_BATCH_SIZE: Final = 1000


@dataclass(frozen=True, slots=True, kw_only=True)
class RetrySettings:
    """How transient failures are retried and when the worker gives up on a message."""

    backoff_base: timedelta = DEFAULT_BACKOFF_BASE
    backoff_cap: timedelta = DEFAULT_BACKOFF_CAP
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    max_age: timedelta = DEFAULT_MAX_AGE
    retry_after_max: timedelta = DEFAULT_RETRY_AFTER_MAX
    rate_limited_pause: timedelta = DEFAULT_RATE_LIMITED_PAUSE
    # Ravelin keeps rate-limited data and advises against resending; True resends on 429.
    retry_on_429: bool = False

    def __post_init__(self) -> None:
        check_bounds(self)
        if self.backoff_base > self.backoff_cap:
            raise ConfigError("OUTBOX_BACKOFF_BASE must not exceed OUTBOX_BACKOFF_CAP")


@dataclass(frozen=True, slots=True, kw_only=True)
class CircuitSettings:
    """When delivery pauses for a systemic fault, and how often a paused worker probes."""

    probe_initial: timedelta = DEFAULT_PROBE_INITIAL
    probe_cap: timedelta = DEFAULT_PROBE_CAP
    outage_threshold: int = DEFAULT_OUTAGE_THRESHOLD

    def __post_init__(self) -> None:
        check_bounds(self)
        if self.probe_initial > self.probe_cap:
            raise ConfigError("OUTBOX_PROBE_INITIAL must not exceed OUTBOX_PROBE_CAP")


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerSettings:
    """What the delivery core (worker, upkeep) reads: no database URL, no API key."""

    concurrency: int = DEFAULT_CONCURRENCY
    batch_size: int = DEFAULT_BATCH_SIZE
    http_timeout: timedelta = DEFAULT_HTTP_TIMEOUT
    lease: timedelta = DEFAULT_LEASE
    poll_interval: timedelta = DEFAULT_POLL_INTERVAL
    listen: bool = True  # False for poll-only mode (poolers that cannot LISTEN)
    shutdown_grace: timedelta = DEFAULT_SHUTDOWN_GRACE
    flush_interval: timedelta = DEFAULT_FLUSH_INTERVAL
    max_claimed_bytes: int = DEFAULT_MAX_CLAIMED_BYTES
    rate_limit: float = 0.0  # sends per second across every worker of the database; 0: none
    backlog_interval: timedelta = DEFAULT_BACKLOG_INTERVAL
    retain_acknowledged: timedelta = DEFAULT_RETAIN_ACKNOWLEDGED
    retain_dead: timedelta = DEFAULT_RETAIN_DEAD
    retain_audit: timedelta = DEFAULT_RETAIN_AUDIT
    retention_interval: timedelta = DEFAULT_RETENTION_INTERVAL
    retry: RetrySettings = field(default_factory=RetrySettings)
    circuit: CircuitSettings = field(default_factory=CircuitSettings)
    # Where this worker delivers from and to, for its start-up line and warnings only: the
    # endpoint (checked by Settings) and the database URL with its password hidden.
    endpoint_url: str = DEFAULT_ENDPOINT_URL
    database: str = ""

    def __post_init__(self) -> None:
        check_bounds(self)
        if self.lease <= self.http_timeout + LEASE_MARGIN:
            raise ConfigError(
                f"OUTBOX_LEASE ({_seconds(self.lease)}) must be longer than "
                f"OUTBOX_HTTP_TIMEOUT ({_seconds(self.http_timeout)}) plus "
                f"{_seconds(LEASE_MARGIN)}, or a slow send could be taken over mid-flight"
            )

    def with_changes(self, **changes: Any) -> Self:
        """Return a copy with some fields changed (checked again)."""
        return replace(self, **changes)

    def describe(self) -> dict[str, Any]:
        """The settings as plain values for a start-up log line; no secret is among them."""
        out: dict[str, Any] = _plain(self)
        out["database_url"] = out.pop("database")
        return out

    def warnings(self) -> list[str]:
        """Settings that are legal but risky, one human line each (the worker logs them)."""
        found = []
        if self.shutdown_grace < self.http_timeout + SHUTDOWN_MARGIN:
            found.append(
                f"OUTBOX_SHUTDOWN_GRACE ({_seconds(self.shutdown_grace)}) is shorter than "
                f"OUTBOX_HTTP_TIMEOUT ({_seconds(self.http_timeout)}) plus "
                f"{_seconds(SHUTDOWN_MARGIN)}: a SIGTERM may abandon sends the endpoint "
                "already received"
            )
        host = urlsplit(self.endpoint_url).hostname or ""
        if self.endpoint_url.startswith("http:") and not is_loopback(host):
            found.append(
                f"OUTBOX_ALLOW_INSECURE_HTTP is set: the API key and registrations go to {host} "
                "in clear text"
            )
        if self.circuit.outage_threshold >= self.retry.max_attempts:
            found.append(
                f"OUTBOX_OUTAGE_THRESHOLD ({self.circuit.outage_threshold}) is not below "
                f"OUTBOX_MAX_ATTEMPTS ({self.retry.max_attempts}): a message pending alone "
                "during an outage may be dead-lettered before the outage is recognised"
            )
        if self.retry.retry_on_429:
            found.append(
                "OUTBOX_RETRY_ON_429 is set: Ravelin keeps rate-limited data and advises "
                "against resending, so resent updates may arrive twice"
            )
        return found


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings(WorkerSettings):
    """Everything `outbox-worker run` needs, checked: the worker's part plus where and how."""

    # Never in repr (tracebacks, debuggers): describe() shows it with its secrets hidden.
    database_url: str = field(repr=False)
    api_key: Secret
    allow_insecure_http: bool = False
    # A direct connection (not through a transaction pooler) for LISTEN; None: the main URL,
    # where the worker checks at start that notifications arrive, and polls if they do not.
    listen_database_url: str | None = None
    history_cap: int = DEFAULT_HISTORY_CAP
    metrics_port: int = 0  # 0 means no metrics/health endpoint
    liveness_timeout: timedelta = DEFAULT_LIVENESS_TIMEOUT
    database_timeout: timedelta = DEFAULT_DATABASE_TIMEOUT
    # Where spans go ("otlp", "console"), as the OTEL_* variables ask; empty: no tracing
    # (environment.read_traces_exporters; README "Tracing").
    traces: tuple[str, ...] = ()
    database: str = field(init=False, default="")  # redact_url(database_url), set when checked

    def __post_init__(self) -> None:
        check_database_url(self.database_url)
        if self.listen_database_url is not None:
            check_database_url(self.listen_database_url, name=LISTEN_DATABASE_URL_VAR)
        check_endpoint_url(self.endpoint_url, allow_insecure_http=self.allow_insecure_http)
        if not self.api_key:
            raise ConfigError("OUTBOX_API_KEY is not set; set it or OUTBOX_API_KEY_FILE")
        check_api_key(self.api_key.reveal(), origin="OUTBOX_API_KEY")
        WorkerSettings.__post_init__(self)
        object.__setattr__(self, "database", redact_url(self.database_url))

    @property
    def worker(self) -> WorkerSettings:
        """The part the delivery core reads, as its own object: no database URL, no API key."""
        return WorkerSettings(**{item.name: getattr(self, item.name) for item in _WORKER_FIELDS})

    def describe(self) -> dict[str, Any]:
        """The settings as plain values for a start-up log line; the API key never appears."""
        out = WorkerSettings.describe(self)
        del out["api_key"]
        if self.listen_database_url is not None:
            out["listen_database_url"] = redact_url(self.listen_database_url)
        return out


_WORKER_FIELDS: Final = fields(WorkerSettings)


def _seconds(value: timedelta) -> str:
    return f"{value.total_seconds():g}s"


def _plain(value: Any) -> Any:
    """Durations as seconds and nested settings as dicts, for logging."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    return value
