"""The shared table of registration updates: valid examples and single-fault invalid cases.

Both the Python model (tests/unit/test_payload.py) and the SQL twin
(tests/integration/test_sql_validate.py) must accept every VALID_EXAMPLES payload and, for every
INVALID_CASES payload, report the named JSON path and no other. Each invalid case breaks exactly
one rule of a valid base. Decisions recorded here:

- ``telephoneCountry`` must be upper-case ("gb", "Gbr" are refused; Ravelin documents codes, and
  case-folding would change the stored bytes), and "UK" is refused (ISO's code is "GB").
- ``telephone`` must already be E.164; the producer normalises, the outbox does not guess.
- An integral float (``1512828988826.0``) is not an integer: Python floats never become ints.
- ``customer`` and ``supplier`` together are reported at ``supplier``; neither one is required.
- A plaintext ``password`` is refused anywhere, including inside unknown fields and arrays
  (paths like ``customer.credentials[0].password``).
- Bounded input (``outbox_worker.payload.limits``): a payload whose JSON text, as PostgreSQL writes it
  (``payload::text``, ", " and ": " separators), is over MAX_PAYLOAD_BYTES, or that nests objects
  and arrays more than MAX_NESTING_DEPTH levels deep, gets that one problem at "$" (size checked
  first, then depth) and no other rule runs. "$" rather than the first deep path, because jsonb
  reorders keys, so "first" would differ between the two sides. The size is of the update as
  given (nulls included), measured by both sides the same way.
- Integers outside the signed 64-bit range are refused anywhere (ids too: Ravelin decodes numbers
  into int64/float64); NaN, Infinity and lone surrogates are refused by path in Python. jsonb
  cannot hold those, so PostgreSQL refuses their text at the cast (SQLSTATE 22P02) before
  outbox.enqueue runs: PYTHON_ONLY_CASES.
- Exponent notation. jsonb keeps no spelling of a number: ``'1e12'::jsonb::text`` and
  ``'1.0e12'::jsonb::text`` are both ``1000000000000`` (while ``1512828988826.0`` keeps its
  fraction). outbox.enqueue(payload jsonb) therefore cannot see an exponent, and a ``json`` or
  ``text`` overload would make ``SELECT outbox.enqueue('{...}')`` ambiguous. So both sides judge a
  number in the form it is stored and sent: an integer is a number whose stored text has no
  fraction. SQL's ``{"timestamp": 1e12}`` is the integer 1000000000000, stored and sent as such
  (Ravelin's int64 decoder accepts it). Python's float ``1e12`` is written ``1000000000000.0``
  and refused on both sides; Python floats from 1e16 up are written ``1e+16`` and stored as
  integers, so both sides judge them as those integers (a float id 1e16 becomes
  "10000000000000000"; a float timestamp 1e16 "looks like micro- or nanoseconds").
"""

from __future__ import annotations

import copy
import json
from typing import Any

from outbox_worker.payload.limits import MAX_NESTING_DEPTH, MAX_PAYLOAD_BYTES

TS = 1512828988826
HASH = "ef92b778bafe771e89245b89ecbc08a44a4e166c06659911881f383d4473e94f"  # sha256("password123")

SUPPLIER_DOCS: dict[str, Any] = {
    "timestamp": TS,
    "registration": {
        "app": {"name": "Our App Lite", "platform": "web", "domain": "us.brand.com"},
        "username": "test1@ravelin.com",
        "registrationMechanism": {
            "password": {
                "passwordHashed": HASH,
                "success": False,
                "failureReason": "PASSWORD_TOO_SIMPLE",
            }
        },
        "guestAccount": False,
        "marketingEmailsEnabled": False,
        "success": False,
    },
    "supplier": {
        "supplierId": "abc-123-ZYZ",
        "groupId": "abc-123",
        "groupName": "Burger Chain",
        "email": "jsmith123@example.com",
        "emailVerifiedTime": TS,
        "name": "John Smith",
        "telephone": "+16045555555",
        "telephoneVerifiedTime": TS,
        "telephoneCountry": "GBR",
        "type": "driver",
        "level": "gold",
        "employmentType": "selfEmployed",
        "transportType": "car",
        "category": "private-hire",
        "tags": {"foo": True, "bar": False},
    },
    "device": {
        "deviceId": "65fc5ac0-2ba3-4a3b-aa5e-f5a77b845260",
        "ipAddress": "81.152.92.84",
        "language": "en-US",
        "userAgent": "Mozilla/5.0 (Linux; Android 9) Chrome/69.0.3497.100 Safari/537.36",
        "model": "Pixel XL",
        "os": "android",
        "type": "phone",
        "manufacturer": "google",
    },
}

