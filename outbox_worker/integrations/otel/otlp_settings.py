"""The span exporter's settings, read from OTEL_EXPORTER_OTLP_* as the Python SDK's OTLP/HTTP
span exporter (opentelemetry-exporter-otlp-proto-http 1.45) reads them.

Each TRACES_ variable wins over its generic twin, an empty one counts as unset, the timeout is in
seconds. Where the SDK logs a bad value and carries on, this refuses it at start with one
ConfigError line naming the variable, never its value (headers often hold an API key).
"""

from __future__ import annotations

import math
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import unquote, urlsplit

from outbox_worker.errors import ConfigError
from outbox_worker.version import __version__

_PREFIX: Final = "OTEL_EXPORTER_OTLP_"
_DEFAULT_BASE: Final = "http://localhost:4318"
_DEFAULT_TIMEOUT_S: Final = 10.0
# The header grammar of the SDK's parse_env_headers (W3C Baggage, without properties): a strict
# entry has a URL-encoded value; a liberal one (which the SDK also accepts) a raw value with spaces.
_KEY: Final = r"[\x21\x23-\x27\x2a\x2b\x2d\x2e\x30-\x39\x41-\x5a\x5e-\x7a\x7c\x7e]+"
_VALUE: Final = r"[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*"
_RAW_VALUE: Final = r"[\x20\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*"
_STRICT_ENTRY: Final = re.compile(rf"[ \t]*{_KEY}[ \t]*=[ \t]*{_VALUE}[ \t]*")
_LIBERAL_ENTRY: Final = re.compile(rf"[ \t]*{_KEY}[ \t]*=[ \t]*{_RAW_VALUE}[ \t]*")
_DELIMITER: Final = re.compile(r"[ \t]*,[ \t]*")
_TOKEN: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")
# Framing is the exporter's: a configured one would contradict the body it sends.
_FRAMING: Final = frozenset({"content-encoding", "content-length", "transfer-encoding"})
# The SDK's requests-only hook for a custom session; aiohttp cannot honour it, so say so.
_CREDENTIAL_PROVIDERS: Final = (
    "OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER",
    "OTEL_PYTHON_EXPORTER_OTLP_HTTP_TRACES_CREDENTIAL_PROVIDER",
)


@dataclass(frozen=True, slots=True)
class ExportSettings:
    """Where and how spans are POSTed, as the OTEL_EXPORTER_OTLP_* variables say."""

    endpoint: str
    headers: Mapping[str, str] = field(repr=False)  # never printed: often an API key
    timeout_s: float
    gzip: bool
    ssl: ssl.SSLContext | None  # None for http://


def read_export_settings(environ: Mapping[str, str]) -> ExportSettings:
    """The export settings from OTEL_EXPORTER_OTLP_*; ConfigError (one line) on a bad value."""
    for name in _CREDENTIAL_PROVIDERS:
        if environ.get(name, "").strip():
            raise ConfigError(f"{name} is set; this worker cannot load a credential provider")
    endpoint = _endpoint(environ)
    headers = {
        "content-type": "application/x-protobuf",
        "user-agent": f"outbox-worker/{__version__} (OTLP trace export)",
    }
    name, raw = _pick(environ, "HEADERS")
    headers.update(parse_headers(name, raw))  # as in the SDK, configured headers win
    name, raw = _pick(environ, "COMPRESSION")
    compression = raw.strip().lower() or "none"
    if compression not in ("gzip", "none"):
        raise ConfigError(f"{name} is not gzip or none")
    if compression == "gzip":
        headers["content-encoding"] = "gzip"
    context = _tls(environ) if endpoint.startswith("https:") else None
    return ExportSettings(endpoint, headers, _timeout(environ), compression == "gzip", context)


def _pick(environ: Mapping[str, str], suffix: str) -> tuple[str, str]:
    """The TRACES_ variable when set and not empty, else the generic one: (name, value)."""
    for name in (f"{_PREFIX}TRACES_{suffix}", f"{_PREFIX}{suffix}"):
        if value := environ.get(name, ""):
            return name, value
    return f"{_PREFIX}{suffix}", ""


def _endpoint(environ: Mapping[str, str]) -> str:
    name = f"{_PREFIX}TRACES_ENDPOINT"
    url = environ.get(name, "").strip()  # the signal's own URL is used as it is
    if not url:
        name = f"{_PREFIX}ENDPOINT"
        base = environ.get(name, "").strip() or _DEFAULT_BASE
        url = f"{base.removesuffix('/')}/v1/traces"  # the SDK trims one slash, no more
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises on a port that is not a number in range
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{name} is not an http:// or https:// URL with a host")
    return url


def parse_headers(name: str, raw: str) -> dict[str, str]:
    """Comma-separated ``key=value`` pairs as the SDK parses them; ConfigError naming ``name``."""
    headers: dict[str, str] = {}
    for number, entry in enumerate(_DELIMITER.split(raw), start=1):
        if not entry:
            continue
        key, _, value = entry.strip().partition("=")
        if _STRICT_ENTRY.fullmatch(entry.strip()):
            key, value = unquote(key), unquote(value)
        elif not _LIBERAL_ENTRY.fullmatch(entry.strip()):
            # The SDK logs the entry (value and all) and skips it; refusing loses no secret.
            raise ConfigError(f"{name}: entry {number} is not key=value (URL-encode the value)")
        key, value = key.strip().lower(), value.strip()
        if not _TOKEN.fullmatch(key) or _CONTROL.search(value):
            raise ConfigError(f"{name}: entry {number} decodes to an invalid HTTP header")
        if key in _FRAMING:
            raise ConfigError(f"{name}: {key} is set by the exporter; remove it")
        headers[key] = value
    return headers


def _timeout(environ: Mapping[str, str]) -> float:
    # Seconds, as the installed SDK reads it (the spec says milliseconds; the SDK, and so this
    # worker before its own exporter, has always read seconds).
    name, raw = _pick(environ, "TIMEOUT")
    if not raw:
        return _DEFAULT_TIMEOUT_S
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ConfigError(f"{name} is not a number of seconds above 0")
    return seconds


def _tls(environ: Mapping[str, str]) -> ssl.SSLContext:
    # Verification always on: the CA file adds a trust anchor in place of the system's.
    ca_name, ca_file = _pick(environ, "CERTIFICATE")
    cert_name, cert_file = _pick(environ, "CLIENT_CERTIFICATE")
    key_name, key_file = _pick(environ, "CLIENT_KEY")
    if key_file and not cert_file:
        raise ConfigError(f"{key_name} is set without {cert_name}")
    try:
        context = ssl.create_default_context(cafile=ca_file or None)
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror or "not PEM"
        raise ConfigError(f"{ca_name} cannot be read as PEM certificates: {reason}") from exc
    if cert_file:
        # Without a key file the certificate file holds the key too, as requests' cert= takes it.
        try:
            context.load_cert_chain(cert_file, key_file or None)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"{cert_name} / {key_name} cannot be read as a PEM certificate and key"
            ) from exc
    return context
