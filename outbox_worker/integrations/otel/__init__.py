"""OpenTelemetry for the outbox (the ``otel`` extra): ``context`` for producers (the trace context
enqueue stores); for the worker, ``spans`` starts its tracing: ``lean`` records a span per
delivery attempt (``stored`` checks the row's trace context), ``wire`` encodes them for OTLP,
``export`` sends them and ``readable`` hands them to the SDK's exporters (console). Nothing is
imported here: each side imports only its own modules, and only when tracing is in use (README
"Tracing").
"""