CUSTOMER_OLDER: dict[str, Any] = {
    "timestamp": TS,
    "registration": {
        "timestamp": TS,
        "username": "test1@ravelin.com",
        "registrationMechanism": {"password": {"passwordHashed": HASH, "success": True}},
        "success": True,
    },
    "customer": {
        "customerId": "abc-123-ZYZ",
        "email": "jsmith123@example.com",
        "emailVerifiedTime": TS,
        "name": "John Smith",
        "familyName": "Smith",
        "givenName": "John",
        "telephone": "+16045555555",
        "telephoneVerifiedTime": TS,
        "telephoneCountry": "DOM",
        "registrationTime": TS,
        "tags": {"vip": True},
    },
}

DEVICE_WITH_LOCATION: dict[str, Any] = {
    "timestamp": TS,
    "registration": {"success": True, "username": "zoë@example.com"},
    "customer": {
        "customerId": "c-1",
        "telephoneCountry": "GB",
        "location": {
            "country": "GBR",
            "postalCode": "SW1A 1AA",
            "street1": "1 Mall",
            "city": "Ldn",
        },
    },
    "device": {
        "deviceId": "rjs-25998f27",
        "ipAddress": "2001:db8::8a2e:370:7334",
        "location": {"latitude": 51.5014, "longitude": -0.1419, "country": "GBR"},
    },
}

MINIMAL: dict[str, Any] = {"timestamp": TS, "registration": {"success": False}}

UNKNOWN_FIELDS: dict[str, Any] = {
    "timestamp": TS,
    "eventType": "signup-v2",
    "registration": {
        "success": True,
        "registrationId": "r-9",
        "app": {"name": "x", "version": "1.2.3"},
        "registrationMechanism": {
            "smsCode": {"phoneNumber": "+447907283546", "success": True},
            "password": {"passwordHashed": HASH, "emailPasswordSHA256": HASH},
        },
    },
    "customer": {
        "customerId": "c-2",
        "accountType": "REGISTERED",
        "custom": {"nested": [1, "two", {"three": 3.5}, [True, None]], "empty": {}},
        "location": {"latitude": 0, "longitude": 0, "what3words": "filled.count.soap"},
    },
    "device": {"browser": "firefox", "javascriptEnabled": True, "screenResolution": "1920x1080"},
}

NUMERIC_IDS_AND_NULLS: dict[str, Any] = {
    "timestamp": TS,
    "registration": {"success": True, "username": None, "app": None},
    "supplier": {
        "supplierId": 123,
        "groupId": -7,
        "email": None,
        "tags": {},
        "homeLocation": {"latitude": -90, "longitude": 180, "city": None},
        "custom": {"keep": None, "list": [None, {"drop": None}]},
    },
    "device": {"deviceId": 9007199254740993, "ipAddress": "::ffff:10.0.0.1"},
    "customer": None,
}

TIMESTAMP_EDGES: dict[str, Any] = {
    "timestamp": 1_000_000_000_000,
    "registration": {"success": True, "timestamp": 9_999_999_999_999},
    "customer": {"customerId": 0, "registrationTime": 1_000_000_000_000},
}

VALID_EXAMPLES: list[tuple[str, dict[str, Any]]] = [
    ("supplier_docs", SUPPLIER_DOCS),
    ("customer_older", CUSTOMER_OLDER),
    ("device_with_location", DEVICE_WITH_LOCATION),
    ("minimal", MINIMAL),
    ("unknown_fields", UNKNOWN_FIELDS),
    ("numeric_ids_and_nulls", NUMERIC_IDS_AND_NULLS),
    ("timestamp_edges", TIMESTAMP_EDGES),
]

