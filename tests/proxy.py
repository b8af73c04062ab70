"""A TCP proxy on a loopback port that can blackhole its traffic, as a silent partition does.

``blackhole()`` stops forwarding in both directions and keeps every socket open: nothing errors,
nothing arrives (a security group change, a NAT entry timed out, a dead host). Bytes read
meanwhile are held and delivered after ``restore()``, as TCP's retransmissions deliver them once
the path is back; connections accepted meanwhile reach their upstream only then. ``sent`` records
when each chunk from a client was forwarded upstream, so a test can tell when a client last
spoke through the proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs, urlsplit, urlunsplit

Upstream = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]
CHUNK = 65536


def to_database(url: str) -> Upstream:
    """The upstream a postgresql:// URL names: its TCP host and port, or its Unix socket."""
    parts = urlsplit(url)
    socket_dir = parse_qs(parts.query).get("host", [""])[0]
    port = parts.port or 5432
    if socket_dir.startswith("/"):
        return unix(f"{socket_dir}/.s.PGSQL.{port}")
    return tcp(parts.hostname or "127.0.0.1", port)


def through(url: str, proxy: Proxy) -> str:
    """``url`` (user, database, query) reaching its server through ``proxy`` instead."""
    parts = urlsplit(url)
    query = "&".join(
        p for p in parts.query.split("&") if p and not p.startswith(("host=", "port="))
    )
    user = parts.netloc.rpartition("@")[0]
    netloc = f"{user}@127.0.0.1:{proxy.port}" if user else f"127.0.0.1:{proxy.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def tcp(host: str, port: int) -> Upstream:
    """An upstream at ``host:port``."""
    return lambda: asyncio.open_connection(host, port)


def unix(path: str) -> Upstream:
    """An upstream at the Unix socket ``path``."""
    return lambda: asyncio.open_unix_connection(path)


class Proxy:
    """Forwards connections on 127.0.0.1:``port`` to an upstream, unless blackholed."""

    def __init__(self, upstream: Upstream) -> None:
        self._upstream = upstream
        self._open = asyncio.Event()
        self._open.set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.sent: list[float] = []  # monotonic times of client -> upstream chunks forwarded

    @property
    def port(self) -> int:
        """The loopback port clients connect to."""
        assert self._server is not None, "start() the proxy first"
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        """Listen on a free loopback port."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)

    async def stop(self) -> None:
        """Close the listener and every connection."""
        if self._server is not None:
            self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for writer in self._writers:
            writer.close()

    def blackhole(self) -> None:
        """Stop forwarding anything, both ways; keep every socket open."""
        self._open.clear()

    def restore(self) -> None:
        """Forward again, held bytes first."""
        self._open.set()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._open.wait()
            try:
                up_reader, up_writer = await self._upstream()
            except OSError:
                return
            self._writers.add(up_writer)
            await asyncio.gather(
                self._pump(reader, up_writer, record=True),
                self._pump(up_reader, writer, record=False),
            )
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, record: bool
    ) -> None:
        try:
            while data := await reader.read(CHUNK):
                await self._open.wait()
                writer.write(data)
                if record:
                    self.sent.append(time.monotonic())
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(ConnectionError, OSError):
                writer.close()
