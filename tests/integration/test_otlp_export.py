"""The worker's OTLP/HTTP span export against real collectors on loopback: the test receiver of
tests/otlp.py, and a collector scripted here to fail (statuses, Retry-After, hangs, TLS)."""

from __future__ import annotations

import asyncio
import gzip
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import pytest
from aiohttp import web
from multidict import CIMultiDictProxy
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from structlog.testing import capture_logs

from outbox_worker.integrations.otel.export import OtlpHttpExport
from outbox_worker.integrations.otel.otlp_settings import read_export_settings
from outbox_worker.version import __version__
from tests.otlp import OtlpReceiver
from tests.processes import free_port

CANARY = "Bearer s3cr3t-canary"
# URL-encoded, as the spec asks; the liberal raw form is covered by the unit tests.
CANARY_HEADERS = "authorization=Bearer%20s3cr3t-canary,x-tenant=blue"


def request_body(name: str = "deliver outbox") -> bytes:
    """A serialized ExportTraceServiceRequest holding one span."""
    span = Span(
        trace_id=bytes(range(16)), span_id=bytes(range(8)), name=name, kind=Span.SPAN_KIND_CONSUMER
    )
    resource = Resource(
        attributes=[KeyValue(key="service.name", value=AnyValue(string_value="outbox-worker"))]
    )
    request = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(resource=resource, scope_spans=[ScopeSpans(spans=[span])])]
    )
    body: bytes = request.SerializeToString()
    return body


@dataclass
class Seen:
    """One request as the scripted collector received it."""

    headers: CIMultiDictProxy[str]
    body: bytes
    at: float  # time.monotonic() on arrival


@dataclass
class ScriptedCollector:
    """POST /v1/traces answering each request with the script's next (status, headers), then 200;
    ``hang`` holds every request unanswered until the collector stops."""

    script: Sequence[tuple[int, dict[str, str]]] = ()
    hang: bool = False
    tls: ssl.SSLContext | None = None
    seen: list[Seen] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """The base URL to give as OTEL_EXPORTER_OTLP_ENDPOINT."""
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_post("/v1/traces", self._receive)
        # The body as sent, gzip and all, for the test to look at.
        self._runner = web.AppRunner(app, access_log=None, auto_decompress=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=self.tls).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _receive(self, request: web.Request) -> web.Response:
        self.seen.append(Seen(request.headers, await request.read(), time.monotonic()))
        if self.hang:
            await self._stopping.wait()
        status, headers = (
            self.script[len(self.seen) - 1] if len(self.seen) <= len(self.script) else (200, {})
        )
        return web.Response(
            status=status, headers=headers, body=b"collector says: " + CANARY.encode()
        )


@pytest.fixture
async def exporters() -> AsyncIterator[list[OtlpHttpExport]]:
    """The exporters a test made, closed after it (so no session is left unclosed)."""
    made: list[OtlpHttpExport] = []
    yield made
    for exporter in made:
        await exporter.close()


@pytest.fixture
def make_exporter(exporters: list[OtlpHttpExport]) -> Any:
    """Factory: an exporter on these OTEL_EXPORTER_OTLP_* values, with a short first backoff."""

    def make(environ: dict[str, str], first_backoff_s: float = 0.01) -> OtlpHttpExport:
        exporter = OtlpHttpExport(read_export_settings(environ), first_backoff_s=first_backoff_s)
        exporters.append(exporter)
        return exporter

    return make


