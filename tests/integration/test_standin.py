"""The stand-in answers like Ravelin's POST /v2/registration and injects the faults it is told to.

Real sockets: aiohttp's client against the real server on 127.0.0.1, port 0.
"""

from __future__ import annotations

import asyncio
import io
import json
import random
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from outbox_worker import standin as standin_module
from outbox_worker.errors import ConfigError
from outbox_worker.standin import BAD_KEY_MESSAGE, BodyVariant, StandIn, Step
from outbox_worker.standin.steps import ABSURD_RETRY_AFTER, HUGE_BYTES, REDIRECT_LOCATION
from tests.cases import KEY, update
from tests.waiting import wait_for

AUTH = {"Authorization": f"token {KEY}"}


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def post(
    http: aiohttp.ClientSession,
    url: str,
    body: object = None,
    *,
    raw: bytes | None = None,
    headers: Mapping[str, str] = AUTH,
    params: Mapping[str, str] | None = None,
) -> Answer:
    """POST ``body`` as JSON (or ``raw`` bytes) and read the whole answer."""
    data = raw if raw is not None else json.dumps(update() if body is None else body).encode()
    sent = {"Content-Type": "application/json", **headers}
    post = http.post(url, data=data, headers=sent, params=params, allow_redirects=False)
    async with post as response:
        return Answer(response.status, response.headers, await response.read())


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def assert_ravelin_error(answer: Answer, status: int) -> dict[str, Any]:
    """The answer is a Ravelin-shaped error body for ``status``; returns the body."""
    assert answer.status == status
    body: dict[str, Any] = answer.json()
    assert body["status"] == status
    assert isinstance(body["message"], str)
    assert body["message"]
    uuid.UUID(body["traceId"])
    assert ("validationErrors" in body) == (status == 400)
    return body


async def test_healthy_update_is_answered_200_with_status_and_timestamp(
    standin: StandIn, http: aiohttp.ClientSession
) -> None:
    """A valid update gets 200 {"status":200,"timestamp":<ms now>} as JSON."""
    before = time.time_ns() // 1_000_000
    answer = await post(http, standin.url)
    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("application/json")
    body = answer.json()
    assert set(body) == {"status", "timestamp"}
    assert body["status"] == 200
    assert before <= body["timestamp"] <= time.time_ns() // 1_000_000


async def test_url_and_base_url_name_the_bound_port(standin: StandIn) -> None:
    """Port 0 is replaced by the port the server actually bound."""
    assert standin.port > 0
    assert standin.base_url == f"http://127.0.0.1:{standin.port}"
    assert standin.url == f"http://127.0.0.1:{standin.port}/v2/registration"


async def test_every_request_is_recorded_with_its_answer(
    standin: StandIn, http: aiohttp.ClientSession
) -> None:
    """Each request is kept as Received(body, headers, at, status), in arrival order."""
    sent = json.dumps(update(customer={"customerId": "c1"})).encode()
    before = time.monotonic()
    await post(http, standin.url, raw=sent)
    await post(http, standin.url, raw=sent, headers={"Authorization": "token wrong"})
    assert standin.count == 2
    first, second = standin.received
    assert first.body == sent
    assert first.headers["Authorization"] == f"token {KEY}"
    assert before <= first.at <= second.at <= time.monotonic()
    assert (first.status, second.status) == (200, 401)
    assert standin.bodies() == [sent, sent]
    assert standin.bodies(status=401) == [sent]
    assert standin.counts() == {200: 1, 401: 1}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "token sk_test_other"},
        {"Authorization": f"Bearer {KEY}"},
        {"Authorization": f"Token {KEY}"},
        {"Authorization": f"token  {KEY}"},
        {"Authorization": KEY},
    ],
    ids=["missing", "other-key", "bearer", "capital-token", "two-spaces", "bare-key"],
)
async def test_anything_but_the_exact_token_header_is_401(
    standin: StandIn, http: aiohttp.ClientSession, headers: dict[str, str]
) -> None:
    """Authorization must be exactly `token <api_key>`; otherwise Ravelin's 401 body."""
    answer = await post(http, standin.url, headers=headers)
    body = assert_ravelin_error(answer, 401)
    assert body["message"] == BAD_KEY_MESSAGE


