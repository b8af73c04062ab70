"""Configuration as data: frozen dataclasses with their defaults, read once from the environment.

``Settings.from_env(environ, overrides)`` is the only reader of ``OUTBOX_*`` variables; CLI flags
arrive as ``overrides`` (same names, lower case, without the prefix). Everything is checked here,
at start, against the bounds below, so a bad setting fails with one line instead of at the first
delivery. The text parsers live in settings_parsing.py.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass, replace
from datetime import timedelta
from typing import Any, Final
from urllib.parse import urlsplit

from outbox_worker.errors import ConfigError
from outbox_worker.limits import MAX_PAYLOAD_BYTES

# Re-exported: callers import these from config, where settings come from.
from outbox_worker.settings_parsing import Secret as Secret
from outbox_worker.settings_parsing import asyncpg_dsn as asyncpg_dsn
from outbox_worker.settings_parsing import (
    check_api_key,
    check_duration,
    check_endpoint_url,
    check_int,
    parse_bool,
    parse_int,
    parse_number,
    parse_size,
    read_key_file,
)
from outbox_worker.settings_parsing import check_database_url as check_database_url
from outbox_worker.settings_parsing import is_loopback as is_loopback
from outbox_worker.settings_parsing import parse_duration as parse_duration
from outbox_worker.settings_parsing import redact_url as redact_url
from outbox_worker.settings_parsing import sqlalchemy_url as sqlalchemy_url

MS: Final = timedelta(milliseconds=1)
KIB: Final = 1024
MIB: Final = 1024 * KIB
GIB: Final = 1024 * MIB

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
# One pass this often per fleet (whichever worker's turn comes first); the first pass of a
# worker starts within RETENTION_FIRST_PASS of its start, at a random point to spread a fleet.
DEFAULT_RETENTION_INTERVAL = timedelta(minutes=10)
RETENTION_FIRST_PASS: Final = timedelta(minutes=1)
# Rows deleted per transaction: each batch holds its row locks for milliseconds, not minutes.
RETENTION_BATCH_SIZE: Final = 1000

# Allowed ranges by field name (the variable is OUTBOX_<NAME>), checked when settings are built.
# Wide enough for any sane deployment and for tests' millisecond timings; narrow enough that a
# typo (a missing unit, an extra digit) fails at start instead of stalling or flooding.
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
    # At least an hour: a typo must not delete the rows an operator is still reading.
    "retain_acknowledged": (timedelta(hours=1), timedelta(days=3650)),
    "retain_dead": (timedelta(hours=1), timedelta(days=3650)),
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
        _check_bounds(self)
        if self.backoff_base > self.backoff_cap:
            raise ConfigError("OUTBOX_BACKOFF_BASE must not exceed OUTBOX_BACKOFF_CAP")


@dataclass(frozen=True, slots=True, kw_only=True)
class CircuitSettings:
    """When delivery pauses for a systemic fault, and how often a paused worker probes."""

    probe_initial: timedelta = DEFAULT_PROBE_INITIAL
    probe_cap: timedelta = DEFAULT_PROBE_CAP
    outage_threshold: int = DEFAULT_OUTAGE_THRESHOLD

    def __post_init__(self) -> None:
        _check_bounds(self)
        if self.probe_initial > self.probe_cap:
            raise ConfigError("OUTBOX_PROBE_INITIAL must not exceed OUTBOX_PROBE_CAP")


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Everything `outbox-worker run` needs, checked."""

    # Never in repr (tracebacks, debuggers): describe() shows it with its secrets hidden.
    database_url: str = field(repr=False)
    api_key: Secret
    endpoint_url: str = DEFAULT_ENDPOINT_URL
    allow_insecure_http: bool = False
    concurrency: int = DEFAULT_CONCURRENCY
    batch_size: int = DEFAULT_BATCH_SIZE
    http_timeout: timedelta = DEFAULT_HTTP_TIMEOUT
    lease: timedelta = DEFAULT_LEASE
    poll_interval: timedelta = DEFAULT_POLL_INTERVAL
    listen: bool = True  # False for poll-only mode (poolers that cannot LISTEN)
    # A direct connection (not through a transaction pooler) for LISTEN; None: the main URL,
    # where the worker checks at start that notifications arrive, and polls if they do not.
    listen_database_url: str | None = None
    shutdown_grace: timedelta = DEFAULT_SHUTDOWN_GRACE
    flush_interval: timedelta = DEFAULT_FLUSH_INTERVAL
    max_claimed_bytes: int = DEFAULT_MAX_CLAIMED_BYTES
    rate_limit: float = 0.0  # sends per second across every worker of the database; 0: none
    history_cap: int = DEFAULT_HISTORY_CAP
    metrics_port: int = 0  # 0 means no metrics/health endpoint
    backlog_interval: timedelta = DEFAULT_BACKLOG_INTERVAL
    liveness_timeout: timedelta = DEFAULT_LIVENESS_TIMEOUT
    retain_acknowledged: timedelta = DEFAULT_RETAIN_ACKNOWLEDGED
    retain_dead: timedelta = DEFAULT_RETAIN_DEAD
    retention_interval: timedelta = DEFAULT_RETENTION_INTERVAL
    retry: RetrySettings = field(default_factory=RetrySettings)
    circuit: CircuitSettings = field(default_factory=CircuitSettings)

    def __post_init__(self) -> None:
        check_database_url(self.database_url)
        if self.listen_database_url is not None:
            check_database_url(self.listen_database_url, name=LISTEN_DATABASE_URL_VAR)
        check_endpoint_url(self.endpoint_url, allow_insecure_http=self.allow_insecure_http)
        if not self.api_key:
            raise ConfigError("OUTBOX_API_KEY is not set; set it or OUTBOX_API_KEY_FILE")
        check_api_key(self.api_key.reveal(), origin="OUTBOX_API_KEY")
        _check_bounds(self)
        parse_size(self.max_claimed_bytes, name="OUTBOX_MAX_CLAIMED_BYTES", **_CLAIMED_BYTES)
        parse_number(self.rate_limit, name="OUTBOX_RATE_LIMIT", minimum=0, maximum=RATE_LIMIT_MAX)
        if self.lease <= self.http_timeout + LEASE_MARGIN:
            raise ConfigError(
                f"OUTBOX_LEASE ({_seconds(self.lease)}) must be longer than "
                f"OUTBOX_HTTP_TIMEOUT ({_seconds(self.http_timeout)}) plus "
                f"{_seconds(LEASE_MARGIN)}, or a slow send could be taken over mid-flight"
            )

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> Settings:
        """Build Settings from OUTBOX_* variables, with CLI flags (``overrides``) winning."""
        source = _Source(os.environ if environ is None else environ, overrides or {})
        retry = RetrySettings(
            backoff_base=source.duration("backoff_base", DEFAULT_BACKOFF_BASE),
            backoff_cap=source.duration("backoff_cap", DEFAULT_BACKOFF_CAP),
            max_attempts=source.integer("max_attempts", DEFAULT_MAX_ATTEMPTS),
            max_age=source.duration("max_age", DEFAULT_MAX_AGE),
            retry_after_max=source.duration("retry_after_max", DEFAULT_RETRY_AFTER_MAX),
            rate_limited_pause=source.duration("rate_limited_pause", DEFAULT_RATE_LIMITED_PAUSE),
            retry_on_429=source.boolean("retry_on_429", False),
        )
        circuit = CircuitSettings(
            probe_initial=source.duration("probe_initial", DEFAULT_PROBE_INITIAL),
            probe_cap=source.duration("probe_cap", DEFAULT_PROBE_CAP),
            outage_threshold=source.integer("outage_threshold", DEFAULT_OUTAGE_THRESHOLD),
        )
        return cls(
            database_url=source.database_url(),
            api_key=source.api_key(),
            endpoint_url=source.text("endpoint_url", DEFAULT_ENDPOINT_URL),
            allow_insecure_http=source.boolean("allow_insecure_http", False),
            concurrency=source.integer("concurrency", DEFAULT_CONCURRENCY),
            batch_size=source.integer("batch_size", DEFAULT_BATCH_SIZE),
            http_timeout=source.duration("http_timeout", DEFAULT_HTTP_TIMEOUT),
            lease=source.duration("lease", DEFAULT_LEASE),
            poll_interval=source.duration("poll_interval", DEFAULT_POLL_INTERVAL),
            listen=not source.boolean("poll_only", False),
            listen_database_url=source.optional_text("listen_database_url"),
            shutdown_grace=source.duration("shutdown_grace", DEFAULT_SHUTDOWN_GRACE),
            flush_interval=source.duration("flush_interval", DEFAULT_FLUSH_INTERVAL),
            max_claimed_bytes=source.size("max_claimed_bytes", DEFAULT_MAX_CLAIMED_BYTES),
            rate_limit=source.number("rate_limit", 0.0, maximum=RATE_LIMIT_MAX),
            history_cap=source.integer("history_cap", DEFAULT_HISTORY_CAP),
            metrics_port=source.integer("metrics_port", 0),
            backlog_interval=source.duration("backlog_interval", DEFAULT_BACKLOG_INTERVAL),
            liveness_timeout=source.duration("liveness_timeout", DEFAULT_LIVENESS_TIMEOUT),
            retain_acknowledged=source.duration("retain_acknowledged", DEFAULT_RETAIN_ACKNOWLEDGED),
            retain_dead=source.duration("retain_dead", DEFAULT_RETAIN_DEAD),
            retention_interval=source.duration("retention_interval", DEFAULT_RETENTION_INTERVAL),
            retry=retry,
            circuit=circuit,
        )

    def with_changes(self, **changes: Any) -> Settings:
        """Return a copy with some fields changed (checked again)."""
        return replace(self, **changes)

    def describe(self) -> dict[str, Any]:
        """The settings as plain values for a start-up log line; the API key never appears."""
        out: dict[str, Any] = _plain(self)
        del out["api_key"]
        out["database_url"] = redact_url(self.database_url)
        if self.listen_database_url is not None:
            out["listen_database_url"] = redact_url(self.listen_database_url)
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


