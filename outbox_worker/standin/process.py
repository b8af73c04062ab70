"""A stand-in in a process of its own, until SIGTERM or SIGINT (`outbox-worker standin`)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from outbox_worker.standin.server import StandIn


async def serve(standin: StandIn, ready_file: str | None = None) -> None:
    """Run a stand-in until SIGTERM or SIGINT; print its URL (and write ready_file) when ready."""
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