async def test_set_api_key_changes_the_accepted_key(
    standin: StandIn, http: aiohttp.ClientSession
) -> None:
    """After set_api_key the new key is accepted and the old one refused."""
    standin.set_api_key("sk_test_new")
    assert (await post(http, standin.url)).status == 401
    fixed = await post(http, standin.url, headers={"Authorization": "token sk_test_new"})
    assert fixed.status == 200


@pytest.mark.parametrize(
    ("raw", "fields"),
    [
        (b"not json", [""]),
        (b"[]", [""]),
        (b"null", [""]),
        (b'{"registration": {"success": true}}', ["timestamp"]),
        (b'{"timestamp": "1700000000000", "registration": {"success": true}}', ["timestamp"]),
        (b'{"timestamp": 1700000000000.5, "registration": {"success": true}}', ["timestamp"]),
        (b'{"timestamp": true, "registration": {"success": true}}', ["timestamp"]),
        (b'{"timestamp": 1700000000000}', ["registration"]),
        (b'{"timestamp": 1700000000000, "registration": []}', ["registration"]),
        (b'{"timestamp": 1700000000000, "registration": {}}', ["registration.success"]),
        (
            b'{"timestamp": 1700000000000, "registration": {"success": "yes"}}',
            ["registration.success"],
        ),
        (b'{"timestamp": 1, "registration": {"success": 1}}', ["registration.success"]),
        (b"{}", ["timestamp", "registration"]),
    ],
)
async def test_bad_shapes_are_400_with_validation_errors(
    standin: StandIn, http: aiohttp.ClientSession, raw: bytes, fields: list[str]
) -> None:
    """A body without integer timestamp and boolean registration.success is 400, field by field."""
    body = assert_ravelin_error(await post(http, standin.url, raw=raw), 400)
    assert [error["field"] for error in body["validationErrors"]] == fields
    assert all(error["message"] for error in body["validationErrors"])


async def test_content_type_other_than_json_is_400(
    standin: StandIn, http: aiohttp.ClientSession
) -> None:
    """A body sent as text/plain is refused with 400, as a fault of the message."""
    answer = await post(http, standin.url, headers={**AUTH, "Content-Type": "text/plain"})
    body = assert_ravelin_error(answer, 400)
    assert body["validationErrors"][0]["field"] == "Content-Type"


async def test_json_with_charset_is_accepted(standin: StandIn, http: aiohttp.ClientSession) -> None:
    """`application/json; charset=utf-8`, which Ravelin asks for, is fine."""
    headers = {**AUTH, "Content-Type": "application/json; charset=utf-8"}
    assert (await post(http, standin.url, headers=headers)).status == 200


@pytest.mark.parametrize("score", ["accountRegistration", "true"])
async def test_score_parameter_is_400(
    standin: StandIn, http: aiohttp.ClientSession, score: str
) -> None:
    """Updates never ask for a recommendation: ?score=... is refused."""
    answer = await post(http, standin.url, params={"score": score})
    assert assert_ravelin_error(answer, 400)["message"] == "score is not expected on updates"


async def test_other_paths_are_404_json(standin: StandIn, http: aiohttp.ClientSession) -> None:
    """An unknown path gets a Ravelin-shaped 404."""
    answer = await post(http, standin.base_url + "/v3/registration")
    assert_ravelin_error(answer, 404)


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
async def test_other_methods_on_registration_are_405_json(
    standin: StandIn, http: aiohttp.ClientSession, method: str
) -> None:
    """Only POST is allowed on /v2/registration."""
    async with http.request(method, standin.url, headers=AUTH) as response:
        answer = Answer(response.status, response.headers, await response.read())
    assert_ravelin_error(answer, 405)
    assert answer.headers["Allow"] == "POST"


async def test_global_script_is_consumed_in_order_then_default(
    standin: StandIn, http: aiohttp.ClientSession
) -> None:
    """Scripted statuses answer one request each; then the default status (here 401) applies."""
    standin.set_script([503, 500, 200, 429])
    standin.set_default_status(401)
    statuses = [(await post(http, standin.url)).status for _ in range(6)]
    assert statuses == [503, 500, 200, 429, 401, 401]
    standin.set_default_status(200)
    assert (await post(http, standin.url)).status == 200


async def test_scripted_200_still_checks_the_request(
    standin: StandIn, http: aiohttp.ClientSession
) -> None:
    """A scripted 200 means healthy handling: a wrong key is still 401."""
    standin.set_script([200])
    assert (await post(http, standin.url, headers={})).status == 401


