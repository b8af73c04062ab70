"""The stand-in as a process of its own (`outbox-worker standin`), as benchmarks and trials run it."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from tests.cases import update
from tests.processes import REPO


async def test_command_runs_as_a_process_until_sigterm(tmp_path: Path) -> None:
    """`outbox-worker standin` prints its URL when ready, answers after --latency, exits 0 on TERM."""
    ready = tmp_path / "ready"
    args = ["--port", "0", "--api-key", "sk_test_proc", "--ready-file", str(ready)]
    process = await _start_command(*args, "--latency", "0.3")
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=30)).decode()
        assert line.startswith("standin listening on http://127.0.0.1:")
        url = line.split()[-1]
        assert url.endswith("/v2/registration")
        assert ready.read_text().strip() == url
        headers = {"Authorization": "token sk_test_proc", "Content-Type": "application/json"}
        body = json.dumps(update("c1"))
        started = time.monotonic()
        async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers) as r:
            assert r.status == 200
        assert time.monotonic() - started >= 0.3, "--latency 0.3 delays every answer"
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
        assert process.returncode == 0, stderr.decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.communicate()


@pytest.mark.parametrize("latency", ["0.2-0.1", "-1", "fast"])
async def test_command_refuses_a_bad_latency_with_exit_2(latency: str) -> None:
    """--latency that is not seconds or LOW-HIGH is a usage error naming the option."""
    process = await _start_command("--port", "0", "--latency", latency)
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 2
    assert "--latency" in stderr.decode()


async def _start_command(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "outbox_worker", "standin", *args, cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
