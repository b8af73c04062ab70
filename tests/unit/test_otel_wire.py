"""The hand-written OTLP encoding (integrations/otel/wire.py) against the SDK's own encoder.

The oracle: for any records the recorder can hold, the bytes ``wire`` sends decode to the very
message the SDK's ``encode_spans`` builds from the same records as SDK spans (``readable``).
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from google.protobuf.json_format import MessageToDict  # type: ignore[import-untyped]
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from outbox_worker.integrations.otel.lean import Attempt, Claim, LeanTracing
from outbox_worker.integrations.otel.readable import readable_spans
from outbox_worker.integrations.otel.spans import SdkSampling
from outbox_worker.integrations.otel.stored import TRACESTATE, valid_state
from outbox_worker.integrations.otel.wire import SpanWire, varint
from outbox_worker.models import LeaseToken, Message, MessageId

INT64 = st.integers(-(2**63), 2**63 - 1)
UINT64 = st.integers(0, 2**64 - 1)
FLOATS = st.floats(allow_nan=False)
HEX16 = st.integers(1, 2**64 - 1).map(lambda n: f"{n:016x}")
HEX32 = st.integers(1, 2**128 - 1).map(lambda n: f"{n:032x}")
TRACESTATES = st.from_regex(TRACESTATE, fullmatch=True).map(valid_state).filter(bool)
RESOURCE_VALUES = st.one_of(
    st.text(), st.booleans(), INT64, FLOATS, st.lists(st.text(), max_size=3),
    st.lists(INT64, max_size=3), st.lists(FLOATS, max_size=3),
)  # fmt: skip
TRACING = LeanTracing([], sampling=SdkSampling(ALWAYS_ON))
EVENTS = st.one_of(
    st.tuples(st.just("outbox.internal_error"), UINT64,
              st.tuples(st.tuples(st.just("exception.type"), st.text()))),
    st.tuples(st.just("outbox.circuit.closed"), UINT64, st.just(())),
    st.tuples(st.just("outbox.circuit.opened"), UINT64, st.tuples(
        st.tuples(st.just("outbox.circuit.reason"), st.text()),
        st.tuples(st.just("outbox.circuit.next_probe_in_s"), FLOATS),
    )),
    st.tuples(st.just("outbox.paced"), UINT64, st.tuples(st.tuples(st.just("outbox.waited_s"), FLOATS))),
    st.tuples(st.just("outbox.slowed_down"), UINT64,
              st.tuples(st.tuples(st.just("outbox.pause_s"), FLOATS))),
)  # fmt: skip


@st.composite
def claims(draw: st.DrawFn) -> Claim:
    """A claim with any start, batch size and duration."""
    claim = Claim(TRACING, draw(UINT64))
    claim.count = draw(INT64)
    claim.claim_ms = draw(FLOATS)
    return claim


@st.composite
def attempts(draw: st.DrawFn, claim: Claim) -> Attempt:
    """A finished attempt of ``claim``, with any values the recorder might hold."""
    attempt = Attempt.__new__(Attempt)  # not __init__: its span id is random, drawn here
    attempt.claim = claim
    attempt.message_id = MessageId(draw(INT64))
    attempt.trace = draw(HEX32)
    attempt.parent = draw(st.none() | HEX16)
    attempt.tracestate = draw(st.none() | TRACESTATES)
    attempt.span_id = draw(st.integers(1, 2**64 - 1))
    attempt.attempt = draw(INT64)
    attempt.start_ns, attempt.end_ns = draw(UINT64), draw(UINT64)
    attempt.status = draw(st.none() | INT64)
    attempt.retry_in_s = draw(st.none() | FLOATS)
    outcomes = st.sampled_from(["acknowledged", "dead_lettered", "retry", "paused", "handed_back"])
    attempt.outcome = draw(st.none() | outcomes | st.text())
    attempt.error_type = draw(st.none() | st.text())
    attempt.events = draw(st.none() | st.lists(EVENTS, max_size=4))  # type: ignore[assignment]
    return attempt


@st.composite
def batches(draw: st.DrawFn) -> list[Attempt]:
    """Spans of one to three claims, interleaved as a batch holds them."""
    shared = draw(st.lists(claims(), min_size=1, max_size=3))
    return draw(st.lists(st.sampled_from(shared).flatmap(attempts), max_size=6))


def both(
    spans: list[Attempt], resource: Resource, scope: InstrumentationScope, server: str
) -> tuple[ExportTraceServiceRequest, ExportTraceServiceRequest]:
    """``wire``'s request decoded, and the SDK's encoding of the same spans."""
    wire = SpanWire(
        resource=dict(resource.attributes),
        resource_schema_url=resource.schema_url,
        scope_name=scope.name,
        scope_version=scope.version,
        server_address=server,
    )
    ours = ExportTraceServiceRequest.FromString(wire.encode(spans))
    sdk = encode_spans(readable_spans(spans, resource=resource, scope=scope, server_address=server))
    return ours, sdk


@settings(max_examples=300, deadline=None)
@given(
    spans=batches(),
    resource=st.dictionaries(st.text(min_size=1), RESOURCE_VALUES, max_size=4),
    schema_url=st.sampled_from(["", "https://opentelemetry.io/schemas/1.26.0"]),
    version=st.none() | st.text(),
    server=st.text(),
)
def test_the_hand_encoding_is_the_sdks(
    spans: list[Attempt], resource: dict[str, Any], schema_url: str, version: str | None,
    server: str,
) -> None:  # fmt: skip
    """Any batch of records encodes to the message the SDK's encoder builds from them."""
    if not spans:
        return  # the SDK encodes no ResourceSpans for none; the recorder never exports none
    ours, sdk = both(
        spans,
        Resource(resource, schema_url),
        InstrumentationScope("outbox_worker", version),
        server,
    )
    assert ours == sdk


