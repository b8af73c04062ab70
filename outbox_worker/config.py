"""Configuration as data: frozen dataclasses with their defaults, read once from the environment.

``Settings.from_env(environ, overrides)`` is the only reader of ``OUTBOX_*`` variables; CLI flags
arrive as ``overrides`` (same names, lower case, without the prefix). Everything is checked here,
at start, so a bad setting fails with one line instead of at the first delivery.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from outbox_worker.errors import ConfigError

DEFAULT_ENDPOINT_URL = "https://api.ravelin.com/v2/registration"

DEFAULT_CONCURRENCY = 64
DEFAULT_BATCH_SIZE = 100
DEFAULT_HTTP_TIMEOUT = timedelta(seconds=10)
# The lease must outlive a send that starts just before it runs out: HTTP timeout + this margin.
LEASE_MARGIN = timedelta(seconds=5)
DEFAULT_LEASE = timedelta(seconds=60)
DEFAULT_POLL_INTERVAL = timedelta(seconds=5)
DEFAULT_SHUTDOWN_GRACE = timedelta(seconds=10)
DEFAULT_FLUSH_INTERVAL = timedelta(milliseconds=20)

DEFAULT_BACKOFF_BASE = timedelta(seconds=1)
DEFAULT_BACKOFF_CAP = timedelta(minutes=10)
DEFAULT_MAX_ATTEMPTS = 25
DEFAULT_MAX_AGE = timedelta(hours=24)
DEFAULT_RETRY_AFTER_MAX = timedelta(minutes=5)
# 429 slows every sender down for this long when Ravelin sends no Retry-After.
DEFAULT_RATE_LIMITED_PAUSE = timedelta(seconds=5)

DEFAULT_PROBE_INITIAL = timedelta(seconds=1)
DEFAULT_PROBE_CAP = timedelta(seconds=60)
DEFAULT_OUTAGE_THRESHOLD = 10
DEFAULT_MAX_CLAIMED_BYTES = 16 * 1024 * 1024

DEFAULT_HISTORY_CAP = 20

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def parse_duration(text: str | timedelta | float, *, name: str = "duration") -> timedelta:
    """Parse '500ms', '30s', '10m', '24h', '7d', '2w' or plain seconds into a timedelta."""
    if isinstance(text, timedelta):
        return text
    if isinstance(text, int | float):
        return timedelta(seconds=text)
    match = _DURATION.match(text)
    if not match:
        raise ConfigError(f"{name}: {text!r} is not a duration; use e.g. 500ms, 30s, 10m, 24h, 7d")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def _parse_bool(text: str | bool, name: str) -> bool:
    if isinstance(text, bool):
        return text
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"{name}: {text!r} is not a boolean; use true or false")


def _parse_int(text: str | int, name: str, *, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{name}: {text!r} is not a whole number") from None
    if value < minimum:
        raise ConfigError(f"{name}: must be at least {minimum}, got {value}")
    return value


class Secret:
    """Text that never shows itself in repr, str, f-strings or logs; ``reveal()`` gives it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def reveal(self) -> str:
        """Return the secret text, for the one place that must send it."""
        return self._value


def asyncpg_dsn(url: str) -> str:
    """Turn any postgresql URL (with or without a +driver suffix) into one asyncpg accepts."""
    scheme, sep, rest = url.partition("://")
    return f"postgresql{sep}{rest}" if scheme.startswith("postgres") else url


def sqlalchemy_url(url: str, driver: str = "asyncpg") -> str:
    """Turn a postgresql:// URL into SQLAlchemy's postgresql+<driver>:// form."""
    _, sep, rest = url.partition("://")
    return f"postgresql+{driver}{sep}{rest}"


