"""The one reader of the OUTBOX_* variables: their text, CLI flags over it, parsed into settings.

Every setting is the variable ``OUTBOX_<FIELD NAME>`` (OUTBOX_POLL_ONLY, the one exception, turns
``listen`` off), or the flag of the same name, which wins. An empty variable counts as unset. Each
value is parsed by its field's kind (duration, count, size, rate, boolean, text) within its
bounds, so a bad one fails with a one-line ConfigError that names the variable; the dataclasses in
config.py then check how the values fit together.

Written out rather than on pydantic-settings: `outbox-worker run` does not import pydantic
(tests/unit/test_startup.py), and pydantic-settings would add about 80 ms of CPU to every
worker's start (measured 2026-11-26 on the `run` import path).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Final

from outbox_worker.errors import ConfigError
from outbox_worker.settings.bounds import BOUNDED, bounded, env_name
from outbox_worker.settings.config import CircuitSettings, RetrySettings, Settings
from outbox_worker.settings.parsing import (
    Secret,
    check_api_key,
    parse_bool,
    read_key_file,
)
from outbox_worker.settings.urls import check_database_url

_BOOLEANS: Final = frozenset({"allow_insecure_http", "retry_on_429", "poll_only"})
# Read apart: the URLs and the key have their own checks and messages; retry and circuit nest;
# ``listen`` is the negation of OUTBOX_POLL_ONLY; ``database`` is derived from the URL.
_NOT_TUNABLE: Final = frozenset(
    {"database_url", "api_key", "database", "retry", "circuit", "listen", "traces"}
)
# The span exporters the worker ships (the `otel` extra), by their OTEL_TRACES_EXPORTER names.
_TRACES_EXPORTERS: Final = frozenset({"otlp", "console"})
_TUNABLES: Final = (
    *(
        item.name
        for kind in (Settings, RetrySettings, CircuitSettings)
        for item in fields(kind)
        if item.name not in _NOT_TUNABLE
    ),
    "poll_only",
)


def read_settings(
    environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
) -> Settings:
    """Settings from the OUTBOX_* variables (os.environ unless given), CLI flags winning."""
    source = _Source.of(environ, overrides)
    values = {
        name: _parse(name, text) for name in _TUNABLES if (text := source.raw(name)) is not None
    }
    if "poll_only" in values:
        values["listen"] = not values.pop("poll_only")
    return Settings(
        database_url=source.database_url(),
        api_key=source.api_key(),
        retry=RetrySettings(**_take(values, RetrySettings)),
        circuit=CircuitSettings(**_take(values, CircuitSettings)),
        traces=read_traces_exporters(source.environ),
        **values,
    )


def read_traces_exporters(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The span exporters the standard OTEL_* variables ask for; () when they ask for none.

    Tracing is on when OTEL_TRACES_EXPORTER names exporters, or (unset) when an OTLP endpoint is
    set; OTEL_SDK_DISABLED=true turns it off. Unlike the SDK, an unset OTEL_TRACES_EXPORTER alone
    does not mean "otlp to localhost": a worker traces only when told where to.
    """
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return ()
    named = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
    if not named:
        endpoints = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
        named = ["otlp"] if any(env.get(name, "").strip() for name in endpoints) else ["none"]
    if named == ["none"]:
        return ()
    unknown = sorted(set(named) - _TRACES_EXPORTERS)
    if unknown:
        raise ConfigError(
            f"OTEL_TRACES_EXPORTER names {', '.join(unknown)}, which this worker does not ship; "
            "use otlp, console or none"
        )
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
    )
    if "otlp" in named and protocol.strip() != "http/protobuf":
        raise ConfigError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL is {protocol.strip()!r}; this worker exports OTLP "
            "over HTTP only: set it to http/protobuf (or unset it)"
        )
    return tuple(dict.fromkeys(named))


def read_database_url(environ: Mapping[str, str] | None = None, override: str | None = None) -> str:
    """The database URL alone (for commands that need no API key), checked."""
    return _Source.of(environ, {"database_url": override}).database_url()


def read_text(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """One OUTBOX_* variable (``name`` without the prefix) as text, or None when unset or empty."""
    value = _Source.of(environ, None).raw(name)
    return None if value is None else str(value)


def _take(values: dict[str, Any], kind: type[RetrySettings | CircuitSettings]) -> dict[str, Any]:
    """Remove and return the values that belong to the nested settings ``kind``."""
    return {item.name: values.pop(item.name) for item in fields(kind) if item.name in values}


def _parse(name: str, text: Any) -> Any:
    """One setting's text (or a flag's value) as its field's type, within its bounds."""
    if name in _BOOLEANS:
        return parse_bool(text, name=env_name(name))
    if name in BOUNDED:
        return bounded(name, text)
    return str(text)  # the URLs: Settings checks them, with the insecure-http allowance


@dataclass(frozen=True, slots=True)
class _Source:
    """The environment's OUTBOX_* text with the CLI flags (by field name) over it."""

    environ: Mapping[str, str]
    overrides: Mapping[str, Any]

    @classmethod
    def of(cls, environ: Mapping[str, str] | None, overrides: Mapping[str, Any] | None) -> _Source:
        # The one place that touches the process environment.
        return cls(os.environ if environ is None else environ, overrides or {})

    def raw(self, name: str) -> Any:
        """The flag's value if given, else the variable's text; None when unset or empty."""
        value = self.overrides.get(name)
        if value is not None:
            return value
        env = self.environ.get(env_name(name))
        return env if env not in (None, "") else None

    def database_url(self) -> str:
        """OUTBOX_DATABASE_URL (or --database-url), required and checked."""
        value = self.raw("database_url")
        if value is None:
            raise ConfigError(
                "OUTBOX_DATABASE_URL is not set; set it to a postgresql:// URL "
                "or pass --database-url"
            )
        return check_database_url(str(value))

    def api_key(self) -> Secret:
        """The key from OUTBOX_API_KEY or the file OUTBOX_API_KEY_FILE names (not both)."""
        key = self.raw("api_key")
        key_file = self.raw("api_key_file")
        if key is not None and key_file is not None:
            raise ConfigError("set OUTBOX_API_KEY or OUTBOX_API_KEY_FILE, not both")
        if key_file is not None:
            return Secret(read_key_file(str(key_file)))
        if key is None:
            raise ConfigError("OUTBOX_API_KEY is not set; set it or OUTBOX_API_KEY_FILE")
        return Secret(check_api_key(str(key).strip(), origin="OUTBOX_API_KEY"))
