"""The console steering the fleet: pause and resume, the workers table, the audit trail."""

from __future__ import annotations

import re

import asyncpg
from playwright.async_api import Page, expect

from tests.browser.harness import ConsoleProcess
from tests.browser.steps import sign_in
from tests.browser.test_console import insert_dead_updates
from tests.processes import StartWorker, acli
from tests.waiting import wait_for


async def pause_from_console(page: Page, reason: str) -> None:
    """Fill the reason, press Pause…, confirm on the next page."""
    await page.get_by_label("Reason").fill(reason)
    await page.get_by_role("button", name="Pause…").click()
    await expect(
        page.get_by_text(re.compile(r"^Pause delivery on \d+ workers?\?$"))
    ).to_be_visible()
    await page.get_by_role("button", name="Pause delivery").click()


async def test_pause_and_resume_show_everywhere_and_are_audited(
    page: Page, console: ConsoleProcess, operator_url: str
) -> None:
    """A pause shows as a banner on every page and in `stats`; resume clears it; both audited."""
    await sign_in(page, console, console.admin_token)
    await pause_from_console(page, "Ravelin asked us to hold")
    banner = page.get_by_role("status").filter(has_text="Delivery is paused")
    await expect(banner).to_contain_text("by ada (via console): Ravelin asked us to hold")
    await page.get_by_role("link", name="Dead letters").click()
    await expect(banner).to_be_visible()
    pause = (await acli("stats", "--json", db=operator_url)).json()["pause"]
    assert (pause["paused"], pause["actor"], pause["via"]) == (True, "ada", "console")
    await page.get_by_role("link", name="Overview").click()
    await page.get_by_role("button", name="Resume…").click()
    await page.get_by_role("button", name="Resume delivery").click()
    await expect(page.get_by_role("status").filter(has_text="Delivery resumed.")).to_be_visible()
    await expect(banner).to_have_count(0)
    await page.get_by_role("link", name="Audit").click()
    trail = page.get_by_role("table", name=re.compile("^Operator actions"))
    await expect(
        trail.get_by_role("row", name=re.compile(r"^.* resume ada \(via console\)"))
    ).to_have_count(1)
    await expect(
        trail.get_by_role("row", name=re.compile(r"^.* pause ada \(via console\)"))
    ).to_have_count(1)
    sign_ins = trail.get_by_role("row", name=re.compile(r"console\.sign_in ada"))
    await expect(sign_ins).to_have_count(1)
    await page.get_by_label("Window").select_option("24h")
    await page.get_by_role("button", name="Show").click()
    last_day = page.get_by_role("table", name=re.compile("^Operator actions, last 24h"))
    await expect(last_day.get_by_role("row", name=re.compile(r" pause ada "))).to_have_count(1)


async def test_workers_table_lists_a_running_worker(
    page: Page, console: ConsoleProcess, start_worker: StartWorker
) -> None:
    """A running worker appears with its pid and state on the overview (it refreshes itself).

    The worker beats every few seconds and the overview reads the registry at most every 5 s,
    each open page refreshing every 5 s: up to about 15 s, so the wait allows 45.
    """
    worker = await start_worker()
    await sign_in(page, console, console.viewer_token)
    table = page.get_by_role("table", name="Workers")
    row = table.get_by_role("row").filter(has_text=str(worker.pid))
    await expect(row).to_contain_text("delivering", timeout=45_000)


async def test_pause_stops_a_running_workers_sends_until_resume(
    page: Page, console: ConsoleProcess, pg: asyncpg.Connection, start_worker: StartWorker
) -> None:
    """Paused from the console, a running worker sends nothing; resumed, it delivers them all."""
    await start_worker()
    await sign_in(page, console, console.admin_token)
    await pause_from_console(page, "hold for the incident")
    table = page.get_by_role("table", name="Workers")
    await expect(table).to_contain_text("paused (operator)", timeout=45_000)
    await insert_dead_updates(pg, 4)
    await page.get_by_role("link", name="Dead letters").click()
    await page.get_by_role("link", name="Requeue all matching…").click()
    await page.get_by_role("button", name="Requeue 4 messages").click()
    # Two heartbeats of the paused worker later, the four are still pending: nothing was sent.
    seen = await pg.fetchval("SELECT max(seen_at) FROM outbox.workers")
    await wait_for(
        lambda: pg.fetchval("SELECT count(*) FROM outbox.workers WHERE seen_at > $1", seen),
        message="the paused worker's next heartbeat",
    )
    assert (
        await pg.fetchval(
            "SELECT count(*) FROM outbox.messages WHERE state = 'pending' AND attempts = 0"
        )
        == 4
    )
    await page.get_by_role("link", name="Overview").click()
    await page.get_by_role("button", name="Resume…").click()
    await page.get_by_role("button", name="Resume delivery").click()
    await wait_for(
        lambda: pg.fetchval(
            "SELECT count(*) = 4 FROM outbox.messages WHERE state = 'acknowledged'"
        ),
        message="all four delivered after resume",
    )