@pytest.mark.parametrize(
    ("parts", "key"),
    [
        ({"customer": {"customerId": "cust-1"}}, "cust-1"),
        ({"customer": {"customerId": 42}}, "42"),
        ({"supplier": {"supplierId": "sup-1"}}, "sup-1"),
        ({"registration": {"success": False, "username": "alice"}}, "alice"),
    ],
    ids=["customerId", "numeric-customerId", "supplierId", "username"],
)
async def test_per_message_script_applies_to_that_message_only(
    standin: StandIn, http: aiohttp.ClientSession, parts: dict[str, Any], key: str
) -> None:
    """script_for(key) answers that message's requests in order, then healthy; others unaffected."""
    standin.script_for(key, [400, 503])
    other = update(customer={"customerId": "someone-else"})
    assert (await post(http, standin.url, other)).status == 200
    mine = update(**parts)
    statuses = [(await post(http, standin.url, mine)).status for _ in range(3)]
    assert statuses == [400, 503, 200]


async def test_customer_id_wins_over_username(
    standin: StandIn, http: aiohttp.ClientSession
) -> None:
    """The key is customer.customerId when present, even if a username is given too."""
    standin.script_for("alice", [503])
    body = update(
        customer={"customerId": "c1"}, registration={"success": True, "username": "alice"}
    )
    assert (await post(http, standin.url, body)).status == 200


async def test_per_message_script_comes_before_the_global_one(
    standin: StandIn, http: aiohttp.ClientSession
) -> None:
    """A message's own script is used first; the global script waits for the next request."""
    standin.set_script([503])
    standin.script_for("c1", [400])
    body = update(customer={"customerId": "c1"})
    statuses = [(await post(http, standin.url, body)).status for _ in range(3)]
    assert statuses == [400, 503, 200]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 406, 413, 422, 429, 500, 502, 503])
async def test_injected_errors_are_shaped_like_ravelins(
    standin: StandIn, http: aiohttp.ClientSession, status: int
) -> None:
    """Every injected error has status, message and traceId; 400 also validationErrors."""
    standin.set_script([status])
    assert_ravelin_error(await post(http, standin.url), status)


async def test_retry_after_is_attached_to_the_chosen_statuses(
    standin: StandIn, http: aiohttp.ClientSession
) -> None:
    """Retry-After goes with 429 and 503 only, until cleared."""
    standin.set_retry_after("2", statuses=(429, 503))
    standin.set_script([429, 503, 500, 200, 503])
    answers = [await post(http, standin.url) for _ in range(4)]
    assert [a.headers.get("Retry-After") for a in answers] == ["2", "2", None, None]
    standin.set_retry_after(None, statuses=[503])
    assert "Retry-After" not in (await post(http, standin.url)).headers


async def test_latency_delays_every_answer(standin: StandIn, http: aiohttp.ClientSession) -> None:
    """set_latency(s) makes each answer take at least s seconds."""
    standin.set_latency(0.2)
    started = time.monotonic()
    answer = await post(http, standin.url)
    assert answer.status == 200
    assert time.monotonic() - started >= 0.2


@pytest.mark.parametrize(
    ("value", "expected"), [(0.02, 0.02), ([0.03, 0.12], (0.03, 0.12)), (0, 0.0)]
)
def test_control_api_sets_a_fixed_latency_or_a_range(
    value: object, expected: float | tuple[float, float]
) -> None:
    """The control API's latency is seconds, or [low, high] seconds."""
    standin = StandIn()
    standin.apply({"latency": value})
    assert standin._faults.latency == expected


def test_reset_keeps_the_latency_the_stand_in_was_started_with() -> None:
    """A benchmark's reset between rounds does not take away the configured latency."""
    standin = StandIn(latency=(0.03, 0.12))
    standin.set_latency(1)
    standin.reset()
    assert standin._faults.latency == (0.03, 0.12)


@pytest.mark.parametrize("value", [[0.2, 0.1], [-1, 1], [0.1], "0.1", True])
def test_control_api_refuses_a_bad_latency(value: object) -> None:
    """A range ending below its start, a negative bound or a non-number is refused."""
    with pytest.raises((ValueError, TypeError)):
        StandIn().apply({"latency": value})