async def test_spans_reach_the_collector() -> None:
    """A batch POSTed to the receiver arrives whole; send says True."""
    async with OtlpReceiver() as receiver:
        exporter = OtlpHttpExport.from_environ({"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url})
        try:
            assert await exporter.send(request_body("first"))
            assert await exporter.send(request_body("second"))
        finally:
            await exporter.close()
    assert [span.name for span in receiver.spans()] == ["first", "second"]
    assert receiver.spans()[0].service == "outbox-worker"


async def test_gzip_body_is_decodable(make_exporter: Any) -> None:
    """With COMPRESSION=gzip the body is gzip, says so, and decodes to the request sent."""
    async with OtlpReceiver() as receiver, ScriptedCollector() as collector:
        for url in (receiver.url, collector.url):
            env = {"OTEL_EXPORTER_OTLP_ENDPOINT": url, "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"}
            assert await make_exporter(env).send(request_body("zipped"))
    assert [span.name for span in receiver.spans()] == ["zipped"]
    (seen,) = collector.seen
    assert seen.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(seen.body) == request_body("zipped")


async def test_headers_sent(make_exporter: Any) -> None:
    """Configured headers go out URL-decoded, beside protobuf's type and our User-Agent."""
    async with ScriptedCollector() as collector:
        env = {
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{collector.url}/v1/traces",
            "OTEL_EXPORTER_OTLP_HEADERS": CANARY_HEADERS,
        }
        assert await make_exporter(env).send(request_body())
    (seen,) = collector.seen
    assert seen.headers["Authorization"] == CANARY
    assert seen.headers["X-Tenant"] == "blue"
    assert seen.headers["Content-Type"] == "application/x-protobuf"
    assert seen.headers["User-Agent"].startswith(f"outbox-worker/{__version__} ")
    assert "Content-Encoding" not in seen.headers
    assert seen.body == request_body()


@pytest.mark.parametrize("status", [429, 502, 503, 504])
async def test_retried_statuses(make_exporter: Any, status: int) -> None:
    """429, 502, 503 and 504 are retried after a backoff until the collector takes the batch."""
    async with ScriptedCollector(script=[(status, {}), (status, {})]) as collector:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url}
        with capture_logs() as logs:
            assert await make_exporter(env).send(request_body())
    assert len(collector.seen) == 3
    assert logs == []  # a failure retried away is no failure


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 500, 307])
async def test_other_statuses_not_retried(make_exporter: Any, status: int) -> None:
    """Any other failure answer is final at once (a redirect is neither followed nor retried)."""
    headers = {"Location": "http://127.0.0.1:1/elsewhere"} if status == 307 else {}
    async with ScriptedCollector(script=[(status, headers)]) as collector:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url}
        with capture_logs() as logs:
            assert not await make_exporter(env).send(request_body())
    assert len(collector.seen) == 1
    assert [(log["event"], log["status"]) for log in logs] == [("tracing.export_failed", status)]


async def test_retry_after_honoured(make_exporter: Any) -> None:
    """The collector's Retry-After replaces the (here 10 ms) backoff."""
    async with ScriptedCollector(script=[(503, {"Retry-After": "1"})]) as collector:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_EXPORTER_OTLP_TIMEOUT": "5"}
        assert await make_exporter(env).send(request_body())
    first, second = collector.seen
    assert 0.9 <= second.at - first.at < 3


async def test_retry_after_past_the_timeout_gives_up(make_exporter: Any) -> None:
    """A Retry-After longer than the time left ends the export at once instead of waiting."""
    async with ScriptedCollector(script=[(429, {"Retry-After": "60"})]) as collector:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_EXPORTER_OTLP_TIMEOUT": "5"}
        started = time.monotonic()
        with capture_logs() as logs:
            assert not await make_exporter(env).send(request_body())
        assert time.monotonic() - started < 2
    assert len(collector.seen) == 1
    assert logs[0]["status"] == 429


async def test_collector_down(make_exporter: Any) -> None:
    """A closed port: False within about the timeout, one log event per streak, no header value;
    the first success afterwards says it recovered."""
    port = free_port()
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "OTEL_EXPORTER_OTLP_HEADERS": CANARY_HEADERS,
        "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
    }
    exporter = make_exporter(env, first_backoff_s=0.1)
    with capture_logs() as logs:
        for _ in range(3):
            started = time.monotonic()
            assert not await exporter.send(request_body())
            assert time.monotonic() - started < 1.5
        collector = ScriptedCollector(port=port)
        async with collector:
            assert await exporter.send(request_body())
    assert [log["event"] for log in logs] == ["tracing.export_failed", "tracing.export_recovered"]
    failed, recovered = logs
    assert failed["collector"] == f"127.0.0.1:{port}"
    assert failed["status"] is None
    assert failed["error_type"] == "ClientConnectorError"
    assert recovered["failed_exports"] == 3
    assert "s3cr3t" not in repr(logs)


