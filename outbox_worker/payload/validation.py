"""The field rules behind ``payload``: value checks and error messages (``_payload_scan`` walks).

The SQL twin of these rules is ``migrations/versions/sql/0001_validate_update.sql`` (with the
bounded-input rules of ``0002_bounded_input.sql``); both must give the same JSON path and the same
message for the same fault, so every message lives here once.

Numbers are judged in the form PostgreSQL stores and the worker sends: jsonb writes exponent
notation out in full (``1e12`` is stored as ``1000000000000``), so a number is an integer when
that stored text has no fraction. A Python float is written by ``json`` as its ``repr``: below
1e16 always with a fraction (``1e12`` -> ``1000000000000.0``, not an integer), from 1e16 up as
``1e+16``, which PostgreSQL stores as the integer ``10000000000000000``.
"""

from __future__ import annotations

import ipaddress
import math
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pycountry
from pydantic_core import PydanticCustomError

from outbox_worker.payload.limits import MAX_NESTING_DEPTH, MAX_PAYLOAD_BYTES

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
MSG_TOO_DEEP = f"nests objects and arrays more than {MAX_NESTING_DEPTH} levels deep"
MSG_NOT_FINITE = "must be a finite number (NaN and Infinity are not JSON)"
# A lone surrogate cannot be written as UTF-8, so no JSON text (and no jsonb) can carry it.
MSG_SURROGATE = "must not contain a lone surrogate (U+D800 to U+DFFF)"
# Ravelin decodes numbers into Go's int64 or float64; a bigger integer fails there, not here.
MIN_INT64 = -(2**63)
MAX_INT64 = 2**63 - 1
MSG_INT64 = f"must fit in a signed 64-bit integer ({MIN_INT64} to {MAX_INT64})"


def msg_too_large(size: int) -> str:
    """The message for an update whose JSON text is ``size`` bytes, past the limit."""
    return f"is {size} bytes of JSON text; the limit is {MAX_PAYLOAD_BYTES} bytes"


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


def stored_integer(value: object) -> int | None:
    """The integer PostgreSQL stores for ``value``, or None when it stores no integer.

    An int is itself; a finite float of magnitude 1e16 or more is written ``1e+16`` and stored
    as an integer (smaller floats keep a fraction: ``1e12`` is written ``1000000000000.0``).
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and math.isfinite(value) and abs(value) >= 1e16:
        return int(Decimal(repr(value)))
    return None


def check_epoch_ms(value: object) -> int:
    """Accept an int of epoch milliseconds or an aware datetime (converted); refuse the rest."""
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise _fail(MSG_NAIVE)
        value = (value - _EPOCH) // timedelta(milliseconds=1)
    number = stored_integer(value)
    if number is None:
        raise _fail(MSG_INTEGER)
    value = number
    if MIN_EPOCH_MS <= value < MAX_EPOCH_MS:
        return value
    if 1_000_000_000 <= value < 10_000_000_000:
        raise _fail(MSG_SECONDS)
    raise _fail(MSG_TOO_BIG if value >= MAX_EPOCH_MS else MSG_MS_RANGE)


def check_id(value: object) -> str:
    """Accept a string id as is and an integer id as its decimal string."""
    if isinstance(value, str):
        return value
    number = stored_integer(value)
    if number is None:
        raise _fail(MSG_ID)
    return str(number)


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


def strip_nulls(value: Any) -> Any:
    """Drop null-valued object members at every depth, like PostgreSQL's ``jsonb_strip_nulls``."""
    if isinstance(value, dict):
        return {k: strip_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [strip_nulls(v) for v in value]
    return value
