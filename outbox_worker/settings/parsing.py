"""Parsers for setting text: durations, sizes, numbers, booleans and the API key (URLs: urls.py).

Functions with no environment access (the key file is the one thing read): environment.py reads
the variables and hands their text here. Each one refuses bad input with a one-line ConfigError that
names the setting, says what is allowed, and never repeats a secret (the API key, a password).
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Final

from outbox_worker.errors import ConfigError
from outbox_worker.settings.urls import PRINTABLE

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
    if not PRINTABLE.fullmatch(key):
        raise ConfigError(
            f"{origin}: the key must be printable ASCII without spaces or control characters"
        )
    if key.startswith(("pk_", "publishable_key_")):
        raise ConfigError(
            f"{origin} is a publishable key (pk_...); "
            "/v2/registration needs the secret key (sk_...)"
        )
    return key
