"""The stand-in as a process of its own (`python -m outbox_worker.standin`), as benchmarks run it."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import aiohttp

from tests.cases import update
from tests.processes import REPO


async def test_module_runs_as_a_process_until_sigterm(
    tmp_path: Path,
) -> None:
    """`python -m outbox_worker.standin` prints its URL when ready, answers, and exits 0 on TERM."""
    ready = tmp_path / "ready"
    args = ["--port", "0", "--api-key", "sk_test_proc", "--ready-file", str(ready)]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "outbox_worker.standin",
        *args,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=30)).decode()
        assert line.startswith("standin listening on http://127.0.0.1:")
        url = line.split()[-1]
        assert url.endswith("/v2/registration")
        assert ready.read_text().strip() == url
        headers = {"Authorization": "token sk_test_proc", "Content-Type": "application/json"}
        body = json.dumps(update("c1"))
        async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers) as r:
            assert r.status == 200
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
        assert process.returncode == 0, stderr.decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.communicate()
