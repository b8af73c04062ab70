"""The console in Debian's Chromium: signing in, reading, filtering, acting, as a person would."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import asyncpg
from playwright.async_api import Page, expect

from tests.browser.conftest import BrowserErrors
from tests.browser.harness import ConsoleProcess
from tests.browser.steps import csrf_of, dead_rows, overview_shows, sign_in, stat
from tests.cases import registration_update
from tests.integration.rows import PII_PAYLOAD, PII_VALUES, insert_message
from tests.processes import StartWorker, acli
from tests.waiting import count_by_state, wait_for


async def insert_dead_updates(pg: asyncpg.Connection, count: int, status: int = 503) -> list[int]:
    """``count`` dead letters the stand-in accepts once requeued, newest last."""
    ids = []
    for i in range(count):
        ids.append(
            await insert_message(
                pg,
                payload=registration_update(i, f"dead-{status}-{i}"),
                ago=timedelta(minutes=count - i),
                last_status=status,
                last_error=f"HTTP {status}: Service Unavailable",
                dedup_key=f"key-{status}-{i}",
            )
        )
    return ids


async def test_sign_in_and_out(
    page: Page, console: ConsoleProcess, browser_errors: BrowserErrors
) -> None:
    """A wrong token is refused; the right one signs in; sign-out ends the session."""
    await page.goto(console.url + "/dead")
    await expect(page).to_have_url(re.compile("/signin$"))
    await page.get_by_label("Sign-in token").fill("ow_wrongtok_" + "x" * 40)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_have_text("That token is not valid.")
    browser_errors.clear()  # the 401 of the refused sign-in
    await page.get_by_label("Sign-in token").fill(console.admin_token)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    await expect(page.get_by_text("ada (admin)")).to_be_visible()
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await page.goto(console.url + "/")
    await expect(page).to_have_url(re.compile("/signin$"))


async def test_overview_numbers_equal_stats_json(
    page: Page, console: ConsoleProcess, pg: asyncpg.Connection, operator_url: str
) -> None:
    """Each count on the overview is what `stats --json` prints."""
    await insert_dead_updates(pg, 3)
    for state, ago in [("acknowledged", 30), ("acknowledged", 3000), ("pending", 0)]:
        await insert_message(pg, state=state, ago=timedelta(seconds=ago), last_status=None)
    await sign_in(page, console, console.admin_token)
    await overview_shows(page, console.url, "Dead", "3")
    stats = (await acli("stats", "--json", db=operator_url)).json()
    labels = {
        "Pending": "pending", "Claimed by workers": "claimed", "Acknowledged": "acknowledged",
        "Dead": "dead", "Dead, last hour": "dead_last_hour", "Dead, last day": "dead_last_day",
        "Delivered, last minute": "delivered_last_minute",
        "Delivered, last hour": "delivered_last_hour",
    }  # fmt: skip
    shown = {key: int(await stat(page, label).inner_text()) for label, key in labels.items()}
    assert shown == {key: stats[key] for key in labels.values()}
    assert shown["dead"] == 3
    chart = page.get_by_role("img", name=re.compile("^Per minute, last hour: 2 delivered, 3 dead"))
    await expect(chart).to_be_visible()


async def test_filtering_dead_letters(
    page: Page, console: ConsoleProcess, pg: asyncpg.Connection
) -> None:
    """Status code, reason text, dedup key and time window each narrow the list."""
    await insert_dead_updates(pg, 3, status=503)
    await insert_dead_updates(pg, 2, status=400)
    await insert_message(pg, ago=timedelta(days=3), last_status=422, last_error="old and odd")
    await sign_in(page, console, console.viewer_token)
    await page.get_by_role("link", name="Dead letters").click()
    await expect(dead_rows(page)).to_have_count(6)
    await page.get_by_label("Status code").fill("503")
    await page.get_by_role("button", name="Filter").click()
    await expect(dead_rows(page)).to_have_count(3)
    await page.get_by_label("Status code").fill("")
    await page.get_by_label("Reason contains").fill("ODD")
    await page.get_by_role("button", name="Filter").click()
    await expect(dead_rows(page)).to_have_count(1)
    await page.get_by_role("link", name="Clear").click()
    await page.get_by_label("Dedup key").fill("key-400-1")
    await page.get_by_role("button", name="Filter").click()
    await expect(dead_rows(page)).to_have_count(1)
    await page.get_by_role("link", name="Clear").click()
    await page.get_by_label("Dead within").select_option(label="24 hours")
    await page.get_by_role("button", name="Filter").click()
    await expect(dead_rows(page)).to_have_count(5)


async def test_pages_through_dead_letters_by_keyset(
    page: Page, console: ConsoleProcess, pg: asyncpg.Connection
) -> None:
    """Older and Newest walk 120 dead letters 50 at a time, every row once."""
    await pg.execute(
        "INSERT INTO outbox.messages (payload, state, dead_at, last_status, last_error) "
        "SELECT '{\"timestamp\": 1}'::jsonb, 'dead', now() - make_interval(secs => g % 7), "
        "503, 'HTTP 503' FROM generate_series(1, 120) g"
    )  # ties on dead_at: the id breaks them
    await sign_in(page, console, console.viewer_token)
    await page.goto(console.url + "/dead")
    seen: list[str] = []
    for expected in (50, 50, 20):
        rows = dead_rows(page)
        await expect(rows).to_have_count(expected)
        seen += await rows.get_by_role("link").all_inner_texts()
        if expected == 50:
            await page.get_by_role("link", name="Older").click()
    assert sorted(seen) == sorted(set(seen))
    assert len(seen) == 120
    await expect(page.get_by_role("link", name="Older")).to_have_count(0)
    await page.get_by_role("link", name="Newest").click()
    await expect(dead_rows(page)).to_have_count(50)


async def test_detail_page_shows_the_answer_and_timeline_masked(
    page: Page, console: ConsoleProcess, pg: asyncpg.Connection
) -> None:
    """The detail page has Ravelin's message, traceId, validation errors, attempts, no PII."""
    answer = {
        "message": "Invalid Request: customer.email is invalid",
        "traceId": "trace-abc-123",
        "validationErrors": [{"field": "customer.email", "message": "not an email"}],
    }
    history = [
        {"at": "2026-12-05T10:00:00+00:00", "status": 503, "error": "HTTP 503", "latency_ms": 41},
        {"at": "2026-12-05T10:01:00+00:00", "status": 400, "error": "Invalid", "latency_ms": 12},
    ]
    message_id = await insert_message(
        pg, payload=PII_PAYLOAD, history=history, last_response=answer, attempts=2,
        last_error="HTTP 400: email john.smith@example.com is invalid",
        dedup_key="signup:john.smith@example.com",
    )  # fmt: skip
    await sign_in(page, console, console.viewer_token)
    await page.get_by_role("link", name="Dead letters").click()
    await page.get_by_role("link", name=str(message_id), exact=True).click()
    await expect(page.get_by_role("heading", name=f"Message {message_id}")).to_be_visible()
    answer_table = page.get_by_role("table", name="Ravelin's answer")
    await expect(answer_table).to_contain_text("trace-abc-123")
    await expect(answer_table).to_contain_text("Invalid Request")
    await expect(page.get_by_role("heading", name="Validation errors")).to_be_visible()
    await expect(
        page.get_by_role("listitem").filter(has_text="attempt 2: status 400")
    ).to_be_visible()
    await expect(page.get_by_role("heading", name="Body (personal data masked)")).to_be_visible()
    html = await page.content()
    assert [v for v in PII_VALUES if v in html] == []
    assert "cust-42" in html  # allowed ids stay readable


