"""Canaries quoted back: answers whose text repeats the message's own values, in every spelling.

Ravelin's free text may quote any value of the body it refused: a name (in any script), an email,
a phone, an unknown field's value, a number. Here every message's 400 quotes its own canaries
in its message and its validation errors, as they were sent, in upper case and JSON-escaped. A
debug-logging worker dead-letters them; no canary may then appear in any log line, on /metrics,
or in `stats`, `dead list` and `dead show` (text and JSON) without --show-pii, in any spelling;
`stats` counts one reason for all of them; `dead show --show-pii` prints the answer as it came.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from tests.integration.test_worker_hostile import Endpoint, raw
from tests.processes import Run, acli, debug_worker_output

# Each person's values are canaries: none is on the allow-list's plain side except customerId,
# which `dead list` shows on purpose and is therefore not a canary.
PEOPLE: dict[str, dict[str, Any]] = {
    "cust-q1": {
        "name": "Maria Lindqvist",
        "givenName": "Zoë Ñúñez",
        "email": "maria.q7x@lindqvist.example",
        "telephone": "+46701234567",
        "loyalty": {"nickname": "Marulla Q", "card": 86753091},
    },
    "cust-q2": {
        "name": "山田 太郎",
        "givenName": "Мария Линдквист",
        "email": "taro.q7x@yamada.example",
        "telephone": "+81312345678",
        "loyalty": {"nickname": "Tarochan Q", "card": 97531864},
    },
}
CANARIES = [
    str(v)
    for person in PEOPLE.values()
    for v in [*[x for x in person.values() if isinstance(x, str)], *person["loyalty"].values()]
]
REASON = "400 Bad Request: customer *** named '***' (***) <***> tel *** card *** is not valid"


def spellings(canary: str) -> set[str]:
    """How a canary may be written: as it is, JSON-escaped (ASCII or not), case-folded."""
    forms = {canary, json.dumps(canary)[1:-1], json.dumps(canary, ensure_ascii=False)[1:-1]}
    return {f.casefold() for f in forms}


def canaries_in(text: str) -> list[str]:
    """The canaries that appear in ``text``, in any spelling, any case."""
    folded = text.casefold()
    return [c for c in CANARIES if any(s in folded for s in spellings(c))]


def quoting_answer(key: str, person: dict[str, Any]) -> bytes:
    """A 400 that quotes the person's values back, in several spellings."""
    nickname, card = person["loyalty"]["nickname"], person["loyalty"]["card"]
    message = (
        f"customer {key} named '{person['name']}' ({person['givenName'].upper()}) "
        f"<{person['email']}> tel {person['telephone']} card {card} is not valid"
    )
    errors = [
        {"field": "customer.givenName", "message": f"'{person['givenName']}' is not allowed"},
        f"customer.loyalty.nickname: {json.dumps(nickname)} unknown",
        {"field": "customer.loyalty.card", "value": card, "echo": {"name": person["name"]}},
    ]
    answer = {"status": 400, "message": message, "traceId": f"t-{key}", "validationErrors": errors}
    return json.dumps(answer).encode()


@pytest.fixture
async def endpoint() -> AsyncIterator[Endpoint]:
    """An endpoint that answers each person's update with a 400 quoting it back."""
    server = Endpoint()
    for key, person in PEOPLE.items():
        server.replies[key] = [raw(400, quoting_answer(key, person))]
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def run_worker(url: str, endpoint: Endpoint, pg: asyncpg.Connection) -> list[str]:
    """Run a debug-logging worker until every message is dead; its output and /metrics page."""
    return await debug_worker_output(
        {"OUTBOX_DATABASE_URL": url, "OUTBOX_ENDPOINT_URL": endpoint.url,
         "OUTBOX_API_KEY": "sk_test_quoted"},
        lambda: pg.fetchval(
            "SELECT count(*) = $1 FROM outbox.messages WHERE state = 'dead'", len(PEOPLE)
        ),
        message="every quoted message dead-lettered",
    )  # fmt: skip


async def enqueue_people(pg: asyncpg.Connection) -> list[int]:
    """One update per person; their message ids."""
    ids = []
    for key, person in PEOPLE.items():
        body = {
            "timestamp": 1_764_000_000_000,
            "registration": {"success": False},
            "customer": {"customerId": key, **person},
        }
        ids.append(await pg.fetchval("SELECT outbox.enqueue($1::jsonb)", json.dumps(body)))
    return ids


async def test_quoted_values_leak_nowhere(
    pg: asyncpg.Connection, database_url: str, endpoint: Endpoint
) -> None:
    """No quoted canary reaches a log line, /metrics, stats, dead list or dead show; stats
    counts one reason for both people."""
    ids = await enqueue_people(pg)
    worker_output = await run_worker(database_url, endpoint, pg)
    assert "delivery.dead_lettered" in worker_output[1]
    commands = [["stats"], ["stats", "--json"], ["dead", "list"], ["dead", "list", "--json"]]
    for message_id in ids:
        commands += [["dead", "show", str(message_id)], ["dead", "show", str(message_id), "--json"]]
    runs: list[Run] = [await acli(*command, db=database_url) for command in commands]
    assert [r.code for r in runs] == [0] * len(runs), [r.err for r in runs]
    leaks = {
        "worker log": canaries_in(worker_output[0] + worker_output[1]),
        "metrics": canaries_in(worker_output[2]),
        **{" ".join(c): canaries_in(r.out + r.err) for c, r in zip(commands, runs, strict=True)},
    }
    assert {where: found for where, found in leaks.items() if found} == {}
    assert runs[1].json()["top_dead_reasons"] == [{"reason": REASON, "count": len(PEOPLE)}]
    assert f"{len(PEOPLE):>8}  {REASON[:60]}" in runs[0].out  # one line, cut to the width


async def test_show_pii_shows_the_answer_as_it_came(
    pg: asyncpg.Connection, database_url: str, endpoint: Endpoint
) -> None:
    """dead show --show-pii prints the endpoint's answer whole, quoted values included."""
    ids = await enqueue_people(pg)
    await run_worker(database_url, endpoint, pg)
    for message_id, (key, person) in zip(ids, PEOPLE.items(), strict=True):
        shown = await acli("dead", "show", str(message_id), "--json", "--show-pii", db=database_url)
        assert shown.code == 0, shown.err
        sent = json.loads(quoting_answer(key, person))
        response = shown.json()["last_response"]
        assert response["message"] == sent["message"]
        assert response["validationErrors"] == sent["validationErrors"]
        text = await acli("dead", "show", str(message_id), "--show-pii", db=database_url)
        assert person["name"] in text.out
