"""The console's HTTP edge, without a browser: headers, Host, sign-in limits, cookies, SSO."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from tests.browser.harness import ConsoleProcess, console_process


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A client that keeps cookies for IP hosts and does not follow redirects by itself."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


async def sign_in(http: aiohttp.ClientSession, url: str, token: str) -> aiohttp.ClientResponse:
    """GET the form (its CSRF cookie and field), POST the token; the answer, unfollowed."""
    async with http.get(url + "/signin") as form:
        csrf = re.search(r'name="csrf" value="([^"]+)"', await form.text())
    assert csrf is not None
    return await http.post(
        url + "/signin", data={"csrf": csrf.group(1), "token": token}, allow_redirects=False
    )


async def test_every_answer_carries_the_security_headers(
    console: ConsoleProcess, http: aiohttp.ClientSession
) -> None:
    """Pages, redirects and errors: strict CSP, no framing, no caching; static files cached."""
    for path, status in [("/signin", 200), ("/", 303), ("/nope", 303), ("/messages/1", 303)]:
        async with http.get(console.url + path, allow_redirects=False) as answer:
            assert answer.status == status
            assert "script-src 'self'" in answer.headers["Content-Security-Policy"]
            assert "'unsafe-inline'" not in answer.headers["Content-Security-Policy"]
            assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]
            assert answer.headers["X-Frame-Options"] == "DENY"
            assert answer.headers["Cache-Control"] == "no-store"
            assert answer.headers["X-Content-Type-Options"] == "nosniff"
    async with http.get(console.url + "/static/console.js") as script:
        assert script.status == 200
        assert "max-age" in script.headers["Cache-Control"]


async def test_a_foreign_host_header_is_refused(
    console: ConsoleProcess, http: aiohttp.ClientSession
) -> None:
    """A page on another domain resolved to 127.0.0.1 (DNS rebinding) gets 421, not data."""
    async with http.get(console.url + "/signin", headers={"Host": "evil.example"}) as answer:
        assert answer.status == 421
    async with http.get(console.url + "/signin", headers={"Host": "localhost:1"}) as answer:
        assert answer.status == 200


async def test_the_session_cookie_is_httponly_strict_and_expires(
    console: ConsoleProcess, http: aiohttp.ClientSession
) -> None:
    """A good token sets an HttpOnly SameSite=Strict cookie with a lifetime, not Secure on HTTP."""
    answer = await sign_in(http, console.url, console.admin_token)
    assert answer.status == 303
    cookie = next(v for v in answer.headers.getall("Set-Cookie") if v.startswith("outbox_console="))
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Max-Age=28800" in cookie
    assert "Secure" not in cookie
    async with http.get(console.url + "/", allow_redirects=False) as page:
        assert page.status == 200


async def test_sign_in_attempts_are_rate_limited(
    console: ConsoleProcess, http: aiohttp.ClientSession
) -> None:
    """Ten wrong tokens a minute are answered 401; the eleventh (even a right one) gets 429."""
    codes = [
        (await sign_in(http, console.url, "ow_abcdefgh_" + "x" * 43)).status for _ in range(10)
    ]
    assert codes == [401] * 10
    limited = await sign_in(http, console.url, console.admin_token)
    assert limited.status == 429
    assert int(limited.headers["Retry-After"]) > 0


def test_a_public_address_without_sign_in_is_refused(operator_url: str) -> None:
    """`console --host 0.0.0.0` with no tokens file and no proxy exits 2 with one line."""
    from tests.processes import cli

    run = cli("console", "--host", "0.0.0.0", "--port", "0", db=operator_url)
    assert run.code == 2
    assert "no sign-in set up" in run.err
    assert len(run.err.strip().splitlines()) == 1


@pytest.fixture
async def sso_console(operator_url: str, tmp_path: Path) -> AsyncIterator[ConsoleProcess]:
    """A console that trusts the SSO headers from 127.0.0.1 (the test plays the proxy)."""
    async with console_process(
        operator_url, tmp_path / "tokens", "--trusted-proxy", "127.0.0.1"
    ) as running:
        yield running


async def test_the_sso_header_is_trusted_only_from_the_proxy(
    sso_console: ConsoleProcess, console: ConsoleProcess, http: aiohttp.ClientSession
) -> None:
    """From the configured proxy the user header signs in (groups give the role); elsewhere not."""
    admin = {"X-Forwarded-User": "sam@example.com", "X-Forwarded-Groups": "staff,outbox-admins"}
    async with http.get(sso_console.url + "/", headers=admin, allow_redirects=False) as page:
        assert page.status == 200
        assert "sam@example.com (admin)" in await page.text()
    viewer = {"X-Forwarded-User": "val"}
    async with http.get(sso_console.url + "/", headers=viewer, allow_redirects=False) as page:
        assert "val (viewer)" in await page.text()
    # A page that rebinds its own domain to 127.0.0.1 and sends the header itself: refused.
    rebound = {**admin, "Host": "attacker.example"}
    async with http.get(sso_console.url + "/", headers=rebound, allow_redirects=False) as page:
        assert page.status == 421
    # The other console trusts no proxy: the same header is just a header.
    async with http.get(console.url + "/", headers=admin, allow_redirects=False) as page:
        assert page.status == 303


async def test_an_sso_user_s_first_visit_is_audited_as_a_sign_in(
    sso_console: ConsoleProcess, http: aiohttp.ClientSession, pg: asyncpg.Connection
) -> None:
    """The proxy signs SSO users in, so their first request is the audited sign-in; not each page."""
    user = {"X-Forwarded-User": "sam@example.com"}
    for path in ("/", "/dead", "/"):
        async with http.get(sso_console.url + path, headers=user, allow_redirects=False) as page:
            assert page.status == 200
    rows = await pg.fetch("SELECT action, via, actor FROM outbox.audit_log ORDER BY id")
    assert [tuple(r) for r in rows] == [("console.sign_in", "console", "sam@example.com")]


async def test_the_cookie_is_secure_when_the_trusted_proxy_says_https(
    sso_console: ConsoleProcess, console: ConsoleProcess, http: aiohttp.ClientSession
) -> None:
    """Behind a TLS-terminating proxy the session cookie is Secure; the header alone is not trusted."""
    for target, secure in ((sso_console, True), (console, False)):
        async with http.get(target.url + "/signin") as form:
            csrf = re.search(r'name="csrf" value="([^"]+)"', await form.text())
        assert csrf is not None
        answer = await http.post(
            target.url + "/signin",
            data={"csrf": csrf.group(1), "token": target.admin_token},
            headers={"X-Forwarded-Proto": "https"},
            allow_redirects=False,
        )
        cookie = next(
            v for v in answer.headers.getall("Set-Cookie") if v.startswith("outbox_console=")
        )
        assert ("Secure" in cookie) is secure
