"""Log lines never carry the API key or payload PII, whatever a caller passes."""

from __future__ import annotations

import io
import json

import pytest
import structlog

from outbox_worker.config import redact_url
from outbox_worker.observability import REDACTED, configure_logging, redact


@pytest.mark.parametrize(
    ("key", "value", "secret"),
    [
        ("email", "ada@example.com", "ada@example.com"),
        ("ip_address", "81.152.92.84", "81.152.92.84"),
        ("payload", '{"customer": {"email": "ada@example.com"}}', "ada@example.com"),
        ("api_key", "sk_live_abcdef123456", "sk_live_abcdef123456"),
        ("authorization", "token sk_live_abcdef123456", "abcdef123456"),
        ("error", "400 Bad Request: email ada@example.com already registered", "ada@example.com"),
        ("error", "invalid telephone +447700900123", "+447700900123"),
        ("error", "blocked from 81.152.92.84", "81.152.92.84"),
        ("note", "sent with token sk_test_abcdef123456", "abcdef123456"),
    ],
)
def test_redact_masks_secrets_and_pii(key: str, value: str, secret: str) -> None:
    """A PII or secret value, under a telling key or inside free text, is masked."""
    event = redact(None, "info", {"event": "x", key: value})
    assert secret not in json.dumps(dict(event))


def test_redact_keeps_ordinary_values() -> None:
    """Ids, statuses and our own endpoint URL pass through unchanged."""
    event = {"event": "delivery.dead_lettered", "message_id": 7, "status": 400,
             "endpoint_url": "http://127.0.0.1:8765/v2/registration"}  # fmt: skip
    assert dict(redact(None, "info", dict(event))) == event


def test_rendered_json_line_is_masked() -> None:
    """Through the configured chain, a log line is JSON with the PII masked."""
    out = io.StringIO()
    configure_logging(json=True, stream=out)
    try:
        structlog.get_logger("t").warning(
            "delivery.dead_lettered", username="ada", error="for ada@example.com"
        )
    finally:
        structlog.reset_defaults()
    line = json.loads(out.getvalue())
    assert line["username"] == REDACTED
    assert "ada@example.com" not in out.getvalue()
    assert line["event"] == "delivery.dead_lettered"


def test_database_url_password_is_hidden() -> None:
    """A database URL is logged without its password."""
    assert redact_url("postgresql://app:s3cret@db:5432/app") == "postgresql://app:***@db:5432/app"
    assert redact_url("postgresql://app@db/app") == "postgresql://app@db/app"