@pytest.mark.parametrize(("text", "expected"), [("0.05", 0.05), ("0.03-0.12", (0.03, 0.12))])
def test_command_line_latency_is_fixed_or_a_range(
    text: str, expected: float | tuple[float, float]
) -> None:
    """--latency takes seconds or LOW-HIGH seconds."""
    assert standin_module.parse_latency(text) == expected


async def test_in_progress_counts_requests_not_yet_answered(
    standin: StandIn, http: aiohttp.ClientSession
) -> None:
    """A slow request counts as in progress until it is answered."""
    standin.set_latency(0.3)
    request = asyncio.create_task(post(http, standin.url))
    await wait_for(lambda: standin.in_progress == 1, timeout=5)
    assert standin.count == 0
    assert (await request).status == 200
    assert (standin.in_progress, standin.count) == (0, 1)


async def test_ravelin_min_latency_header_delays_the_answer(
    standin: StandIn, http: aiohttp.ClientSession
) -> None:
    """Like Ravelin's sandbox, `Ravelin-Min-Latency: <ms>` makes that request slower."""
    started = time.monotonic()
    await post(http, standin.url, headers={**AUTH, "Ravelin-Min-Latency": "150"})
    assert time.monotonic() - started >= 0.15


@pytest.mark.parametrize("drop", ["drop", 0])
async def test_drop_closes_the_connection_without_an_answer(
    standin: StandIn, http: aiohttp.ClientSession, drop: Step
) -> None:
    """A scripted drop closes the connection; it is recorded as 0 and the next request is fine."""
    standin.set_script([drop])
    with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
        await post(http, standin.url)
    assert standin.counts() == {0: 1}
    assert (await post(http, standin.url)).status == 200


@pytest.mark.parametrize(
    ("variant", "check"),
    [
        (BodyVariant.EMPTY, lambda body: body == b""),
        (BodyVariant.NULL, lambda body: body == b"null"),
        (BodyVariant.EXTRA, lambda body: json.loads(body)["unknownField"] == "x"),
        (BodyVariant.NORMAL, lambda body: set(json.loads(body)) == {"status", "timestamp"}),
    ],
)
async def test_body_variants_of_200(
    standin: StandIn, http: aiohttp.ClientSession, variant: BodyVariant, check: Any
) -> None:
    """The 200 body can be empty, null, or carry unknown fields, as Ravelin's can."""
    standin.set_body(variant)
    answer = await post(http, standin.url)
    assert answer.status == 200
    assert check(answer.body)


def test_invalid_faults_are_refused() -> None:
    """Statuses must be HTTP statuses or "drop"; latency must not be negative."""
    standin = StandIn()
    for bad in (["teapot"], [99], [True], [600]):
        with pytest.raises(ValueError, match="scripted status"):
            standin.set_script(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="latency"):
        standin.set_latency(-1)
    with pytest.raises(ValueError, match="loud"):
        standin.set_body("loud")


async def test_reset_clears_faults_and_records_but_keeps_the_key(
    standin: StandIn, http: aiohttp.ClientSession
) -> None:
    """After reset() the stand-in is healthy again, with nothing recorded, and the same key."""
    await post(http, standin.url)
    standin.set_script([503, 503])
    standin.script_for("c1", [400])
    standin.set_default_status(500)
    standin.set_latency(5)
    standin.set_body("null")
    standin.reset()
    assert standin.count == 0
    assert standin.counts() == {}
    answer = await post(http, standin.url, update(customer={"customerId": "c1"}))
    assert answer.status == 200
    assert answer.json()["status"] == 200


async def test_control_api_round_trip(standin: StandIn, http: aiohttp.ClientSession) -> None:
    """Faults set over HTTP take effect; /_standin/received counts; /_standin/reset clears."""
    faults = {
        "script": [503, "drop"],
        "scripts": {"c9": [422]},
        "retry_after": {"503": "7"},
        "body": "extra",
        "latency": 0,
        "default_status": 200,
    }
    async with http.post(standin.base_url + "/_standin/faults", json=faults) as response:
        assert response.status == 200
    first = await post(http, standin.url)
    assert (first.status, first.headers["Retry-After"]) == (503, "7")
    with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
        await post(http, standin.url)
    assert (await post(http, standin.url, update(customer={"customerId": "c9"}))).status == 422
    assert (await post(http, standin.url)).json()["unknownField"] == "x"

    async with http.get(standin.base_url + "/_standin/received") as response:
        counts = await response.json()
    assert counts == {"total": 4, "by_status": {"0": 1, "200": 1, "422": 1, "503": 1}}
    async with http.get(standin.base_url + "/_standin/received?bodies=1") as response:
        with_bodies = await response.json()
    assert [json.loads(body) for body in with_bodies["bodies"]][2]["customer"] == {
        "customerId": "c9"
    }

    async with http.post(standin.base_url + "/_standin/reset") as response:
        assert response.status == 200
    assert standin.count == 0
    assert (await post(http, standin.url)).json().keys() == {"status", "timestamp"}


