"""Log lines never carry the API key or payload PII, whatever a caller passes, at any depth."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
import structlog

from outbox_worker.observability import configure_logging, mask_pii
from outbox_worker.pii import MASK
from outbox_worker.settings.config import redact_url


@pytest.mark.parametrize(
    ("key", "value", "secret"),
    [
        ("email", "ada@example.com", "ada@example.com"),
        ("ip_address", "81.152.92.84", "81.152.92.84"),
        ("payload", '{"customer": {"email": "ada@example.com"}}', "ada@example.com"),
        ("payload", {"customer": {"dateOfBirth": "1990-01-02"}}, "1990-01-02"),
        ("api_key", "sk_live_abcdef123456", "sk_live_abcdef123456"),
        ("authorization", "token sk_live_abcdef123456", "abcdef123456"),
        ("error", "400 Bad Request: email ada@example.com already registered", "ada@example.com"),
        ("error", "invalid telephone +447700900123", "+447700900123"),
        ("error", "blocked from 81.152.92.84", "81.152.92.84"),
        ("note", "sent with token sk_test_abcdef123456", "abcdef123456"),
        ("detail", {"answer": {"message": "user ada@example.com"}}, "ada@example.com"),
        ("errors", ["fine", {"why": "from 81.152.92.84."}], "92.84"),
        ("context", {"deep": {"password": "hunter22"}}, "hunter22"),
        ("context", ("call 07700 900123",), "900123"),
    ],
)
def test_mask_pii_masks_secrets_and_pii(key: str, value: Any, secret: str) -> None:
    """A PII or secret value, under a telling key, inside free text or nested, is masked."""
    event = mask_pii(None, "info", {"event": "x", key: value})
    assert secret not in json.dumps(dict(event))


def test_mask_pii_keeps_ordinary_values() -> None:
    """Ids, statuses and our own endpoint URL pass through unchanged."""
    event = {"event": "delivery.dead_lettered", "message_id": 7, "status": 400,
             "endpoint_url": "http://127.0.0.1:8765/v2/registration"}  # fmt: skip
    assert dict(mask_pii(None, "info", dict(event))) == event


@pytest.mark.parametrize("level", ["debug", "info", "warning", "error"])
def test_rendered_json_line_is_masked_at_every_level(level: str) -> None:
    """Through the configured chain, a log line at any level is JSON with the PII masked."""
    out = io.StringIO()
    configure_logging(level="debug", json=True, stream=out)
    try:
        getattr(structlog.get_logger("t"), level)(
            "delivery.dead_lettered", username="ada", error="for ada@example.com"
        )
    finally:
        structlog.reset_defaults()
    line = json.loads(out.getvalue())
    assert line["username"] == MASK
    assert "ada@example.com" not in out.getvalue()
    assert line["event"] == "delivery.dead_lettered"


def test_exception_text_is_masked() -> None:
    """A logged exception's traceback text is masked like any other value."""
    out = io.StringIO()
    configure_logging(json=True, stream=out)
    try:
        try:
            raise ValueError("bad value ada@example.com")
        except ValueError:
            structlog.get_logger("t").exception("worker.unexpected_error")
    finally:
        structlog.reset_defaults()
    assert "ada@example.com" not in out.getvalue()
    assert "ValueError" in out.getvalue()


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://app:s3cret@db:5432/app", "postgresql://app:***@db:5432/app"),
        ("postgresql://app@db/app", "postgresql://app@db/app"),
        (
            "postgresql://app@db/app?password=s3cret&sslmode=verify-full",
            "postgresql://app@db/app?password=***&sslmode=verify-full",
        ),
        ("postgresql://app@db/app?sslpassword=s3cret", "postgresql://app@db/app?sslpassword=***"),
        ("postgresql://a:x@db/app?PASSWORD=s3cret", "postgresql://a:***@db/app?PASSWORD=***"),
        ("postgresql://app:s3cret@[::1/app", "postgresql://***"),
    ],
)
def test_database_url_secrets_are_hidden(url: str, shown: str) -> None:
    """A database URL is shown without its password, in the userinfo or the query string."""
    assert redact_url(url) == shown
