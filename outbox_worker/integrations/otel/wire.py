"""OTLP's protobuf encoding of the worker's attempt spans, written by hand (no SDK, no protobuf).

An ``ExportTraceServiceRequest`` of one ``ResourceSpans`` with one ``ScopeSpans``. What every
span shares is encoded once, when the worker starts (the resource, the scope, the span's name and
kind, the constant attributes, the outcomes) or once a batch per claim (its "outbox.claimed"
event); a span then costs the packing of its ids, times and the few values of its own: the SDK's
``encode_spans`` built ~47 µs of protobuf objects a span (bench/README.md "Tracing"). The
SDK's encoding of the same records (``readable.readable_spans``) is the test oracle: both decode
to equal messages (tests/unit/test_otel_wire.py). Pure: no I/O.

Field numbers from opentelemetry-proto's trace.proto, common.proto and trace_service.proto.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from outbox_worker.integrations.otel.lean import Attempt

_DOUBLE: Final = struct.Struct("<d")
_FIXED64: Final = struct.Struct("<Q")
_FIXED32: Final = struct.Struct("<I")

# Span.kind SPAN_KIND_CONSUMER; Status.code STATUS_CODE_ERROR; SpanFlags, as the SDK sets them.
_CONSUMER: Final = 5
_STATUS_UNSET: Final = b"\x7a\x00"  # Span.status (15): an empty Status, as the SDK sends it
_STATUS_ERROR: Final = b"\x7a\x02\x18\x02"  # Status.code (3) = 2
_FLAGS_LOCAL: Final = b"\x85\x01" + _FIXED32.pack(0x100)  # Span.flags (16, fixed32): no parent
_FLAGS_REMOTE: Final = b"\x85\x01" + _FIXED32.pack(0x300)  # ... a remote parent


def varint(number: int) -> bytes:
    """Protobuf's base-128 varint of a non-negative int (a negative int64 as its 10 bytes)."""
    if 0 <= number < 0x80:
        return bytes((number,))
    number &= 0xFFFF_FFFF_FFFF_FFFF
    out = bytearray()
    while number >= 0x80:
        out.append((number & 0x7F) | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)


def _len(tag: int, payload: bytes) -> bytes:
    """A length-delimited field: tag byte, varint length, payload."""
    n = len(payload)
    if n < 0x80:
        return bytes((tag, n)) + payload
    return bytes((tag,)) + varint(n) + payload


def any_value(value: object) -> bytes:
    """An ``AnyValue``'s content, as the SDK's encoder types ``value``."""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return _len(0x0A, value.encode())
    if isinstance(value, int):
        return b"\x18" + varint(value)
    if isinstance(value, float):
        return b"\x21" + _DOUBLE.pack(value)
    if isinstance(value, bytes):
        return _len(0x3A, value)
    if isinstance(value, Sequence):
        values = b"".join(_len(0x0A, any_value(v)) for v in value)  # ArrayValue.values (1)
        return _len(0x2A, values)  # AnyValue.array_value (5)
    raise TypeError(f"no OTLP encoding here for a {type(value).__name__} attribute")


def key_value(key: str, value: object) -> bytes:
    """A ``KeyValue``'s content."""
    return _len(0x0A, key.encode()) + _len(0x12, any_value(value))


def attributes(tag: int, pairs: Iterable[tuple[str, object]]) -> bytes:
    """Repeated ``KeyValue`` field ``tag`` (Span 9, Event 3, Resource 1, Scope 3)."""
    return b"".join(_len(tag, key_value(k, v)) for k, v in pairs)


def _string_attribute(key: bytes, value: str) -> bytes:
    """Span.attributes (9): a KeyValue whose value is a string (``key`` already encoded)."""
    return _len(0x4A, key + _len(0x12, _len(0x0A, value.encode())))


def _int_attribute(key: bytes, value: int) -> bytes:
    return _len(0x4A, key + _len(0x12, b"\x18" + varint(value)))


def _key(name: str) -> bytes:
    return _len(0x0A, name.encode())


_MESSAGE_ID: Final = _key("messaging.message.id")
_ATTEMPT: Final = _key("outbox.attempt")
_STATUS_CODE: Final = _key("http.response.status_code")
_RETRY_IN: Final = _key("outbox.retry_in_s")
_ERROR_TYPE: Final = _key("error.type")
# Span.trace_id (1), span_id (2), [parent_span_id (4),] start_time_unix_nano (7), end_ (8).
_ROOT: Final = struct.Struct("<2s16s2s8sBQBQ")
_CHILD: Final = struct.Struct("<2s16s2s8s2s8sBQBQ")
# messaging.message.id's KeyValue up to its digits, by their count; outbox.attempt's, 1 to 99.
_MESSAGE_IDS: Final = [_string_attribute(_MESSAGE_ID, "0" * n)[: -n or None] for n in range(21)]
_ATTEMPTS: Final = [b""] + [_int_attribute(_ATTEMPT, n) for n in range(1, 100)]