_DELETE = object()


def _with(base: dict[str, Any], path: str, value: object) -> dict[str, Any]:
    """A deep copy of ``base`` with the member at dotted ``path`` set to ``value`` (or deleted)."""
    data = copy.deepcopy(base)
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node.setdefault(key, {})
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return data


def _c(path: str, value: object) -> dict[str, Any]:
    return _with(CUSTOMER_OLDER, path, value)


def _s(path: str, value: object) -> dict[str, Any]:
    return _with(SUPPLIER_DOCS, path, value)


def _d(path: str, value: object) -> dict[str, Any]:
    return _with(DEVICE_WITH_LOCATION, path, value)


_M = "registration.registrationMechanism.password"


def stored_size(data: Any) -> int:
    """UTF-8 bytes of ``data`` as PostgreSQL writes it as jsonb text (for plain JSON values)."""
    return len(json.dumps(data, ensure_ascii=False, separators=(", ", ": ")).encode("utf-8"))


def sized(size: int, base: dict[str, Any] = MINIMAL) -> dict[str, Any]:
    """``base`` plus a "padding" string, exactly ``size`` bytes of stored JSON text."""
    data = base | {"padding": ""}
    data["padding"] = "x" * (size - stored_size(data))
    return data


def nested(depth: int) -> dict[str, Any]:
    """MINIMAL with a "nest" member whose arrays make the payload ``depth`` levels deep."""
    value: Any = []
    for _ in range(depth - 2):  # the root object is level 1, the outer array level 2
        value = [value]
    return MINIMAL | {"nest": value}


INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)

#: Valid payloads exactly at each limit (kept out of VALID_EXAMPLES, which benchmarks reuse).
AT_THE_LIMITS: list[tuple[str, dict[str, Any]]] = [
    ("size_at_limit", sized(MAX_PAYLOAD_BYTES)),
    ("depth_at_limit", nested(MAX_NESTING_DEPTH)),
    ("int64_bounds", MINIMAL | {"big": [INT64_MAX, INT64_MIN], "f": 9.2e18, "e": 1e-5}),
    (
        "ids_at_int64_bounds",
        MINIMAL | {"supplier": {"supplierId": INT64_MAX, "groupId": INT64_MIN}},
    ),
]

