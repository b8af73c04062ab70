"""What a person does in the console, as Playwright steps: by role and label, never CSS."""

from __future__ import annotations

import os
import re

from playwright.async_api import Locator, Page, expect

from tests.browser.harness import DOCS, ConsoleProcess


async def sign_in(page: Page, console: ConsoleProcess, token: str) -> None:
    """Open the console, get sent to sign-in, sign in with ``token``, land on the overview."""
    await page.goto(console.url + "/")
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await page.get_by_label("Sign-in token").fill(token)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Overview")).to_be_visible()


def stat(page: Page, label: str) -> Locator:
    """The value cell of one row of the overview's "Messages by state" table."""
    table = page.get_by_role("table", name="Messages by state")
    return table.get_by_role("row", name=re.compile(f"^{re.escape(label)} ")).get_by_role("cell")


def dead_rows(page: Page) -> Locator:
    """The body rows of the dead-letter table."""
    table = page.get_by_role("table", name=re.compile("^Dead letters"))
    return table.get_by_role("rowgroup").nth(1).get_by_role("row")


async def csrf_of(page: Page) -> str:
    """The CSRF token the page's forms carry (what a hand-made POST would have to guess)."""
    value = await page.get_by_role("button", name="Sign out").evaluate(
        "button => button.form.elements['csrf'].value"
    )
    return str(value)


async def is_focused(locator: Locator) -> bool:
    """Whether ``locator`` has the keyboard focus."""
    return bool(await locator.evaluate("el => el === document.activeElement"))


async def tab_to(page: Page, target: Locator, *, limit: int = 60) -> None:
    """Press Tab until ``target`` has the focus (fail after ``limit`` presses)."""
    for _ in range(limit):
        if await is_focused(target):
            return
        await page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached {target}")


async def screenshot(page: Page, name: str, width: int) -> None:
    """Take the whole page at ``width`` px; with OUTBOX_UPDATE_SCREENSHOTS=1 keep it in docs/.

    Every run takes it (so a page that cannot be drawn fails); only a run that asks rewrites the
    committed PNGs, so running the tests leaves the checkout as it was.
    """
    await page.set_viewport_size({"width": width, "height": 900})
    shot = await page.screenshot(full_page=True)
    assert shot.startswith(b"\x89PNG"), f"{name} at {width} px: not a PNG"
    if os.environ.get("OUTBOX_UPDATE_SCREENSHOTS") == "1":
        DOCS.mkdir(exist_ok=True)
        (DOCS / f"console-{name}-{width}.png").write_bytes(shot)


async def overview_shows(page: Page, url: str, label: str, value: str) -> None:
    """Reload the overview until ``label`` reads ``value`` (its numbers are up to 5 s old)."""
    from tests.waiting import wait_for

    async def shown() -> bool:
        await page.goto(url + "/")
        return await stat(page, label).inner_text() == value

    await wait_for(shown, interval=0.5, message=f"the overview's {label} to read {value}")
