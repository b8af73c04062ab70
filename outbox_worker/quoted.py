"""A message's own values, found and masked wherever an endpoint's text quotes them back. No I/O.

Ravelin's error text may quote any value of the body it refused (``customer 'Maria Lindqvist'
is not valid``), of any field, known to us or not. Patterns (outbox_worker.pii) find only values
with a shape (emails, phones, IPs); a name has none. So every value of the message's own payload
found in such a text is masked before the text is logged, stored where summaries read it, or
shown without ``--show-pii``.

What counts as a value: every string at any depth under any key (ids and enums too: a reason
that quotes a customer id would otherwise be one ``stats`` line per customer), trimmed, with
runs of whitespace read as one space, in the value and in the text; and the text of
every number of at least ``MIN_NUMBER_CHARS`` characters (ids, timestamps, coordinates). Booleans
and null never are.

Minimum length, and why: a string of ``MIN_CHARS`` (3) characters or more, or of
``MIN_SYLLABIC_CHARS`` (2) when it holds a character of a script that writes a syllable or a
word per character (CJK, kana, Hangul: ``太郎`` is a given name). Shorter values (``a``, ``M``,
``GB``, ``no``, ``Li``) say little about a person on their own and are words of every sentence:
masking them would mask the reason itself, and the name they belong to is masked whole.
Shorter numbers are counts, statuses and years that reasons are made of (``400``, ``2026``).

Where: case-insensitively (Unicode case folding), in NFC and NFD spelling, as the value itself or
as JSON writes it inside a string (quotes and backslashes escaped, non-ASCII as ``\\uXXXX``,
``/`` as ``\\/``), anywhere in the text: in quotes, brackets or a longer sentence. A spelling
shorter than ``WORD_BELOW`` (6) characters is masked only where it stands as a word (no ASCII
letter or digit right before or after it): ``Eva`` in ``customer 'Eva'`` is masked, ``ios`` in
``ratios`` is not. A text cut at a limit ends with ``…``; a value's first ``MIN_CHARS`` or more
characters just before the cut are masked too.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final

MASK: Final = "***"
MIN_CHARS: Final = 3
MIN_SYLLABIC_CHARS: Final = 2
MIN_NUMBER_CHARS: Final = 5
WORD_BELOW: Final = 6
CUT: Final = "…"  # what outbox_worker.delivery.answers.truncate ends a shortened text with

# From the CJK radicals on: kana, CJK ideographs, Yi, Hangul syllables and their compatibility
# forms, where one or two characters are a name.
_SYLLABIC_FROM: Final = 0x2E80
_ASCII_WORD: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_SPACES: Final = re.compile(r"\s\s|[^\S ]")  # whitespace a one-line text would not have
_GRAM: Final = 3  # the length of the substrings a text is indexed by, to skip absent values fast
# Up to this many spellings, each is simply searched for; past it, a text's substrings are indexed
# first, so a payload of thousands of values costs a set lookup for each absent one.
_FEW: Final = 64
_ESCAPED: Final = frozenset('"\\/')  # characters JSON may write escaped inside a string


@dataclass(frozen=True, slots=True)
class QuotedValues:
    """The folded spellings of one message's values, ready to be found in an endpoint's text."""

    spellings: frozenset[str] = frozenset()

    @classmethod
    def of_payload(cls, payload: Any) -> QuotedValues:
        """The values of a parsed payload: its strings, and its numbers' text when long enough."""
        return cls.of(payload_texts(payload))

    @classmethod
    def of_body(cls, body: bytes) -> QuotedValues:
        """The values of a payload's JSON text (what was sent); none when it does not parse."""
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):
            return cls()
        return cls.of_payload(payload)

    @classmethod
    def of(cls, values: Iterable[str]) -> QuotedValues:
        """The spellings of these values; values below the minimum length are left out."""
        spellings: set[str] = set()
        for value in values:
            spellings.update(_spellings(value))
        return cls(frozenset(spellings))

    def narrowed(self, text: str) -> QuotedValues:
        """Only the spellings that may occur in ``text`` (or in any part of it): a payload of
        many values is then checked once against all the strings of an answer, not once each."""
        if len(self.spellings) <= _FEW:
            return self
        grams = _grams(_fold(text)[0])
        return QuotedValues(frozenset(s for s in self.spellings if s[:_GRAM] in grams))

    def mask(self, text: str) -> str:
        """``text`` with every spelling of a value in it replaced by ``***``."""
        if not self.spellings or not text:
            return text
        folded, origin = _fold(text)
        grams = _grams(folded) if len(self.spellings) > _FEW or text.endswith(CUT) else None
        present = sorted(
            (s for s in self.spellings if (grams is None or s[:_GRAM] in grams) and s in folded),
            key=len,
            reverse=True,
        )
        hidden = bytearray(len(text))
        for spelling in present:
            if len(spelling) >= WORD_BELOW:
                for start, end in _found(folded, spelling, origin):
                    hidden[start:end] = b"\x01" * (end - start)
        # A short value stands as a word also where a masked value is its neighbour, so the
        # short ones are tried again until nothing more is masked.
        short = [s for s in present if len(s) < WORD_BELOW]
        while short and _mask_words(text, folded, origin, short, hidden):
            pass
        if grams is not None and text.endswith(CUT):
            _mask_cut_value(text, folded, origin, grams, self.spellings, hidden)
        return _render(text, hidden) if any(hidden) else text