async def test_requeue_two_selected_then_everything_matching(
    page: Page, console: ConsoleProcess, pg: asyncpg.Connection, start_worker: StartWorker
) -> None:
    """Two ticked rows, then the rest after the count is confirmed; a worker delivers them."""
    ids = await insert_dead_updates(pg, 5)
    await start_worker()
    await sign_in(page, console, console.admin_token)
    await page.get_by_role("link", name="Dead letters").click()
    for message_id in ids[:2]:
        await page.get_by_label(f"Select message {message_id}").check()
    await page.get_by_role("button", name="Requeue selected…").click()
    await expect(page.get_by_text("Requeue 2 messages?")).to_be_visible()
    await page.get_by_role("button", name="Requeue 2 messages").click()
    await expect(page.get_by_role("status")).to_have_text("Requeued 2 messages.")
    await wait_for(lambda: _states_are(pg, acknowledged=2, dead=3), message="two delivered")
    await page.get_by_label("Status code").fill("503")
    await page.get_by_role("button", name="Filter").click()
    await page.get_by_role("link", name="Requeue all matching…").click()
    await expect(page.get_by_text("Requeue 3 messages?")).to_be_visible()
    await page.get_by_role("button", name="Requeue 3 messages").click()
    await expect(page.get_by_role("status")).to_have_text("Requeued 3 messages.")
    await wait_for(lambda: _states_are(pg, acknowledged=5), message="all five delivered")


