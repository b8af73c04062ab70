"""The typed /v2/registration body: strict validation, JSON paths of faults, the wire format."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings

from outbox_worker.errors import InvalidUpdate
from outbox_worker.payload.limits import MAX_NESTING_DEPTH, MAX_PAYLOAD_BYTES
from outbox_worker.payload.model import (
    App,
    Customer,
    Device,
    Location,
    PasswordMechanism,
    Registration,
    RegistrationMechanism,
    RegistrationUpdate,
    Supplier,
    hash_password,
    parse_update,
)
from tests.cases import (
    AT_THE_LIMITS,
    INVALID_CASES,
    MINIMAL,
    MULTI_FAULT,
    MULTI_FAULT_PATHS,
    PYTHON_ONLY_CASES,
    TS,
    VALID_EXAMPLES,
    nested,
    sized,
)
from tests.strategies import valid_updates

_ID_PATHS = [("customer", "customerId"), ("supplier", "supplierId")]
_ID_PATHS += [("supplier", "groupId"), ("device", "deviceId")]


def expected_wire(data: Any) -> Any:
    """What the wire form of a valid input must be: nulls dropped in objects, int ids as strings."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if v is not None}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    out = strip(data)
    for parent, key in _ID_PATHS:
        if isinstance(out.get(parent, {}).get(key), int):
            out[parent][key] = str(out[parent][key])
    return out


def problems_of(data: Any) -> InvalidUpdate:
    """The InvalidUpdate that parsing ``data`` raises."""
    with pytest.raises(InvalidUpdate) as info:
        parse_update(data)
    return info.value


@pytest.mark.parametrize(("case_id", "data"), VALID_EXAMPLES, ids=[c[0] for c in VALID_EXAMPLES])
def test_valid_example_serializes_to_its_input(case_id: str, data: dict[str, Any]) -> None:
    """Each valid example parses, and its wire form is the input minus nulls, ids as strings."""
    update = parse_update(data)
    assert update.to_wire() == expected_wire(data)
    assert json.loads(update.to_json()) == expected_wire(data)


@pytest.mark.parametrize(
    ("case_id", "data", "path"), INVALID_CASES, ids=[c[0] for c in INVALID_CASES]
)
def test_invalid_case_names_exactly_its_path(case_id: str, data: Any, path: str) -> None:
    """Each single-fault case raises InvalidUpdate naming that one path and no other."""
    error = problems_of(data)
    assert error.paths == [path]
    assert path in str(error)


def test_all_bad_fields_are_reported_at_once() -> None:
    """A payload with many faults reports every one of them in one InvalidUpdate."""
    assert set(problems_of(MULTI_FAULT).paths) == MULTI_FAULT_PATHS


