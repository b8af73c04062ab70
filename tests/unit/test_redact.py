"""PII masking (outbox_worker.redact): what is hidden, what is kept."""

from __future__ import annotations

import json

import pytest

from outbox_worker.redact import mask_email, mask_ip, mask_payload, mask_telephone, mask_text
from tests.integration.rows import PII_ERROR, PII_PAYLOAD, PII_VALUES


@pytest.mark.parametrize(
    ("masker", "value", "masked"),
    [
        (mask_email, "john.smith@example.com", "j***@e***.com"),
        (mask_email, "a@b.co.uk", "a***@b***.uk"),
        (mask_telephone, "+447700900012", "+44********12"),
        (mask_telephone, "12", "***"),
        (mask_ip, "81.152.10.20", "81.152.*.*"),
        (mask_ip, "2001:db8::1", "2001:0db8:*"),
        (mask_ip, "not an ip", "***"),
    ],
)
def test_maskers_keep_just_enough_to_recognise(masker: object, value: str, masked: str) -> None:
    """Each masker keeps a recognisable hint and hides the rest."""
    assert callable(masker)
    assert masker(value) == masked


def test_mask_payload_hides_every_known_personal_value() -> None:
    """No personal value of the sample payload survives masking, wherever it sits."""
    text = json.dumps(mask_payload(PII_PAYLOAD))
    assert [v for v in PII_VALUES if v in text] == []


def test_mask_payload_keeps_shape_and_non_personal_fields() -> None:
    """Ids, flags, timestamps, reasons, app name and country stay as they were."""
    masked = mask_payload(PII_PAYLOAD)
    assert masked.keys() == PII_PAYLOAD.keys()
    assert masked["timestamp"] == PII_PAYLOAD["timestamp"]
    assert masked["customer"]["customerId"] == "cust-42"
    assert masked["customer"]["location"]["country"] == "GBR"
    assert masked["customer"]["location"].keys() == PII_PAYLOAD["customer"]["location"].keys()
    assert masked["registration"]["success"] is False
    assert masked["registration"]["app"]["name"] == "ShopApp"
    assert masked["device"]["deviceId"] == "dev-9"
    mechanism = masked["registration"]["registrationMechanism"]["password"]
    assert mechanism["failureReason"] == "emailAlreadyRegistered"


def test_mask_payload_does_not_change_its_input() -> None:
    """Masking returns a copy."""
    before = json.dumps(PII_PAYLOAD)
    mask_payload(PII_PAYLOAD)
    assert json.dumps(PII_PAYLOAD) == before


def test_mask_payload_matches_snake_case_keys_too() -> None:
    """Keys written in snake_case (ip_address, given_name) are masked like camelCase ones."""
    masked = mask_payload({"device": {"ip_address": "10.1.2.3"}, "customer": {"given_name": "Ada"}})
    assert masked == {"device": {"ip_address": "10.1.*.*"}, "customer": {"given_name": "A***"}}


def test_mask_text_hides_emails_ips_and_phones_in_free_text() -> None:
    """Error messages keep their words but lose the personal values inside them."""
    assert mask_text(PII_ERROR) == "email j***@e***.com is already registered (from 81.152.*.*)"
    assert mask_text("call +44 7700 900123 now") == "call +44**********23 now"
    assert mask_text("at 12:30:45 status 503") == "at 12:30:45 status 503"
