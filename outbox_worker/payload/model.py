"""The typed body of Ravelin's ``POST /v2/registration``: parse, validate, serialize. No I/O.

Python attributes are snake_case, the wire is camelCase; input may use either. Validation is
strict (no ``"yes"`` for a boolean, no ``1`` for a string, no ``True`` for an integer); the one
conversion is an integer id becoming a string. Unknown fields pass through unchanged at every
level, because Ravelin's schema grows. ``parse_update`` is the gate: it reports every bad field as
a JSON path in one ``InvalidUpdate``; an update past a limit of ``payload.limits`` (JSON text size,
nesting depth) is refused with that one problem, before any other rule runs. The SQL
function ``outbox.validate_update`` applies the same rules with the same paths and messages.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Annotated, Any, Self, get_args

import pydantic_core
from pydantic import BaseModel, ConfigDict, PlainValidator, StrictBool, StrictStr, ValidationError
from pydantic.alias_generators import to_camel

from outbox_worker.errors import FieldError, InvalidUpdate
from outbox_worker.payload import validation as rules
from outbox_worker.payload.scan import raw_rule_errors

__all__ = [
    "App",
    "Customer",
    "Device",
    "Location",
    "PasswordMechanism",
    "Registration",
    "RegistrationMechanism",
    "RegistrationUpdate",
    "Supplier",
    "hash_password",
    "parse_update",
]

EpochMillis = Annotated[int, PlainValidator(rules.check_epoch_ms)]
Id = Annotated[str, PlainValidator(rules.check_id)]
PasswordHash = Annotated[str, PlainValidator(rules.check_password_hash)]
Telephone = Annotated[str, PlainValidator(rules.check_telephone)]
CountryCode = Annotated[str, PlainValidator(rules.check_country)]
IpAddress = Annotated[str, PlainValidator(rules.check_ip_address)]
Latitude = Annotated[int | float, PlainValidator(rules.check_latitude)]
Longitude = Annotated[int | float, PlainValidator(rules.check_longitude)]
Tags = dict[str, StrictBool]


def hash_password(raw: str) -> str:
    """Return the lower-case hex sha256 of ``raw`` (UTF-8), as Ravelin's Ruby gem sends it."""
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