async def test_control_api_sets_the_api_key(standin: StandIn, http: aiohttp.ClientSession) -> None:
    """A separate process can "fix the key" over HTTP."""
    async with http.post(standin.base_url + "/_standin/faults", json={"api_key": "k2"}):
        pass
    assert (await post(http, standin.url, headers={"Authorization": "token k2"})).status == 200


@pytest.mark.parametrize(
    "faults",
    [
        b'{"scrpit": [503]}',
        b'{"script": [503], "latency": "slow"}',
        b'{"script": 503}',
        b'{"script": ["teapot"]}',
        b'{"retry_after": {"503": 2}}',
        b'{"body": "loud"}',
        b"[503]",
        b"not json",
    ],
)
async def test_control_api_refuses_bad_faults_and_changes_nothing(
    standin: StandIn, http: aiohttp.ClientSession, faults: bytes
) -> None:
    """A bad control request is a 400 that names the problem; no fault is half applied."""
    url = standin.base_url + "/_standin/faults"
    async with http.post(url, data=faults, headers={"Content-Type": "application/json"}) as resp:
        assert resp.status == 400
        assert "faults not set" in (await resp.json())["message"]
    assert (await post(http, standin.url)).status == 200


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.1", "example.com", "::"])
def test_non_loopback_hosts_are_refused(host: str) -> None:
    """The control API has no auth, so only loopback unless allow_remote=True."""
    with pytest.raises(ConfigError, match="allow_remote"):
        StandIn(host=host)
    StandIn(host=host, allow_remote=True)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1"])
def test_loopback_hosts_are_accepted(host: str) -> None:
    """Any loopback address or `localhost` is fine without allow_remote."""
    StandIn(host=host)


# --- Hostile answers: named script steps ------------------------------------------------------


def _nul_warning(answer: Answer) -> None:
    assert b"\\u0000" in answer.body
    assert answer.json()["data"]["warnings"][0]["class"] == "x\x00y"


def _lone_surrogate(answer: Answer) -> None:
    body = assert_ravelin_error(answer, 400)
    assert b"\\ud800" in answer.body
    assert "\ud800" in body["validationErrors"][0]["message"]


def _absurd_retry_after(answer: Answer) -> None:
    assert answer.headers["Retry-After"] == ABSURD_RETRY_AFTER
    assert_ravelin_error(answer, answer.status)


def _huge(answer: Answer) -> None:
    assert len(answer.body) >= HUGE_BYTES
    assert answer.json()["status"] == answer.status


def _redirect(answer: Answer) -> None:
    assert answer.headers["Location"] == REDIRECT_LOCATION


HOSTILE_STEPS = [
    pytest.param("nul200", 200, _nul_warning, id="nul200"),
    pytest.param("surrogate400", 400, _lone_surrogate, id="surrogate400"),
    pytest.param("absurd429", 429, _absurd_retry_after, id="absurd429"),
    pytest.param("absurd503", 503, _absurd_retry_after, id="absurd503"),
    pytest.param("huge200", 200, _huge, id="huge200"),
    pytest.param("huge400", 400, _huge, id="huge400"),
    pytest.param("redirect307", 307, _redirect, id="redirect307"),
    pytest.param("redirect302", 302, _redirect, id="redirect302"),
]


