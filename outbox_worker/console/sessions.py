"""Signed-in sessions, sign-in rate limiting and one-shot notices. Pure: the clock is passed in.

Sessions live in this process's memory: a restart signs everyone out, which is the safe
direction, and the session id in the cookie is a random key, never data to trust. Run one
console replica (deploy/ does), or sessions would not be found on the other.
"""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from outbox_worker.console.tokens import Operator

Clock = Callable[[], float]

MAX_SESSIONS: Final = 10_000
SIGN_IN_ATTEMPTS: Final = 10  # per client address per window
SIGN_IN_WINDOW_S: Final = 60.0


@dataclass(frozen=True, slots=True)
class Session:
    """One signed-in browser: the operator, its CSRF token, when it ends (clock seconds)."""

    id: str
    operator: Operator
    csrf: str
    expires_at: float


@dataclass
class Sessions:
    """The open sessions, by id; an expired one is gone when next looked up."""

    ttl_s: float
    clock: Clock
    _open: dict[str, Session] = field(default_factory=dict)

    def open(self, operator: Operator) -> Session:
        """A new session for ``operator``; the oldest is dropped past MAX_SESSIONS."""
        if len(self._open) >= MAX_SESSIONS:
            self._open.pop(next(iter(self._open)))
        session = Session(
            secrets.token_urlsafe(32),
            operator,
            secrets.token_urlsafe(32),
            self.clock() + self.ttl_s,
        )
        self._open[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        """The live session with this id, or None (unknown or expired)."""
        if not session_id:
            return None
        session = self._open.get(session_id)
        if session is None:
            return None
        if session.expires_at <= self.clock():
            del self._open[session_id]
            return None
        return session

    def close(self, session_id: str | None) -> None:
        """End a session (sign-out)."""
        if session_id:
            self._open.pop(session_id, None)


@dataclass
class SsoSightings:
    """When each SSO user was last seen, so a visit after ``ttl_s`` of absence counts as a sign-in.

    The proxy signs SSO users in, so the console never sees a sign-in form: their first request,
    and the first after a session's lifetime without one, is what the audit trail records.
    """

    ttl_s: float
    clock: Clock
    _last: dict[str, float] = field(default_factory=dict)

    def signing_in(self, user: str) -> bool:
        """True when ``user`` was not seen within ``ttl_s``; the sighting is counted either way."""
        now = self.clock()
        last = self._last.get(user)
        if len(self._last) >= MAX_SESSIONS and last is None:
            self._last = {k: v for k, v in self._last.items() if v > now - self.ttl_s}
        self._last[user] = now
        return last is None or last <= now - self.ttl_s


@dataclass
class SignInLimiter:
    """At most ``attempts`` sign-ins per client address per ``window_s`` (a sliding window)."""

    clock: Clock
    attempts: int = SIGN_IN_ATTEMPTS
    window_s: float = SIGN_IN_WINDOW_S
    _seen: dict[str, deque[float]] = field(default_factory=dict)

    def wait_s(self, client: str) -> float:
        """0 when ``client`` may try now (the try is counted), else seconds until it may."""
        now = self.clock()
        recent = self._seen.setdefault(client, deque())
        while recent and recent[0] <= now - self.window_s:
            recent.popleft()
        if len(recent) >= self.attempts:
            return recent[0] + self.window_s - now
        recent.append(now)
        if len(self._seen) > MAX_SESSIONS:  # forget quiet clients rather than grow forever
            for key in [k for k, v in self._seen.items() if not v]:
                del self._seen[key]
        return 0.0


@dataclass
class Notices:
    """One-shot messages shown on the next page ("requeued 2 messages"), by CSRF token."""

    _waiting: dict[str, str] = field(default_factory=dict)

    def leave(self, key: str, text: str) -> None:
        """Show ``text`` on the next page of whoever holds ``key``."""
        if len(self._waiting) >= MAX_SESSIONS:
            self._waiting.clear()
        self._waiting[key] = text

    def take(self, key: str) -> str | None:
        """The waiting message for ``key``, once."""
        return self._waiting.pop(key, None)