def payload_texts(value: Any) -> Iterator[str]:
    """Every string of a payload at any depth, and the text of its numbers of 5 or more chars."""
    if isinstance(value, dict):
        for item in value.values():
            yield from payload_texts(item)
    elif isinstance(value, list):
        for item in value:
            yield from payload_texts(item)
    elif isinstance(value, str):
        yield value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        text = json.dumps(value)
        if len(text) >= MIN_NUMBER_CHARS:
            yield text


def long_enough(value: str) -> bool:
    """Whether a (trimmed, one-line) value is long enough to be masked (module docstring)."""
    if len(value) >= MIN_CHARS:
        return True
    return len(value) >= MIN_SYLLABIC_CHARS and any(ord(c) >= _SYLLABIC_FROM for c in value)


def _spellings(value: str) -> set[str]:
    """The folded ways a value may be written in a text: plain, normalized, JSON-escaped."""
    one_line = " ".join(value.split())
    if not long_enough(one_line):
        return set()
    plain_ascii = one_line.isascii() and one_line.isprintable() and _ESCAPED.isdisjoint(one_line)
    if plain_ascii and one_line == value.strip():
        return {one_line.lower()}  # JSON writes it as it is, and it has one normal form
    plain = {one_line, value.strip()}
    plain |= {unicodedata.normalize(form, v) for v in plain for form in ("NFC", "NFD")}
    written = set(plain)
    for v in plain:
        for escaped in (json.dumps(v)[1:-1], json.dumps(v, ensure_ascii=False)[1:-1]):
            written |= {escaped, escaped.replace("/", "\\/")}
    return {w.casefold() for w in written if w}


def _fold(text: str) -> tuple[str, list[int]]:
    """``text`` case-folded with each run of whitespace as one space, and for each folded
    character the index of the one it came from (the last entry, past the end, is len(text)).

    Folding may lengthen a character (``ß`` -> ``ss``) or drop one (the second of two spaces);
    the map leads a match back to whole characters of the original.
    """
    folded = text.casefold()
    if len(folded) == len(text) and not _SPACES.search(text):
        return folded, list(range(len(text) + 1))
    parts: list[str] = []
    origin: list[int] = []
    for index, char in enumerate(text):
        if char.isspace():
            if parts and parts[-1] == " " and text[index - 1].isspace():
                continue
            char = " "
        piece = char.casefold()
        parts.append(piece)
        origin.extend([index] * len(piece))
    origin.append(len(text))
    return "".join(parts), origin


def _grams(folded: str) -> set[str]:
    """Every substring of up to ``_GRAM`` characters: a spelling whose head is absent is skipped."""
    return {folded[i : i + n] for n in range(1, _GRAM + 1) for i in range(len(folded) - n + 1)}


def _found(folded: str, spelling: str, origin: list[int]) -> Iterator[tuple[int, int]]:
    """Each place ``spelling`` occurs (overlaps too), as a span of the original text."""
    at = folded.find(spelling)
    while at != -1:
        yield origin[at], origin[at + len(spelling) - 1] + 1
        at = folded.find(spelling, at + 1)


def _mask_words(
    text: str, folded: str, origin: list[int], short: list[str], hidden: bytearray
) -> bool:
    """Mask the short spellings that stand as words; whether anything new was masked."""
    changed = False
    for spelling in short:
        for start, end in _found(folded, spelling, origin):
            if not all(hidden[start:end]) and _stands_alone(text, start, end, hidden):
                hidden[start:end] = b"\x01" * (end - start)
                changed = True
    return changed


def _stands_alone(text: str, start: int, end: int, hidden: bytearray) -> bool:
    before = start == 0 or hidden[start - 1] or text[start - 1] not in _ASCII_WORD
    after = end == len(text) or hidden[end] or text[end] not in _ASCII_WORD
    return bool(before and after)


def _mask_cut_value(
    text: str,
    folded: str,
    origin: list[int],
    grams: set[str],
    spellings: frozenset[str],
    hidden: bytearray,
) -> None:
    """Mask the start of a value that a cut at a limit left just before the closing ``…``."""
    end = len(folded) - len(CUT)
    for spelling in spellings:
        if spelling[:MIN_CHARS] not in grams:
            continue
        for length in range(len(spelling) - 1, MIN_CHARS - 1, -1):
            if folded.endswith(spelling[:length], 0, end):
                start = origin[end - length]
                if length >= WORD_BELOW or _stands_alone(text, start, len(text) - 1, hidden):
                    hidden[start : len(text) - 1] = b"\x01" * (len(text) - 1 - start)
                break


def _render(text: str, hidden: bytearray) -> str:
    """``text`` with each run of hidden characters written as one ``***``."""
    parts: list[str] = []
    index = 0
    while index < len(text):
        if hidden[index]:
            while index < len(text) and hidden[index]:
                index += 1
            parts.append(MASK)
        else:
            start = index
            while index < len(text) and not hidden[index]:
                index += 1
            parts.append(text[start:index])
    return "".join(parts)
