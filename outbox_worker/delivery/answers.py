"""What the endpoint said, made safe to keep: Ravelin's error details, a 2xx's warnings,
HTTP dates and Retry-After, and values any text or jsonb column accepts. Pure, never raises.

Everything here takes what an endpoint sent (hostile by assumption: NUL characters, lone
surrogates, NaN, absurd dates, megabytes of body) and returns bounded, printable, storable values.
Its text is taken to carry the message's personal data too (an error may quote the body back):
``summary`` masks it before any log line, error column or summary is made of it.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Any

from outbox_worker.models import Response
from outbox_worker.pii import mask_text
from outbox_worker.quoted import QuotedValues

ERROR_MAX_CHARS = 300  # Outcome.error / last_error: one line, at most this long

_DETAIL_MAX_CHARS = 2000  # Ravelin's message as kept in details
_VALIDATION_ERRORS_MAX = 50
_BODY_MAX_BYTES = 1 << 20  # bodies larger than this are not parsed
_RETRY_AFTER_MAX_S = timedelta.max.days * 86400  # absurd Retry-After values stop here
_PHRASES = {s.value: s.phrase for s in HTTPStatus}
_STORED_DEPTH_MAX = 8  # nesting kept in a stored response; deeper parts are kept as text
_SURROGATE = re.compile("[\ud800-\udfff]")


def parse_retry_after(value: str | None, now: datetime) -> timedelta | None:
    """Parse a Retry-After header (delta-seconds or HTTP-date); None when absent or unusable.

    A date in the past (often clock skew) is unusable, so None; "0" is a valid zero delay.
    """
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        # Absurdly long numbers never reach int(), which refuses more than 4,300 digits.
        seconds = int(text) if len(text) <= 15 else _RETRY_AFTER_MAX_S
        return timedelta(seconds=min(seconds, _RETRY_AFTER_MAX_S))
    when = parse_http_date(text)
    if when is None:
        return None
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    try:
        delay = when - now
    except OverflowError:
        return timedelta(seconds=_RETRY_AFTER_MAX_S)
    return delay if delay > timedelta(0) else None


def parse_http_date(value: str | None) -> datetime | None:
    """An HTTP-date header (Retry-After, Date) as an aware datetime; None when unusable.

    Never raises: a year past 9999 (``Mon, 01 Jan 99999999999 00:00:00 GMT``) and any other
    garbage an endpoint may send are simply unusable.
    """
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def ravelin_error_details(body: bytes) -> dict[str, Any]:
    """Ravelin's ``message``, ``traceId`` and ``validationErrors`` from an error body; never raises.

    Empty, ``null``, non-JSON and non-object bodies give ``{}``; unknown fields are ignored.
    Ravelin's Ruby client also reads ``Error`` for the message, so it is the fallback.
    """
    parsed = _json_object(body)
    if parsed is None:
        return {}
    details: dict[str, Any] = {}
    message = parsed.get("message") or parsed.get("Error")
    if message is not None and not isinstance(message, dict | list):
        details["message"] = truncate(one_line(str(message)), _DETAIL_MAX_CHARS)
    trace_id = parsed.get("traceId")
    if isinstance(trace_id, str | int) and str(trace_id):
        details["traceId"] = truncate(one_line(str(trace_id)), 100)
    errors = parsed.get("validationErrors")
    if isinstance(errors, str):
        errors = [errors]
    if isinstance(errors, list) and errors:
        details["validationErrors"] = [_small(item) for item in errors[:_VALIDATION_ERRORS_MAX]]
    return details


def storable(value: Any, *, depth: int = 0) -> Any:
    """A copy of a parsed JSON value that jsonb and text columns always accept.

    PostgreSQL refuses U+0000 in text and jsonb, and UTF-8 cannot carry a lone surrogate (which
    Python's json module produces from an escaped ``"\\ud800"``); both become U+FFFD. NaN and the
    infinities (JSON has neither) become null; nesting past a few levels becomes its JSON text.
    """
    if isinstance(value, str):
        return _clean_text(value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if abs(value) < 2**63 else str(value)[:40]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if depth >= _STORED_DEPTH_MAX:
        return truncate(_clean_text(json.dumps(value, default=str)), 2 * ERROR_MAX_CHARS)
    if isinstance(value, dict):
        return {_clean_text(str(k)): storable(v, depth=depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable(v, depth=depth + 1) for v in value]
    return _clean_text(str(value))


def _clean_text(text: str) -> str:
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    if not text.isascii():
        text = _SURROGATE.sub("\ufffd", text)
    return text


def _json_object(body: bytes) -> dict[str, Any] | None:
    if not body or len(body) > _BODY_MAX_BYTES:
        return None
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):  # bad JSON or bad UTF-8; absurd nesting
        return None
    return parsed if isinstance(parsed, dict) else None


def warnings(body: bytes) -> Response | None:
    """``{"warnings": [class, ...]}`` from a 2xx body's ``data.warnings[]``, to log and count."""
    if b"warnings" not in body:  # the common 2xx body costs one substring scan
        return None
    data = (_json_object(body) or {}).get("data")
    items = data.get("warnings") if isinstance(data, dict) else None
    if not isinstance(items, list):
        return None
    classes = [
        truncate(one_line(str(i["class"])), 100)
        for i in items[:_VALIDATION_ERRORS_MAX]
        if isinstance(i, dict) and i.get("class")
    ]
    return {"warnings": classes} if classes else None


def summary(status: int, details: dict[str, Any], sent: bytes = b"") -> str:
    """One line like ``400 Bad Request: <message> (traceId ...)``; the traceId always survives.

    The line goes to logs, ``last_error`` and the history, which ``stats`` and ``dead list``
    read: its text is masked (before it is shortened, so no value is cut in half) by the values
    of ``sent``, the body the endpoint answered (parsed only when there is text), and by the
    personal patterns. The traceId is kept as it came, for Ravelin's support.
    """
    phrase = _PHRASES.get(status)
    head = f"{status} {phrase}" if phrase else f"HTTP {status}"
    tail = f" (traceId {details['traceId']})" if "traceId" in details else ""
    message = details.get("message") or "; ".join(map(str, details.get("validationErrors", [])[:3]))
    if not message:
        return truncate(head + tail, ERROR_MAX_CHARS)
    message = mask_text(message, QuotedValues.of_body(sent))
    room = ERROR_MAX_CHARS - len(head) - len(tail) - 2
    return f"{head}: {truncate(one_line(message), max(room, 20))}{tail}"[:ERROR_MAX_CHARS]


def _small(item: Any) -> Any:
    if isinstance(item, str):
        return truncate(one_line(item), ERROR_MAX_CHARS)
    item = storable(item)
    text = json.dumps(item)
    return item if len(text) <= 2 * ERROR_MAX_CHARS else truncate(text, 2 * ERROR_MAX_CHARS)


def one_line(text: str) -> str:
    """``text`` trimmed, on one line: each run of whitespace or unprintables is one space."""
    # Control characters, NUL and lone surrogates are not printable: none reaches a row or a log.
    if not text.isprintable():
        text = "".join(c if c.isprintable() else " " for c in text)
    return " ".join(text.split())


def truncate(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, the last of them '…' when it was cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
