"""The whole-body scan behind ``payload``: one walk over the raw input before the model sees it.

It applies the rules that look at every value (plaintext passwords, NUL characters, lone
surrogates, non-finite numbers, 64-bit integers) and measures the JSON text, so the limits of
``outbox_worker.payload.limits`` are enforced before anything recursive runs. Its SQL twin is
``migrations/versions/sql/0002_bounded_input.sql``; the messages live in ``validation``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from json.encoder import encode_basestring
from typing import Any

from outbox_worker.errors import FieldError, InvalidUpdate
from outbox_worker.payload.limits import MAX_NESTING_DEPTH, MAX_PAYLOAD_BYTES
from outbox_worker.payload.validation import (
    MAX_INT64,
    MIN_EPOCH_MS,
    MIN_INT64,
    MSG_BOTH,
    MSG_INT64,
    MSG_NOT_FINITE,
    MSG_NUL,
    MSG_PLAINTEXT,
    MSG_SURROGATE,
    MSG_TOO_DEEP,
    msg_too_large,
    stored_integer,
)


def _present(data: Mapping[str, Any], key: str) -> bool:
    return data.get(key) is not None


def raw_rule_errors(data: Mapping[str, Any]) -> list[FieldError]:
    """Rules that look at the raw input as a whole: plaintext passwords, NUL characters, lone
    surrogates, non-finite numbers, 64-bit integers, customer with supplier.

    Raises InvalidUpdate with that one problem at "$" for an update past a limit (JSON text size,
    then nesting depth), as the SQL twin does, before any other rule looks at it.
    """
    scan = _Scan()
    size = scan.value(data, "", 0)
    if size > MAX_PAYLOAD_BYTES:
        raise InvalidUpdate([FieldError("$", msg_too_large(size))])
    if scan.too_deep:
        raise InvalidUpdate([FieldError("$", MSG_TOO_DEEP)])
    errors = list(dict.fromkeys(scan.errors))  # a bad member name and value: one problem
    if _present(data, "customer") and _present(data, "supplier"):
        errors.append(FieldError("supplier", MSG_BOTH))
    return errors


_UNPRINTABLE = re.compile("[\x00\ud800-\udfff]")


def _printable(path: str) -> str:
    """The path with NUL and lone surrogates written as JSON escapes, so it can be logged."""
    return _UNPRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", path)


class _Scan:
    """One walk over the raw input: per-value rule errors and the size of its JSON text.

    The size is counted as PostgreSQL writes jsonb (``payload::text``: ", " and ": " between
    members, exponents written out), so it is the byte count the SQL twin measures. The walk
    recurses only to the depth limit; deeper values are measured by ``_deep_size`` without
    recursion.
    """

    __slots__ = ("errors", "too_deep")

    def __init__(self) -> None:
        self.errors: list[FieldError] = []
        self.too_deep = False

    def fail(self, path: str, message: str) -> None:
        """Record one problem at ``path``."""
        self.errors.append(FieldError(_printable(path), message))

    def value(self, value: object, path: str, level: int) -> int:
        """Check ``value`` at ``path`` (nested ``level`` deep) and return its JSON text size."""
        # Exact types first: JSON-shaped input is almost all str and dict, and an isinstance
        # check against the Mapping ABC costs several times a type comparison.
        if type(value) is str:
            return self.text(value, path)
        if type(value) is dict and level < MAX_NESTING_DEPTH:
            return self.container(value, path, level)
        if isinstance(value, str):
            return self.text(value, path)
        if isinstance(value, Mapping | list | tuple):
            if level >= MAX_NESTING_DEPTH:
                self.too_deep = True
                return _deep_size(value)
            return self.container(value, path, level)
        if value is None or isinstance(value, bool):
            return 4 if value is not False else 5
        if isinstance(value, int | float):
            return self.number(value, path)
        if isinstance(value, datetime):
            return len(str(MIN_EPOCH_MS))  # stored as epoch milliseconds
        return len(str(value)) + 2  # pydantic writes other Python values as strings

    def container(
        self, value: Mapping[Any, Any] | list[Any] | tuple[Any, ...], path: str, level: int
    ) -> int:
        """Check every member or element and return the object's or array's JSON text size."""
        size = 2 + 2 * max(len(value) - 1, 0)  # brackets, ", " separators
        if isinstance(value, Mapping):
            prefix = f"{path}." if path else ""
            for key, child in value.items():
                name = key if type(key) is str else str(key)
                child_path = prefix + name
                if name == "password" and isinstance(child, str):
                    self.fail(child_path, MSG_PLAINTEXT)
                # The common leaves are measured inline: a method call per member and value would
                # cost more than its check (escape-free ASCII text is its length plus quotes).
                if name.isascii() and name.isprintable() and '"' not in name and "\\" not in name:
                    size += len(name) + 4  # quoted, then ": "
                else:
                    size += self.text(name, child_path) + 2
                kind = type(child)
                if kind is str and child.isascii() and child.isprintable() and '"' not in child:
                    size += self.text(child, child_path) if "\\" in child else len(child) + 2
                elif kind is int and MIN_INT64 <= child <= MAX_INT64:
                    size += len(str(child))
                elif kind is bool:
                    size += 4 if child else 5
                else:
                    size += self.value(child, child_path, level + 1)
        else:
            for index, child in enumerate(value):
                size += self.value(child, f"{path}[{index}]", level + 1)
        return size

    def text(self, text: str, path: str) -> int:
        """Check a string or member name at ``path`` and return its quoted JSON size."""
        if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
            return len(text) + 2  # nothing to escape: the common case, without encoding
        quoted = encode_basestring(text)
        if "\x00" in text:
            self.fail(path, MSG_NUL)
        if text.isascii():
            return len(quoted)
        try:
            return len(quoted.encode("utf-8"))
        except UnicodeEncodeError:
            self.fail(path, MSG_SURROGATE)
            return len(quoted.encode("utf-8", "surrogatepass"))

    def number(self, number: float, path: str) -> int:
        """Check a number at ``path`` and return the size of its stored JSON text."""
        if isinstance(number, float) and not math.isfinite(number):
            self.fail(path, MSG_NOT_FINITE)
            return len(repr(number))
        integer = stored_integer(number)
        if integer is None:
            # jsonb writes small exponents out (1e-05 -> 0.00001) and has no negative zero.
            written = repr(number)
            return len(written) if "e" not in written and number else len(_plain(written))
        if not MIN_INT64 <= integer <= MAX_INT64:
            self.fail(path, MSG_INT64)
            return _digits(integer)
        return len(str(integer))


def _plain(written: str) -> str:
    """A float's repr as jsonb writes it: no exponent, no minus sign on zero."""
    text = format(Decimal(written), "f")
    return text.removeprefix("-") if Decimal(written) == 0 else text


def _digits(integer: int) -> int:
    """Characters of ``str(integer)``, also past Python's 4300-digit conversion limit."""
    count = max(int(abs(integer).bit_length() * 0.30102999566398120), 1)
    while 10**count <= abs(integer):
        count += 1
    while count > 1 and 10 ** (count - 1) > abs(integer):
        count -= 1
    return count + (integer < 0)


def _deep_size(root: object) -> int:
    """The JSON text size of a value nested past the depth limit, walked without recursion.

    Stops counting once past the size limit, so a self-containing list ends too.
    """
    size = 0
    stack = [root]
    while stack and size <= MAX_PAYLOAD_BYTES:
        value = stack.pop()
        if isinstance(value, Mapping):
            size += 2 + 2 * max(len(value) - 1, 0) + 4 * len(value)
            size += sum(
                len(encode_basestring(str(k)).encode("utf-8", "surrogatepass")) - 2 for k in value
            )
            stack.extend(value.values())
        elif isinstance(value, list | tuple):
            size += 2 + 2 * max(len(value) - 1, 0)
            stack.extend(value)
        else:
            size += _Scan().value(value, "", 0)
    return size
