"""Canaries: one worker run, every operator command and the demo, with a canary in every field.

Every payload field that is not on the allow-list (outbox_worker.pii.ALLOWED_KEYS), the free text
of the endpoint's answers, the dedup key, the API key and the database URL's passwords carry
canary values. None may appear in any log line (debug included), any command's output (text and
JSON), the /metrics page, the spans the worker exports (OTLP) or an error; ``--show-pii`` reveals the payload's. Allowed fields (ids,
timestamps, enums, the country) carry plain values: showing them is the allow-list's purpose.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import pytest

from tests.e2e.test_demo import demo_env
from tests.integration.test_worker_hostile import Endpoint, raw
from tests.otlp import OtlpReceiver
from tests.processes import REPO, Run, acli, debug_worker_output, spawn_worker, worker_env

API_KEY = "sk_test_CanaryKeyQ7x"
URL_PASSWORD = "CanaryPwQ7x"
SSL_PASSWORD = "CanarySslPwQ7x"
DEDUP_KEY = "reg-canary.dedup.q7x@canarydedup.example"

PAYLOAD: dict[str, Any] = {
    "timestamp": 1_764_000_000_000,
    "registration": {
        "success": False,
        "username": "canary-username-q7x",
        "timestamp": 1_764_000_000_000,
        "app": {"name": "canary-app-q7x", "platform": "ios", "domain": "canary-domain-q7x"},
        "registrationMechanism": {
            "password": {
                "passwordHashed": "c0ffee" * 10 + "c0ff",
                "success": False,
                "failureReason": "emailAlreadyRegistered",
            }
        },
    },
    "customer": {
        "customerId": "cust-7",
        "email": "canary.email.q7x@canarymail.example",
        "name": "canary-name-q7x",
        "givenName": "canary-given-q7x",
        "familyName": "canary-family-q7x",
        "telephone": "+447700900777",
        "dateOfBirth": "canary-dob-q7x",
        "location": {
            "latitude": 51.123457,
            "longitude": -0.654321,
            "street1": "canary-street-q7x",
            "postalCode": "canary-postcode-q7x",
            "city": "canary-city-q7x",
            "country": "GBR",
        },
        "loyalty": {"tier": "canary-tier-q7x", "points": [8675309, {"note": "canary-note-q7x"}]},
    },
    "device": {
        "deviceId": "dev-7",
        "ipAddress": "203.0.113.77",
        "userAgent": "canary-agent-q7x/1.0 (canary)",
    },
}
# Free text in the endpoint's answer: an email without a dot in its domain, an IPv4 ending a
# sentence, a phone number without +, an IPv6 after a colon.
ANSWER = {
    "status": 400,
    "message": "user canary.err.q7x@canaryhost is registered from 198.51.100.23. "
    "call 07700 900555 or ip:2001:db8::77",
    "traceId": "trace-7",
    "validationErrors": [
        {"field": "customer.email", "message": "taken by canary.ve.q7x@x.example"}
    ],
}
CANARIES = [
    API_KEY, "CanaryKeyQ7x", URL_PASSWORD, SSL_PASSWORD, "canary.dedup.q7x", "canarydedup",
    "canary-username-q7x", "canary-app-q7x", "canary-domain-q7x", "c0ffeec0ffee",
    "canary.email.q7x", "canarymail", "canary-name-q7x", "canary-given-q7x", "canary-family-q7x",
    "7700900777", "canary-dob-q7x", "51.123457", "0.654321", "canary-street-q7x",
    "canary-postcode-q7x", "canary-city-q7x", "canary-tier-q7x", "8675309", "canary-note-q7x",
    "113.77", "canary-agent-q7x", "canary.err.q7x", "canaryhost", "100.23", "900555", "db8::77",
    "canary.ve.q7x",
]  # fmt: skip
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
PAYLOAD_CANARIES = ["canary-dob-q7x", "canary-note-q7x", "canary.email.q7x", "8675309"]


def canaries_in(text: str) -> list[str]:
    """The canaries that appear in ``text``."""
    return [c for c in CANARIES if c in text]


@pytest.fixture
def canary_url(database_url: str) -> str:
    """This test's database URL with canary passwords (the test server trusts any password)."""
    parts = urlsplit(database_url)
    user, _, host = parts.netloc.rpartition("@")
    netloc = f"{user.partition(':')[0]}:{URL_PASSWORD}@{host}"
    query = "&".join(q for q in (parts.query, f"sslpassword={SSL_PASSWORD}") if q)
    return parts._replace(netloc=netloc, query=query).geturl()


