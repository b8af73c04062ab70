"""Which OTEL_* variables turn the worker's tracing on, and which are refused at start."""

from __future__ import annotations

import pytest

from outbox_worker.errors import ConfigError
from outbox_worker.settings.environment import read_traces_exporters

ENDPOINT = "http://collector:4318"

CHOICES = [
    # environment -> exporters
    ({}, ()),
    ({"OTEL_SERVICE_NAME": "outbox"}, ()),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}, ("otlp",)),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": ENDPOINT + "/v1/traces"}, ("otlp",)),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": " "}, ()),
    ({"OTEL_TRACES_EXPORTER": "otlp"}, ("otlp",)),
    ({"OTEL_TRACES_EXPORTER": "console"}, ("console",)),
    ({"OTEL_TRACES_EXPORTER": "otlp, console,otlp"}, ("otlp", "console")),
    ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}, ()),
    ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}, ()),
    ({"OTEL_SDK_DISABLED": "false", "OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}, ("otlp",)),
    ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_TRACES_EXPORTER": "otlp"}, ("otlp",)),
    ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_TRACES_EXPORTER": "console"}, ("console",)),
]


@pytest.mark.parametrize(("environ", "exporters"), CHOICES)
def test_otel_variables_choose_the_exporters(
    environ: dict[str, str], exporters: tuple[str, ...]
) -> None:
    """Tracing is on only when OTEL_* names an exporter or an OTLP endpoint, and not disabled."""
    assert read_traces_exporters(environ) == exporters


REFUSED = [
    ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER names zipkin"),
    ({"OTEL_TRACES_EXPORTER": "otlp,jaeger"}, "names jaeger"),
    (
        {"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
        "OTLP over HTTP only",
    ),
    (
        {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"},
        "set it to http/protobuf",
    ),
]


@pytest.mark.parametrize(("environ", "message"), REFUSED)
def test_exporters_the_worker_does_not_ship_fail_at_start(
    environ: dict[str, str], message: str
) -> None:
    """An exporter or protocol the worker cannot use is a one-line configuration error."""
    with pytest.raises(ConfigError, match=message):
        read_traces_exporters(environ)
