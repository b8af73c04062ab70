"""A message's own values masked wherever an endpoint's text quotes them (outbox_worker.quoted)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outbox_worker.quoted import MASK, MIN_CHARS, WORD_BELOW, QuotedValues, long_enough
from tests.strategies import valid_updates

PAYLOAD: dict[str, Any] = {
    "registration": {"success": False, "username": "maria.l", "app": {"platform": "ios"}},
    "customer": {
        "customerId": "cust-1042",
        "name": "Maria Lindqvist",
        "givenName": "Zoë Ñúñez",
        "familyName": "山田 太郎",
        "email": "maria@lindqvist.example",
        "telephone": "+46701234567",
        "location": {"latitude": 59.329323, "city": "Мария Линдквист", "country": "SWE"},
        "loyalty": {"card": 86753091, "tier": "Eva", "points": 400, "flag": "no"},
        "nickname": "太郎",
    },
}
KNOWN = QuotedValues.of_payload(PAYLOAD)


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("customer 'Maria Lindqvist' is not valid", "customer '***' is not valid"),
        ("customer 'MARIA LINDQVIST' is not valid", "customer '***' is not valid"),
        ("name Zoë Ñúñez refused", "name *** refused"),
        ('{"name": "Zo\\u00eb \\u00d1\\u00fa\\u00f1ez"}', '{"name": "***"}'),
        ('{"name": "Zo\\u00EB \\u00D1\\u00FA\\u00F1EZ"}', '{"name": "***"}'),
        ("family 山田 太郎 unknown", "family *** unknown"),
        ('{"f": "\\u5c71\\u7530 \\u592a\\u90ce"}', '{"f": "***"}'),
        ("nickname 太郎様", "nickname ***様"),
        ("city мария линдквист", "city ***"),
        ("<maria@lindqvist.example> taken", "<***> taken"),
        ("phone +46701234567 taken", "phone *** taken"),
        ("id cust-1042: Maria  Lindqvist", "id ***: ***"),
        ('said \\"Maria Lindqvist\\" twice', 'said \\"***\\" twice'),
        ("card 86753091 at 59.329323", "card *** at ***"),
        ("tier 'Eva' in evaluation", "tier '***' in evaluation"),
        ("platform ios; ratios kept", "platform ***; ratios kept"),
        ("400 Bad Request: no SWE", "400 Bad Request: no ***"),
        ("customer Maria Lind…", "customer ***…"),
        ("nothing to see here", "nothing to see here"),
    ],
)
def test_quoted_values_are_masked(text: str, masked: str) -> None:
    """Each way an answer may quote a payload value is masked; the words around it stay."""
    assert KNOWN.mask(text) == masked


def test_short_values_and_short_numbers_are_not_values() -> None:
    """A value below the minimum (1-2 letters, numbers under 5 characters) masks nothing."""
    assert not long_enough("no")
    assert not long_enough("a")
    assert long_enough("Eva")
    assert long_enough("太郎")
    assert not long_enough("太")
    assert KNOWN.mask("no points: 400") == "no points: 400"


def test_a_body_that_does_not_parse_has_no_values() -> None:
    """Values come only from a body that parses; anything else masks nothing."""
    assert QuotedValues.of_body(b"not json").mask("Maria Lindqvist") == "Maria Lindqvist"
    body = json.dumps(PAYLOAD).encode()
    assert QuotedValues.of_body(body).mask("Maria Lindqvist") == MASK


def test_answers_that_differ_only_by_quoted_values_read_the_same() -> None:
    """Two customers' answers with the same reason mask to one text (one line in stats)."""
    other = QuotedValues.of_payload({"customer": {"name": "Jon Snow", "customerId": "c-9"}})
    template = "customer {id}: name '{name}' is not valid"
    first = KNOWN.mask(template.format(id="cust-1042", name="Maria Lindqvist"))
    second = other.mask(template.format(id="c-9", name="Jon Snow"))
    assert first == second == "customer ***: name '***' is not valid"