@pytest.mark.parametrize(("step", "status", "check"), HOSTILE_STEPS)
@pytest.mark.parametrize("where", ["script", "per-message", "default"])
async def test_hostile_steps_answer_as_documented_wherever_they_are_scripted(
    standin: StandIn,
    http: aiohttp.ClientSession,
    step: Step,
    status: int,
    check: Any,
    where: str,
) -> None:
    """Each named step answers its status, body and headers from the global script, a message's own script or the default, and is recorded with its name."""
    if where == "script":
        standin.set_script([step])
    elif where == "per-message":
        standin.script_for("c1", [step])
    else:
        standin.set_default_status(step)
    answer = await post(http, standin.url, update(customer={"customerId": "c1"}))
    assert answer.status == status
    check(answer)
    [received] = standin.received
    assert (received.status, received.step, received.key) == (status, step, "c1")
    assert received.at <= received.answered_at


@pytest.mark.parametrize("step", ["nul200", "huge200", "slow"])
async def test_hostile_200_steps_still_check_the_request(
    standin: StandIn, http: aiohttp.ClientSession, step: Step
) -> None:
    """A 200-class step answers as a 200 would: a wrong key is still 401, and recorded so."""
    standin.set_slow_seconds(0.05)
    standin.set_script([step])
    assert (await post(http, standin.url, headers={})).status == 401
    assert [(r.status, r.step) for r in standin.received] == [(401, step)]


@pytest.mark.parametrize("status", [201, 204])
async def test_other_2xx_statuses_are_answered_as_scripted(
    standin: StandIn, http: aiohttp.ClientSession, status: int
) -> None:
    """A scripted 201 or 204 is answered with that status, even to a request that would fail the checks."""
    standin.set_script([status, status])
    assert (await post(http, standin.url)).status == status
    assert (await post(http, standin.url, headers={})).status == status


async def test_plain_steps_are_recorded_by_their_status(
    standin: StandIn, http: aiohttp.ClientSession
) -> None:
    """An answer from a status step or the healthy default is recorded with the status as its step name."""
    standin.set_script([503, "drop"])
    await post(http, standin.url)
    with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
        await post(http, standin.url)
    await post(http, standin.url)
    assert [(r.status, r.step, r.key) for r in standin.received] == [
        (503, "503", None),
        (0, "drop", None),
        (200, "200", None),
    ]


async def test_slow_answers_200_after_slow_seconds(
    standin: StandIn, http: aiohttp.ClientSession
) -> None:
    """A slow step answers a normal 200 only after slow_seconds."""
    standin.set_slow_seconds(0.3)
    standin.set_script(["slow"])
    started = time.monotonic()
    answer = await post(http, standin.url)
    assert time.monotonic() - started >= 0.3
    assert set(answer.json()) == {"status", "timestamp"}
    [received] = standin.received
    assert received.answered_at - received.at >= 0.3


async def test_slow_answer_is_recorded_even_when_the_client_gave_up(
    standin: StandIn, http: aiohttp.ClientSession
) -> None:
    """A client that times out before a slow answer still leaves a 200 on the record: the stand-in accepted it."""
    standin.set_slow_seconds(0.4)
    standin.set_default_status("slow")
    with pytest.raises(TimeoutError):
        await _post_with_timeout(http, standin.url, 0.1)
    await wait_for(lambda: standin.count == 1, timeout=5, message="the slow answer recorded")
    assert [(r.status, r.step) for r in standin.received] == [(200, "slow")]


async def _post_with_timeout(http: aiohttp.ClientSession, url: str, timeout: float) -> None:
    data = json.dumps(update()).encode()
    headers = {"Content-Type": "application/json", **AUTH}
    limit = aiohttp.ClientTimeout(total=timeout)
    async with http.post(url, data=data, headers=headers, timeout=limit) as response:
        await response.read()


async def test_latency_range_draws_are_seeded(
    standin: StandIn, http: aiohttp.ClientSession
) -> None:
    """A latency range delays each answer by a uniform draw from a generator seeded as asked."""
    standin.set_latency((0.0, 0.3), seed=7)
    draws = random.Random(7)
    expected = [draws.uniform(0.0, 0.3) for _ in range(3)]
    for _ in expected:
        await post(http, standin.url)
    delays = [r.answered_at - r.at for r in standin.received]
    for delay, drawn in zip(delays, expected, strict=True):
        assert drawn - 0.005 <= delay < drawn + 0.25, (delays, expected)


@pytest.mark.parametrize("latency", [(0.2, 0.1), (-0.1, 0.1), [0.1], (0.1, 0.2, 0.3)], ids=str)
def test_bad_latency_ranges_are_refused(latency: Any) -> None:
    """A range is two non-negative numbers, low first."""
    with pytest.raises(ValueError, match="latency"):
        StandIn().set_latency(latency)


