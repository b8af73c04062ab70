"""The console steering the fleet: pause and resume, the workers table, the audit trail."""

from __future__ import annotations

import re

from playwright.async_api import Page, expect

from tests.browser.harness import ConsoleProcess
from tests.browser.steps import sign_in
from tests.processes import acli


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
    await expect(trail.get_by_role("row", name=re.compile(r"console\.sign_in ada"))).to_have_count(
        1
    )