def check_database_url(url: str) -> str:
    """Return the URL if it is a well-formed postgresql:// URL, else raise ConfigError."""
    example = "e.g. postgresql://user:password@db.example.com:5432/app"
    scheme = url.partition("://")[0]
    if not url or scheme.split("+")[0] not in {"postgresql", "postgres"} or "://" not in url:
        raise ConfigError(f"OUTBOX_DATABASE_URL must be a postgresql:// URL, {example}")
    try:
        _ = urlsplit(url).port  # parses the port: "abc" or 99999 raise ValueError
    except ValueError as exc:
        raise ConfigError(f"OUTBOX_DATABASE_URL is malformed ({exc}); {example}") from None
    return url


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_endpoint_url(url: str, *, allow_insecure_http: bool) -> str:
    """Return the endpoint URL if it is usable, else raise ConfigError saying why."""
    parts = urlsplit(url)
    if parts.scheme not in {"https", "http"} or not parts.hostname:
        raise ConfigError(f"OUTBOX_ENDPOINT_URL: {url!r} is not an http(s) URL")
    if "score" in parts.query:
        raise ConfigError(
            "OUTBOX_ENDPOINT_URL must not carry ?score=: that is the recommendation checkpoint"
        )
    if parts.scheme == "http" and not (is_loopback(parts.hostname) or allow_insecure_http):
        raise ConfigError(
            f"OUTBOX_ENDPOINT_URL uses plain http to {parts.hostname}; use https, "
            "or set OUTBOX_ALLOW_INSECURE_HTTP=true if you really mean it"
        )
    return url


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


@dataclass(frozen=True, slots=True, kw_only=True)
class CircuitSettings:
    """How often a paused worker probes the endpoint (401/403/404/405/406)."""

    probe_initial: timedelta = DEFAULT_PROBE_INITIAL
    probe_cap: timedelta = DEFAULT_PROBE_CAP
    # Different messages failing transiently in a row, with no other answer between, that mean
    # the endpoint itself is down: pause and probe instead of spending attempts.
    outage_threshold: int = DEFAULT_OUTAGE_THRESHOLD


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Everything `outbox-worker run` needs, checked."""

    database_url: str
    api_key: Secret
    endpoint_url: str = DEFAULT_ENDPOINT_URL
    allow_insecure_http: bool = False
    concurrency: int = DEFAULT_CONCURRENCY
    batch_size: int = DEFAULT_BATCH_SIZE
    http_timeout: timedelta = DEFAULT_HTTP_TIMEOUT
    lease: timedelta = DEFAULT_LEASE
    poll_interval: timedelta = DEFAULT_POLL_INTERVAL
    listen: bool = True  # False for poll-only mode (poolers that cannot LISTEN)
    shutdown_grace: timedelta = DEFAULT_SHUTDOWN_GRACE
    flush_interval: timedelta = DEFAULT_FLUSH_INTERVAL
    rate_limit: float = 0.0  # requests per second for this process; 0 means no limit
    history_cap: int = DEFAULT_HISTORY_CAP
    metrics_port: int = 0  # 0 means no metrics endpoint
    # Bytes of claimed payloads a worker holds at once (queued or in flight): its memory ceiling.
    max_claimed_bytes: int = DEFAULT_MAX_CLAIMED_BYTES
    retry: RetrySettings = field(default_factory=RetrySettings)
    circuit: CircuitSettings = field(default_factory=CircuitSettings)

    def __post_init__(self) -> None:
        check_database_url(self.database_url)
        check_endpoint_url(self.endpoint_url, allow_insecure_http=self.allow_insecure_http)
        if not self.api_key:
            raise ConfigError("OUTBOX_API_KEY is not set; set it or OUTBOX_API_KEY_FILE")
        if self.lease <= self.http_timeout + LEASE_MARGIN:
            raise ConfigError(
                f"OUTBOX_LEASE ({self.lease.total_seconds():g}s) must be longer than "
                f"OUTBOX_HTTP_TIMEOUT ({self.http_timeout.total_seconds():g}s) plus "
                f"{LEASE_MARGIN.total_seconds():g}s, or a slow send could be taken over mid-flight"
            )
        if self.retry.backoff_base > self.retry.backoff_cap:
            raise ConfigError("OUTBOX_BACKOFF_BASE must not exceed OUTBOX_BACKOFF_CAP")

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
            max_attempts=source.integer("max_attempts", DEFAULT_MAX_ATTEMPTS, minimum=1),
            max_age=source.duration("max_age", DEFAULT_MAX_AGE),
            retry_after_max=source.duration("retry_after_max", DEFAULT_RETRY_AFTER_MAX),
            rate_limited_pause=source.duration("rate_limited_pause", DEFAULT_RATE_LIMITED_PAUSE),
            retry_on_429=source.boolean("retry_on_429", False),
        )
        circuit = CircuitSettings(
            probe_initial=source.duration("probe_initial", DEFAULT_PROBE_INITIAL),
            probe_cap=source.duration("probe_cap", DEFAULT_PROBE_CAP),
            outage_threshold=source.integer(
                "outage_threshold", DEFAULT_OUTAGE_THRESHOLD, minimum=1
            ),
        )
        return cls(
            database_url=source.database_url(),
            api_key=source.api_key(),
            endpoint_url=source.text("endpoint_url", DEFAULT_ENDPOINT_URL),
            allow_insecure_http=source.boolean("allow_insecure_http", False),
            concurrency=source.integer("concurrency", DEFAULT_CONCURRENCY, minimum=1),
            batch_size=source.integer("batch_size", DEFAULT_BATCH_SIZE, minimum=1),
            http_timeout=source.duration("http_timeout", DEFAULT_HTTP_TIMEOUT),
            lease=source.duration("lease", DEFAULT_LEASE),
            poll_interval=source.duration("poll_interval", DEFAULT_POLL_INTERVAL),
            listen=not source.boolean("poll_only", False),
            shutdown_grace=source.duration("shutdown_grace", DEFAULT_SHUTDOWN_GRACE),
            flush_interval=source.duration("flush_interval", DEFAULT_FLUSH_INTERVAL),
            rate_limit=source.number("rate_limit", 0.0),
            history_cap=source.integer("history_cap", DEFAULT_HISTORY_CAP, minimum=1),
            metrics_port=source.integer("metrics_port", 0, minimum=0),
            max_claimed_bytes=source.integer(
                "max_claimed_bytes", DEFAULT_MAX_CLAIMED_BYTES, minimum=1024 * 1024
            ),
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
        return out


def _plain(value: Any) -> Any:
    """Durations as seconds and nested settings as dicts, for logging."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    return value