async def test_control_api_sets_the_new_faults(
    standin: StandIn, http: aiohttp.ClientSession
) -> None:
    """Named steps, a latency range, its seed and slow_seconds can be set over HTTP."""
    faults = {
        "script": ["redirect307", "absurd429"],
        "scripts": {"c9": ["huge400"]},
        "default_status": "slow",
        "latency": [0.0, 0.01],
        "seed": 3,
        "slow_seconds": 0.05,
    }
    async with http.post(standin.base_url + "/_standin/faults", json=faults) as response:
        assert response.status == 200
    assert (await post(http, standin.url)).status == 307
    assert (await post(http, standin.url)).headers["Retry-After"] == ABSURD_RETRY_AFTER
    assert (await post(http, standin.url, update(customer={"customerId": "c9"}))).status == 400
    assert (await post(http, standin.url)).status == 200
    assert [r.step for r in standin.received] == ["redirect307", "absurd429", "huge400", "slow"]


@pytest.mark.parametrize(
    "faults",
    [
        b'{"script": ["nul201"]}',
        b'{"default_status": "slower"}',
        b'{"latency": [0.2, 0.1]}',
        b'{"latency": [0.1]}',
        b'{"seed": "x"}',
        b'{"slow_seconds": -1}',
        b'{"script": ["slow"], "slow_seconds": "long"}',
    ],
)
async def test_control_api_refuses_bad_new_faults(
    standin: StandIn, http: aiohttp.ClientSession, faults: bytes
) -> None:
    """Unknown step names, bad latency ranges, seeds and slow_seconds are refused, all or nothing."""
    url = standin.base_url + "/_standin/faults"
    async with http.post(url, data=faults, headers={"Content-Type": "application/json"}) as resp:
        assert resp.status == 400
    assert (await post(http, standin.url)).status == 200


# --- Outage: stop and start on the same port --------------------------------------------------


async def test_stop_then_start_serves_the_same_port_again() -> None:
    """A full outage: after stop() connections are refused; start() binds the same port again, keeping scripts and records, as many times as asked."""
    standin = StandIn(KEY)
    await standin.start()
    # A new connection per request, so "refused" is what a fresh connect meets.
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
    try:
        port = standin.port
        standin.script_for("c1", [503, 503, 503, 503])
        for round_ in range(4):
            assert (
                await post(http, standin.url, update(customer={"customerId": "c1"}))
            ).status == 503
            await standin.stop()
            assert not standin.running
            with pytest.raises(aiohttp.ClientConnectorError):
                await post(http, standin.url)
            await standin.start()
            assert (standin.running, standin.port) == (True, port)
            assert standin.count == round_ + 1
        assert (await post(http, standin.url, update(customer={"customerId": "c1"}))).status == 200
    finally:
        await http.close()
        await standin.stop()


async def test_a_new_stand_in_can_take_a_fixed_port_right_after_the_old_one_stopped(
    http: aiohttp.ClientSession,
) -> None:
    """StandIn(port=<fixed>) binds a port another stand-in just gave up, with connections from it still in TIME_WAIT."""
    async with StandIn(KEY) as first:
        port = first.port
        assert (await post(http, first.url)).status == 200
    async with StandIn(KEY, port=port) as second:
        assert (await post(http, second.url)).status == 200


async def test_start_twice_is_refused(standin: StandIn) -> None:
    """Starting a running stand-in is a mistake, not a second server."""
    with pytest.raises(RuntimeError, match="already listens"):
        await standin.start()


async def test_bodies_over_a_mebibyte_are_received_and_recorded(
    standin: StandIn, http: aiohttp.ClientSession
) -> None:
    """A 2 MiB update is answered like any other and recorded, not refused by the server's own size limit."""
    body = json.dumps(update(customer={"customerId": "big"}, padding="x" * (2 * 1024 * 1024)))
    headers = {"Content-Type": "application/json", **AUTH}
    # A stream: aiohttp warns about sending megabytes of raw bytes at once.
    async with http.post(standin.url, data=io.BytesIO(body.encode()), headers=headers) as response:
        assert response.status == 200
    assert [(r.key, len(r.body) > 2 * 1024 * 1024) for r in standin.received] == [("big", True)]