def test_error_messages_say_what_to_send() -> None:
    """Messages name the path and tell the producer what to do instead."""
    seconds = problems_of({"timestamp": TS // 1000, "registration": {"success": True}})
    assert [str(e) for e in seconds.errors] == ["timestamp: looks like seconds; send milliseconds"]
    plain = problems_of(MINIMAL | {"registration": {"success": True, "password": "pw"}})
    assert "send passwordHashed" in plain.errors[0].message
    assert str(problems_of({}).errors[0]) == "timestamp: is required"


def test_invalid_update_is_a_value_error() -> None:
    """Callers may catch InvalidUpdate as ValueError."""
    with pytest.raises(ValueError, match=r"registration\.success"):
        parse_update({"timestamp": TS, "registration": {"success": "yes"}})


def test_aware_datetime_becomes_epoch_milliseconds() -> None:
    """An aware datetime in any zone becomes integer epoch milliseconds."""
    moment = datetime(2017, 12, 9, 14, 16, 28, 826000, tzinfo=UTC)
    plus_two = moment.astimezone(timezone(timedelta(hours=2)))
    update = parse_update({"timestamp": plus_two, "registration": {"success": True}})
    assert update.timestamp == TS
    typed = Customer(registration_time=moment)
    assert typed.registration_time == TS


def test_naive_datetime_is_refused() -> None:
    """A naive datetime is ambiguous, so it is an error rather than a guess."""
    error = problems_of({"timestamp": datetime(2017, 12, 9), "registration": {"success": True}})
    assert error.paths == ["timestamp"]
    assert "timezone" in error.errors[0].message


def test_hash_password_is_lowercase_sha256_hex() -> None:
    """hash_password matches Ravelin's documented example, sha256('password123')."""
    assert hash_password("password123") == (
        "ef92b778bafe771e89245b89ecbc08a44a4e166c06659911881f383d4473e94f"
    )


def test_password_mechanism_from_plaintext_hashes() -> None:
    """from_plaintext stores only the hash, and the result passes validation."""
    mechanism = PasswordMechanism.from_plaintext(
        "password123", success=False, failure_reason="PASSWORD_TOO_SIMPLE"
    )
    registration = Registration(
        success=False, registration_mechanism=RegistrationMechanism(password=mechanism)
    )
    wire = parse_update(RegistrationUpdate(timestamp=TS, registration=registration)).to_wire()
    assert wire["registration"]["registrationMechanism"]["password"] == {
        "passwordHashed": hash_password("password123"),
        "success": False,
        "failureReason": "PASSWORD_TOO_SIMPLE",
    }


@pytest.mark.parametrize("raw_id", [123, 0, -5, 2**63 - 1, -(2**63)])
def test_numeric_ids_become_strings(raw_id: int) -> None:
    """Integer ids are sent as their decimal strings; string ids stay as they are."""
    update = parse_update(
        MINIMAL
        | {"supplier": {"supplierId": raw_id, "groupId": "g"}, "device": {"deviceId": raw_id}}
    )
    assert update.to_wire()["supplier"] == {"supplierId": str(raw_id), "groupId": "g"}
    assert update.to_wire()["device"] == {"deviceId": str(raw_id)}


def test_none_fields_are_dropped_at_every_depth() -> None:
    """Nulls never reach Ravelin: None fields and null extras vanish, array nulls stay."""
    data = MINIMAL | {
        "customer": {"email": None, "location": {"city": None, "extra": {"x": None, "y": [None]}}},
        "device": None,
    }
    assert parse_update(data).to_wire() == MINIMAL | {
        "customer": {"location": {"extra": {"y": [None]}}}
    }


def test_unknown_fields_pass_through_at_every_level() -> None:
    """Fields the model does not know keep their names and values, nested values untouched."""
    extra = {"new": {"deep": [1, 2.5, "x", True, {"k": "v"}]}, "snake_case": 1}
    data = {
        "timestamp": TS,
        "eventType": "x",
        **extra,
        "registration": {
            "success": True,
            **extra,
            "app": {"name": "a", **extra},
            "registrationMechanism": {"social": {"socialProvider": "apple"}, **extra},
        },
        "customer": {"customerId": "c", **extra, "location": {"latitude": 1, **extra}},
        "device": {"deviceId": "d", **extra},
    }
    assert parse_update(data).to_wire() == data


def test_typed_construction_serializes_to_camel_case() -> None:
    """Snake-case Python names become camelCase on the wire, in to_wire and to_json."""
    update = RegistrationUpdate(
        timestamp=TS,
        registration=Registration(
            success=True, guest_account=False, app=App(name="Our App", platform="web")
        ),
        customer=Customer(
            customer_id="c-1",
            given_name="Zoë",
            telephone_country="GBR",
            location=Location(postal_code="SW1A 1AA", latitude=51.5),
        ),
        device=Device(device_id="d-1", ip_address="::1", user_agent="UA"),
    )
    assert update.to_json() == (
        '{"timestamp":1512828988826,"registration":{"success":true,"guestAccount":false,'
        '"app":{"name":"Our App","platform":"web"}},"customer":{"telephoneCountry":"GBR",'
        '"customerId":"c-1","givenName":"Zoë","location":{"latitude":51.5,'
        '"postalCode":"SW1A 1AA"}},"device":{"deviceId":"d-1","userAgent":"UA",'
        '"ipAddress":"::1"}}'
    )
    assert parse_update(update) == update


@pytest.mark.parametrize(
    "extra",
    [
        {"note": "null", "n": 1.5e-7, "big": 1e16, "whole": 100.0, "text": "Zoë \u2028 \x1f"},
        {"nested": {"gone": None, "kept": [None, {"gone": None}]}},
        {"list": [1, "two", True, {"three": 3.25}]},
    ],
    ids=["floats and text", "nulls inside unknown members", "mixed list"],
)
def test_json_text_holds_the_wire_object(extra: dict[str, Any]) -> None:
    """to_json, whichever way it writes the text, parses back to exactly to_wire()."""
    update = parse_update(MINIMAL | {"customer": {"customerId": 7, "extra": extra}})
    assert json.loads(update.to_json()) == update.to_wire()
    assert update.to_wire()["customer"]["customerId"] == "7"


def test_snake_case_input_is_accepted_and_faults_use_wire_names() -> None:
    """Python names are accepted as input keys, and their faults are named by wire path."""
    data = {"timestamp": TS, "registration": {"success": True, "guest_account": "no"}}
    assert problems_of(data).paths == ["registration.guestAccount"]
    supplier = {"supplier_id": 7, "home_location": {"latitude": 1}}
    assert parse_update(MINIMAL | {"supplier": supplier}).to_wire()["supplier"] == {
        "supplierId": "7",
        "homeLocation": {"latitude": 1},
    }


def test_parse_update_rechecks_typed_models() -> None:
    """A typed model carrying a plaintext password in an extra field is still refused."""
    registration = Registration(success=True, password="hunter2")
    update = RegistrationUpdate(timestamp=TS, registration=registration)
    assert problems_of(update).paths == ["registration.password"]


def test_both_customer_and_supplier_typed_is_refused() -> None:
    """Sending a customer and a supplier together is refused for typed models too."""
    update = RegistrationUpdate(
        timestamp=TS,
        registration=Registration(success=True),
        customer=Customer(),
        supplier=Supplier(),
    )
    assert problems_of(update).paths == ["supplier"]


@settings(max_examples=300, deadline=None)
@given(valid_updates())
def test_serialization_round_trips(data: dict[str, Any]) -> None:
    """validate -> serialize -> json.loads -> validate -> serialize gives the same bytes."""
    first = parse_update(data)
    assert first.to_wire() == expected_wire(data)
    again = parse_update(json.loads(first.to_json()))
    assert again.to_json() == first.to_json()


@pytest.mark.parametrize(
    ("where", "path"),
    [
        ({"registration": {"success": True, "username": "ada\x00"}}, "registration.username"),
        (
            {"registration": {"success": True}, "customer": {"tags": {"vip\x00": True}}},
            "customer.tags.vip\\u0000",
        ),
        ({"registration": {"success": True}, "notes": ["fine", "bad\x00"]}, "notes[1]"),
    ],
)
def test_nul_characters_are_refused_by_path(where: dict[str, Any], path: str) -> None:
    """A NUL character, which jsonb cannot store, is refused with the path that holds it."""
    with pytest.raises(InvalidUpdate) as error:
        parse_update({"timestamp": 1_764_000_000_000, **where})
    assert [(e.path, e.message) for e in error.value.errors] == [
        (path, "must not contain the NUL character (U+0000)")
    ]


INT64 = "must fit in a signed 64-bit integer (-9223372036854775808 to 9223372036854775807)"
NOT_FINITE = "must be a finite number (NaN and Infinity are not JSON)"
SURROGATE = "must not contain a lone surrogate (U+D800 to U+DFFF)"
TOO_DEEP = f"nests objects and arrays more than {MAX_NESTING_DEPTH} levels deep"


@pytest.mark.parametrize(("case_id", "data"), AT_THE_LIMITS, ids=[c[0] for c in AT_THE_LIMITS])
def test_payload_exactly_at_a_limit_is_accepted(case_id: str, data: dict[str, Any]) -> None:
    """A payload exactly at the size, depth or 64-bit limit is valid."""
    assert parse_update(data).to_wire()["registration"] == {"success": False}


@pytest.mark.parametrize(
    ("case_id", "data", "path"), PYTHON_ONLY_CASES, ids=[c[0] for c in PYTHON_ONLY_CASES]
)
def test_python_only_fault_names_exactly_its_path(case_id: str, data: Any, path: str) -> None:
    """NaN, Infinity, lone surrogates and giant integers are refused at their path, alone."""
    error = problems_of(data)
    assert error.paths == [path]
    assert error.errors[0].message in {NOT_FINITE, SURROGATE, INT64}


@pytest.mark.parametrize(
    ("size", "message"),
    [
        (MAX_PAYLOAD_BYTES + 1, "is 1048577 bytes of JSON text; the limit is 1048576 bytes"),
        (3 * MAX_PAYLOAD_BYTES, "is 3145728 bytes of JSON text; the limit is 1048576 bytes"),
    ],
)
def test_oversized_payload_names_its_size_and_the_limit(size: int, message: str) -> None:
    """An oversized payload gets one problem at "$" saying its size and the limit."""
    data = sized(size, MINIMAL | {"registration": {"success": "yes"}, "password": "pw"})
    assert [str(e) for e in problems_of(data).errors] == [f"$: {message}"]


@pytest.mark.parametrize("depth", [MAX_NESTING_DEPTH + 1, 10_000, 200_000])
def test_deep_payload_is_refused_without_recursion_error(depth: int) -> None:
    """Nesting past the limit, even far past the interpreter's recursion limit, is one "$" problem."""
    assert [str(e) for e in problems_of(nested(depth)).errors] == [f"$: {TOO_DEEP}"]


def test_self_containing_list_is_refused() -> None:
    """A list that contains itself (only Python can build one) is refused, not walked forever."""
    loop: list[Any] = []
    loop.append(loop)
    assert problems_of(MINIMAL | {"loop": loop}).paths == ["$"]


def test_nan_in_a_typed_model_extra_is_refused() -> None:
    """A NaN in an unknown field of a typed model is refused, not silently dropped as null."""
    update = RegistrationUpdate(
        timestamp=TS, registration=Registration(success=True, score=float("nan"))
    )
    assert [str(e) for e in problems_of(update).errors] == [f"registration.score: {NOT_FINITE}"]


def test_giant_integer_is_an_invalid_update_not_a_value_error() -> None:
    """A 5000-digit integer raises InvalidUpdate naming its path, in a dict or a typed model."""
    assert [str(e) for e in problems_of(MINIMAL | {"n": 10**5000}).errors] == [f"n: {INT64}"]
    typed = RegistrationUpdate(timestamp=TS, registration=Registration(success=True, n=10**5000))
    assert problems_of(typed).paths == ["registration.n"]


def test_surrogate_in_member_name_is_named_with_an_escape() -> None:
    """A lone surrogate in a member name is reported once, its path written with a JSON escape."""
    data = MINIMAL | {"customer": {"k\ud800": "v\ud800"}}
    assert [str(e) for e in problems_of(data).errors] == [f"customer.k\\ud800: {SURROGATE}"]


@pytest.mark.parametrize(
    ("value", "stored"), [(1e16, "10000000000000000"), (-1.5e17, "-150000000000000000")]
)
def test_float_id_written_as_integer_is_stored_as_that_integer(value: float, stored: str) -> None:
    """A float id from 1e16 up, which JSON writes in exponent form and jsonb as an integer, is that integer."""
    update = parse_update(MINIMAL | {"customer": {"customerId": value}})
    assert update.to_wire()["customer"] == {"customerId": stored}


def test_smaller_integral_float_is_not_an_integer() -> None:
    """A float below 1e16 (written 1000000000000.0) stays a float, so it is no timestamp."""
    assert [str(e) for e in problems_of(MINIMAL | {"timestamp": 1e12}).errors] == [
        "timestamp: must be an integer"
    ]