class _Part(BaseModel):
    """Shared configuration: camelCase wire names, either name accepted, unknown fields kept."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        extra="allow",
        frozen=True,
    )


class Location(_Part):
    """A place: coordinates and postal address."""

    latitude: Latitude | None = None
    longitude: Longitude | None = None
    country: StrictStr | None = None
    postal_code: StrictStr | None = None
    addressee_name: StrictStr | None = None
    street1: StrictStr | None = None
    street2: StrictStr | None = None
    neighbourhood: StrictStr | None = None
    zone: StrictStr | None = None
    city: StrictStr | None = None
    region: StrictStr | None = None
    po_box_number: StrictStr | None = None


class App(_Part):
    """The app the user registered through."""

    name: StrictStr | None = None
    platform: StrictStr | None = None
    domain: StrictStr | None = None


class PasswordMechanism(_Part):
    """Registration by password; only its sha256 ever leaves the producer."""

    password_hashed: PasswordHash | None = None
    success: StrictBool | None = None
    failure_reason: StrictStr | None = None

    @classmethod
    def from_plaintext(cls, raw: str, *, success: bool, failure_reason: str | None = None) -> Self:
        """Build the mechanism from a raw password, hashing it with ``hash_password``."""
        return cls(
            password_hashed=hash_password(raw), success=success, failure_reason=failure_reason
        )


class RegistrationMechanism(_Part):
    """How the user registered; variants other than ``password`` pass through as extras."""

    password: PasswordMechanism | None = None


class Registration(_Part):
    """The registration attempt itself and whether it succeeded."""

    success: StrictBool
    username: StrictStr | None = None
    guest_account: StrictBool | None = None
    marketing_emails_enabled: StrictBool | None = None
    timestamp: EpochMillis | None = None
    app: App | None = None
    registration_mechanism: RegistrationMechanism | None = None


class _Person(_Part):
    """Contact fields shared by customers and suppliers."""

    email: StrictStr | None = None
    name: StrictStr | None = None
    email_verified_time: EpochMillis | None = None
    telephone: Telephone | None = None
    telephone_verified_time: EpochMillis | None = None
    telephone_country: CountryCode | None = None
    registration_time: EpochMillis | None = None
    tags: Tags | None = None


class Customer(_Person):
    """The customer trying to register."""

    customer_id: Id | None = None
    given_name: StrictStr | None = None
    family_name: StrictStr | None = None
    location: Location | None = None


class Supplier(_Person):
    """The supplier (driver, courier, seller) trying to register."""

    supplier_id: Id | None = None
    group_id: Id | None = None
    group_name: StrictStr | None = None
    type: StrictStr | None = None
    level: StrictStr | None = None
    employment_type: StrictStr | None = None
    transport_type: StrictStr | None = None
    category: StrictStr | None = None
    home_location: Location | None = None


class Device(_Part):
    """The device the registration came from."""

    device_id: Id | None = None
    type: StrictStr | None = None
    manufacturer: StrictStr | None = None
    model: StrictStr | None = None
    os: StrictStr | None = None
    language: StrictStr | None = None
    user_agent: StrictStr | None = None
    ip_address: IpAddress | None = None
    location: Location | None = None


class RegistrationUpdate(_Part):
    """The whole body of ``POST /v2/registration``."""

    timestamp: EpochMillis
    registration: Registration
    customer: Customer | None = None
    supplier: Supplier | None = None
    device: Device | None = None

    def to_wire(self) -> dict[str, Any]:
        """Return the camelCase JSON object, nulls dropped at every depth, unknown fields kept."""
        dumped: dict[str, Any] = rules.strip_nulls(self.model_dump(by_alias=True, mode="json"))
        return dumped

    def to_json(self) -> str:
        """Return the compact JSON text of ``to_wire()``: the exact bytes Ravelin receives."""
        # pydantic-core writes the JSON in one pass (about a third of the cost of dump, strip,
        # dumps). exclude_none drops null fields, not nulls inside unknown members: when the
        # text still holds "null" anywhere (even inside a string), strip them from to_wire().
        # Both paths write with pydantic-core, so one update always gets the same bytes.
        text = self.model_dump_json(by_alias=True, exclude_none=True)
        if "null" not in text:
            return text
        return pydantic_core.to_json(self.to_wire()).decode()


def parse_update(data: RegistrationUpdate | Mapping[str, Any]) -> RegistrationUpdate:
    """Validate ``data`` into an update, or raise ``InvalidUpdate`` naming every bad field."""
    if isinstance(data, RegistrationUpdate):
        # Re-check: extras and model_construct() bypass field validation. Python mode, because
        # JSON mode would turn NaN into null and choke on integers past 4300 digits unchecked.
        data = data.model_dump(by_alias=True)
    if not isinstance(data, Mapping):
        raise InvalidUpdate([FieldError("$", rules.MSG_OBJECT)])
    errors = raw_rule_errors(data)
    try:
        update = RegistrationUpdate.model_validate(dict(data))
    except ValidationError as exc:
        seen = {e.path for e in errors}  # a plaintext password also fails its object type
        errors += [e for e in _field_errors(exc) if e.path not in seen]
    if errors:
        raise InvalidUpdate(errors)
    return update


def _field_errors(exc: ValidationError) -> list[FieldError]:
    """Translate pydantic's errors into FieldErrors with camelCase dotted paths."""
    return [
        FieldError(_wire_path(err["loc"]), rules.message_for(err["type"], err["msg"]))
        for err in exc.errors(include_url=False, include_context=False, include_input=False)
        # pydantic cannot read a member name holding a lone surrogate and names no path for
        # it; the surrogate rule of raw_rule_errors has already reported it by path.
        if err["type"] != "string_unicode"
    ]


def _wire_path(loc: tuple[int | str, ...]) -> str:
    """Turn a pydantic ``loc`` (field names or aliases, dict keys) into a wire JSON path."""
    path = ""
    model: type[BaseModel] | None = RegistrationUpdate
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
            continue
        field = _field_named(model, part)
        name = part if field is None else to_camel(field)
        model = None if field is None or model is None else _submodel(model, field)
        path = f"{path}.{name}" if path else name
    return path or "$"


def _field_named(model: type[BaseModel] | None, part: str) -> str | None:
    if model is None:
        return None
    if part in model.model_fields:
        return part
    return next((n for n in model.model_fields if to_camel(n) == part), None)


def _submodel(model: type[BaseModel], field: str) -> type[BaseModel] | None:
    annotation = model.model_fields[field].annotation
    for candidate in (annotation, *get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None