@pytest.fixture
async def endpoint() -> AsyncIterator[Endpoint]:
    """An endpoint that answers every update with a 400 full of canaries."""
    server = Endpoint()
    server.default = raw(400, json.dumps(ANSWER).encode())
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def run_worker_once(url: str, endpoint: Endpoint, pg: asyncpg.Connection) -> list[str]:
    """Run a debug-logging, tracing worker until the message is dead; return its log, /metrics
    page and exported spans."""
    async with OtlpReceiver() as collector:
        found = await _run_worker_once(url, endpoint, pg, collector)
    assert "deliver outbox" in collector.text()  # the spans were exported, and are checked
    return [*found, collector.text()]


async def _run_worker_once(
    url: str, endpoint: Endpoint, pg: asyncpg.Connection, collector: OtlpReceiver
) -> list[str]:
    return await debug_worker_output(
        {"OUTBOX_DATABASE_URL": url, "OUTBOX_ENDPOINT_URL": endpoint.url,
         "OUTBOX_API_KEY": API_KEY, "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url},
        lambda: pg.fetchval("SELECT count(*) = 1 FROM outbox.messages WHERE state = 'dead'"),
        message="the canary message dead-lettered",
    )  # fmt: skip


async def run_commands(url: str, message_id: int) -> list[Run]:
    """Every operator command, in text and JSON, against the canary database."""
    commands = [
        ["dead", "list"], ["dead", "list", "--json"],
        ["dead", "show", str(message_id)], ["dead", "show", str(message_id), "--json"],
        ["stats"], ["stats", "--json"],
        ["requeue", "--all", "--dry-run"], ["requeue", "--all", "--dry-run", "--json"],
        ["purge", "--older-than", "1s", "--dry-run"],
        ["purge", "--older-than", "1s", "--dry-run", "--json"],
        ["check"], ["check", "--json"], ["migrate"],
        ["dead", "show", "999999999"],
        ["requeue", "--id", str(message_id), "--yes"],
    ]  # fmt: skip
    runs = [await acli(*command, db=url, env={"OUTBOX_API_KEY": API_KEY}) for command in commands]
    malformed = url.replace("@", "@[", 1)  # a URL that does not parse
    runs.append(await acli("check", db=malformed))
    return runs


# The fleet's commands (issue 18): the registry holds the worker that ran, the audit log the
# requeue above and this pause and resume.
FLEET_COMMANDS = [
    ["pause", "--reason", "canary check"], ["workers"], ["workers", "--json"],
    ["stats"], ["resume"], ["audit"], ["audit", "--json"], ["audit", "--since", "1h", "--json"],
]  # fmt: skip


async def test_no_canary_leaks_anywhere(
    pg: asyncpg.Connection, canary_url: str, endpoint: Endpoint
) -> None:
    """No canary reaches a log line, a command's output, the metrics page or an error."""
    message_id = await pg.fetchval(
        "SELECT outbox.enqueue($1::jsonb, $2, $3::jsonb)", json.dumps(PAYLOAD), DEDUP_KEY,
        json.dumps({"traceparent": TRACEPARENT}),
    )  # fmt: skip
    worker_output = await run_worker_once(canary_url, endpoint, pg)
    assert "delivery.dead_lettered" in worker_output[1]
    runs = await run_commands(canary_url, message_id)
    fleet_runs = [await acli(*command, db=canary_url) for command in FLEET_COMMANDS]
    leaks = {
        "worker": canaries_in("\n".join(worker_output)),
        **{f"command {i}": canaries_in(run.out + run.err) for i, run in enumerate(runs)},
        **{
            " ".join(c): canaries_in(r.out + r.err)
            for c, r in zip(FLEET_COMMANDS, fleet_runs, strict=True)
        },
    }
    assert {where: found for where, found in leaks.items() if found} == {}
    assert [run.code for run in fleet_runs] == [0] * len(FLEET_COMMANDS), [
        run.err for run in fleet_runs
    ]
    assert "requeue" in fleet_runs[5].out  # the audit log shows the requeue by id
    # check exits 1 when it finds a fault (it probes Ravelin's real endpoint here); the rest is 0.
    codes = [run.code for run in runs[:13]]
    assert codes[:10] + codes[12:] == [0] * 11, [run.err for run in runs]
    assert codes[10:12] in ([0, 0], [1, 1])
    assert runs[13].code == 1
    assert "999999999" in runs[13].err
    assert runs[15].code == 2
    assert "is malformed" in runs[15].out


CONSOLE_PAGES = ["/", "/dead", "/dead?status=400", "/dead/requeue-matching?status=400", "/audit",
                 "/purge?older_than=1s&include_dead=1"]  # fmt: skip


async def test_no_canary_in_the_console(
    pg: asyncpg.Connection, canary_url: str, tmp_path: Any
) -> None:
    """The web console's pages (HTML as served), a requeue through it and its log: no canary."""
    from tests.browser.harness import console_process
    from tests.browser.test_console_http import sign_in
    from tests.browser.test_console_privacy import insert_canary

    message_id = await insert_canary(pg)
    pages: dict[str, str] = {}
    async with console_process(canary_url, tmp_path / "tokens") as console:
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as http:
            assert (await sign_in(http, console.url, console.admin_token)).status == 303
            for path in [*CONSOLE_PAGES, f"/messages/{message_id}"]:
                async with http.get(console.url + path) as page:
                    assert page.status == 200, path
                    pages[path] = await page.text()
            csrf = re.search(r'name="csrf" value="([^"]+)"', pages["/"])
            assert csrf is not None
            form = {"csrf": csrf.group(1), "id": str(message_id), "confirmed": "yes"}
            async with http.post(console.url + "/dead/requeue", data=form) as done:
                assert done.status == 200
                pages["after requeue"] = await done.text()
    leaks = {where: canaries_in(html) for where, html in pages.items()}
    leaks["console log"] = canaries_in(console.log)
    assert {where: found for where, found in leaks.items() if found} == {}
    assert "Requeued 1 message." in pages["after requeue"]


async def test_show_pii_reveals_the_payload(pg: asyncpg.Connection, canary_url: str) -> None:
    """With --show-pii, dead show prints the payload's values as they were stored."""
    message_id = await pg.fetchval(
        "SELECT outbox.enqueue($1::jsonb, $2)", json.dumps(PAYLOAD), DEDUP_KEY
    )
    await pg.execute("UPDATE outbox.messages SET state = 'dead', dead_at = now()")
    shown = await acli("dead", "show", str(message_id), "--json", "--show-pii", db=canary_url)
    assert shown.code == 0, shown.err
    assert [c for c in PAYLOAD_CANARIES if c not in shown.out] == []
    assert shown.json()["dedup_key"] == DEDUP_KEY


def test_demo_shows_no_database_password(tmp_path: Any, canary_url: str) -> None:
    """The demo, given a database URL with passwords, prints and logs neither."""
    server = urlsplit(canary_url)._replace(path="/postgres").geturl()  # the query may hold a '/'

    done = subprocess.run(
        [sys.executable, "-m", "outbox_worker", "demo", "--json", "--count", "20",
         "--database-url", server],
        env=demo_env(tmp_path), cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert canaries_in(done.stdout + done.stderr) == []


async def test_no_canary_leaks_when_the_database_is_read_only(
    pg: asyncpg.Connection, database_url: str, canary_url: str
) -> None:
    """A worker (with and without target_session_attrs) and an operator write meeting a read-only server, as after a failover, say so without a password."""
    database = urlsplit(database_url).path.lstrip("/")
    await pg.execute(f'ALTER DATABASE "{database}" SET default_transaction_read_only = on')
    output: list[str] = []
    try:
        for url in (canary_url, f"{canary_url}&target_session_attrs=read-write"):
            worker = await spawn_worker(
                worker_env({"OUTBOX_DATABASE_URL": url, "OUTBOX_API_KEY": API_KEY,
                            "OUTBOX_ENDPOINT_URL": "http://127.0.0.1:9/v2/registration"})
            )  # fmt: skip
            try:
                waiting = await worker.wait_event("database.unavailable", timeout=30)
            finally:
                await worker.terminate(timeout=30)
            assert "is read-only" in waiting["error"]
            output += worker.lines
        paused = await acli("pause", "--reason", "canary", db=canary_url)
    finally:
        await pg.execute(f'ALTER DATABASE "{database}" RESET default_transaction_read_only')
    assert paused.code == 1, paused.err
    assert "is read-only" in paused.err
    assert canaries_in("\n".join([*output, paused.out, paused.err])) == []
