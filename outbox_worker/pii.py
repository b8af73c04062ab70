"""Mask personal data for operators and logs: payloads by allow-list, free text by pattern. No I/O.

Payloads (``mask_payload``): every string and number is masked unless its key is on
``ALLOWED_KEYS``, a short list of fields that identify a message without identifying a person.
Keys are compared in lower case without ``_`` or ``-``, so ``customerId`` and ``customer_id`` are
one key. Booleans and nulls are kept (one bit says nothing about a person); the shape is kept.

    ids         customerId, supplierId, deviceId, groupId, traceId
    timestamps  timestamp, registrationTime, emailVerifiedTime, telephoneVerifiedTime, at
    enums       success, failureReason, status, platform
    countries   country, telephoneCountry

Allowed strings still go through ``mask_text``: an id is often an email (``customerId``), and a
pattern-shaped value is masked wherever it sits. A few personal keys keep a hint instead of
``***`` (an email's first letters and top-level domain, a phone's country code and last two
digits, an IP's first two octets), enough to tell two messages apart.

Free text (``mask_text``): Ravelin's error messages, the last answer, the attempt history, dedup
keys and log values. Emails (with or without a dot in the domain), IPv4 (also at the end of a
sentence), IPv6 (also after a ``:``), phone numbers (with or without ``+``), API keys and
``token ...`` headers are masked, and so is any value the caller names as ``known`` (the
message's own payload values, which an error may quote back: outbox_worker.quoted says how they
are found). Known values are masked first and whole, so a quoted email becomes ``***`` rather
than a hint: two customers' answers then read the same, and ``stats`` counts them as one reason.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Collection, Iterator
from typing import Any, Final

from outbox_worker.quoted import MASK as MASK  # one mask everywhere; importers take it from here
from outbox_worker.quoted import QuotedValues, payload_texts

Known = Collection[str] | QuotedValues
"""A message's own values: as text, or already prepared (``QuotedValues``) for many texts."""

ALLOWED_KEYS: Final = frozenset(
    {
        # ids an operator needs to find a message
        "customerid", "supplierid", "deviceid", "groupid", "traceid",
        # timestamps
        "timestamp", "registrationtime", "emailverifiedtime", "telephoneverifiedtime", "at",
        # enums
        "success", "failurereason", "status", "platform",
        # country codes
        "country", "telephonecountry",
    }
)  # fmt: skip

_EMAIL: Final = re.compile(r"[\w.+%-]+@[\w-]+(?:\.[\w-]+)*")
# An IPv4 address; a dot after it may end the sentence.
_IPV4: Final = re.compile(r"(?<![\d.])(\d{1,3})\.(\d{1,3})\.\d{1,3}\.\d{1,3}(?!\d|\.\d)")
# Runs that may hold an IPv6 address; "ip:2001:db8::1" is one run, so prefixes are tried off.
_IPV6_RUN: Final = re.compile(r"[0-9A-Za-z:.%]*:[0-9A-Za-z:.%]*:[0-9A-Za-z:.%]*")
_PHONE_PLUS: Final = re.compile(r"\+\d[\d ()-]{6,}\d")
# Digits grouped by spaces, dashes, dots or brackets; judged by digit count in _mask_phone.
_PHONE: Final = re.compile(r"(?<![\w+.:/-])\(?\d[\d ().-]{5,}\d(?![\w:-]|\.\d)")
_DATE: Final = re.compile(r"\d{4}-\d{2}-\d{2}")
_SECRET: Final = re.compile(r"(token\s+|sk_(?:live|test)_)[A-Za-z0-9_\-]+", re.IGNORECASE)


def normal_key(key: str) -> str:
    """A key as the allow-list spells it: lower case, without '_' or '-'."""
    return key.replace("_", "").replace("-", "").lower()


def mask_email(value: str) -> str:
    """'john.smith@example.co.uk' -> 'j***@e***.uk'."""
    local, at, domain = value.rpartition("@")
    if not at:
        return MASK
    labels = domain.split(".")
    tld = f".{labels[-1]}" if len(labels) > 1 else ""
    return f"{local[:1]}{MASK}@{domain[:1]}{MASK}{tld}"


def mask_telephone(value: str) -> str:
    """'+441234567812' -> '+44********12': country code and last two digits kept."""
    keep_head = 3 if value.startswith("+") else 0
    if len(value) <= keep_head + 4:
        return MASK
    hidden = len(value) - keep_head - 2
    return f"{value[:keep_head]}{'*' * hidden}{value[-2:]}"


