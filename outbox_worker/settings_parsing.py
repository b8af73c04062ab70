"""Parsers for setting text: durations, sizes, numbers, booleans, URLs and the API key.

Functions with no environment access (the key file is the one thing read): config.py reads the
variables and hands their text here. Each one refuses bad input with a one-line ConfigError that
names the setting, says what is allowed, and never repeats a secret (the API key, a password).
"""

from __future__ import annotations

import ipaddress
import math
import re
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Final
from urllib.parse import unquote, urlsplit

import yarl

from outbox_worker.errors import ConfigError

# Ceiling for durations that have no tighter bounds (operator filters such as --older-than);
# it keeps timedelta() and PostgreSQL intervals far from overflowing.
MAX_DURATION: Final = timedelta(days=36500)
# An API key is a short token; anything longer is the wrong file or value.
MAX_API_KEY_LENGTH: Final = 1024
# A key file holds one short token; reading stops here, so a wrong path (a log, /dev/zero)
# fails fast instead of filling memory.
KEY_FILE_LIMIT: Final = 64 * 1024

_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*", re.ASCII)
_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb|kib|mib|gib)?\s*", re.ASCII | re.IGNORECASE)
_BYTES = {
    None: 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
}
# re.ASCII: Python's int() and float() also accept other scripts' digits ("٣"); we do not.
_INTEGER = re.compile(r"\s*[+-]?\d+\s*", re.ASCII)
_NUMBER = re.compile(r"\s*[+-]?\d+(?:\.\d+)?\s*", re.ASCII)
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
# Printable ASCII without the space: what a URL or a token may contain unencoded.
_PRINTABLE = re.compile(r"[\x21-\x7e]+")
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")
_ENDPOINT = "OUTBOX_ENDPOINT_URL"
_DATABASE = "OUTBOX_DATABASE_URL"
_DATABASE_EXAMPLE = "e.g. postgresql://user:password@db.example.com:5432/app?sslmode=verify-full"
# Query parameters that carry a secret: password, sslpassword, passfile's kin, tokens.
_SECRET_PARAMETER = re.compile(r"pass|secret|token", re.IGNORECASE)


def format_duration(value: timedelta) -> str:
    """A duration in its largest whole unit: '500ms', '30s', '10m', '24h', '30d'."""
    ms = round(value.total_seconds() * 1000)
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def format_size(value: int) -> str:
    """A byte count in its largest whole binary unit: '16MiB', '512KiB', '1000B'."""
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if value and value % size == 0:
            return f"{value // size}{unit}"
    return f"{value}B"


def parse_duration(
    text: str | timedelta | float,
    *,
    name: str = "duration",
    minimum: timedelta = timedelta(0),
    maximum: timedelta = MAX_DURATION,
) -> timedelta:
    """Parse '500ms', '30s', '10m', '24h', '7d', '2w' or plain seconds, within the bounds."""
    if isinstance(text, timedelta):
        return check_duration(text, name=name, minimum=minimum, maximum=maximum)
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        match = _DURATION.fullmatch(text)
        if not match:
            raise ConfigError(
                f"{name}: {text!r} is not a duration; use e.g. 500ms, 30s, 10m, 24h, 7d"
            )
        seconds = float(match.group(1)) * _SECONDS[match.group(2)]
    # Compare as float first: timedelta() itself overflows on '99999999999d' and on inf.
    if not math.isfinite(seconds) or seconds > maximum.total_seconds():
        raise ConfigError(_out_of_range(name, minimum, maximum, str(text)))
    return check_duration(timedelta(seconds=seconds), name=name, minimum=minimum, maximum=maximum)


def check_duration(
    value: timedelta, *, name: str, minimum: timedelta, maximum: timedelta
) -> timedelta:
    """Return ``value`` if it lies within [minimum, maximum], else raise ConfigError."""
    if not minimum <= value <= maximum:
        raise ConfigError(_out_of_range(name, minimum, maximum, format_duration(value)))
    return value


def _out_of_range(name: str, minimum: timedelta, maximum: timedelta, got: str) -> str:
    allowed = f"from {format_duration(minimum)} to {format_duration(maximum)}"
    return f"{name} must be {allowed}, got {got}"


def parse_size(text: str | int, *, name: str, minimum: int, maximum: int) -> int:
    """Parse '16MiB', '512KiB', '1GiB', '2MB' (decimal) or plain bytes, within the bounds."""
    if isinstance(text, int):
        value = text
    else:
        match = _SIZE.fullmatch(text)
        if not match:
            raise ConfigError(f"{name}: {text!r} is not a size; use e.g. 16MiB, 512KiB, 1GiB")
        unit = match.group(2)
        # Decimal, not float: '99999...' stays exact and never becomes inf.
        value = int(Decimal(match.group(1)) * _BYTES[unit.lower() if unit else None])
    if not minimum <= value <= maximum:
        raise ConfigError(
            f"{name} must be from {format_size(minimum)} to {format_size(maximum)}, "
            f"got {format_size(value)}"
        )
    return value


