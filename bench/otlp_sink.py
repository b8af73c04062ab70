"""An OTLP/HTTP trace sink for the benchmarks, run in a process of its own so that its CPU is
not the measured process's: ``POST /v1/traces`` keeps the body and answers 200 at once;
``GET /_sink/count`` decodes what came since the last call and answers the totals as JSON
({"requests", "bytes", "spans"}), so the decoding happens outside the measured loops.

    python -m bench.otlp_sink --ready-file PATH   # writes its base URL there once listening
"""

from __future__ import annotations

import argparse
import asyncio
import json
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench.harness import python_command, ready_process


def sink_app() -> web.Application:
    """The sink's routes: take every export, count its spans when asked."""
    bodies: list[bytes] = []
    totals = {"requests": 0, "bytes": 0, "spans": 0}

    async def take(request: web.Request) -> web.Response:
        bodies.append(await request.read())
        return web.Response(body=b"", content_type="application/x-protobuf")

    async def count(_request: web.Request) -> web.Response:
        for body in bodies:
            export = ExportTraceServiceRequest.FromString(body)
            totals["requests"] += 1
            totals["bytes"] += len(body)
            totals["spans"] += sum(
                len(scope.spans) for resource in export.resource_spans
                for scope in resource.scope_spans
            )  # fmt: skip
        bodies.clear()
        return web.json_response(totals)

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/traces", take)
    app.router.add_get("/_sink/count", count)
    return app


async def serve(ready_file: Path) -> None:
    """Listen on a free loopback port, write the base URL to ``ready_file``, serve until killed."""
    runner = web.AppRunner(sink_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    written = ready_file.with_suffix(".tmp")  # renamed whole: the parent never reads half a URL
    written.write_text(f"http://127.0.0.1:{port}")
    written.replace(ready_file)
    await asyncio.Event().wait()


@contextmanager
def sink_process() -> Iterator[str]:
    """Run the sink in a child process; yield its base URL (OTEL_EXPORTER_OTLP_ENDPOINT)."""
    with ready_process(python_command("-m", "bench.otlp_sink"), "OTLP sink") as (url, _):
        yield url


def sink_counts(base_url: str) -> dict[str, int]:
    """The sink's totals so far: requests, bytes and spans received."""
    with urllib.request.urlopen(f"{base_url}/_sink/count", timeout=60) as answer:
        counts: dict[str, int] = json.loads(answer.read())
    return counts


def main() -> None:
    """Serve the sink until SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ready-file", type=Path, required=True, help="where to write the URL")
    args = parser.parse_args()
    asyncio.run(serve(args.ready_file))  # SIGTERM (stop_process) ends it


if __name__ == "__main__":
    main()
