"""No personal data on any page unless an admin reveals one message; keyboard-only use; widths."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote, quote_plus

import asyncpg
import pytest
from playwright.async_api import Page, expect

from tests.browser.harness import ConsoleProcess, console_process
from tests.browser.steps import overview_shows, screenshot, sign_in, tab_to
from tests.browser.test_console import insert_dead_updates
from tests.e2e.test_canaries import ANSWER, DEDUP_KEY, PAYLOAD, PAYLOAD_CANARIES, canaries_in
from tests.integration.rows import insert_message

HISTORY = [
    {"at": "2026-12-05T10:00:00+00:00", "status": 400, "latency_ms": 35,
     "error": "HTTP 400: " + str(ANSWER["message"])},
]  # fmt: skip


async def insert_canary(pg: asyncpg.Connection) -> int:
    """The privacy suite's canary message, dead with Ravelin's canary answer."""
    message_id: int = await pg.fetchval(
        "SELECT outbox.enqueue($1::jsonb, $2)", json.dumps(PAYLOAD), DEDUP_KEY
    )
    await pg.execute(
        "UPDATE outbox.messages SET state = 'dead', dead_at = now(), attempts = 1, "
        "last_status = 400, last_error = $2, last_response = $3::jsonb, history = $4::jsonb "
        "WHERE id = $1",
        message_id, "HTTP 400: " + str(ANSWER["message"]), json.dumps(ANSWER), json.dumps(HISTORY),
    )  # fmt: skip
    return message_id


async def test_no_canary_on_any_page(
    page: Page, pg: asyncpg.Connection, operator_url: str, tmp_path: Path
) -> None:
    """Overview, list, filtered list, detail, confirmations and audit: no canary in the HTML."""
    message_id = await insert_canary(pg)
    # Started after the insert, so the overview's top reasons (read once a minute) have it.
    async with console_process(operator_url, tmp_path / "tokens") as console:
        await browse_every_page(page, console, message_id)


async def browse_every_page(page: Page, console: ConsoleProcess, message_id: int) -> None:
    """Each page as an admin sees it; no canary in any (the operator's own filter aside)."""
    await sign_in(page, console, console.admin_token)
    pages: dict[str, str] = {"overview": await page.content()}
    for path in ["/dead", "/dead?reason=canary&dedup_key=" + DEDUP_KEY,
                 f"/messages/{message_id}", "/dead/requeue-matching?status=400", "/audit",
                 "/purge?older_than=1s&include_dead=1"]:  # fmt: skip
        await page.goto(console.url + path)
        pages[path] = await page.content()
    await page.goto(console.url + "/dead")
    await page.get_by_label(f"Select message {message_id}").check()
    await page.get_by_role("button", name="Requeue selected…").click()
    pages["confirm"] = await page.content()
    # The operator's own filter stays in the form's field and the links that carry the filter.
    typed = [DEDUP_KEY, quote_plus(DEDUP_KEY), quote(DEDUP_KEY)]
    leaks = {where: canaries_in(_without(html, typed)) for where, html in pages.items()}
    assert {where: found for where, found in leaks.items() if found} == {}
    assert "trace-7" in pages[f"/messages/{message_id}"]  # the traceId is allowed


def _without(text: str, parts: list[str]) -> str:
    for part in parts:
        text = text.replace(part, "")
    return text


async def test_the_reveal_button_needs_show_pii(
    page: Page, console: ConsoleProcess, pg: asyncpg.Connection
) -> None:
    """Without --show-pii no admin sees a reveal button."""
    message_id = await insert_canary(pg)
    await sign_in(page, console, console.admin_token)
    await page.goto(f"{console.url}/messages/{message_id}")
    await expect(page.get_by_role("button", name="Reveal personal data (audited)")).to_have_count(0)


@pytest.fixture
async def pii_console(operator_url: str, tmp_path: Path) -> AsyncIterator[ConsoleProcess]:
    """A console started with --show-pii."""
    async with console_process(operator_url, tmp_path / "tokens", "--show-pii") as running:
        yield running


async def test_an_admin_reveals_one_message_and_it_is_audited(
    page: Page, pii_console: ConsoleProcess, pg: asyncpg.Connection
) -> None:
    """With --show-pii an admin reveals one message's data; the audit trail says so."""
    message_id = await insert_canary(pg)
    await sign_in(page, pii_console, pii_console.admin_token)
    await page.goto(f"{pii_console.url}/messages/{message_id}")
    assert canaries_in(await page.content()) == []
    await page.get_by_role("button", name="Reveal personal data (audited)").click()
    await expect(page.get_by_role("alert")).to_contain_text("Personal data shown unmasked")
    html = await page.content()
    assert [c for c in PAYLOAD_CANARIES if c not in html] == []
    rows = await pg.fetch("SELECT action, actor, details FROM outbox.audit_log WHERE action = $1",
                          "console.reveal")  # fmt: skip
    assert [(r["action"], r["actor"], json.loads(r["details"])) for r in rows] == [
        ("console.reveal", "ada", {"message_id": message_id})
    ]


async def test_a_viewer_cannot_reveal(
    page: Page, pii_console: ConsoleProcess, pg: asyncpg.Connection
) -> None:
    """A viewer sees no reveal button even with --show-pii."""
    message_id = await insert_canary(pg)
    await sign_in(page, pii_console, pii_console.viewer_token)
    await page.goto(f"{pii_console.url}/messages/{message_id}")
    await expect(page.get_by_role("heading", name=f"Message {message_id}")).to_be_visible()
    await expect(page.get_by_role("button", name="Reveal personal data (audited)")).to_have_count(0)


async def test_keyboard_alone_signs_in_finds_and_requeues(
    page: Page, console: ConsoleProcess, pg: asyncpg.Connection
) -> None:
    """Tab, type, Space and Enter suffice: sign in, open the list, tick a row, confirm."""
    message_id = await insert_canary(pg)
    await page.goto(console.url + "/")
    await tab_to(page, page.get_by_label("Sign-in token"))
    await page.keyboard.type(console.admin_token)
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    await tab_to(page, page.get_by_role("link", name="Dead letters"))
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="Dead letters")).to_be_visible()
    box = page.get_by_label(f"Select message {message_id}")
    await tab_to(page, box)
    await page.keyboard.press("Space")
    await expect(box).to_be_checked()
    await tab_to(page, page.get_by_role("button", name="Requeue selected…"))
    await page.keyboard.press("Enter")
    await tab_to(page, page.get_by_role("button", name="Requeue 1 message"))
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("status")).to_have_text("Requeued 1 message.")
    assert await pg.fetchval("SELECT state FROM outbox.messages WHERE id = $1", message_id) == (
        "pending"
    )