def parse_int(text: str | int, *, name: str, minimum: int, maximum: int) -> int:
    """Parse a whole number written in ASCII digits, within [minimum, maximum]."""
    if isinstance(text, str):
        if not _INTEGER.fullmatch(text):
            raise ConfigError(f"{name}: {text!r} is not a whole number")
        digits = len(text.strip().lstrip("+-"))
        if digits > 18:  # int() itself refuses past 4300 digits, with a ValueError
            raise ConfigError(
                f"{name} must be from {minimum} to {maximum}, got a {digits}-digit number"
            )
        text = int(text)
    return check_int(text, name=name, minimum=minimum, maximum=maximum)


def check_int(value: int, *, name: str, minimum: int, maximum: int) -> int:
    """Return ``value`` if it lies within [minimum, maximum], else raise ConfigError."""
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name} must be from {minimum} to {maximum}, got {value}")
    return value


def parse_number(text: str | float, *, name: str, minimum: float, maximum: float) -> float:
    """Parse a finite decimal number ('2.5'; no 'nan', 'inf' or exponent), within the bounds."""
    if isinstance(text, str):
        if not _NUMBER.fullmatch(text):
            raise ConfigError(f"{name}: {text!r} is not a number; use e.g. 50 or 2.5")
        text = float(text)
    value = float(text)
    if not (math.isfinite(value) and minimum <= value <= maximum):
        raise ConfigError(f"{name} must be from {minimum:g} to {maximum:g}, got {value:g}")
    return value


def parse_bool(text: str | bool, *, name: str) -> bool:
    """Parse true/false, yes/no, on/off, 1/0 (any case)."""
    if isinstance(text, bool):
        return text
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"{name}: {text!r} is not a boolean; use true or false")


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


def read_key_file(path: str) -> str:
    """Read the key in ``path``, surrounding whitespace (the final newline) removed, checked."""
    origin = f"OUTBOX_API_KEY_FILE ({path})"
    try:
        with Path(path).open("rb") as file:
            data = file.read(KEY_FILE_LIMIT + 1)
    except OSError as exc:
        raise ConfigError(f"OUTBOX_API_KEY_FILE: cannot read {path}: {exc.strerror}") from None
    if len(data) > KEY_FILE_LIMIT:
        raise ConfigError(f"{origin}: the file is larger than 64KiB; it should hold only the key")
    # Undecodable bytes become U+FFFD, which check_api_key refuses without showing them.
    key = data.decode("utf-8", errors="replace").strip()
    if not key:
        raise ConfigError(f"OUTBOX_API_KEY_FILE: {path} is empty")
    return check_api_key(key, origin=origin)


def check_api_key(key: str, *, origin: str) -> str:
    """Return the key if it can go in an HTTP header as is; the error never shows it."""
    if len(key) > MAX_API_KEY_LENGTH:
        raise ConfigError(
            f"{origin}: the key is longer than {MAX_API_KEY_LENGTH} characters; is it the key?"
        )
    # A control character or newline in a header value is refused by the HTTP client at the
    # first send; here it is refused at start, and the message does not repeat the key.
    if not _PRINTABLE.fullmatch(key):
        raise ConfigError(
            f"{origin}: the key must be printable ASCII without spaces or control characters"
        )
    if key.startswith(("pk_", "publishable_key_")):
        raise ConfigError(
            f"{origin} is a publishable key (pk_...); "
            "/v2/registration needs the secret key (sk_...)"
        )
    return key


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def asyncpg_dsn(url: str) -> str:
    """Turn any postgresql URL (with or without a +driver suffix) into one asyncpg accepts."""
    scheme, sep, rest = url.partition("://")
    return f"postgresql{sep}{rest}" if scheme.startswith("postgres") else url


def sqlalchemy_url(url: str, driver: str = "asyncpg") -> str:
    """Turn a postgresql:// URL into SQLAlchemy's postgresql+<driver>:// form."""
    _, sep, rest = url.partition("://")
    return f"postgresql+{driver}{sep}{rest}"


def redact_url(url: str) -> str:
    """A database URL safe to show: the userinfo password and password-like parameters hidden.

    libpq and asyncpg also read a password from ``?password=`` and a key's passphrase from
    ``?sslpassword=``, so any query parameter whose name holds "pass", "secret" or "token" is
    hidden too. A URL that does not even split is hidden whole.
    """
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "postgresql://***"
    netloc = parts.netloc
    if password:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.partition(':')[0]}:***@{host}"
    query = (
        "&".join(_redact_parameter(item) for item in parts.query.split("&")) if parts.query else ""
    )
    return parts._replace(netloc=netloc, query=query).geturl()


def _redact_parameter(item: str) -> str:
    name, equals, _ = item.partition("=")
    return f"{name}=***" if equals and _SECRET_PARAMETER.search(unquote(name)) else item


