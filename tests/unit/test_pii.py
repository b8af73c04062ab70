"""PII masking (outbox_worker.pii): payloads by allow-list, free text by pattern."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from outbox_worker.pii import (
    ALLOWED_KEYS,
    MASK,
    mask_answer,
    mask_email,
    mask_ip,
    mask_payload,
    mask_telephone,
    mask_text,
    payload_values,
)
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
def test_maskers_keep_just_enough_to_recognise(
    masker: Callable[[str], str], value: str, masked: str
) -> None:
    """Each masker keeps a recognisable hint and hides the rest."""
    assert masker(value) == masked


def test_mask_payload_hides_every_known_personal_value() -> None:
    """No personal value of the sample payload survives masking, wherever it sits."""
    text = json.dumps(mask_payload(PII_PAYLOAD))
    assert [v for v in PII_VALUES if v in text] == []


def test_mask_payload_keeps_shape_and_allowed_fields() -> None:
    """Ids, flags, timestamps, enums and country stay as they were; the shape is kept."""
    masked = mask_payload(PII_PAYLOAD)
    assert masked.keys() == PII_PAYLOAD.keys()
    assert masked["timestamp"] == PII_PAYLOAD["timestamp"]
    assert masked["customer"]["customerId"] == "cust-42"
    assert masked["customer"]["location"]["country"] == "GBR"
    assert masked["customer"]["location"].keys() == PII_PAYLOAD["customer"]["location"].keys()
    assert masked["registration"]["success"] is False
    assert masked["registration"]["app"]["platform"] == "ios"
    assert masked["device"]["deviceId"] == "dev-9"
    mechanism = masked["registration"]["registrationMechanism"]["password"]
    assert mechanism["failureReason"] == "emailAlreadyRegistered"


def test_mask_payload_masks_unknown_and_nested_fields() -> None:
    """A field no rule names (dateOfBirth, an address, anything) is masked, at any depth."""
    payload = {
        "customer": {
            "customerId": "c-1",
            "dateOfBirth": "1990-01-02",
            "extra": {"street": "1 Canary Wharf", "floor": 37, "list": ["a-value", 12.5]},
        }
    }
    masked = mask_payload(payload)
    assert masked == {
        "customer": {
            "customerId": "c-1",
            "dateOfBirth": MASK,
            "extra": {"street": MASK, "floor": MASK, "list": [MASK, MASK]},
        }
    }


def test_allowed_ids_are_still_masked_when_they_hold_an_email() -> None:
    """An allowed id that is an email (a common customerId) is masked as free text."""
    masked = mask_payload({"customer": {"customerId": "ada@example.com"}})
    assert masked == {"customer": {"customerId": "a***@e***.com"}}


def test_allow_list_is_short_and_names_no_personal_field() -> None:
    """The allow-list stays short and never names a personal field."""
    assert len(ALLOWED_KEYS) <= 20
    assert ALLOWED_KEYS.isdisjoint({"email", "name", "username", "telephone", "ipaddress"})


def test_mask_payload_does_not_change_its_input() -> None:
    """Masking returns a copy."""
    before = json.dumps(PII_PAYLOAD)
    mask_payload(PII_PAYLOAD)
    assert json.dumps(PII_PAYLOAD) == before


def test_mask_payload_matches_snake_case_keys_too() -> None:
    """Keys written in snake_case (ip_address, customer_id) follow the same rules."""
    masked = mask_payload({"device": {"ip_address": "10.1.2.3"}, "customer": {"customer_id": "7"}})
    assert masked == {"device": {"ip_address": "10.1.*.*"}, "customer": {"customer_id": "7"}}


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (PII_ERROR, "email j***@e***.com is already registered (from 81.152.*.*)"),
        ("call +44 7700 900123 now", "call +44**********23 now"),
        ("request from 81.152.33.44.", "request from 81.152.*.*."),
        ("call 07700 900123 to confirm", "call **********23 to confirm"),
        ("phone (020) 7946-0958 taken", "phone *************58 taken"),
        ("client ip:2001:db8::1 refused", "client ip:2001:0db8:* refused"),
        ("user ada@localhost exists", "user a***@l*** exists"),
        ("sent with token sk_live_abcdef", "sent with tok***"),
        ("at 12:30:45 status 503", "at 12:30:45 status 503"),
        ("at 2026-11-26T07:46:00.123+00:00 took 12.5ms", None),
    ],
)
def test_mask_text_patterns(text: str, masked: str | None) -> None:
    """Each free-text pattern hides its value and keeps the words, times and statuses around it."""
    assert mask_text(text) == (text if masked is None else masked)


def test_mask_text_hides_known_values_quoted_back() -> None:
    """A payload's value that an error quotes back is hidden, wherever it stands, ids too."""
    known = payload_values(PII_PAYLOAD)
    assert "cust-42" in known  # a quoted id would make one stats line per customer
    text = mask_text("name 'Johnathan Smithers' is not allowed in 221B Baker Street", known)
    assert text == "name '***' is not allowed in ***"
    assert mask_text("customer cust-42 refused", known) == "customer *** refused"


def test_known_values_are_masked_before_patterns() -> None:
    """A quoted email of the payload becomes ***, not a hint: two customers' reasons match."""
    known = payload_values(PII_PAYLOAD)
    assert mask_text(PII_ERROR, known) == "email *** is already registered (from ***)"


def test_mask_answer_masks_every_string_of_an_endpoint_answer() -> None:
    """An endpoint's JSON answer keeps its numbers and masks its strings as free text."""
    answer = {"status": 400, "message": "bad email ada@example", "validationErrors": ["x 1.2.3.4"]}
    assert mask_answer(answer) == {
        "status": 400,
        "message": "bad email a***@e***",
        "validationErrors": ["x 1.2.*.*"],
    }


def test_mask_answer_masks_a_known_number_quoted_back() -> None:
    """A number of the payload inside an answer is masked; other numbers and flags stay."""
    known = payload_values({"loyalty": {"card": 86753091}, "flag": "true"})
    answer = {"status": 400, "validationErrors": [{"value": 86753091, "ok": True}]}
    assert mask_answer(answer, known) == {
        "status": 400,
        "validationErrors": [{"value": MASK, "ok": True}],
    }