# --- Properties ----------------------------------------------------------------------------

_chars = st.characters(exclude_categories=["Cs"], exclude_characters="\x00*")
_values = st.text(_chars, min_size=1, max_size=24)
_payloads = st.recursive(
    st.one_of(_values, st.integers(), st.floats(allow_nan=False, allow_infinity=False)),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_values, inner, max_size=4),
    max_leaves=12,
)
_SPELLINGS = (
    lambda v: v,
    str.upper,
    str.lower,
    str.swapcase,
    lambda v: json.dumps(v)[1:-1],
    lambda v: json.dumps(v, ensure_ascii=False)[1:-1],
    lambda v: f"'{v}'",
)


def _texts(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [t for item in value.values() for t in _texts(item)]
    if isinstance(value, list):
        return [t for item in value for t in _texts(item)]
    if isinstance(value, str):
        return [value]
    return [] if isinstance(value, bool) or value is None else [json.dumps(value)]


def _one_line(value: str) -> str:
    return " ".join(value.split())


@st.composite
def _quoting(draw: st.DrawFn, payload: Any) -> str:
    """Endpoint text that quotes some of ``payload``'s values, spelt in several ways."""
    values = _texts(payload)
    parts: list[str] = []
    for _ in range(draw(st.integers(0, 6))):
        quote: bool = draw(st.booleans())
        if values and quote:
            spell = draw(st.sampled_from(_SPELLINGS))
            parts.append(spell(draw(st.sampled_from(values))))
        else:
            parts.append(draw(st.text(_chars, max_size=12)))
    return draw(st.sampled_from([" ", "", ": ", "<"])).join(parts)


def _survivors(payload: Any, masked: str) -> list[str]:
    """The payload's values of WORD_BELOW or more characters still readable in ``masked``."""
    folded = masked.casefold()
    found = []
    for value in _texts(payload):
        line = _one_line(value)
        if len(line) >= WORD_BELOW and long_enough(line):
            spellings = {line, json.dumps(line)[1:-1], json.dumps(line, ensure_ascii=False)[1:-1]}
            found += [s for s in spellings if s.casefold() in folded]
    return found


@given(st.data(), _payloads)
@settings(max_examples=300, deadline=None)
def test_no_long_value_survives_anywhere(data: st.DataObject, payload: Any) -> None:
    """No value of 6 or more characters survives, however the text spells or places it."""
    text = data.draw(_quoting(payload))
    masked = QuotedValues.of_payload(payload).mask(text)
    assert _survivors(payload, masked) == []


@given(st.data(), valid_updates())
@settings(max_examples=100, deadline=None)
def test_no_value_of_a_registration_update_survives(data: st.DataObject, update: Any) -> None:
    """The same holds for registration updates as producers write them, unknown fields too."""
    text = data.draw(_quoting(update))
    assert _survivors(update, QuotedValues.of_payload(update).mask(text)) == []


_words = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyzÀÉÎõü"), min_size=MIN_CHARS, max_size=5)


@given(st.lists(_words, min_size=1, max_size=5), st.data())
@settings(max_examples=200, deadline=None)
def test_no_short_value_survives_as_a_word(values: list[str], data: st.DataObject) -> None:
    """A value of 3 to 5 characters quoted as a word (between non-letters) never survives."""
    filler = st.text(st.sampled_from(" .,:;'\"<>()[]-"), min_size=1, max_size=3)
    parts = [data.draw(filler)]
    for value in data.draw(st.lists(st.sampled_from(values), min_size=1, max_size=6)):
        parts += [data.draw(st.sampled_from(_SPELLINGS[:4]))(value), data.draw(filler)]
    masked = QuotedValues.of(values).mask("".join(parts))
    for value in values:
        as_word = rf"(?<![a-z0-9]){re.escape(value.casefold())}(?![a-z0-9])"
        assert re.search(as_word, masked.casefold()) is None, (value, masked)