INVALID_CASES: list[tuple[str, Any, str]] = [
    # the root
    ("root_list", [MINIMAL], "$"),
    ("root_string", "{}", "$"),
    ("root_null", None, "$"),
    ("root_number", 1, "$"),
    # timestamp
    ("timestamp_missing", _c("timestamp", _DELETE), "timestamp"),
    ("timestamp_null", _c("timestamp", None), "timestamp"),
    ("timestamp_string", _c("timestamp", "1512828988826"), "timestamp"),
    ("timestamp_float", _c("timestamp", 1.5), "timestamp"),
    ("timestamp_integral_float", _c("timestamp", 1512828988826.0), "timestamp"),
    ("timestamp_true", _c("timestamp", True), "timestamp"),
    ("timestamp_seconds", _c("timestamp", 1512828988), "timestamp"),
    ("timestamp_microseconds", _c("timestamp", 1512828988826000), "timestamp"),
    ("timestamp_nanoseconds", _c("timestamp", 1512828988826000000), "timestamp"),
    ("timestamp_negative", _c("timestamp", -TS), "timestamp"),
    ("timestamp_just_too_big", _c("timestamp", 10_000_000_000_000), "timestamp"),
    # registration
    ("registration_missing", _c("registration", _DELETE), "registration"),
    ("registration_null", _c("registration", None), "registration"),
    ("registration_string", _c("registration", "ok"), "registration"),
    ("registration_list", _c("registration", [{"success": True}]), "registration"),
    ("success_missing", _c("registration.success", _DELETE), "registration.success"),
    ("success_null", _c("registration.success", None), "registration.success"),
    ("success_yes", _c("registration.success", "yes"), "registration.success"),
    ("success_string_true", _c("registration.success", "true"), "registration.success"),
    ("success_1", _c("registration.success", 1), "registration.success"),
    ("username_number", _c("registration.username", 42), "registration.username"),
    ("guest_account_string", _c("registration.guestAccount", "false"), "registration.guestAccount"),
    (
        "marketing_emails_0",
        _c("registration.marketingEmailsEnabled", 0),
        "registration.marketingEmailsEnabled",
    ),
    (
        "registration_timestamp_seconds",
        _c("registration.timestamp", 1512828988),
        "registration.timestamp",
    ),
    ("app_string", _s("registration.app", "Our App Lite"), "registration.app"),
    ("app_name_number", _s("registration.app.name", 7), "registration.app.name"),
    ("app_platform_bool", _s("registration.app.platform", True), "registration.app.platform"),
    (
        "mechanism_list",
        _c("registration.registrationMechanism", ["password"]),
        "registration.registrationMechanism",
    ),
    ("mechanism_password_number", _c(_M, 5), _M),
    ("hash_uppercase", _c(f"{_M}.passwordHashed", HASH.upper()), f"{_M}.passwordHashed"),
    ("hash_63_chars", _c(f"{_M}.passwordHashed", HASH[:63]), f"{_M}.passwordHashed"),
    ("hash_not_hex", _c(f"{_M}.passwordHashed", "z" * 64), f"{_M}.passwordHashed"),
    ("hash_number", _c(f"{_M}.passwordHashed", 123), f"{_M}.passwordHashed"),
    ("mechanism_success_string", _c(f"{_M}.success", "false"), f"{_M}.success"),
    ("failure_reason_number", _s(f"{_M}.failureReason", 1), f"{_M}.failureReason"),
    # plaintext passwords, anywhere
    ("plaintext_mechanism", _c(_M, "hunter2"), _M),
    ("plaintext_inside_mechanism", _c(f"{_M}.password", "hunter2"), f"{_M}.password"),
    ("plaintext_registration", _c("registration.password", "hunter2"), "registration.password"),
    ("plaintext_root", _c("password", ""), "password"),
    (
        "plaintext_in_array",
        _c("customer.credentials", [{"kind": "x"}, {"password": "hunter2"}]),
        "customer.credentials[1].password",
    ),
    # customer
    ("customer_and_supplier", _c("supplier", {"supplierId": "s-1"}), "supplier"),
    ("customer_string", _c("customer", "abc-123"), "customer"),
    ("customer_id_true", _c("customer.customerId", True), "customer.customerId"),
    ("customer_id_float", _c("customer.customerId", 1.5), "customer.customerId"),
    ("customer_id_object", _c("customer.customerId", {"id": 1}), "customer.customerId"),
    ("email_number", _c("customer.email", 123), "customer.email"),
    ("name_false", _c("customer.name", False), "customer.name"),
    ("given_name_list", _c("customer.givenName", ["John"]), "customer.givenName"),
    (
        "email_verified_seconds",
        _c("customer.emailVerifiedTime", 1512828988),
        "customer.emailVerifiedTime",
    ),
    (
        "telephone_verified_string",
        _c("customer.telephoneVerifiedTime", "1512828988826"),
        "customer.telephoneVerifiedTime",
    ),
    (
        "registration_time_ns",
        _c("customer.registrationTime", TS * 10**6),
        "customer.registrationTime",
    ),
    ("telephone_national", _c("customer.telephone", "07700900123"), "customer.telephone"),
    ("telephone_spaces", _c("customer.telephone", "+44 7700 900123"), "customer.telephone"),
    ("telephone_leading_zero", _c("customer.telephone", "+0447700900123"), "customer.telephone"),
    ("telephone_16_digits", _c("customer.telephone", "+1234567890123456"), "customer.telephone"),
    ("telephone_number", _c("customer.telephone", 447700900123), "customer.telephone"),
    ("country_xxx", _c("customer.telephoneCountry", "XXX"), "customer.telephoneCountry"),
    ("country_lowercase", _c("customer.telephoneCountry", "gb"), "customer.telephoneCountry"),
    ("country_mixed_case", _c("customer.telephoneCountry", "Gbr"), "customer.telephoneCountry"),
    ("country_uk", _c("customer.telephoneCountry", "UK"), "customer.telephoneCountry"),
    ("country_numeric", _c("customer.telephoneCountry", 826), "customer.telephoneCountry"),
    ("tags_string_value", _c("customer.tags.vip", "true"), "customer.tags.vip"),
    ("tags_null_value", _c("customer.tags.vip", None), "customer.tags.vip"),
    ("tags_list", _c("customer.tags", ["vip"]), "customer.tags"),
    ("location_string", _d("customer.location", "London"), "customer.location"),
    ("location_city_number", _d("customer.location.city", 1), "customer.location.city"),
    # supplier
    ("supplier_list", _s("supplier", []), "supplier"),
    ("supplier_id_false", _s("supplier.supplierId", False), "supplier.supplierId"),
    ("group_id_float", _s("supplier.groupId", 1.5), "supplier.groupId"),
    ("supplier_type_number", _s("supplier.type", 1), "supplier.type"),
    ("supplier_tag_1", _s("supplier.tags.foo", 1), "supplier.tags.foo"),
    ("supplier_phone_country", _s("supplier.telephoneCountry", "gbr"), "supplier.telephoneCountry"),
    (
        "home_location_longitude",
        _s("supplier.homeLocation", {"longitude": -181}),
        "supplier.homeLocation.longitude",
    ),
    # device and locations
    ("device_string", _s("device", "Pixel XL"), "device"),
    ("device_id_false", _s("device.deviceId", False), "device.deviceId"),
    ("user_agent_number", _s("device.userAgent", 5), "device.userAgent"),
    ("ip_bad_octet", _s("device.ipAddress", "999.1.1.1"), "device.ipAddress"),
    ("ip_cidr", _s("device.ipAddress", "10.0.0.0/8"), "device.ipAddress"),
    ("ip_zone", _s("device.ipAddress", "fe80::1%eth0"), "device.ipAddress"),
    ("ip_short", _s("device.ipAddress", "10.1"), "device.ipAddress"),
    ("ip_hostname", _s("device.ipAddress", "localhost"), "device.ipAddress"),
    ("ip_number", _s("device.ipAddress", 167772161), "device.ipAddress"),
    ("latitude_91", _d("device.location.latitude", 91), "device.location.latitude"),
    ("latitude_minus_90_5", _d("device.location.latitude", -90.5), "device.location.latitude"),
    ("latitude_true", _d("device.location.latitude", True), "device.location.latitude"),
    ("longitude_string", _d("device.location.longitude", "10"), "device.location.longitude"),
    ("longitude_180_01", _d("device.location.longitude", 180.01), "device.location.longitude"),
    # bounded input: size and depth, reported alone at "$"
    ("size_over_limit", sized(MAX_PAYLOAD_BYTES + 1), "$"),
    ("size_over_limit_with_fault", sized(MAX_PAYLOAD_BYTES + 1, _c("timestamp", "x")), "$"),
    ("depth_over_limit", nested(MAX_NESTING_DEPTH + 1), "$"),
    ("depth_500", nested(500), "$"),  # json.dumps (and so psycopg) recurses: 10,000 is tested apart
    ("depth_over_limit_in_object", _c("customer.x", nested(MAX_NESTING_DEPTH)["nest"]), "$"),
    # integers past 64 bits, anywhere; they win over the field's own rule
    ("int_past_int64", _c("customer.score", INT64_MAX + 1), "customer.score"),
    ("int_below_int64", _c("customer.x", [0, INT64_MIN - 1]), "customer.x[1]"),
    ("id_past_int64", _c("customer.customerId", 2**70), "customer.customerId"),
    ("timestamp_past_int64", _c("timestamp", 2**64), "timestamp"),
    ("float_stored_as_big_int", _c("customer.score", 1e19), "customer.score"),
    # exponent notation: numbers are judged as stored (see the module docstring)
    ("timestamp_float_1e12", _c("timestamp", 1e12), "timestamp"),
    ("timestamp_float_1e16", _c("timestamp", 1e16), "timestamp"),
]

