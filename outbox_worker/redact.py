"""Mask personal data in registration payloads and free text, for display and logs. No I/O.

``mask_payload`` walks any JSON value and masks the fields that identify a person wherever they
appear (email, username, telephone, name/givenName/familyName/addresseeName, ipAddress,
userAgent, passwordHashed, and every field of a ``location``/``homeLocation`` but its country),
keeping the shape and everything else (ids, success flags, timestamps, reasons). ``mask_text``
masks emails, IP addresses and international phone numbers inside free text such as Ravelin's
error messages. Masks keep just enough to recognise a value: ``j***@e***.com``,
``+44*******12``, ``81.152.*.*``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any, Final

MASK: Final = "***"

_EMAIL: Final = re.compile(r"[\w.+%-]+@[\w-]+(?:\.[\w-]+)+")
_IPV4: Final = re.compile(r"(?<![\d.])(\d{1,3})\.(\d{1,3})\.\d{1,3}\.\d{1,3}(?![\d.])")
_IPV6: Final = re.compile(r"(?<![\w:])[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![\w:])")
_PHONE: Final = re.compile(r"\+\d[\d ()-]{6,}\d")


def _normal(key: str) -> str:
    return key.replace("_", "").lower()


def mask_email(value: str) -> str:
    """'john.smith@example.co.uk' -> 'j***@e***.uk'."""
    local, at, domain = value.rpartition("@")
    if not at:
        return mask_initial(value)
    labels = domain.split(".")
    tld = f".{labels[-1]}" if len(labels) > 1 else ""
    return f"{local[:1]}{MASK}@{domain[:1]}{MASK}{tld}"


def mask_telephone(value: str) -> str:
    """'+441234567812' -> '+44********12': country code and last two digits kept."""
    keep_head = 3 if value.startswith("+") else 1
    if len(value) <= keep_head + 2:
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


def mask_initial(value: str) -> str:
    """'Smith' -> 'S***': the first character only."""
    return f"{value[:1]}{MASK}" if value else value


def mask_user_agent(value: str) -> str:
    """'Mozilla/5.0 (iPhone; ...) ...' -> 'Mozilla/5.0 ***': the product token only."""
    head = value.split(" ", 1)[0]
    return f"{head} {MASK}" if " " in value else MASK


def mask_hidden(value: str) -> str:
    """Hide a value entirely."""
    return MASK


_BY_KEY: Final[dict[str, Callable[[str], str]]] = {
    "email": mask_email,
    "username": mask_initial,
    "telephone": mask_telephone,
    "name": mask_initial,
    "givenname": mask_initial,
    "familyname": mask_initial,
    "addresseename": mask_initial,
    "ipaddress": mask_ip,
    "useragent": mask_user_agent,
    # A sha256 of a password is still guessable for weak passwords.
    "passwordhashed": mask_hidden,
}
_LOCATIONS: Final = frozenset({"location", "homelocation"})
# A location's country is coarse enough to keep; its coordinates and address are not.
_LOCATION_KEEP: Final = frozenset({"country"})
# `name` under these objects names a thing, not a person.
_NOT_A_PERSON: Final = frozenset({"app"})


def mask_text(text: str) -> str:
    """Mask emails, IP addresses and +international phone numbers inside free text."""
    text = _EMAIL.sub(lambda m: mask_email(m.group(0)), text)
    text = _IPV4.sub(lambda m: f"{m.group(1)}.{m.group(2)}.*.*", text)
    text = _IPV6.sub(lambda m: mask_ip(m.group(0)) if _is_ip(m.group(0)) else m.group(0), text)
    return _PHONE.sub(lambda m: mask_telephone(m.group(0)), text)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def mask_payload(value: Any) -> Any:
    """Return a copy of a JSON value with personal data masked; the shape stays the same."""
    return _walk(value, parent=None)


def _walk(value: Any, parent: str | None) -> Any:
    if isinstance(value, dict):
        return {key: _field(key, item, parent) for key, item in value.items()}
    if isinstance(value, list):
        return [_walk(item, parent) for item in value]
    if isinstance(value, str):
        return mask_text(value)
    return value


def _field(key: str, value: Any, parent: str | None) -> Any:
    normal = _normal(key)
    if normal in _LOCATIONS:
        return _mask_location(value)
    masker = _BY_KEY.get(normal)
    if masker is None or (normal == "name" and parent in _NOT_A_PERSON):
        return _walk(value, parent=normal)
    return _mask_leaves(value, masker)


def _mask_location(value: Any) -> Any:
    if not isinstance(value, dict):
        return _mask_leaves(value, mask_hidden)
    return {
        key: item if _normal(key) in _LOCATION_KEEP else _mask_leaves(item, _address_mask)
        for key, item in value.items()
    }


def _address_mask(value: str) -> str:
    return mask_initial(value) if len(value) > 3 else MASK


def _mask_leaves(value: Any, masker: Callable[[str], str]) -> Any:
    """Mask every scalar under a personal field (numbers and booleans too, as text)."""
    if isinstance(value, dict):
        return {key: _mask_leaves(item, masker) for key, item in value.items()}
    if isinstance(value, list):
        return [_mask_leaves(item, masker) for item in value]
    if value is None:
        return None
    if isinstance(value, str):
        return masker(value)
    return MASK
