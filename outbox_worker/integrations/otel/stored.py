"""The trace context a row stores (revision 0009), parsed as hostile text: another service may
have written it. What is not W3C Trace Context is ignored (the attempt starts a trace of its
own), never trusted, never logged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from outbox_worker.models import Message

TRACEPARENT: Final = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
# W3C Trace Context's list-member grammar (as opentelemetry-api checks it), so the API never
# rejects a value here, and never logs one.
_KEY: Final = r"(?:[a-z][_0-9a-z\-*/]{0,255}|[a-z0-9][_0-9a-z\-*/]{0,240}@[a-z][_0-9a-z\-*/]{0,13})"
_VALUE: Final = r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
TRACESTATE: Final = re.compile(f"{_KEY}={_VALUE}(?:,{_KEY}={_VALUE}){{0,31}}")
_MAX_TRACESTATE: Final = 512
_NO_TRACE: Final = "0" * 32
_NO_SPAN: Final = "0" * 16
UNSAMPLED: Final = frozenset("02468ace")
"""The last hex digit of trace flags whose "sampled" bit (0x01) is clear."""


@dataclass(frozen=True, slots=True)
class Parent:
    """The producer's span, from a row's stored trace context (all of it checked)."""

    trace: str  # 32 lowercase hex digits, not all zero
    span: str  # 16 lowercase hex digits, not all zero
    sampled: bool
    tracestate: str | None  # W3C list members, or None (absent or refused)


def stored_parent(message: Message) -> Parent | None:
    """The span that enqueued ``message``, or None when the row has no valid trace context."""
    stored = message.traceparent
    if stored is None or not well_formed(stored):
        return None
    sampled = stored[-1] not in UNSAMPLED
    return Parent(stored[3:35], stored[36:52], sampled, valid_state(message.tracestate))


def well_formed(stored: str) -> bool:
    """A W3C traceparent of a version that can be read, whose ids are not all zero: its trace
    id is then ``stored[3:35]``, its span id ``stored[36:52]``."""
    return (
        TRACEPARENT.fullmatch(stored) is not None
        and stored[:2] != "ff"
        and stored[3:35] != _NO_TRACE
        and stored[36:52] != _NO_SPAN
    )


def valid_state(state: str | None) -> str | None:
    """``state`` when it is a W3C tracestate of at most 512 characters, else None."""
    if state is None or len(state) > _MAX_TRACESTATE or not TRACESTATE.fullmatch(state):
        return None
    if "," in state:  # a key twice: the API would drop the whole header
        keys = [member.partition("=")[0] for member in state.split(",")]
        if len(set(keys)) != len(keys):
            return None
    return state
