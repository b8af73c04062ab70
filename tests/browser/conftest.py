"""Fixtures of the browser suite: Chromium, a console running as outbox_operator, a page.

The console is a subprocess connected as a LOGIN role in outbox_operator (exactly the role the
deploy kit gives it); the admin and viewer sign in with tokens from a file. Each test gets a new
browser context; any error in the browser's console fails the test at teardown.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Page, async_playwright

from tests.browser.harness import ConsoleProcess, chromium_or_skip, console_process
from tests.integration.conftest import LoginAs, login_as  # noqa: F401 (a fixture)


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    """Debian's Chromium, headless, for the whole run."""
    executable = chromium_or_skip()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(executable))
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def operator_url(login_as: LoginAs) -> str:  # noqa: F811 (the fixture above)
    """This test's database as a LOGIN role that is a member of outbox_operator only."""
    return await login_as("outbox_operator")


@pytest.fixture
async def console(operator_url: str, tmp_path: Path) -> AsyncIterator[ConsoleProcess]:
    """The console on a free loopback port, as outbox_operator, tokens from a file."""
    async with console_process(operator_url, tmp_path / "tokens") as running:
        yield running


class BrowserErrors(list[str]):
    """Errors the page's console and uncaught exceptions reported."""


@pytest.fixture
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    """A fresh browser profile (no cookies) at 1280 px wide."""
    made = await browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        yield made
    finally:
        await made.close()


@pytest.fixture
def browser_errors() -> BrowserErrors:
    """What the page reported; a test expecting an error status clears what it expected."""
    return BrowserErrors()


@pytest.fixture
async def page(context: BrowserContext, browser_errors: BrowserErrors) -> AsyncIterator[Page]:
    """A page whose console errors fail the test."""
    opened = await context.new_page()
    errors = browser_errors

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    def on_error(error: Any) -> None:
        errors.append(str(error))

    opened.on("console", on_console)
    opened.on("pageerror", on_error)
    yield opened
    assert list(errors) == [], f"errors in the browser console: {errors}"
