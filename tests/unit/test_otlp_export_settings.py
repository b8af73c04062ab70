"""The span exporter's settings, read from OTEL_EXPORTER_OTLP_* as the Python SDK reads them, and
its retry arithmetic: pure, no sockets."""

from __future__ import annotations

import math
from email.utils import formatdate
from pathlib import Path

import pytest

from outbox_worker.errors import ConfigError
from outbox_worker.integrations.otel.export import backoff_s, retry_after_s
from outbox_worker.integrations.otel.otlp_settings import read_export_settings

CANARY = "Bearer s3cr3t-canary"


@pytest.mark.parametrize(
    ("environ", "endpoint"),
    [
        ({}, "http://localhost:4318/v1/traces"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, "http://c:4318/v1/traces"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"}, "http://c:4318/v1/traces"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "https://c/otlp/"}, "https://c/otlp/v1/traces"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ""}, "http://localhost:4318/v1/traces"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:1/custom"}, "http://t:1/custom"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:1/"}, "http://t:1/"),
        (
            {
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:1/x",
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
            },
            "http://t:1/x",
        ),
        (
            {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"},
            "http://c/v1/traces",
        ),
    ],
)
def test_endpoint_resolution(environ: dict[str, str], endpoint: str) -> None:
    """The traces endpoint is used as is, else the base gets /v1/traces, else localhost:4318."""
    assert read_export_settings(environ).endpoint == endpoint


def test_defaults() -> None:
    """Unset: protobuf, our User-Agent, 10 s, no gzip, no TLS context for http."""
    settings = read_export_settings({})
    assert settings.headers["content-type"] == "application/x-protobuf"
    assert settings.headers["user-agent"].startswith("outbox-worker/")
    assert settings.timeout_s == 10.0
    assert not settings.gzip
    assert settings.ssl is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("api-key=abc", {"api-key": "abc"}),
        ("Api-Key=abc", {"api-key": "abc"}),
        ("a=1 , b = 2,,", {"a": "1", "b": "2"}),
        ("authorization=Bearer%20s3cr3t-canary", {"authorization": CANARY}),
        ("authorization=Bearer s3cr3t-canary", {"authorization": CANARY}),  # the SDK's liberal form
        ("x=a%3Db%2Cc", {"x": "a=b,c"}),
        ("x=a=b", {"x": "a=b"}),
        ("x=", {"x": ""}),
        ("x=caf%C3%A9", {"x": "café"}),
    ],
)
def test_headers_parsed_as_the_sdk_does(raw: str, expected: dict[str, str]) -> None:
    """Comma-separated key=value, keys lower-cased, URL-encoded values decoded."""
    headers = read_export_settings({"OTEL_EXPORTER_OTLP_HEADERS": raw}).headers
    assert {k: v for k, v in headers.items() if k in expected} == expected