#: Faults PostgreSQL's jsonb cannot even hold: Python refuses them by path, SQL callers get
#: PostgreSQL's own error (22P02) when their text is cast to jsonb.
PYTHON_ONLY_CASES: list[tuple[str, Any, str]] = [
    ("nan_unknown_field", _c("customer.score", float("nan")), "customer.score"),
    ("infinity_in_array", _c("customer.x", [1, float("inf")]), "customer.x[1]"),
    (
        "minus_infinity_known_field",
        _d("device.location.latitude", float("-inf")),
        "device.location.latitude",
    ),
    ("nan_timestamp", _c("timestamp", float("nan")), "timestamp"),
    ("surrogate_in_value", _c("customer.name", "Zo\ud800"), "customer.name"),
    ("surrogate_in_unknown_value", _c("customer.x", ["\udfff"]), "customer.x[0]"),
    ("surrogate_in_member_name", _c("customer.tags", {"v\ud800": True}), "customer.tags.v\\ud800"),
    ("surrogate_in_root_member_name", _c("x\udc00", 1), "x\\udc00"),
    ("int_5000_digits", _c("customer.score", 10**5000), "customer.score"),
    ("id_5000_digits", _c("customer.customerId", -(10**5000)), "customer.customerId"),
]

#: One payload with many faults: every one of these paths must be reported.
MULTI_FAULT: dict[str, Any] = {
    "timestamp": 1512828988,
    "registration": {
        "success": "yes",
        "guestAccount": 0,
        "registrationMechanism": {"password": {"passwordHashed": "ABC", "password": "hunter2"}},
    },
    "customer": {
        "customerId": True,
        "telephone": "555-1234",
        "telephoneCountry": "gb",
        "tags": {"a": "yes", "b": True, "c": 0},
        "location": {"latitude": 100, "longitude": "0"},
    },
    "supplier": {"supplierId": "s-1"},
    "device": {"ipAddress": "10.0.0.0/8", "location": {"latitude": "x"}},
}
MULTI_FAULT_PATHS: frozenset[str] = frozenset(
    {
        "timestamp",
        "registration.success",
        "registration.guestAccount",
        f"{_M}.passwordHashed",
        f"{_M}.password",
        "customer.customerId",
        "customer.telephone",
        "customer.telephoneCountry",
        "customer.tags.a",
        "customer.tags.c",
        "customer.location.latitude",
        "customer.location.longitude",
        "supplier",
        "device.ipAddress",
        "device.location.latitude",
    }
)