@given(INT64)
def test_varints_are_protobufs(number: int) -> None:
    """A varint decodes to its number (a negative one as its int64 two's complement)."""
    assert AnyValue.FromString(b"\x18" + varint(number)).int_value == number


def test_a_known_span_encodes_as_recorded() -> None:
    """A retried attempt in the producer's trace, decoded field by field."""
    claim = Claim(TRACING, 1_700_000_000_000_000_000)
    claim.count, claim.claim_ms = 2, 1.5
    message = Message(MessageId(42), b"{}", 1, timedelta(0), LeaseToken(uuid.uuid4()))
    span = Attempt(claim, message, "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", "v=1")
    span.span_id = 0x0102030405060708
    span.start_ns, span.end_ns = 1_700_000_000_001_000_000, 1_700_000_000_002_000_000
    span.status, span.retry_in_s, span.outcome, span.error_type = 503, 2.5, "retry", "503"
    resource = Resource({"service.name": "outbox-worker"})
    ours, sdk = both(
        [span], resource, InstrumentationScope("outbox_worker", "1.0"), "api.ravelin.com"
    )
    assert ours == sdk
    assert MessageToDict(ours) == {"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "outbox-worker"}}]},
        "scopeSpans": [{"scope": {"name": "outbox_worker", "version": "1.0"}, "spans": [{
            "traceId": "CvdlGRbNQ92ESOshHIAxnA==",
            "spanId": "AQIDBAUGBwg=",
            "traceState": "v=1",
            "parentSpanId": "t61rcWkgMzE=",
            "flags": 768,
            "name": "deliver outbox",
            "kind": "SPAN_KIND_CONSUMER",
            "startTimeUnixNano": "1700000000001000000",
            "endTimeUnixNano": "1700000000002000000",
            "attributes": [
                {"key": "messaging.message.id", "value": {"stringValue": "42"}},
                {"key": "outbox.attempt", "value": {"intValue": "2"}},
                {"key": "messaging.system", "value": {"stringValue": "outbox"}},
                {"key": "messaging.destination.name", "value": {"stringValue": "outbox.messages"}},
                {"key": "messaging.operation.type", "value": {"stringValue": "process"}},
                {"key": "messaging.operation.name", "value": {"stringValue": "deliver"}},
                {"key": "server.address", "value": {"stringValue": "api.ravelin.com"}},
                {"key": "http.response.status_code", "value": {"intValue": "503"}},
                {"key": "outbox.retry_in_s", "value": {"doubleValue": 2.5}},
                {"key": "outbox.outcome", "value": {"stringValue": "retry"}},
                {"key": "error.type", "value": {"stringValue": "503"}},
            ],
            "events": [{
                "timeUnixNano": "1700000000000000000",
                "name": "outbox.claimed",
                "attributes": [
                    {"key": "messaging.operation.type", "value": {"stringValue": "receive"}},
                    {"key": "messaging.batch.message_count", "value": {"intValue": "2"}},
                    {"key": "outbox.claim_ms", "value": {"doubleValue": 1.5}},
                ],
            }],
            "status": {"code": "STATUS_CODE_ERROR"},
        }]}],
    }]}  # fmt: skip
