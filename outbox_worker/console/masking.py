"""What the console shows of a message: personal data masked by the CLI's rules (outbox_worker.pii).

Payloads by the allow-list; Ravelin's answer, the attempt history, the last error and the dedup
key as free text, with the message's own payload values masked wherever they are quoted back.
``reveal`` shows everything as stored: only for an admin on a console started with --show-pii.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from outbox_worker.pii import mask_answer, mask_payload, mask_text
from outbox_worker.quoted import QuotedValues
from outbox_worker.store.operations import DeadLetter, MessageDetail


@dataclass(frozen=True, slots=True)
class Shown:
    """The parts of a message a page shows, masked or revealed."""

    payload: Any
    dedup_key: str | None
    last_error: str | None
    last_response: Any
    history: list[Any]


def _known(payload: Any) -> QuotedValues:
    """The payload's values, which an endpoint's text may quote back (as the CLI finds them)."""
    return QuotedValues.of_payload(payload)


def one_line(text: str | None) -> str:
    """Free text on one line (newlines and runs of spaces folded)."""
    return " ".join(text.split()) if text else ""


def shown_detail(m: MessageDetail, *, reveal: bool) -> Shown:
    """A message's detail as the page shows it."""
    if reveal:
        return Shown(m.payload, m.dedup_key, m.last_error, m.last_response, m.history)
    known = _known(m.payload)
    return Shown(
        payload=mask_payload(m.payload),
        dedup_key=None if m.dedup_key is None else mask_text(m.dedup_key),
        last_error=None if m.last_error is None else mask_text(one_line(m.last_error), known),
        last_response=mask_answer(m.last_response, known),
        history=list(mask_answer(m.history, known)),
    )


def shown_reason(row: DeadLetter) -> str:
    """A dead letter's last error, masked, on one line."""
    return mask_text(one_line(row.last_error), _known(row.payload))


def shown_key(key: str | None) -> str:
    """A dedup key, masked as free text (it often holds an email)."""
    return "" if key is None else mask_text(key)


def subject(row: DeadLetter) -> str:
    """Whom a message is about, from allowed fields only: its customer or supplier id."""
    payload = row.payload
    if not isinstance(payload, dict):
        return ""
    for part, key in (("customer", "customerId"), ("supplier", "supplierId")):
        section = payload.get(part)
        value = section.get(key) if isinstance(section, dict) else None
        if isinstance(value, str | int):
            # An allowed key, shown as mask_payload shows it: as free text, masked by pattern.
            return f"{part} {mask_text(str(value))}"
    return ""