class SpanWire:
    """The encoder of one worker's spans: its resource, scope and server address encoded once."""

    def __init__(
        self,
        *,
        resource: Mapping[str, object],
        resource_schema_url: str,
        scope_name: str,
        scope_version: str | None,
        server_address: str,
    ) -> None:
        encoded_resource = attributes(0x0A, resource.items())
        self._resource = _len(0x0A, encoded_resource)  # ResourceSpans.resource (1)
        if resource_schema_url:
            self._resource_schema = _len(0x1A, resource_schema_url.encode())
        else:
            self._resource_schema = b""
        scope = _len(0x0A, scope_name.encode())
        if scope_version:
            scope += _len(0x12, scope_version.encode())
        self._scope = _len(0x0A, scope)  # ScopeSpans.scope (1)
        # The span's name (5) and kind (6), and its attributes that are the same on every span
        # (after messaging.message.id and outbox.attempt, which are not).
        name_kind = _len(0x2A, b"deliver outbox") + bytes((0x30, _CONSUMER))
        self._constant = name_kind + attributes(0x4A, [
            ("messaging.system", "outbox"),
            ("messaging.destination.name", "outbox.messages"),
            ("messaging.operation.type", "process"),
            ("messaging.operation.name", "deliver"),
            ("server.address", server_address),
        ])  # fmt: skip

    def encode(self, spans: Sequence[Attempt]) -> bytes:
        """The ``ExportTraceServiceRequest`` carrying ``spans``."""
        tails: dict[object, bytes] = {}  # encoded once a batch: see _span
        encoded = [self._span(s, tails) for s in spans]
        # One join, lengths first: a request is a few hundred kB, each copy of it costs.
        scope_spans = len(self._scope) + sum(map(len, encoded))
        scope_head = b"\x12" + varint(scope_spans)  # ResourceSpans.scope_spans (2)
        resource_spans = (
            len(self._resource) + len(scope_head) + scope_spans + len(self._resource_schema)
        )
        return b"".join([
            b"\x0a", varint(resource_spans),  # ExportTraceServiceRequest.resource_spans (1)
            self._resource, scope_head, self._scope, *encoded, self._resource_schema,
        ])  # fmt: skip

    def _span(self, span: Attempt, tails: dict[object, bytes]) -> bytes:
        """ScopeSpans.spans (2): one span. Its ids, times, message id and attempt number are
        packed; the rest (its outcome, its claim's event) is the same for most spans of a
        claim, so it is encoded once a batch for each claim and outcome."""
        trace_id, span_id = bytes.fromhex(span.trace), span.span_id.to_bytes(8, "big")
        parent = span.parent
        if parent is None:
            head = _ROOT.pack(b"\x0a\x10", trace_id, b"\x12\x08", span_id,
                              0x39, span.start_ns, 0x41, span.end_ns)  # fmt: skip
        else:
            head = _CHILD.pack(b"\x0a\x10", trace_id, b"\x12\x08", span_id,
                               b"\x22\x08", bytes.fromhex(parent),
                               0x39, span.start_ns, 0x41, span.end_ns)  # fmt: skip
        message_id = b"%d" % span.message_id  # a bigint's digits: at most 20
        attempt = span.attempt
        if span.error_type is None and span.retry_in_s is None and not span.events:
            key = (span.claim, span.status, span.outcome, parent is None, span.tracestate)
            tail = tails.get(key)
            if tail is None:
                tail = tails[key] = self._tail(span, tails)
        else:
            tail = self._tail(span, tails)
        body = b"".join((
            head,
            _MESSAGE_IDS[len(message_id)], message_id,
            _ATTEMPTS[attempt] if 0 < attempt < 100 else _int_attribute(_ATTEMPT, attempt),
            self._constant,
            tail,
        ))  # fmt: skip
        n = len(body)
        if 0x80 <= n < 0x4000:  # the usual span: 2 length bytes
            return bytes((0x12, (n & 0x7F) | 0x80, n >> 7)) + body
        return _len(0x12, body)

    def _tail(self, span: Attempt, tails: dict[object, bytes]) -> bytes:
        """What follows the span's constant attributes: flags, tracestate, the attributes of
        its outcome, its events and its status."""
        parts = [_FLAGS_LOCAL if span.parent is None else _FLAGS_REMOTE]
        if span.tracestate:
            parts.append(_len(0x1A, span.tracestate.encode()))
        if span.status is not None:
            parts.append(_int_attribute(_STATUS_CODE, span.status))
        if span.retry_in_s is not None:
            retry = b"\x21" + _DOUBLE.pack(span.retry_in_s)
            parts.append(_len(0x4A, _RETRY_IN + _len(0x12, retry)))
        if span.outcome is not None:
            parts.append(attributes(0x4A, [("outbox.outcome", span.outcome)]))
        if span.error_type is not None:
            parts.append(_string_attribute(_ERROR_TYPE, span.error_type))
        claim = span.claim
        claimed = tails.get(claim)  # the claim's event, encoded once for all its messages
        if claimed is None:
            attrs = claim.event_attributes()
            claimed = tails[claim] = _event("outbox.claimed", claim.started_ns, attrs)
        parts.append(claimed)
        parts += (_event(name, at_ns, pairs) for name, at_ns, pairs in span.events or ())
        parts.append(_STATUS_UNSET if span.error_type is None else _STATUS_ERROR)
        return b"".join(parts)


def _event(name: str, at_ns: int, pairs: Iterable[tuple[str, object]]) -> bytes:
    """Span.events (11): time (1, fixed64), name (2), attributes (3)."""
    body = b"\x09" + _FIXED64.pack(at_ns) + _len(0x12, name.encode()) + attributes(0x1A, pairs)
    return _len(0x5A, body)