async def test_purge_deletes_what_it_counted_after_the_confirmation(
    page: Page, console: ConsoleProcess, pg: asyncpg.Connection
) -> None:
    """The purge page counts what is older than the window; confirming deletes just that, audited."""
    for days in (8, 9, 10):
        await insert_message(pg, state="acknowledged", ago=timedelta(days=days))
    await insert_message(pg, state="acknowledged", ago=timedelta(days=1))
    await insert_dead_updates(pg, 2)
    await insert_message(pg, state="dead", ago=timedelta(days=30))
    await sign_in(page, console, console.admin_token)
    await page.get_by_label("Finished longer ago than").fill("7d")
    await page.get_by_role("button", name="Purge…").click()
    await expect(page.get_by_text("Delete 3 messages?")).to_be_visible()
    assert await count_by_state(pg) == {"acknowledged": 4, "dead": 3}  # asking changes nothing
    await page.get_by_role("button", name="Delete 3 messages").click()
    await expect(page.get_by_role("status")).to_have_text("Deleted 3 messages.")
    assert await count_by_state(pg) == {"acknowledged": 1, "dead": 3}
    audited = await pg.fetch(
        "SELECT via, actor, row_count FROM outbox.audit_log WHERE action = 'purge' ORDER BY id"
    )
    assert sum(r["row_count"] for r in audited) == 3
    assert {(r["via"], r["actor"]) for r in audited} == {("console", "ada")}


async def _states_are(pg: asyncpg.Connection, **expected: int) -> bool:
    return await count_by_state(pg) == expected


async def test_viewer_sees_no_action_and_a_forged_post_gets_403(
    page: Page, console: ConsoleProcess, pg: asyncpg.Connection, browser_errors: BrowserErrors
) -> None:
    """A viewer has no checkbox or button, and a hand-made requeue POST is refused."""
    ids = await insert_dead_updates(pg, 2)
    await sign_in(page, console, console.viewer_token)
    await expect(page.get_by_role("group", name="Purge finished messages")).to_have_count(0)
    await page.get_by_role("link", name="Dead letters").click()
    await expect(dead_rows(page)).to_have_count(2)
    await expect(page.get_by_role("checkbox")).to_have_count(0)
    await expect(page.get_by_role("button", name=re.compile("Requeue"))).to_have_count(0)
    await expect(page.get_by_role("link", name=re.compile("Requeue"))).to_have_count(0)
    form: dict[str, str | float | bool] = {
        "csrf": await csrf_of(page),
        "id": str(ids[0]),
        "confirmed": "yes",
    }
    answer = await page.request.post(console.url + "/dead/requeue", form=form)
    assert answer.status == 403
    assert await count_by_state(pg) == {"dead": 2}


async def test_a_post_without_the_csrf_token_is_refused(
    page: Page, console: ConsoleProcess, pg: asyncpg.Connection
) -> None:
    """An admin's own cookie is not enough: without the form's token nothing changes."""
    ids = await insert_dead_updates(pg, 1)
    await sign_in(page, console, console.admin_token)
    forms: list[dict[str, str | float | bool]] = [
        {"id": str(ids[0]), "confirmed": "yes"},
        {"id": str(ids[0]), "confirmed": "yes", "csrf": "guessed"},
    ]
    for form in forms:
        answer = await page.request.post(console.url + "/dead/requeue", form=form)
        assert answer.status == 403
    assert await count_by_state(pg) == {"dead": 1}


async def test_stats_json_shape_is_what_the_overview_reads(operator_url: str) -> None:
    """The labels the overview test compares exist in `stats --json` (guards the mapping)."""
    stats = (await acli("stats", "--json", db=operator_url)).json()
    assert {"pending", "claimed", "acknowledged", "dead"} <= set(stats)
    assert json.dumps(stats)


async def test_the_overview_refreshes_itself_only_while_visible(
    page: Page, console: ConsoleProcess, pg: asyncpg.Connection
) -> None:
    """Every 5 s a visible overview reloads its numbers in place; a hidden tab asks for nothing."""
    refreshes: list[str] = []
    page.on(
        "request",
        lambda request: (
            refreshes.append(request.url) if request.headers.get("x-console-refresh") else None
        ),
    )
    await page.clock.install()
    await sign_in(page, console, console.viewer_token)
    await insert_dead_updates(pg, 2)

    async def refreshed_to_two() -> bool:
        # The server reuses its aggregate for 2 s of real time: refresh until the rows show.
        async with page.expect_request(lambda r: bool(r.headers.get("x-console-refresh"))):
            await page.clock.run_for(5_100)
        await page.wait_for_load_state()
        return await stat(page, "Dead").inner_text() == "2"

    await wait_for(refreshed_to_two, message="the new dead letters on the open overview")
    seen = len(refreshes)
    await page.evaluate(
        "Object.defineProperty(document, 'visibilityState', {value: 'hidden', configurable: true});"
        "document.dispatchEvent(new Event('visibilitychange'));"
    )
    await page.clock.run_for(60_000)
    await page.evaluate("0")  # a round trip: any request the timers started has been reported
    assert len(refreshes) == seen
    await page.evaluate(
        "Object.defineProperty(document, 'visibilityState', {value: 'visible', configurable: true});"
        "document.dispatchEvent(new Event('visibilitychange'));"
    )
    async with page.expect_response(lambda r: bool(r.request.headers.get("x-console-refresh"))):
        await page.clock.run_for(5_100)
    await page.close()  # before the console stops: no refresh may find it gone
