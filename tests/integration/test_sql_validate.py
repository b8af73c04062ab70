"""The SQL twin of the payload model: outbox.validate_update / normalize_update on real PostgreSQL.

Python and SQL must agree word for word on every case of tests/cases.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pycountry
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.types.json import Jsonb

from outbox_worker.errors import InvalidUpdate
from outbox_worker.payload.model import parse_update
from tests.cases import (
    AT_THE_LIMITS,
    INVALID_CASES,
    MULTI_FAULT,
    MULTI_FAULT_PATHS,
    PYTHON_ONLY_CASES,
    VALID_EXAMPLES,
)
from tests.pg import admin_execute, unique_name, with_database
from tests.strategies import valid_updates


@pytest.fixture(scope="module")
def db(pg_server_url: str, template_database: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection to a database of this module's own, migrated to head."""
    name = unique_name("outbox_payload")
    admin_execute(pg_server_url, f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
    try:
        with psycopg.connect(with_database(pg_server_url, name), autocommit=True) as conn:
            yield conn
    finally:
        admin_execute(pg_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def sql_problems(db: psycopg.Connection[Any], data: Any) -> list[str]:
    """outbox.validate_update's answer for ``data``, sorted."""
    row = db.execute("SELECT outbox.validate_update(%s)", [Jsonb(data)]).fetchone()
    assert row is not None
    return sorted(row[0])


def python_problems(data: Any) -> list[str]:
    """parse_update's problems for ``data`` in the SQL text form '<path>: <message>', sorted."""
    try:
        parse_update(data)
    except InvalidUpdate as exc:
        return sorted(str(e) for e in exc.errors)
    return []


def assert_normalizes_like_python(db: psycopg.Connection[Any], data: dict[str, Any]) -> None:
    """normalize_update(data) is, as jsonb, exactly what the Python serializer stores."""
    wire = parse_update(data).to_json()
    row = db.execute(
        "SELECT outbox.normalize_update(%s) = %s::jsonb, outbox.normalize_update(%s)::text",
        [Jsonb(data), wire, Jsonb(data)],
    ).fetchone()
    assert row is not None
    assert row[0], f"SQL {row[1]} != Python {wire}"


@pytest.mark.parametrize(("case_id", "data"), VALID_EXAMPLES, ids=[c[0] for c in VALID_EXAMPLES])
def test_valid_example_has_no_problems(
    db: psycopg.Connection[Any], case_id: str, data: dict[str, Any]
) -> None:
    """Every valid example passes validate_update with an empty array."""
    assert sql_problems(db, data) == []


@pytest.mark.parametrize(("case_id", "data"), VALID_EXAMPLES, ids=[c[0] for c in VALID_EXAMPLES])
def test_valid_example_normalizes_like_python(
    db: psycopg.Connection[Any], case_id: str, data: dict[str, Any]
) -> None:
    """normalize_update stores the same jsonb as RegistrationUpdate.to_wire()."""
    assert_normalizes_like_python(db, data)


@pytest.mark.parametrize(
    ("case_id", "data", "path"), INVALID_CASES, ids=[c[0] for c in INVALID_CASES]
)
def test_invalid_case_names_only_its_path(
    db: psycopg.Connection[Any], case_id: str, data: Any, path: str
) -> None:
    """Each single-fault case is reported at its path only, in Python's exact words."""
    problems = sql_problems(db, data)
    assert {p.split(": ", 1)[0] for p in problems} == {path}
    assert problems == python_problems(data)


def plainly_valid(db: psycopg.Connection[Any], data: Any) -> bool | None:
    """outbox.is_plainly_valid's answer for ``data``: the fast check validate_update runs first."""
    row = db.execute("SELECT outbox.is_plainly_valid(%s)", [Jsonb(data)]).fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


@pytest.mark.parametrize(("case_id", "data"), VALID_EXAMPLES, ids=[c[0] for c in VALID_EXAMPLES])
def test_fast_check_clears_valid_example(
    db: psycopg.Connection[Any], case_id: str, data: dict[str, Any]
) -> None:
    """Every valid example takes the fast path: the detailed check never runs for it."""
    assert plainly_valid(db, data) is True


@pytest.mark.parametrize(
    ("case_id", "data", "path"), INVALID_CASES, ids=[c[0] for c in INVALID_CASES]
)
def test_fast_check_never_clears_an_invalid_case(
    db: psycopg.Connection[Any], case_id: str, data: Any, path: str
) -> None:
    """The fast check refuses every invalid case, so the detailed check names its problem."""
    assert plainly_valid(db, data) is not True


def test_fast_check_never_clears_many_faults(db: psycopg.Connection[Any]) -> None:
    """The fast check refuses a payload with many faults, and SQL NULL."""
    assert plainly_valid(db, MULTI_FAULT) is not True
    row = db.execute("SELECT outbox.is_plainly_valid(NULL)").fetchone()
    assert row is not None
    assert row[0] is not True


def test_all_bad_fields_are_reported(db: psycopg.Connection[Any]) -> None:
    """A payload with many faults gets every path reported, exactly as Python reports them."""
    problems = sql_problems(db, MULTI_FAULT)
    assert {p.split(": ", 1)[0] for p in problems} == MULTI_FAULT_PATHS
    assert problems == python_problems(MULTI_FAULT)


def test_sql_null_is_not_an_object(db: psycopg.Connection[Any]) -> None:
    """A SQL NULL payload is refused like a non-object, not passed as NULL."""
    row = db.execute("SELECT outbox.validate_update(NULL)").fetchone()
    assert row == (["$: must be an object"],)


def test_country_codes_match_pycountry(db: psycopg.Connection[Any]) -> None:
    """The literal country list in the SQL file is exactly pycountry's alpha-2 and alpha-3 codes."""
    row = db.execute("SELECT outbox.iso_country_codes()").fetchone()
    assert row is not None
    expected = {code for c in pycountry.countries for code in (c.alpha_2, c.alpha_3)}
    assert set(row[0]) == expected


@pytest.mark.parametrize(
    "address",
    [
        "1.2.3.4", "0.0.0.0", "255.255.255.255", "1.2.3", "10.1", "01.2.3.4", "1.2.3.256",
        "1.2.3.4.", " 1.2.3.4", "", "1", "abc", "::", "::1", "1::", ":1::", "1::2::3", ":::",
        "::ffff:1.2.3.4", "::ffff:01.2.3.4", "::ffff:1.2.3", "::1.2.3.4", "::1.2.3.4:1",
        "2001:db8::", "2001:0db8:0000::1", "ABCD::EF", "12345::", "00000::1", "0000::1",
        "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:6:7:1.2.3.4",
        "fe80::1%eth0", "10.0.0.0/8", "::1/128", "1.2.3.4::",
    ],
)  # fmt: skip
def test_ip_address_rule_agrees_with_python(db: psycopg.Connection[Any], address: str) -> None:
    """SQL's inet-based check accepts exactly the addresses Python's ipaddress check accepts."""
    data = {"timestamp": 1512828988826, "registration": {"success": True}}
    data["device"] = {"ipAddress": address}
    assert sql_problems(db, data) == python_problems(data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=valid_updates())
def test_generated_updates_validate_and_normalize_like_python(
    db: psycopg.Connection[Any], data: dict[str, Any]
) -> None:
    """For generated valid updates SQL finds no problem and stores what Python would."""
    assert sql_problems(db, data) == []
    assert plainly_valid(db, data) is True
    assert_normalizes_like_python(db, data)


# Values that follow some rule and break another: each is put in place of one member.
_TRICKY = [
    None,
    True,
    0,
    -1,
    1,
    91,
    -181,
    1.5,
    1512828988826,
    1512828988826.5,
    1512828988,
    10**13,
    2**63,
    -(2**63) - 1,
    "",
    "1",
    "x",
    "GB",
    "gb",
    "UK",
    "+447700900123",
    "447700900123",
    "1.2.3.4",
    "01.2.3.4",
    "::1",
    "fe80::1%eth0",
    "a" * 64,
    "A" * 64,
    [],
    ["a"],
    [True],
    {},
    {"password": "x"},
    {"a": True},
    {"a": "yes"},
]


def _member_paths(node: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The path of every member of every object in ``node``."""
    if not isinstance(node, dict):
        return []
    paths = []
    for key, value in node.items():
        paths.append((*path, key))
        paths.extend(_member_paths(value, (*path, key)))
    return paths


@st.composite
def _one_member_changed(draw: st.DrawFn) -> dict[str, Any]:
    """A generated valid update with one member (or a new member "password") set to a tricky value."""
    data = draw(valid_updates())
    paths = [*_member_paths(data), ("password",), ("customer", "password")]
    path = draw(st.sampled_from(paths))
    node = data
    for key in path[:-1]:
        node = node.setdefault(key, {})  # only dicts are walked into: anything else raises below
    node[path[-1]] = draw(st.sampled_from(_TRICKY))
    return data


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_one_member_changed())
def test_fast_check_clears_only_what_the_detailed_check_clears(
    db: psycopg.Connection[Any], data: dict[str, Any]
) -> None:
    """Whatever one member is changed to, the fast check never clears an update with a problem."""
    if plainly_valid(db, data):
        row = db.execute("SELECT outbox.update_problems(%s)", [Jsonb(data)]).fetchone()
        assert row == ([],)
        assert python_problems(data) == []


def sql_text_problems(db: psycopg.Connection[Any], text: str) -> list[str]:
    """outbox.validate_update's answer for the JSON ``text`` cast to jsonb by PostgreSQL."""
    row = db.execute("SELECT outbox.validate_update(%s::jsonb)", [text]).fetchone()
    assert row is not None
    return sorted(row[0])


@pytest.mark.parametrize(("case_id", "data"), AT_THE_LIMITS, ids=[c[0] for c in AT_THE_LIMITS])
def test_payload_exactly_at_a_limit_is_valid_in_sql(
    db: psycopg.Connection[Any], case_id: str, data: dict[str, Any]
) -> None:
    """A payload exactly at the size, depth or 64-bit limit passes, and normalizes like Python."""
    assert sql_problems(db, data) == []
    assert_normalizes_like_python(db, data)


@pytest.mark.parametrize("depth", [10_000])
def test_deep_payload_is_refused_without_stack_overflow(
    db: psycopg.Connection[Any], depth: int
) -> None:
    """A 10,000-deep payload that jsonb accepts gets one "$" problem, not SQLSTATE 54001."""
    text = '{"timestamp": 1512828988826, "nest": ' + "[" * depth + "]" * depth + "}"
    assert sql_text_problems(db, text) == ["$: nests objects and arrays more than 32 levels deep"]


def test_giant_integer_is_refused_by_path_like_python(db: psycopg.Connection[Any]) -> None:
    """A 5000-digit integer (which jsonb's numeric holds) is refused with Python's words."""
    text = (
        '{"timestamp": 1512828988826, "registration": {"success": true}, "n": 1' + "0" * 5000 + "}"
    )
    assert sql_text_problems(db, text) == python_problems(
        {"timestamp": 1512828988826, "registration": {"success": True}, "n": 10**5000}
    )


@pytest.mark.parametrize(
    ("case_id", "data", "path"),
    [c for c in PYTHON_ONLY_CASES if "digits" not in c[0]],
    ids=[c[0] for c in PYTHON_ONLY_CASES if "digits" not in c[0]],
)
def test_text_jsonb_cannot_hold_is_refused_at_the_cast(
    db: psycopg.Connection[Any], case_id: str, data: Any, path: str
) -> None:
    """NaN, Infinity and lone surrogates never reach the function: the jsonb cast refuses them."""
    with pytest.raises(psycopg.errors.InvalidTextRepresentation):
        db.execute("SELECT outbox.validate_update(%s::jsonb)", [json.dumps(data)])


@pytest.mark.parametrize("spelling", ["1e12", "1.0e12", "1E+12", "0.1e13", "1000000000000"])
def test_exponent_is_gone_before_the_function_runs(
    db: psycopg.Connection[Any], spelling: str
) -> None:
    """jsonb stores any spelling of 10^12 as 1000000000000, a valid millisecond timestamp."""
    text = '{"timestamp": ' + spelling + ', "registration": {"success": true}}'
    row = db.execute("SELECT (%s::jsonb -> 'timestamp')::text", [text]).fetchone()
    assert row == ("1000000000000",)
    assert sql_text_problems(db, text) == []


@pytest.mark.parametrize("spelling", ["1000000000000.0", "1.0000000000000e12"])
def test_stored_fraction_is_not_an_integer(db: psycopg.Connection[Any], spelling: str) -> None:
    """A number whose stored text keeps a fraction is refused as a timestamp, as in Python."""
    text = '{"timestamp": ' + spelling + ', "registration": {"success": true}}'
    assert sql_text_problems(db, text) == ["timestamp: must be an integer"]