async def test_hanging_collector_times_out(make_exporter: Any) -> None:
    """A collector that never answers costs the timeout, not more, and is not asked again."""
    async with ScriptedCollector(hang=True) as collector:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_EXPORTER_OTLP_TIMEOUT": "0.5"}
        started = time.monotonic()
        with capture_logs() as logs:
            assert not await make_exporter(env).send(request_body())
        assert 0.4 < time.monotonic() - started < 1.5
    assert len(collector.seen) == 1
    assert logs[0]["error_type"] == "TimeoutError"


async def test_answer_text_never_logged(make_exporter: Any) -> None:
    """The collector's answer (here echoing a secret) appears in no log event."""
    async with ScriptedCollector(script=[(400, {"X-Echo": CANARY})]) as collector:
        with capture_logs() as logs:
            assert not await make_exporter({"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url}).send(
                request_body()
            )
    assert logs
    assert "s3cr3t" not in repr(logs)


async def test_close_is_idempotent() -> None:
    """close() twice, or before any send, is fine; a send after close is refused quietly."""
    async with ScriptedCollector() as collector:
        exporter = OtlpHttpExport.from_environ({"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url})
        await exporter.close()
        await exporter.close()
        exporter = OtlpHttpExport.from_environ({"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url})
        assert await exporter.send(request_body())
        await exporter.close()
        await exporter.close()
        assert not await exporter.send(request_body())
    assert len(collector.seen) == 1


# --- TLS -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pem:
    """A self-signed certificate for 127.0.0.1 and its key."""

    cert: Path
    key: Path


def self_signed(directory: Path, name: str) -> Pem:
    """A fresh EC certificate for 127.0.0.1, signed by itself (made with the openssl command)."""
    pem = Pem(directory / f"{name}.crt", directory / f"{name}.key")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "2", "-subj", f"/CN={name}", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(pem.key), "-out", str(pem.cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return pem


@pytest.fixture(scope="module")
def pems(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Pem]:
    """The collector's certificate and a client's."""
    directory = tmp_path_factory.mktemp("otlp-tls")
    return {name: self_signed(directory, name) for name in ("collector", "client")}


def server_tls(pems: dict[str, Pem], *, client_auth: bool = False) -> ssl.SSLContext:
    """The collector's TLS, asking for the client's certificate when ``client_auth``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pems["collector"].cert, pems["collector"].key)
    if client_auth:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(pems["client"].cert)
    return context


async def test_https_with_a_custom_ca(make_exporter: Any, pems: dict[str, Pem]) -> None:
    """The CA file is the trust anchor that lets a self-signed collector in."""
    async with ScriptedCollector(tls=server_tls(pems)) as collector:
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
            "OTEL_EXPORTER_OTLP_CERTIFICATE": str(pems["collector"].cert),
        }
        assert await make_exporter(env).send(request_body())
    assert len(collector.seen) == 1


async def test_https_verifies_without_a_ca_file(make_exporter: Any, pems: dict[str, Pem]) -> None:
    """Without the CA file the same collector is refused: verification is always on."""
    async with ScriptedCollector(tls=server_tls(pems)) as collector:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_EXPORTER_OTLP_TIMEOUT": "0.5"}
        with capture_logs() as logs:
            assert not await make_exporter(env).send(request_body())
    assert collector.seen == []
    assert logs[0]["error_type"] == "ClientConnectorCertificateError"


async def test_mutual_tls(make_exporter: Any, pems: dict[str, Pem]) -> None:
    """CLIENT_CERTIFICATE and CLIENT_KEY answer a collector that asks for a client certificate."""
    async with ScriptedCollector(tls=server_tls(pems, client_auth=True)) as collector:
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
            "OTEL_EXPORTER_OTLP_CERTIFICATE": str(pems["collector"].cert),
            "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
        }
        assert not await make_exporter(env).send(request_body())
        env["OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE"] = str(pems["client"].cert)
        env["OTEL_EXPORTER_OTLP_CLIENT_KEY"] = str(pems["client"].key)
        assert await make_exporter(env).send(request_body())
    assert len(collector.seen) == 1