def url_secrets(url: str) -> list[str]:
    """The secret values a database URL carries (its password, password-like parameters)."""
    found: list[str] = []
    try:
        parts = urlsplit(url)
        if parts.password:
            found += [parts.password, unquote(parts.password)]
    except ValueError:
        return found
    for item in parts.query.split("&"):
        name, equals, value = item.partition("=")
        if equals and value and _SECRET_PARAMETER.search(unquote(name)):
            found += [value, unquote(value)]
    return found


def hide_url_secrets(text: str, url: str) -> str:
    """``text`` (a driver's error message, say) with every secret of ``url`` replaced by ***."""
    for secret in sorted(url_secrets(url), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def check_database_url(url: str, *, name: str = _DATABASE) -> str:
    """Return the URL if it is a well-formed postgresql:// URL; errors never show a password.

    ``name`` is the setting the errors name (OUTBOX_DATABASE_URL, OUTBOX_LISTEN_DATABASE_URL).
    """
    scheme, sep, _ = url.partition("://")
    if not sep or scheme.split("+")[0] not in {"postgresql", "postgres"}:
        raise ConfigError(f"{name} must be a postgresql:// URL, {_DATABASE_EXAMPLE}")
    if not _PRINTABLE.fullmatch(url):
        raise ConfigError(
            f"{name} contains a space, a control character or a non-ASCII character; "
            "percent-encode it (in the password too)"
        )
    try:
        parts = urlsplit(url)
        port = parts.port  # parses the port: "abc" or 99999 raise ValueError
    except ValueError as exc:
        # The parser's own message can quote part of the password: describe, do not quote.
        problem = "an IPv6 host needs both [ and ]" if "IPv6" in str(exc) else "bad port"
        raise ConfigError(f"{name} is malformed ({problem}); {_DATABASE_EXAMPLE}") from None
    # An unencoded / ? or # in the password ends the host early; the rest lands in the path or
    # query, where redaction would not find it. The @ left behind gives it away.
    if "@" in url[len(scheme) + 3 + len(parts.netloc) :]:
        raise ConfigError(
            f"{name} has an @ after the host: percent-encode special characters in the "
            "user name and password (/ as %2F, ? as %3F, # as %23, @ as %40)"
        )
    if port == 0:
        raise ConfigError(f"{name}: the port must be from 1 to 65535")
    return url


def check_endpoint_url(url: str, *, allow_insecure_http: bool) -> str:
    """Return the endpoint URL if the HTTP client will parse it as meant, else raise ConfigError.

    Parsed with yarl, as aiohttp parses it. Errors show the host at most, never the whole URL.
    """
    authority = re.split(r"[/?#]", url.partition("://")[2], maxsplit=1)[0]
    if "@" in authority:
        raise ConfigError(
            f"{_ENDPOINT} must not carry credentials (user:password@); "
            "the key goes in OUTBOX_API_KEY or OUTBOX_API_KEY_FILE"
        )
    if not _PRINTABLE.fullmatch(url):
        raise ConfigError(
            f"{_ENDPOINT} must be printable ASCII without spaces: percent-encode the path, "
            "write a non-ASCII host in its xn-- form"
        )
    try:
        parsed = yarl.URL(url)
    except ValueError as exc:  # yarl's reasons: the port or an IPv6 bracket
        raise ConfigError(f"{_ENDPOINT} is malformed: {exc}") from None
    if parsed.scheme not in {"https", "http"} or not parsed.raw_host:
        raise ConfigError(
            f"{_ENDPOINT} must be an http(s) URL with a host, e.g. https://api.ravelin.com/v2/registration"
        )
    _check_endpoint_authority(parsed.raw_host, authority)
    if parsed.fragment or "#" in url:
        raise ConfigError(f"{_ENDPOINT} must not carry a #fragment")
    if any(key.lower() == "score" for key in parsed.query):
        raise ConfigError(
            f"{_ENDPOINT} must not carry ?score=: that is the recommendation checkpoint"
        )
    host = parsed.host or parsed.raw_host
    if parsed.scheme == "http" and not (is_loopback(host) or allow_insecure_http):
        raise ConfigError(
            f"{_ENDPOINT} uses plain http to {host}; use https, "
            "or set OUTBOX_ALLOW_INSECURE_HTTP=true if you really mean it"
        )
    return url


def _check_endpoint_authority(raw_host: str, authority: str) -> None:
    """Refuse a host that DNS cannot resolve as written, and a port yarl would rewrite."""
    try:
        ipaddress.ip_address(raw_host)
    except ValueError:
        labels = raw_host.removesuffix(".").split(".")
        if not all(_HOST_LABEL.fullmatch(label) for label in labels):
            raise ConfigError(f"{_ENDPOINT}: {raw_host!r} is not a valid host name") from None
    # yarl accepts ':', ':+80' and ':0' and quietly rewrites or keeps them: be strict instead.
    host_port = authority.rpartition("]")[2] if authority.startswith("[") else authority
    if ":" not in host_port:
        return
    port = host_port.rpartition(":")[2]
    if not (re.fullmatch(r"\d{1,5}", port, re.ASCII) and 1 <= int(port) <= 65535):
        raise ConfigError(f"{_ENDPOINT}: the port must be a number from 1 to 65535")
