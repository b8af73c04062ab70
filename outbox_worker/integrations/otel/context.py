"""The producer's side of tracing: the caller's current trace context, as enqueue stores it.

Imported by ``outbox_worker.enqueue`` only once the application itself has imported
``opentelemetry.trace``: a producer needs opentelemetry-api alone, never the SDK.
"""

from __future__ import annotations

import json

from opentelemetry import trace


def current_trace_context() -> str | None:
    """The caller's current span context as the JSON the outbox stores, or None without one."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    parent = f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
    if not context.trace_state:
        return f'{{"traceparent":"{parent}"}}'  # hex digits and dashes only: nothing to escape
    state = context.trace_state.to_header()
    return json.dumps({"traceparent": parent, "tracestate": state}, separators=(",", ":"))