@pytest.mark.parametrize("width", [375, 1280])
async def test_every_page_fits_and_is_screenshotted(
    page: Page, pg: asyncpg.Connection, operator_url: str, tmp_path: Path, width: int
) -> None:
    """Each page at 375 and 1280 px: nothing wider than the window; a screenshot of each."""
    await insert_dead_updates(pg, 6, status=503)
    await insert_dead_updates(pg, 3, status=400)
    for seconds in range(0, 3000, 60):
        await insert_message(pg, state="acknowledged", ago=timedelta(seconds=seconds))
    message_id = await insert_canary(pg)
    # Started after the inserts, so the day's chart and the top reasons (once a minute) have them.
    async with console_process(operator_url, tmp_path / "tokens") as console:
        await screenshot_every_page(page, console, message_id, width)


async def screenshot_every_page(
    page: Page, console: ConsoleProcess, message_id: int, width: int
) -> None:
    """Sign in, then each page: it fits ``width``; its screenshot is taken."""
    await page.set_viewport_size({"width": width, "height": 900})
    await page.goto(console.url + "/signin")
    await screenshot(page, "signin", width)
    await sign_in(page, console, console.admin_token)
    await overview_shows(page, console.url, "Dead", "10")
    shots = {"overview": "/", "dead": "/dead", "detail": f"/messages/{message_id}",
             "confirm": "/dead/requeue-matching?status=503", "audit": "/audit"}  # fmt: skip
    for name, path in shots.items():
        await page.goto(console.url + path)
        overflow = await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{name} is {overflow}px wider than {width}px"
        await screenshot(page, name, width)