# --- What Ravelin answers ---------------------------------------------------------------------

# Ravelin's documented 400 body, plus a field it may add: only message, traceId and
# validationErrors are kept.
TRACE = "9f641b70-47c6-4c1b-a0f4-5e4b7d5e8c11"
RAVELIN_400 = json.dumps(
    {
        "status": 400,
        "message": "Customer not found",
        "traceId": TRACE,
        "timestamp": 1468222819,
        "validationErrors": ["customer.email: invalid", "timestamp: required"],
        "unknownField": {"x": 1},
    }
).encode()


# --- What the delivery tests send ------------------------------------------------------------

KEY = "sk_test_outbox"  # the API key the stand-in accepts and test workers send


def update(key: str | None = None, **parts: Any) -> dict[str, Any]:
    """A minimal valid update with customerId ``key`` (the stand-in's message key), plus ``parts``."""
    body: dict[str, Any] = {"timestamp": 1_764_000_000_000, "registration": {"success": True}}
    if key is not None:
        body["customer"] = {"customerId": key}
    return {**body, **parts}


def registration_update(index: int, key: str) -> dict[str, Any]:
    """A valid update (cycling through VALID_EXAMPLES) whose stand-in message key is ``key``."""
    _, example = VALID_EXAMPLES[index % len(VALID_EXAMPLES)]
    body = copy.deepcopy(example)
    if body.get("supplier") is not None:  # customer and supplier together are refused
        body["supplier"]["supplierId"] = key
    else:
        body["customer"] = {**(body.get("customer") or {}), "customerId": key}
    return body