def redact_url(url: str) -> str:
    """Hide the password of a database URL so it can be logged."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


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

    def text(self, name: str, default: str) -> str:
        value = self.raw(name)
        return default if value is None else str(value)

    def duration(self, name: str, default: timedelta) -> timedelta:
        value = self.raw(name)
        return default if value is None else parse_duration(value, name=_env_name(name))

    def boolean(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        return default if value is None else _parse_bool(value, _env_name(name))

    def integer(self, name: str, default: int, *, minimum: int) -> int:
        value = self.raw(name)
        return default if value is None else _parse_int(value, _env_name(name), minimum=minimum)

    def number(self, name: str, default: float) -> float:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"{_env_name(name)}: {value!r} is not a number") from None
        if number < 0:
            raise ConfigError(f"{_env_name(name)}: must not be negative")
        return number

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
            try:
                key = Path(str(key_file)).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(
                    f"OUTBOX_API_KEY_FILE: cannot read {key_file}: {exc.strerror}"
                ) from None
            if not key:
                raise ConfigError(f"OUTBOX_API_KEY_FILE: {key_file} is empty")
        if key is None:
            raise ConfigError("OUTBOX_API_KEY is not set; set it or OUTBOX_API_KEY_FILE")
        text = str(key).strip()
        if text.startswith(("pk_", "publishable_key_")):
            raise ConfigError(
                "OUTBOX_API_KEY is a publishable key (pk_...); "
                "/v2/registration needs the secret key (sk_...)"
            )
        return Secret(text)


def _env_name(name: str) -> str:
    return f"OUTBOX_{name.upper()}"