_CLAIMED_BYTES: Final = {"minimum": CLAIMED_BYTES_BOUNDS[0], "maximum": CLAIMED_BYTES_BOUNDS[1]}


def _check_bounds(settings: Any) -> None:
    """Check every duration and count of a settings dataclass against its bounds."""
    for item in fields(settings):
        value = getattr(settings, item.name)
        name = _env_name(item.name)
        if item.name in DURATION_BOUNDS:
            low, high = DURATION_BOUNDS[item.name]
            check_duration(value, name=name, minimum=low, maximum=high)
        elif item.name in INT_BOUNDS:
            low_count, high_count = INT_BOUNDS[item.name]
            check_int(value, name=name, minimum=low_count, maximum=high_count)


def _seconds(value: timedelta) -> str:
    return f"{value.total_seconds():g}s"


def _plain(value: Any) -> Any:
    """Durations as seconds and nested settings as dicts, for logging."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    return value


def database_url_from_env(
    environ: Mapping[str, str] | None = None, override: str | None = None
) -> str:
    """The database URL alone (for commands that need no API key), checked."""
    source = _Source(os.environ if environ is None else environ, {"database_url": override})
    return source.database_url()


def env_value(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """One OUTBOX_* variable (``name`` without the prefix), or None when unset or empty."""
    value = (os.environ if environ is None else environ).get(f"OUTBOX_{name.upper()}")
    return value or None


@dataclass(frozen=True, slots=True)
class _Source:
    environ: Mapping[str, str]
    overrides: Mapping[str, Any]

    def raw(self, name: str) -> Any:
        value = self.overrides.get(name)
        if value is not None:
            return value
        env = self.environ.get(f"OUTBOX_{name.upper()}")
        return env if env not in (None, "") else None

    def optional_text(self, name: str) -> str | None:
        value = self.raw(name)
        return None if value is None else str(value)

    def text(self, name: str, default: str) -> str:
        value = self.raw(name)
        return default if value is None else str(value)

    def duration(self, name: str, default: timedelta) -> timedelta:
        value = self.raw(name)
        if value is None:
            return default
        low, high = DURATION_BOUNDS[name]
        return parse_duration(value, name=_env_name(name), minimum=low, maximum=high)

    def boolean(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        return default if value is None else parse_bool(value, name=_env_name(name))

    def integer(self, name: str, default: int) -> int:
        value = self.raw(name)
        if value is None:
            return default
        low, high = INT_BOUNDS[name]
        return parse_int(value, name=_env_name(name), minimum=low, maximum=high)

    def size(self, name: str, default: int) -> int:
        value = self.raw(name)
        return (
            default if value is None else parse_size(value, name=_env_name(name), **_CLAIMED_BYTES)
        )

    def number(self, name: str, default: float, *, maximum: float) -> float:
        value = self.raw(name)
        if value is None:
            return default
        return parse_number(value, name=_env_name(name), minimum=0.0, maximum=maximum)

    def database_url(self) -> str:
        value = self.raw("database_url")
        if value is None:
            raise ConfigError(
                "OUTBOX_DATABASE_URL is not set; set it to a postgresql:// URL "
                "or pass --database-url"
            )
        return check_database_url(str(value))

    def api_key(self) -> Secret:
        key = self.raw("api_key")
        key_file = self.raw("api_key_file")
        if key is not None and key_file is not None:
            raise ConfigError("set OUTBOX_API_KEY or OUTBOX_API_KEY_FILE, not both")
        if key_file is not None:
            return Secret(read_key_file(str(key_file)))
        if key is None:
            raise ConfigError("OUTBOX_API_KEY is not set; set it or OUTBOX_API_KEY_FILE")
        return Secret(check_api_key(str(key).strip(), origin="OUTBOX_API_KEY"))


def _env_name(name: str) -> str:
    return f"OUTBOX_{name.upper()}"
