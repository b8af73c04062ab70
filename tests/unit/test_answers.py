"""What the endpoint said, made safe to keep: error details, Retry-After and HTTP dates, storable values."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from outbox_worker.delivery.answers import (
    ERROR_MAX_CHARS,
    parse_http_date,
    parse_retry_after,
    ravelin_error_details,
    storable,
)
from tests.cases import RAVELIN_400, TRACE

NOW = datetime(2026, 1, 1, tzinfo=UTC)  # a Thursday


# --- Ravelin's error details ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "details"),
    [
        (b"", {}),
        (b"null", {}),
        (b"not json at all", {}),
        (b"<html>502</html>", {}),
        (b"\xff\xfe\x00garbage", {}),
        (b"[1, 2, 3]", {}),
        (b'"a string"', {}),
        (b"42", {}),
        (b"[" * 100_000, {}),
        (b'{"status": 400, "unknownField": "x"}', {}),
        (b'{"message": "Bad\\nthing\\there", "extra": [1]}', {"message": "Bad thing here"}),
        (b'{"Error": "old style"}', {"message": "old style"}),
        (b'{"message": null, "traceId": 12345}', {"traceId": "12345"}),
        (b'{"message": {"nested": 1}, "traceId": ""}', {}),
        (b'{"validationErrors": "one"}', {"validationErrors": ["one"]}),
        (b'{"validationErrors": [{"field": "x"}]}', {"validationErrors": [{"field": "x"}]}),
        (b'{"validationErrors": []}', {}),
        (
            RAVELIN_400,
            {
                "message": "Customer not found",
                "traceId": TRACE,
                "validationErrors": ["customer.email: invalid", "timestamp: required"],
            },
        ),
    ],
)
def test_error_details_from_any_body(body: bytes, details: dict[str, Any]) -> None:
    """Detail extraction never raises and keeps only Ravelin's known fields."""
    assert ravelin_error_details(body) == details


def test_validation_errors_are_capped() -> None:
    """A flood of validation errors keeps the first 50, each cut short."""
    body = json.dumps({"validationErrors": ["e" * 1000] * 500}).encode()
    kept = ravelin_error_details(body)["validationErrors"]
    assert len(kept) == 50
    assert all(len(item) <= ERROR_MAX_CHARS for item in kept)


# --- Retry-After ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("120", timedelta(seconds=120)),
        (" 5 ", timedelta(seconds=5)),
        ("0", timedelta(0)),
        ("Thu, 01 Jan 2026 00:02:00 GMT", timedelta(seconds=120)),
        ("Thu, 01 Jan 2026 00:00:30 +0000", timedelta(seconds=30)),
        ("Wed, 31 Dec 2025 23:59:00 GMT", None),  # in the past
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        ("", None),
        ("٣", None),  # a non-ASCII digit
        (None, None),
        ("99999999999999999999", timedelta(days=timedelta.max.days)),
        ("9" * 5000, timedelta(days=timedelta.max.days)),
    ],
)
def test_parse_retry_after(header: str | None, expected: timedelta | None) -> None:
    """Retry-After is delta-seconds or an HTTP-date; negative, past or garbage values are None."""
    assert parse_retry_after(header, NOW) == expected


def test_parse_retry_after_accepts_a_naive_now_as_utc() -> None:
    """A naive ``now`` is read as UTC rather than failing the comparison."""
    naive = NOW.replace(tzinfo=None)
    assert parse_retry_after("Thu, 01 Jan 2026 00:01:00 GMT", naive) == timedelta(minutes=1)


# --- Values any column accepts, whatever the endpoint sent ---------------------------------


def test_storable_replaces_what_postgresql_refuses() -> None:
    """NUL and lone surrogates become U+FFFD, NaN/Infinity null, past-int64 numbers text."""
    value = {"a\x00": ["x\ud800y", float("nan"), float("inf"), 2**70, 1.5, True, None]}
    assert storable(value) == {"a\ufffd": ["x\ufffdy", None, None, str(2**70), 1.5, True, None]}


@pytest.mark.parametrize(
    "header",
    [
        "Mon, 01 Jan 99999999999 00:00:00 GMT",
        "Fri, 31 Dec 9999 23:59:59 GMT",
        "Mon, 01 Jan 0000 00:00:00 GMT",
        "\x00\ud800",
        "99999999999999999999999999999999999999999",
        "-5",
        "1e9",
    ],
)
def test_absurd_retry_after_never_raises(header: str) -> None:
    """Any Retry-After an endpoint sends parses to a bounded delay or to None, never an error."""
    value = parse_retry_after(header, NOW)
    assert value is None or timedelta(0) <= value


@pytest.mark.parametrize("header", ["garbage", "Mon, 01 Jan 99999999999 00:00:00 GMT", "", None])
def test_parse_http_date_never_raises(header: str | None) -> None:
    """An unusable Date or Retry-After date is None."""
    assert parse_http_date(header) is None
