"""A stand-in in a process of its own, until SIGTERM or SIGINT (`outbox-worker standin`)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from outbox_worker.standin.faults import Latency
from outbox_worker.standin.server import StandIn


def serve(
    host: str,
    port: int,
    api_key: str,
    *,
    ready_file: str | None = None,
    allow_remote: bool = False,
    latency: Latency = 0.0,
    seed: int | None = None,
) -> None:
    """Run a stand-in until SIGTERM or SIGINT; print its URL (and write ready_file) when ready."""
    standin = StandIn(
        api_key, host=host, port=port, allow_remote=allow_remote, latency=latency, seed=seed
    )
    running = _serve(standin, ready_file)
    try:
        import uvloop
    except ImportError:  # not built for this platform: plain asyncio is fine
        asyncio.run(running)
    else:
        uvloop.run(running)


async def _serve(standin: StandIn, ready_file: str | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with standin:
        _announce(standin.url, ready_file)
        await stop.wait()


def _announce(url: str, ready_file: str | None) -> None:
    if ready_file is not None:
        # Write then rename, so whoever watches the file never reads half a URL.
        partial = Path(ready_file + ".partial")
        partial.write_text(url + "\n")
        partial.replace(ready_file)
    print(f"standin listening on {url}", flush=True)
