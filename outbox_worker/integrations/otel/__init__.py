"""OpenTelemetry for the outbox (the ``otel`` extra): ``context`` for producers (the trace context
enqueue stores), ``spans`` for the worker (a span per delivery attempt). Nothing is imported here:
each side imports only its own module, and only when tracing is in use (README "Tracing").
"""