def test_traces_headers_replace_the_generic_ones() -> None:
    """As in the SDK, TRACES_HEADERS is taken whole, not merged with OTEL_EXPORTER_OTLP_HEADERS."""
    headers = read_export_settings(
        {"OTEL_EXPORTER_OTLP_HEADERS": "a=1", "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "b=2"}
    ).headers
    assert "a" not in headers
    assert headers["b"] == "2"


def test_configured_headers_override_the_defaults() -> None:
    """A configured User-Agent wins over ours, as the SDK lets it."""
    headers = read_export_settings({"OTEL_EXPORTER_OTLP_HEADERS": "user-agent=mine"}).headers
    assert headers["user-agent"] == "mine"


@pytest.mark.parametrize(
    ("environ", "name"),
    [
        ({"OTEL_EXPORTER_OTLP_HEADERS": f"authorization={CANARY},no-equals-sign"}, "_HEADERS"),
        ({"OTEL_EXPORTER_OTLP_TRACES_HEADERS": f"bad key={CANARY}"}, "_TRACES_HEADERS"),
        ({"OTEL_EXPORTER_OTLP_HEADERS": "x=Bearer%20s3cr3t-canary%0D%0Ainjected:%201"}, "_HEADERS"),
        ({"OTEL_EXPORTER_OTLP_HEADERS": "x%0Ay=Bearer%20s3cr3t-canary"}, "_HEADERS"),
        ({"OTEL_EXPORTER_OTLP_HEADERS": f"content-encoding={CANARY}"}, "_HEADERS"),
        ({"OTEL_EXPORTER_OTLP_HEADERS": f"x={CANARY};y"}, "_HEADERS"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": f"ftp://{CANARY}"}, "_ENDPOINT"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http:///v1"}, "_ENDPOINT"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}, "_ENDPOINT"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:99999/v1/traces"}, "_TRACES_ENDPOINT"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://u:s3cr3t-canary@c:x/"}, "_TRACES_ENDPOINT"),
        ({"OTEL_EXPORTER_OTLP_TIMEOUT": "s3cr3t-canary"}, "_TIMEOUT"),
        ({"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "0"}, "_TRACES_TIMEOUT"),
        ({"OTEL_EXPORTER_OTLP_TIMEOUT": "-1"}, "_TIMEOUT"),
        ({"OTEL_EXPORTER_OTLP_TIMEOUT": "nan"}, "_TIMEOUT"),
        ({"OTEL_EXPORTER_OTLP_TIMEOUT": "inf"}, "_TIMEOUT"),
        ({"OTEL_EXPORTER_OTLP_COMPRESSION": "s3cr3t-canary"}, "_COMPRESSION"),
        ({"OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "deflate"}, "_TRACES_COMPRESSION"),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "https://c",
                "OTEL_EXPORTER_OTLP_CERTIFICATE": "/nonexistent/s3cr3t-canary.pem",
            },
            "_CERTIFICATE",
        ),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "https://c", "OTEL_EXPORTER_OTLP_CLIENT_KEY": "/k.pem"},
            "_CLIENT_KEY",
        ),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "https://c",
                "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": "/nonexistent/c.pem",
            },
            "_CLIENT_CERTIFICATE",
        ),
        ({"OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER": "x"}, "_CREDENTIAL_PROVIDER"),
    ],
)
def test_bad_settings_name_the_variable_not_the_value(environ: dict[str, str], name: str) -> None:
    """A bad value stops the start with one line naming its variable and never echoing it."""
    with pytest.raises(ConfigError) as caught:
        read_export_settings(environ)
    message = str(caught.value)
    assert name in message
    assert "\n" not in message
    assert "s3cr3t" not in message
    assert "canary" not in message


def test_a_bad_generic_value_is_ignored_when_the_traces_one_is_set() -> None:
    """TRACES_ variables win, so the generic twin is not even read."""
    settings = read_export_settings(
        {
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "2.5",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "junk",
            "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "GZIP ",
            "OTEL_EXPORTER_OTLP_COMPRESSION": "junk",
        }
    )
    assert settings.timeout_s == 2.5  # seconds, as the installed SDK reads it
    assert settings.gzip
    assert settings.headers["content-encoding"] == "gzip"


def test_headers_never_printed() -> None:
    """The settings' repr leaves the headers out."""
    settings = read_export_settings({"OTEL_EXPORTER_OTLP_HEADERS": f"authorization={CANARY}"})
    assert "s3cr3t" not in repr(settings)


def test_a_pem_that_is_not_a_certificate(tmp_path: Path) -> None:
    """A CA file that is not PEM is refused at start, naming the variable."""
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE"):
        read_export_settings(
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "https://c",
                "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE": str(bogus),
                "OTEL_EXPORTER_OTLP_CERTIFICATE": "/nonexistent",
            }
        )


def test_certificates_ignored_for_http() -> None:
    """As in the SDK, TLS files matter only for an https endpoint."""
    settings = read_export_settings({"OTEL_EXPORTER_OTLP_CERTIFICATE": "/nonexistent"})
    assert settings.ssl is None


def test_backoff_doubles_with_jitter() -> None:
    """1, 2, 4, 8 s times a jitter within +-20%."""
    assert [backoff_s(n, lambda low, high: low) for n in range(4)] == [0.8, 1.6, 3.2, 6.4]
    assert [backoff_s(n, lambda low, high: high) for n in range(3)] == [1.2, 2.4, 4.8]
    assert backoff_s(2, lambda low, high: 1.0, first_s=0.01) == 0.04


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("3", 3.0),
        (" 1.5 ", 1.5),
        ("-4", 0.0),
        ("soon", None),
        ("nan", None),
        ("inf", None),
        (formatdate(1_000_030, usegmt=True), 30.0),
        (formatdate(999_000, usegmt=True), 0.0),
    ],
)
def test_retry_after(value: str | None, expected: float | None) -> None:
    """Delay seconds or an HTTP date; nonsense is ignored, the past means now."""
    result = retry_after_s(value, now=1_000_000)
    assert result == expected or (result is not None and math.isclose(result, expected or 0))
