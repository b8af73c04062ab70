"""Who is asking, and what every answer carries: the console's two middlewares and one signal.

- ``identify``: the visitor from the SSO header (only from a trusted proxy's address) or the
  session cookie; a page without one redirects to sign-in. Every POST must carry the form's CSRF
  token: the session's, the SSO user's, or (sign-in) the double-submit cookie's.
- ``check_host``: on a loopback address, only a loopback Host is served, so a web page cannot
  reach the console by pointing its own domain at 127.0.0.1 (DNS rebinding).
- ``add_headers``: a strict Content-Security-Policy (no inline script or style), framing denied,
  no sniffing, no referrer, and no caching of anything but the static files.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlsplit

import structlog
from aiohttp import web

from outbox_worker.console.sessions import Notices, Sessions, SignInLimiter, SsoSightings
from outbox_worker.console.settings import ConsoleSettings
from outbox_worker.console.tokens import Operator, Role, TokenBook, check_name
from outbox_worker.errors import ConfigError

log = structlog.get_logger("outbox_worker.console")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SESSION_COOKIE: Final = "outbox_console"
SIGN_IN_COOKIE: Final = "outbox_console_signin"
CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_PUBLIC: Final = frozenset({"/signin", "/healthz"})
_LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass(frozen=True, slots=True)
class Visitor:
    """A signed-in operator as this request sees them."""

    operator: Operator
    csrf: str
    session_id: str | None  # None when the SSO proxy vouches for every request


@dataclass(frozen=True, slots=True)
class Access:
    """The console's access state: settings, tokens, sessions, sign-in limits and sightings."""

    settings: ConsoleSettings
    book: TokenBook | None
    sessions: Sessions
    limiter: SignInLimiter
    sso_seen: SsoSightings
    notices: Notices = field(default_factory=Notices)
    # Keys the CSRF tokens of SSO users (who have no session); new each start.
    sso_secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))


ACCESS: Final = web.AppKey("access", Access)


def visitor_of(request: web.Request) -> Visitor:
    """The signed-in visitor (identify guarantees one on every page but sign-in)."""
    visitor: Visitor | None = request.get("visitor")
    if visitor is None:
        raise web.HTTPSeeOther("/signin")
    return visitor


def require_admin(request: web.Request) -> Visitor:
    """The visitor, if an admin; 403 for a viewer (whatever the page showed them)."""
    visitor = visitor_of(request)
    if not visitor.operator.is_admin:
        log.warning("console.action_refused", user=visitor.operator.name, path=request.path)
        raise web.HTTPForbidden(text="this needs the admin role\n")
    return visitor


def from_trusted_proxy(request: web.Request, access: Access) -> bool:
    """Whether the request's peer is one of the configured SSO proxies."""
    if not access.settings.trusted_proxies or request.remote is None:
        return False
    try:
        peer = ipaddress.ip_address(request.remote)
    except ValueError:
        return False
    return any(peer in network for network in access.settings.trusted_proxies)


def _sso_visitor(request: web.Request, access: Access) -> Visitor | None:
    settings = access.settings
    if not from_trusted_proxy(request, access):
        return None
    name = request.headers.get(settings.sso_user_header, "").strip()
    if not name:
        return None
    try:
        check_name(name)
    except ConfigError:
        log.warning("console.sso_user_refused", reason="unusual characters in the user header")
        return None
    groups = {g.strip() for g in request.headers.get(settings.sso_groups_header, "").split(",")}
    role = Role.ADMIN if settings.sso_admin_group in groups else Role.VIEWER
    csrf = hmac.new(access.sso_secret, name.encode(), hashlib.sha256).hexdigest()
    return Visitor(Operator(name, role, "sso"), csrf, None)


def _session_visitor(request: web.Request, access: Access) -> Visitor | None:
    session = access.sessions.get(request.cookies.get(SESSION_COOKIE))
    if session is None:
        return None
    return Visitor(session.operator, session.csrf, session.id)


def _public(path: str) -> bool:
    return path in _PUBLIC or path.startswith("/static/")


async def _csrf_ok(request: web.Request, visitor: Visitor | None) -> bool:
    expected = visitor.csrf if visitor is not None else request.cookies.get(SIGN_IN_COOKIE, "")
    form = await request.post()
    sent = form.get("csrf")
    return bool(expected) and isinstance(sent, str) and hmac.compare_digest(sent, expected)


@web.middleware
async def identify(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Attach the visitor; send strangers to sign-in; refuse a POST without its CSRF token."""
    access = request.app[ACCESS]
    visitor = _sso_visitor(request, access) or _session_visitor(request, access)
    request["visitor"] = visitor
    if request.method == "POST" and not await _csrf_ok(request, visitor):
        log.warning("console.csrf_refused", path=request.path)
        raise web.HTTPForbidden(text="the form's CSRF token is missing or stale; reload the page\n")
    if visitor is None and not _public(request.path):
        if request.method != "GET":
            raise web.HTTPForbidden(text="sign in first\n")
        raise web.HTTPSeeOther("/signin")
    return await handler(request)


@web.middleware
async def check_host(request: web.Request, handler: Handler) -> web.StreamResponse:
    """On a loopback console, refuse any Host but a loopback one (DNS rebinding)."""
    if request.app[ACCESS].settings.loopback:
        try:
            host = urlsplit(f"//{request.host}").hostname or ""
        except ValueError:
            host = ""
        if host.lower() not in _LOOPBACK_HOSTS:
            raise web.HTTPMisdirectedRequest(text="this console answers on 127.0.0.1 only\n")
    return await handler(request)


async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: the security headers on every answer, errors included."""
    headers = response.headers
    headers["Content-Security-Policy"] = CSP
    headers["X-Frame-Options"] = "DENY"
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "no-referrer"
    headers["Cross-Origin-Opener-Policy"] = "same-origin"
    headers["Cross-Origin-Resource-Policy"] = "same-origin"
    headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=()"
    if request.path.startswith("/static/"):
        headers["Cache-Control"] = "public, max-age=3600"
    else:
        headers["Cache-Control"] = "no-store"


def is_tls(request: web.Request, access: Access) -> bool:
    """Whether the browser reached us over TLS (directly, or via a trusted proxy that says so)."""
    if access.settings.secure_cookies or request.secure:
        return True
    forwarded = request.headers.get("X-Forwarded-Proto", "").lower()
    return forwarded == "https" and from_trusted_proxy(request, access)