def mask_ip(value: str) -> str:
    """'81.152.10.20' -> '81.152.*.*'; IPv6 keeps its first two groups."""
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return MASK
    if address.version == 4:
        first, second, *_ = str(address).split(".")
        return f"{first}.{second}.*.*"
    groups = address.exploded.split(":")
    return f"{groups[0]}:{groups[1]}:*"


def _hidden(value: str) -> str:
    return MASK


# Personal keys whose mask keeps a hint; every other key not allowed becomes ***.
_HINTS: Final[dict[str, Callable[[str], str]]] = {
    "email": mask_email,
    "telephone": mask_telephone,
    "ipaddress": mask_ip,
}


def mask_text(text: str, known: Known = ()) -> str:
    """Mask the ``known`` values, then emails, IPs, phone numbers and secrets inside free text."""
    if known:
        text = quoted_values(known).mask(text)
    text = _SECRET.sub(lambda m: m.group(1)[:3] + MASK, text)
    text = _EMAIL.sub(lambda m: mask_email(m.group(0)), text)
    text = _IPV6_RUN.sub(lambda m: _mask_ipv6_run(m.group(0)), text)
    text = _IPV4.sub(lambda m: f"{m.group(1)}.{m.group(2)}.*.*", text)
    text = _PHONE_PLUS.sub(lambda m: mask_telephone(m.group(0)), text)
    return _PHONE.sub(lambda m: _mask_phone(m.group(0)), text)


def _mask_ipv6_run(run: str) -> str:
    """Mask the IPv6 address a run ends with, whatever label and colon come before it."""
    body = run.rstrip(".")
    tail = run[len(body) :]
    for start in [0, *(i + 1 for i, ch in enumerate(body) if ch == ":")]:
        candidate = body[start:]
        if candidate.count(":") >= 2 and _is_ip(candidate.split("%")[0]):
            return f"{body[:start]}{mask_ip(candidate.split('%')[0])}{tail}"
    return run


def _mask_phone(text: str) -> str:
    """Mask a run of 7 to 15 digits (a phone number in any national format), not a date."""
    digits = sum(ch.isdigit() for ch in text)
    if not 7 <= digits <= 15 or _DATE.fullmatch(text.strip("()")):
        return text
    return mask_telephone(text)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def mask_payload(value: Any) -> Any:
    """Return a copy of a payload with every string and number masked unless its key is allowed."""
    return _walk(value, key="")


def _walk(value: Any, key: str) -> Any:
    if isinstance(value, dict):
        return {k: _walk(item, normal_key(str(k))) for k, item in value.items()}
    if isinstance(value, list):
        return [_walk(item, key) for item in value]
    if value is None or isinstance(value, bool):
        return value
    if key in ALLOWED_KEYS:
        return mask_text(value) if isinstance(value, str) else value
    if isinstance(value, str):
        return _HINTS.get(key, _hidden)(value)
    return MASK


def quoted_values(known: Known) -> QuotedValues:
    """``known`` prepared for masking (done once for the many strings of an answer)."""
    return known if isinstance(known, QuotedValues) else QuotedValues.of(known)


def mask_answer(value: Any, known: Known = ()) -> Any:
    """Mask an endpoint's answer or history: every string is free text; numbers are kept,
    unless one is a ``known`` value quoted back (an id, a timestamp, a coordinate)."""
    if not known:
        return _mask_answer(value, None)
    # Prepared and narrowed once for the whole answer, not once for each of its strings.
    return _mask_answer(value, quoted_values(known).narrowed(" ".join(_texts(value))))


def _mask_answer(value: Any, known: QuotedValues | None) -> Any:
    if isinstance(value, dict):
        return {k: _mask_answer(item, known) for k, item in value.items()}
    if isinstance(value, list):
        return [_mask_answer(item, known) for item in value]
    if isinstance(value, str):
        return mask_text(value, known or ())
    if known is not None and isinstance(value, int | float) and not isinstance(value, bool):
        text = json.dumps(value)  # a bool is never a value: one bit says nothing about a person
        return MASK if known.mask(text) != text else value
    return value


def _texts(value: Any) -> Iterator[str]:
    """Every string of an answer, and its numbers as text."""
    if isinstance(value, dict):
        for item in value.values():
            yield from _texts(item)
    elif isinstance(value, list):
        for item in value:
            yield from _texts(item)
    elif isinstance(value, str):
        yield value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield json.dumps(value)


def payload_values(value: Any) -> set[str]:
    """Every value of a payload an error may quote back, as text (outbox_worker.quoted).

    Every string under any key, allowed ones too (a reason quoting a customer id would be one
    ``stats`` line per customer), and numbers of 5 or more characters.
    """
    return set(payload_texts(value))
