"""The field rules behind ``payload``: value checks, raw-input scans and error messages.

The SQL twin of these rules is ``migrations/versions/sql/0001_validate_update.sql``; both must give
the same JSON path and the same message for the same fault, so every message lives here once.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pycountry
from pydantic_core import PydanticCustomError

from outbox_worker.errors import FieldError

#: Epoch milliseconds accepted: 2001-09-09 up to 2286-11-20. Seconds are 1000x too small,
#: micro- and nanoseconds far too large; Ravelin merges updates by this value, so a wrong unit
#: silently reorders a customer's history.
MIN_EPOCH_MS = 1_000_000_000_000
MAX_EPOCH_MS = 10_000_000_000_000

MSG_REQUIRED = "is required"
MSG_OBJECT = "must be an object"
MSG_STRING = "must be a string"
MSG_BOOLEAN = "must be a boolean"
MSG_INTEGER = "must be an integer"
MSG_NUMBER = "must be a number"
MSG_ID = "must be a string or an integer"
MSG_SECONDS = "looks like seconds; send milliseconds"
MSG_TOO_BIG = "looks like micro- or nanoseconds; send milliseconds"
MSG_MS_RANGE = "must be epoch milliseconds (1000000000000 <= t < 10000000000000)"
MSG_NAIVE = "is a naive datetime; give it a timezone"
MSG_HASH = "must be 64 lower-case hex characters (sha256); use hash_password()"
MSG_PHONE = "must be E.164, e.g. +447700900123"
MSG_COUNTRY = "must be an upper-case ISO 3166-1 alpha-3 or alpha-2 country code"
MSG_IP = "must be an IPv4 or IPv6 address"
MSG_LATITUDE = "must be between -90 and 90"
MSG_LONGITUDE = "must be between -180 and 180"
MSG_PLAINTEXT = "plaintext password refused; send passwordHashed (use hash_password())"
# PostgreSQL's jsonb cannot hold U+0000, so such a text could never be stored (or sent).
MSG_NUL = "must not contain the NUL character (U+0000)"
MSG_BOTH = "send customer or supplier, not both"

# Pydantic's own error types for the built-in strict types, in our words.
_PYDANTIC_MESSAGES = {
    "missing": MSG_REQUIRED,
    "string_type": MSG_STRING,
    "bool_type": MSG_BOOLEAN,
    "model_type": MSG_OBJECT,
    "model_attributes_type": MSG_OBJECT,
    "dict_type": MSG_OBJECT,
}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_HASH = re.compile(r"[0-9a-f]{64}")
_PHONE = re.compile(r"\+[1-9][0-9]{1,14}")
# Both sides first narrow the alphabet, so scoped IPv6 ("fe80::1%eth0"), CIDR ("10.0.0.0/8") and
# padding that one parser tolerates and the other does not are refused by both.
_IP_CHARS = re.compile(r"[0-9A-Fa-f:.]+")
COUNTRY_CODES = frozenset(code for c in pycountry.countries for code in (c.alpha_2, c.alpha_3))


def _fail(message: str) -> PydanticCustomError:
    return PydanticCustomError("outbox_rule", message)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_epoch_ms(value: object) -> int:
    """Accept an int of epoch milliseconds or an aware datetime (converted); refuse the rest."""
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise _fail(MSG_NAIVE)
        value = (value - _EPOCH) // timedelta(milliseconds=1)
    if not _is_int(value):
        raise _fail(MSG_INTEGER)
    assert isinstance(value, int)
    if MIN_EPOCH_MS <= value < MAX_EPOCH_MS:
        return value
    if 1_000_000_000 <= value < 10_000_000_000:
        raise _fail(MSG_SECONDS)
    raise _fail(MSG_TOO_BIG if value >= MAX_EPOCH_MS else MSG_MS_RANGE)


def check_id(value: object) -> str:
    """Accept a string id as is and an integer id as its decimal string."""
    if isinstance(value, str):
        return value
    if _is_int(value):
        return str(value)
    raise _fail(MSG_ID)


def _check_string(value: object, pattern: re.Pattern[str], message: str) -> str:
    if not isinstance(value, str):
        raise _fail(MSG_STRING)
    if not pattern.fullmatch(value):
        raise _fail(message)
    return value


def check_password_hash(value: object) -> str:
    """Accept only a lower-case hex sha256 digest."""
    return _check_string(value, _HASH, MSG_HASH)


def check_telephone(value: object) -> str:
    """Accept only an E.164 telephone number."""
    return _check_string(value, _PHONE, MSG_PHONE)


def check_country(value: object) -> str:
    """Accept only an upper-case ISO 3166-1 alpha-2 or alpha-3 code."""
    if not isinstance(value, str):
        raise _fail(MSG_STRING)
    if value not in COUNTRY_CODES:
        raise _fail(MSG_COUNTRY)
    return value


def check_ip_address(value: object) -> str:
    """Accept a plain IPv4 or IPv6 address (no prefix, no zone), unchanged."""
    text = _check_string(value, _IP_CHARS, MSG_IP)
    try:
        ipaddress.ip_address(text)
    except ValueError:
        raise _fail(MSG_IP) from None
    return text


def _check_coordinate(value: object, bound: int, message: str) -> int | float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise _fail(MSG_NUMBER)
    if not -bound <= value <= bound:  # also refuses NaN
        raise _fail(message)
    return value


def check_latitude(value: object) -> int | float:
    """Accept a number in [-90, 90], keeping ints as ints."""
    return _check_coordinate(value, 90, MSG_LATITUDE)


def check_longitude(value: object) -> int | float:
    """Accept a number in [-180, 180], keeping ints as ints."""
    return _check_coordinate(value, 180, MSG_LONGITUDE)


def message_for(error_type: str, msg: str) -> str:
    """Our wording for one pydantic error; our own rules already carry theirs."""
    return _PYDANTIC_MESSAGES.get(error_type, msg)


def _present(data: Mapping[str, Any], key: str) -> bool:
    return data.get(key) is not None


def raw_rule_errors(data: Mapping[str, Any]) -> list[FieldError]:
    """Rules that look at the raw input as a whole: plaintext passwords, NUL characters,
    customer with supplier."""
    errors: list[FieldError] = []
    for path, key, text in _members(data, ""):
        if key == "password" and text is not None:
            errors.append(FieldError(path, MSG_PLAINTEXT))
        if "\x00" in key or (text is not None and "\x00" in text):
            errors.append(FieldError(path.replace("\x00", "\\u0000"), MSG_NUL))
    if _present(data, "customer") and _present(data, "supplier"):
        errors.append(FieldError("supplier", MSG_BOTH))
    return errors


def _members(value: object, path: str) -> Iterator[tuple[str, str, str | None]]:
    """(path, member name, text or None) of every member at any depth; names are "" in arrays."""
    if isinstance(value, Mapping):
        items: Iterator[tuple[str, str, object]] = (
            (f"{path}.{key}" if path else str(key), str(key), child) for key, child in value.items()
        )
    elif isinstance(value, list | tuple):
        items = ((f"{path}[{index}]", "", child) for index, child in enumerate(value))
    else:
        return
    for child_path, key, child in items:
        yield child_path, key, child if isinstance(child, str) else None
        yield from _members(child, child_path)


def strip_nulls(value: Any) -> Any:
    """Drop null-valued object members at every depth, like PostgreSQL's ``jsonb_strip_nulls``."""
    if isinstance(value, dict):
        return {k: strip_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [strip_nulls(v) for v in value]
    return value
