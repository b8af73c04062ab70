"""Hypothesis strategies for registration updates: ``valid_updates()`` draws valid wire dicts.

The dicts use camelCase keys (as a non-Python producer would send them), leave optional fields
out or set them to null, mix integer and string ids, and add unknown fields at every level. Text
avoids NUL and lone surrogates, which PostgreSQL's jsonb and UTF-8 cannot hold, and floats stay
finite, so each draw can also be stored in PostgreSQL and loaded back.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st
from pydantic import BaseModel
from pydantic.alias_generators import to_camel

from outbox_worker.payload import model as payload
from outbox_worker.payload.validation import COUNTRY_CODES

_MODELS: tuple[type[BaseModel], ...] = (
    payload.RegistrationUpdate,
    payload.Registration,
    payload.RegistrationMechanism,
    payload.PasswordMechanism,
    payload.App,
    payload.Customer,
    payload.Supplier,
    payload.Device,
    payload.Location,
)
#: Names an unknown field must not take: a known field's wire or Python name, or "password".
_RESERVED = frozenset(
    {"password"}
    | {name for model in _MODELS for name in model.model_fields}
    | {to_camel(name) for model in _MODELS for name in model.model_fields}
)

_chars = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")
_text = st.text(_chars, max_size=20)
_ms = st.integers(1_000_000_000_000, 9_999_999_999_999)
_id = st.one_of(_text, st.integers(-(2**63), 2**63 - 1))
_phone = st.from_regex(r"\+[1-9][0-9]{1,14}", fullmatch=True)
_country = st.sampled_from(sorted(COUNTRY_CODES))
_hash = st.from_regex(r"[0-9a-f]{64}", fullmatch=True)
_ip = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).map(str)
_float = st.floats(-1e9, 1e9, allow_nan=False, allow_infinity=False)
_json_scalar = st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53), _float, _text)
_json = st.recursive(
    _json_scalar,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=8,
).filter(lambda value: "password" not in repr(value))  # keeps plaintext-password keys out
_extra_key = st.text(
    _chars,
    min_size=1,
    max_size=12,
).filter(lambda key: key not in _RESERVED)


def _coordinate(bound: int) -> st.SearchStrategy[int | float]:
    return st.one_of(st.integers(-bound, bound), st.floats(-bound, bound, allow_nan=False))


@st.composite
def _object(draw: st.DrawFn, fields: dict[str, st.SearchStrategy[Any]]) -> dict[str, Any]:
    """An object with any subset of ``fields`` (some set to null) plus a few unknown fields."""
    out: dict[str, Any] = {}
    for key, strategy in fields.items():
        choice = draw(st.sampled_from(("absent", "value", "value", "null")))
        if choice != "absent":
            out[key] = None if choice == "null" else draw(strategy)
    out.update(draw(st.dictionaries(_extra_key, _json, max_size=2)))
    return out


def _strings(*names: str) -> dict[str, st.SearchStrategy[Any]]:
    return dict.fromkeys(names, _text)


def _location() -> st.SearchStrategy[dict[str, Any]]:
    return _object(
        {"latitude": _coordinate(90), "longitude": _coordinate(180)}
        | _strings("country", "postalCode", "addresseeName", "street1", "street2", "city")
        | _strings("neighbourhood", "zone", "region", "poBoxNumber")
    )


def _person() -> dict[str, st.SearchStrategy[Any]]:
    return {
        "email": _text,
        "name": _text,
        "emailVerifiedTime": _ms,
        "telephone": _phone,
        "telephoneVerifiedTime": _ms,
        "telephoneCountry": _country,
        "registrationTime": _ms,
        "tags": st.dictionaries(_text, st.booleans(), max_size=3),
    }


def _registration() -> st.SearchStrategy[dict[str, Any]]:
    password = _object({"passwordHashed": _hash, "success": st.booleans(), "failureReason": _text})
    fields = {
        "username": _text,
        "guestAccount": st.booleans(),
        "marketingEmailsEnabled": st.booleans(),
        "timestamp": _ms,
        "app": _object(_strings("name", "platform", "domain")),
        "registrationMechanism": _object({"password": password}),
    }
    return st.tuples(_object(fields), st.booleans()).map(lambda p: p[0] | {"success": p[1]})


def _customer() -> st.SearchStrategy[dict[str, Any]]:
    fields = _person() | {"customerId": _id, "location": _location()}
    return _object(fields | _strings("givenName", "familyName"))


def _supplier() -> st.SearchStrategy[dict[str, Any]]:
    fields = _person() | {"supplierId": _id, "groupId": _id, "homeLocation": _location()}
    names = ("groupName", "type", "level", "employmentType", "transportType", "category")
    return _object(fields | _strings(*names))


def _device() -> st.SearchStrategy[dict[str, Any]]:
    fields = {"deviceId": _id, "ipAddress": _ip, "location": _location()}
    return _object(
        fields | _strings("type", "manufacturer", "model", "os", "language", "userAgent")
    )


def valid_updates() -> st.SearchStrategy[dict[str, Any]]:
    """Valid /v2/registration bodies as wire dicts: customer or supplier (or neither), extras."""
    who = st.one_of(
        st.just({}),
        _customer().map(lambda c: {"customer": c}),
        _supplier().map(lambda s: {"supplier": s}),
    )
    body = _object({"device": _device()})
    return st.tuples(_ms, _registration(), who, body).map(
        lambda p: p[3] | p[2] | {"timestamp": p[0], "registration": p[1]}
    )
