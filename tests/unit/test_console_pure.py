"""The console's pure parts: tokens, sessions, the sign-in limiter, escaping, settings, filters."""

from __future__ import annotations

from pathlib import Path

import pytest

from outbox_worker.console.filters import parse_dead_query, parse_ids
from outbox_worker.console.html import Html, esc, render
from outbox_worker.console.overview import CachedLoad
from outbox_worker.console.sessions import Sessions, SignInLimiter, SsoSightings
from outbox_worker.console.settings import read_console_settings
from outbox_worker.console.tokens import (
    Operator,
    Role,
    TokenBook,
    load_tokens,
    new_token,
    parse_line,
)
from outbox_worker.errors import ConfigError
from tests.unit.fakes import ManualClock
from tests.waiting import wait_for

URL = {"OUTBOX_DATABASE_URL": "postgresql://db/app"}


def test_a_new_token_signs_in_its_owner_and_nothing_else() -> None:
    """The file line accepts its token only; the line holds no part of the secret."""
    token, line = new_token("alice", Role.ADMIN)
    book = TokenBook([parse_line(line, "test")])
    assert book.verify(token) == Operator("alice", Role.ADMIN, "token")
    assert book.verify(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert book.verify("ow_zzzzzzzz_" + token.rsplit("_", 1)[1]) is None
    assert book.verify("") is None
    assert token.rsplit("_", 1)[1] not in line


@pytest.mark.parametrize(
    "line",
    ["abcdefgh admin alice", "abcdefgh root alice scrypt$16384$8$1$AAAA$AAAA",
     "abcdefgh admin al ice scrypt$16384$8$1$AAAA$AAAA", "abcdefgh admin alice md5$x",
     "abcdefgh admin alice scrypt$99$8$1$AAAA$AAAA", "abcdefgh admin alice scrypt$16384$8$1$!!$AAAA"],
)  # fmt: skip
def test_a_malformed_tokens_line_is_a_config_error_naming_it(line: str, tmp_path: Path) -> None:
    """Each bad line fails the start with its file and line number."""
    path = tmp_path / "tokens"
    path.write_text(f"# ok\n\n{line}\n")
    with pytest.raises(ConfigError, match=r"tokens file .*, line 3"):
        load_tokens(path)


def test_sessions_expire_after_their_ttl() -> None:
    """A session is found until its ttl passes, then never again; sign-out ends it at once."""
    clock = ManualClock()
    sessions = Sessions(ttl_s=60, clock=clock)
    session = sessions.open(Operator("a", Role.VIEWER, "token"))
    clock.advance(59)
    assert sessions.get(session.id) == session
    clock.advance(2)
    assert sessions.get(session.id) is None
    other = sessions.open(Operator("b", Role.VIEWER, "token"))
    sessions.close(other.id)
    assert sessions.get(other.id) is None
    assert sessions.get("made-up") is None


def test_an_sso_user_signs_in_on_the_first_visit_and_after_a_session_s_absence() -> None:
    """The first sighting is a sign-in; visits within the ttl are not; a visit after a gap is."""
    clock = ManualClock()
    seen = SsoSightings(ttl_s=60, clock=clock)
    assert seen.signing_in("sam")
    clock.advance(59)
    assert not seen.signing_in("sam")
    assert seen.signing_in("val")
    clock.advance(59)  # each visit renews: sam was last seen 59 s ago
    assert not seen.signing_in("sam")
    clock.advance(61)
    assert seen.signing_in("sam")


def test_sign_in_attempts_are_limited_per_address() -> None:
    """Ten tries a minute per address; the eleventh waits; another address is not held."""
    clock = ManualClock()
    limiter = SignInLimiter(clock)
    assert [limiter.wait_s("10.0.0.1") for _ in range(10)] == [0.0] * 10
    assert limiter.wait_s("10.0.0.1") == pytest.approx(60.0)
    assert limiter.wait_s("10.0.0.2") == 0.0
    clock.advance(60)
    assert limiter.wait_s("10.0.0.1") == 0.0


@pytest.mark.parametrize(
    ("value", "shown"),
    [("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
     ('" onmouseover="x', "&quot; onmouseover=&quot;x"), ("a\u202eb", "a\\u202eb"),
     ("bell\x07", "bell\\x07"), ("it's", "it&#x27;s")],
)  # fmt: skip
def test_every_value_is_escaped(value: str, shown: str) -> None:
    """Markup, quotes, bidi overrides and controls reach a page only as visible text."""
    assert render('<td title="{v}">{v}</td>', v=value) == f'<td title="{shown}">{shown}</td>'
    assert esc(Html("<b>")) == "<b>"


def test_the_console_refuses_a_public_address_without_sign_in() -> None:
    """0.0.0.0 needs a tokens file or an SSO proxy; 127.0.0.1 does not."""
    with pytest.raises(ConfigError, match="no sign-in set up"):
        read_console_settings({"host": "0.0.0.0"}, URL)
    assert read_console_settings({}, URL).loopback
    with_file = read_console_settings({"host": "0.0.0.0", "tokens_file": "/etc/t"}, URL)
    assert with_file.authenticated
    proxied = read_console_settings({}, URL | {"OUTBOX_CONSOLE_TRUSTED_PROXY": "10.0.0.0/8"})
    assert proxied.authenticated
    with pytest.raises(ConfigError, match="TRUSTED_PROXY"):
        read_console_settings({"trusted_proxy": "nonsense"}, URL)


def test_dead_letter_filters_are_parsed_and_bad_ones_named() -> None:
    """Good filters become DeadFilters; a bad status, window or cursor is one problem each."""
    good = parse_dead_query({"since": "24h", "status": "503", "reason": "x", "dedup_key": "k"})
    assert good.problems == ()
    assert (good.filters.status_code, good.filters.error_contains, good.filters.dedup_key) == (
        503, "x", "k"
    )  # fmt: skip
    bad = parse_dead_query({"since": "soon", "status": "abc", "after_at": "x", "after_id": "1"})
    assert len(bad.problems) == 3
    assert bad.filters.status_code is None
    assert parse_ids(["3", "1", "3"]) == [1, 3]
    with pytest.raises(ValueError, match="ids"):
        parse_ids(["1", "1; DROP TABLE"])


async def test_one_load_serves_every_tab_and_a_stale_one_reloads_in_the_background() -> None:
    """Within ttl no load; past it the old value is served while one reload runs."""
    clock = ManualClock()
    loaded: list[int] = []

    async def load() -> int:
        loaded.append(len(loaded) + 1)
        return loaded[-1]

    cache = CachedLoad(load, ttl_s=5, stale_s=30, clock=clock)
    assert [await cache.get() for _ in range(50)] == [1] * 50
    clock.advance(6)
    assert [await cache.get() for _ in range(50)] == [1] * 50  # stale, one reload started
    await wait_for(lambda: cache.loads == 2, message="the background reload")
    assert await cache.get() == 2
    assert loaded == [1, 2]
    clock.advance(31)  # too stale to show: the page waits for the reload
    assert await cache.get() == 3
