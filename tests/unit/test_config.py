"""Configuration: every parser, every bound, every message, and no secret in any of them."""

from __future__ import annotations

import re
from dataclasses import fields
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from outbox_worker.errors import ConfigError
from outbox_worker.payload.limits import MAX_PAYLOAD_BYTES
from outbox_worker.settings.config import (
    CLAIMED_BYTES_BOUNDS,
    DEFAULT_HTTP_TIMEOUT,
    DEFAULT_MAX_CLAIMED_BYTES,
    DEFAULT_OUTAGE_THRESHOLD,
    DEFAULT_SHUTDOWN_GRACE,
    DURATION_BOUNDS,
    INT_BOUNDS,
    SHUTDOWN_MARGIN,
    CircuitSettings,
    RetrySettings,
    Secret,
    Settings,
    WorkerSettings,
)
from outbox_worker.settings.environment import read_database_url, read_settings, read_text
from outbox_worker.settings.parsing import (
    format_duration,
    format_size,
    parse_bool,
    parse_duration,
    parse_int,
    parse_number,
    parse_size,
)
from outbox_worker.settings.urls import check_database_url, check_endpoint_url, redact_url
from tests.unit.fakes import Recording

KEY = "sk_live_Sup3rS3cretKey"
PASSWORD = "dbPa55word"
DATABASE_URL = f"postgresql://app:{PASSWORD}@db.example.com:5432/app"
BASE_ENV = {"OUTBOX_DATABASE_URL": DATABASE_URL, "OUTBOX_API_KEY": KEY}
MS = timedelta(milliseconds=1)


def settings(**env: str) -> Settings:
    """Settings from BASE_ENV with some OUTBOX_* variables (names without the prefix) changed."""
    return read_settings({**BASE_ENV, **{f"OUTBOX_{k.upper()}": v for k, v in env.items()}})


def refused(**env: str) -> str:
    """The one-line message read_settings raises for these variables."""
    with pytest.raises(ConfigError) as caught:
        settings(**env)
    message = str(caught.value)
    assert "\n" not in message
    assert KEY not in message
    assert PASSWORD not in message
    return message


# --- durations ---------------------------------------------------------------------------------

DURATIONS = [
    ("500ms", timedelta(milliseconds=500)),
    ("30s", timedelta(seconds=30)),
    ("1.5s", timedelta(seconds=1.5)),
    ("10m", timedelta(minutes=10)),
    ("24h", timedelta(hours=24)),
    ("7d", timedelta(days=7)),
    ("2w", timedelta(weeks=2)),
    ("45", timedelta(seconds=45)),
    (" 3 s ", timedelta(seconds=3)),
]


@pytest.mark.parametrize(("text", "expected"), DURATIONS)
def test_parse_duration_reads_units(text: str, expected: timedelta) -> None:
    """Durations take ms, s, m, h, d, w or plain seconds."""
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "ten seconds", "-5s", "5 sec", "1e3s", "٣s", "nan", "inf"])
def test_parse_duration_refuses_what_is_not_a_duration(text: str) -> None:
    """Text that is not a number with a known unit is refused, naming the setting."""
    with pytest.raises(ConfigError, match=r"^OUTBOX_LEASE: .* is not a duration; use e\.g\."):
        parse_duration(text, name="OUTBOX_LEASE")


@pytest.mark.parametrize("text", ["99999999999d", "9" * 400 + "w", float("inf"), float("nan")])
def test_parse_duration_refuses_huge_values_without_overflow(text: str | float) -> None:
    """Durations too large for timedelta are refused as out of range, never an OverflowError."""
    with pytest.raises(ConfigError, match=r"^OUTBOX_MAX_AGE must be from 1s to 30d, got "):
        parse_duration(
            text, name="OUTBOX_MAX_AGE", minimum=timedelta(seconds=1), maximum=timedelta(days=30)
        )


def test_parse_duration_has_a_ceiling_without_bounds() -> None:
    """Operator durations (--older-than) have a 100-year ceiling, so they cannot overflow either."""
    with pytest.raises(ConfigError, match=r"must be from 0ms to 36500d, got 99999999999d"):
        parse_duration("99999999999d", name="--older-than")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(0), "0ms"),
        (timedelta(milliseconds=20), "20ms"),
        (timedelta(seconds=1.5), "1500ms"),
        (timedelta(seconds=30), "30s"),
        (timedelta(minutes=10), "10m"),
        (timedelta(hours=1), "1h"),
        (timedelta(days=30), "30d"),
    ],
)
def test_format_duration_uses_the_largest_whole_unit(value: timedelta, text: str) -> None:
    """Durations print in the largest unit that divides them, as the messages show them."""
    assert format_duration(value) == text


@pytest.mark.parametrize("name", sorted(DURATION_BOUNDS))
def test_every_duration_setting_refuses_values_outside_its_bounds(name: str) -> None:
    """Each duration variable refuses too short and too long, naming itself and its range."""
    low, high = DURATION_BOUNDS[name]
    allowed = (
        f"OUTBOX_{name.upper()} must be from {format_duration(low)} to {format_duration(high)}"
    )
    assert refused(**{name: "99999999999d"}).startswith(allowed)
    assert refused(**{name: format_duration(high + MS)}).startswith(allowed)
    if low > timedelta(0):
        assert refused(**{name: format_duration(low - low / 2)}).startswith(allowed)


@pytest.mark.parametrize("name", sorted(DURATION_BOUNDS))
def test_every_duration_setting_accepts_its_bounds(name: str) -> None:
    """The bounds themselves are allowed, written as the messages write them."""
    low, high = DURATION_BOUNDS[name]
    for value in (low, high):
        text = format_duration(value)
        assert parse_duration(text, name=name, minimum=low, maximum=high) == value


# --- counts, sizes, numbers, booleans ------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(INT_BOUNDS))
def test_every_count_setting_refuses_values_outside_its_bounds(name: str) -> None:
    """Each whole-number variable refuses one below its minimum and one above its maximum."""
    low, high = INT_BOUNDS[name]
    message = f"OUTBOX_{name.upper()} must be from {low} to {high}, got"
    assert refused(**{name: str(high + 1)}) == f"{message} {high + 1}"
    assert refused(**{name: str(low - 1)}) == f"{message} {low - 1}"


@pytest.mark.parametrize("text", ["ten", "1.5", "1e3", "٣", "0x10", "9" * 5000])
def test_parse_int_refuses_what_is_not_an_ascii_whole_number(text: str) -> None:
    """Only ASCII digits make a whole number; Python's int() would take '٣' and '1_0'."""
    with pytest.raises(ConfigError):
        parse_int(text, name="OUTBOX_CONCURRENCY", minimum=1, maximum=1000)


def test_metrics_port_stops_at_65535() -> None:
    """A port above 65535 is refused at start, not when the metrics server binds."""
    assert refused(metrics_port="70000") == "OUTBOX_METRICS_PORT must be from 0 to 65535, got 70000"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("16MiB", 16 * 1024**2),
        ("512KiB", 512 * 1024),
        ("1GiB", 1024**3),
        ("2000000", 2_000_000),
        ("2MB", 2_000_000),
        ("1500KB", 1_500_000),
        ("1.5MiB", 1536 * 1024),
        ("16 mib", 16 * 1024**2),
        ("100B", 100),
    ],
)
def test_parse_size_reads_binary_and_decimal_units(text: str, expected: int) -> None:
    """Sizes take B, KiB/MiB/GiB (1024) and KB/MB/GB (1000), or plain bytes."""
    assert parse_size(text, name="size", minimum=0, maximum=2 * 1024**3) == expected


@pytest.mark.parametrize("text", ["", "lots", "16 MiBs", "-1MiB", "1TiB", "1e6"])
def test_parse_size_refuses_what_is_not_a_size(text: str) -> None:
    """Text that is not a number with a known unit is refused with an example."""
    with pytest.raises(ConfigError, match=r"^size: .* is not a size; use e\.g\. 16MiB"):
        parse_size(text, name="size", minimum=0, maximum=1024)


def test_format_size_uses_the_largest_whole_binary_unit() -> None:
    """Sizes print as GiB, MiB, KiB or bytes, whichever divides them."""
    assert [format_size(n) for n in (1024**3, 16 * 1024**2, 1536, 1000)] == [
        "1GiB",
        "16MiB",
        "1536B",
        "1000B",
    ]


def test_max_claimed_bytes_defaults_to_16_mib_and_reads_units() -> None:
    """OUTBOX_MAX_CLAIMED_BYTES defaults to 16 MiB and takes a size with a unit."""
    assert settings().max_claimed_bytes == DEFAULT_MAX_CLAIMED_BYTES == 16 * 1024**2
    assert settings(max_claimed_bytes="64MiB").max_claimed_bytes == 64 * 1024**2
    assert settings(max_claimed_bytes="2000000").max_claimed_bytes == 2_000_000


def test_max_claimed_bytes_is_at_least_one_largest_payload() -> None:
    """The ceiling cannot be below the largest payload enqueue accepts, nor above 1 GiB."""
    assert CLAIMED_BYTES_BOUNDS == (MAX_PAYLOAD_BYTES, 1024**3)
    expected = "OUTBOX_MAX_CLAIMED_BYTES must be from 1MiB to 1GiB, got"
    assert refused(max_claimed_bytes="512KiB") == f"{expected} 512KiB"
    assert refused(max_claimed_bytes="2GiB") == f"{expected} 2GiB"
    assert refused(max_claimed_bytes="9" * 400).startswith(expected)


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "infinity", "1e3", "fast"])
def test_rate_limit_must_be_a_finite_decimal(text: str) -> None:
    """nan, inf and exponents are refused for the rate limit."""
    assert (
        refused(rate_limit=text)
        == f"OUTBOX_RATE_LIMIT: {text!r} is not a number; use e.g. 50 or 2.5"
    )


def test_rate_limit_has_bounds() -> None:
    """The rate limit is from 0 (none) to 10000 sends per second."""
    assert settings(rate_limit="2.5").rate_limit == 2.5
    assert refused(rate_limit="-1") == "OUTBOX_RATE_LIMIT must be from 0 to 10000, got -1"
    assert refused(rate_limit="10001") == "OUTBOX_RATE_LIMIT must be from 0 to 10000, got 10001"
    with pytest.raises(ConfigError, match="OUTBOX_RATE_LIMIT must be from 0 to 10000, got nan"):
        parse_number(float("nan"), name="OUTBOX_RATE_LIMIT", minimum=0, maximum=10_000)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("true", True), ("YES", True), ("on", True), ("1", True), ("false", False), ("0", False)],
)
def test_parse_bool_reads_common_spellings(text: str, expected: bool) -> None:
    """Booleans take true/false, yes/no, on/off, 1/0 in any case."""
    assert parse_bool(text, name="OUTBOX_POLL_ONLY") is expected


def test_parse_bool_refuses_anything_else() -> None:
    """Anything else is refused with the accepted words."""
    assert (
        refused(poll_only="maybe")
        == "OUTBOX_POLL_ONLY: 'maybe' is not a boolean; use true or false"
    )


# --- endpoint URL ----------------------------------------------------------------------------------

BAD_ENDPOINTS = [
    ("https://alice:hunter2@api.ravelin.com/v2/registration", "must not carry credentials"),
    ("https://alice@api.ravelin.com/v2/registration", "must not carry credentials"),
    ("https://api.ravelin.com:99999/v2/registration", "Port out of range"),
    ("https://api.ravelin.com:0/v2/registration", "the port must be a number from 1 to 65535"),
    ("https://api.ravelin.com:abc/v2/registration", "is malformed"),
    ("https://api.ravelin.com:+443/v2/registration", "the port must be a number from 1 to 65535"),
    ("https://api.ravelin.com:/v2/registration", "the port must be a number from 1 to 65535"),
    ("https://api .ravelin.com/v2/registration", "printable ASCII without spaces"),
    ("https://api.ravelin.com/v2/registration ", "printable ASCII without spaces"),
    ("https://api.ravelin.com/v2/regis\ttration", "printable ASCII without spaces"),
    ("https://\u0430pi.ravelin.com/v2/registration", "xn-- form"),  # Cyrillic a
    ("https:///v2/registration", "must be an http(s) URL with a host"),
    ("https:api.ravelin.com/v2/registration", "must be an http(s) URL with a host"),
    ("ftp://api.ravelin.com/v2/registration", "must be an http(s) URL with a host"),
    ("api.ravelin.com/v2/registration", "must be an http(s) URL with a host"),
    ("https://[::1/v2/registration", "is malformed"),
    ("https://-api.ravelin.com/v2/registration", "is not a valid host name"),
    ("https://api..ravelin.com/v2/registration", "is not a valid host name"),
    ("https://api%2eravelin.com/v2/registration", "is not a valid host name"),
    ("https://api.ravelin.com/v2/registration#top", "must not carry a #fragment"),
    ("https://api.ravelin.com/v2/registration?score=accountRegistration", "?score="),
    ("https://api.ravelin.com/v2/registration?Score=x", "?score="),
    ("https://api.ravelin.com/v2/registration?SCORE=x", "?score="),
    ("https://api.ravelin.com/v2/registration?a=1&score", "?score="),
    ("https://api.ravelin.com/v2/registration?%73core=x", "?score="),
    ("http://api.ravelin.com/v2/registration", "uses plain http to api.ravelin.com"),
]


@pytest.mark.parametrize(("url", "reason"), BAD_ENDPOINTS)
def test_bad_endpoint_urls_are_refused_with_one_line(url: str, reason: str) -> None:
    """Each bad endpoint URL is refused at start with a reason and without its credentials."""
    message = refused(endpoint_url=url)
    assert message.startswith("OUTBOX_ENDPOINT_URL")
    assert reason in message
    assert "alice" not in message
    assert "hunter2" not in message


GOOD_ENDPOINTS = [
    "https://api.ravelin.com/v2/registration",
    "https://api.ravelin.com:443/v2/registration",
    "https://api.ravelin.com/v2/registration?foo=scoreboard",
    "https://api.ravelin.com/v2/registration?scores=1",
    "http://127.0.0.1:8765/v2/registration",
    "http://localhost:8765/v2/registration",
    "http://[::1]:8765/v2/registration",
    "https://xn--exmple-cua.com/v2/registration",
    "https://ravelin_standin:8443/v2/registration",
    "https://10.0.0.7/v2/registration",
]


@pytest.mark.parametrize("url", GOOD_ENDPOINTS)
def test_good_endpoint_urls_are_accepted_unchanged(url: str) -> None:
    """Usable URLs pass as written, including a query parameter that merely contains 'score'."""
    assert settings(endpoint_url=url).endpoint_url == url


def test_plain_http_to_a_remote_host_needs_the_explicit_setting() -> None:
    """OUTBOX_ALLOW_INSECURE_HTTP=true allows plain http to a remote host, with a warning."""
    url = "http://api.example.com/v2/registration"
    assert check_endpoint_url(url, allow_insecure_http=True) == url
    built = settings(endpoint_url=url, allow_insecure_http="true")
    assert any("in clear text" in w for w in built.warnings())


# --- database URL ------------------------------------------------------------------------------------

BAD_DATABASE_URLS = [
    ("", "OUTBOX_DATABASE_URL is not set"),
    ("not a url", "must be a postgresql:// URL"),
    (f"mysql://app:{PASSWORD}@db/app", "must be a postgresql:// URL"),
    (f"postgresql:app:{PASSWORD}@db/app", "must be a postgresql:// URL"),
    (f"postgresql://app:{PASSWORD}@db:54x/app", "is malformed (bad port)"),
    (f"postgresql://app:{PASSWORD}@db:99999/app", "is malformed (bad port)"),
    (f"postgresql://app:{PASSWORD}@db:0/app", "the port must be from 1 to 65535"),
    (f"postgresql://app:{PASSWORD}@[::1/app", "an IPv6 host needs both [ and ]"),
    (f"postgresql://app:{PASSWORD}/x@db/app", "is malformed (bad port)"),
    (f"postgresql://app:5432/{PASSWORD}@db/app", "has an @ after the host"),
    (f"postgresql://app:5432?{PASSWORD}@db/app", "has an @ after the host"),
    (f"postgresql://app:5432#{PASSWORD}@db/app", "has an @ after the host"),
    (f"postgresql://app:{PASSWORD} x@db/app", "contains a space"),
    (f"postgresql://app:{PASSWORD}é@db/app", "non-ASCII character"),
    (f"postgresql://app:{PASSWORD}\n@db/app", "a control character"),
    (f"postgresql://app:{PASSWORD}@db1:5432,db2:54x/app", "is malformed (bad port)"),
    (f"postgresql://app:{PASSWORD}@db1:5432,,db2/app", "is malformed (bad host)"),
    (f"postgresql://app:{PASSWORD}@db1,db2/app?target_session_attrs=master", "one of any,"),
]


@pytest.mark.parametrize(("url", "reason"), BAD_DATABASE_URLS)
def test_bad_database_urls_never_echo_the_password(url: str, reason: str) -> None:
    """Each malformed database URL is refused with a reason and without any of the password."""
    message = refused(database_url=url)
    assert message.startswith("OUTBOX_DATABASE_URL")
    assert reason in message
    assert "Pa55" not in message
    assert "@db/" not in message


def test_database_url_accepts_driver_suffixes_and_socket_urls() -> None:
    """postgres://, postgresql+asyncpg:// and host-less socket URLs are fine."""
    for url in ("postgres://a@h/d", "postgresql+asyncpg://a:b@h:5/d", "postgresql:///d"):
        assert check_database_url(url) == url


MULTI_HOST_URLS = [
    "postgresql://app:pw@db1:5432,db2:5433/app?target_session_attrs=read-write",
    "postgresql://app:pw@db1,db2/app?target_session_attrs=primary",
    "postgresql://app:pw@[2001:db8::1]:5432,[2001:db8::2],db3:6432/app",
    "postgresql://app@/app?host=db1,db2&port=5432,5433&target_session_attrs=read-write",
]


@pytest.mark.parametrize("url", MULTI_HOST_URLS)
def test_database_url_may_name_several_hosts_for_failover(url: str) -> None:
    """A URL listing a primary and its standbys (each with its own port) is accepted, and shown without its password."""
    assert settings(database_url=url).database_url == url
    assert "pw" not in redact_url(url)


def test_missing_database_url_says_what_to_set() -> None:
    """Without a database URL the message names the variable and the flag."""
    with pytest.raises(
        ConfigError, match=r"OUTBOX_DATABASE_URL is not set; set it .* --database-url"
    ):
        read_settings({"OUTBOX_API_KEY": KEY})


# --- API key -------------------------------------------------------------------------------------------

BAD_KEYS = [
    ("sk_live_abc def", "printable ASCII without spaces or control characters"),
    ("sk_live_abc\x01def", "printable ASCII without spaces or control characters"),
    ("sk_live_abc\ndef", "printable ASCII without spaces or control characters"),
    ("sk_live_abcé", "printable ASCII without spaces or control characters"),
    ("sk_" + "x" * 2000, "the key is longer than 1024 characters"),
    ("pk_live_abc", "is a publishable key (pk_...)"),
]


@pytest.mark.parametrize(("key", "reason"), BAD_KEYS)
def test_bad_api_keys_are_refused_without_showing_them(key: str, reason: str) -> None:
    """A key that cannot go in a header as is, or is publishable, is refused without echoing it."""
    with pytest.raises(ConfigError) as caught:
        read_settings({**BASE_ENV, "OUTBOX_API_KEY": key})
    message = str(caught.value)
    assert message.startswith("OUTBOX_API_KEY")
    assert reason in message
    assert "abc" not in message
    assert "xxxx" not in message


@pytest.mark.parametrize(("content", "reason"), [(f"{k}\n".encode(), r) for k, r in BAD_KEYS])
def test_bad_api_keys_in_the_key_file_are_refused_naming_the_file(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    """The same keys from OUTBOX_API_KEY_FILE are refused naming the file, not showing the key."""
    message = _key_file_refusal(tmp_path, content)
    assert message.startswith(f"OUTBOX_API_KEY_FILE ({tmp_path / 'key'})")
    assert reason in message
    assert "abc" not in message


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"sk_live_\xff\xfe", "printable ASCII"),
        (b"", "is empty"),
        (b" \n\n", "is empty"),
        (b"\0" * 70_000, "the file is larger than 64KiB"),
    ],
)
def test_key_files_that_hold_no_usable_key_are_refused(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    """Undecodable, empty or oversized key files are one-line errors, never a traceback."""
    assert reason in _key_file_refusal(tmp_path, content)


def _key_file_refusal(tmp_path: Path, content: bytes) -> str:
    path = tmp_path / "key"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        read_settings({"OUTBOX_DATABASE_URL": DATABASE_URL, "OUTBOX_API_KEY_FILE": str(path)})
    return str(caught.value)


def test_key_file_is_read_and_its_final_newline_dropped(tmp_path: Path) -> None:
    """A key file's surrounding whitespace is removed."""
    path = tmp_path / "key"
    path.write_text(f"{KEY}\n")
    env = {"OUTBOX_DATABASE_URL": DATABASE_URL, "OUTBOX_API_KEY_FILE": str(path)}
    assert read_settings(env).api_key.reveal() == KEY


def test_unreadable_key_file_names_the_path_and_the_reason(tmp_path: Path) -> None:
    """A missing or unreadable key file says which path and why."""
    env = {"OUTBOX_DATABASE_URL": DATABASE_URL, "OUTBOX_API_KEY_FILE": str(tmp_path / "nope")}
    with pytest.raises(
        ConfigError, match=r"^OUTBOX_API_KEY_FILE: cannot read .*nope: No such file"
    ):
        read_settings(env)


def test_key_and_key_file_together_are_refused(tmp_path: Path) -> None:
    """Setting both the key and the key file is ambiguous and refused."""
    with pytest.raises(ConfigError, match="set OUTBOX_API_KEY or OUTBOX_API_KEY_FILE, not both"):
        read_settings({**BASE_ENV, "OUTBOX_API_KEY_FILE": str(tmp_path / "key")})


def test_missing_key_says_what_to_set() -> None:
    """Without a key the message names both ways to give one."""
    with pytest.raises(
        ConfigError, match="OUTBOX_API_KEY is not set; set it or OUTBOX_API_KEY_FILE"
    ):
        read_settings({"OUTBOX_DATABASE_URL": DATABASE_URL})


# --- Settings as a whole ---------------------------------------------------------------------------------


def test_defaults_match_the_documented_values() -> None:
    """With only the required variables, every setting has its default."""
    built = settings()
    assert built.shutdown_grace == DEFAULT_SHUTDOWN_GRACE == timedelta(seconds=15)
    assert DEFAULT_SHUTDOWN_GRACE == DEFAULT_HTTP_TIMEOUT + SHUTDOWN_MARGIN
    assert built.circuit.outage_threshold == DEFAULT_OUTAGE_THRESHOLD == 10
    assert built.max_claimed_bytes == 16 * 1024**2
    assert built.warnings() == []


def test_outage_threshold_is_read_and_bounded() -> None:
    """OUTBOX_OUTAGE_THRESHOLD sets the circuit's outage threshold, from 1 to 10000."""
    assert settings(outage_threshold="3").circuit.outage_threshold == 3
    assert refused(outage_threshold="0") == "OUTBOX_OUTAGE_THRESHOLD must be from 1 to 10000, got 0"


def test_overrides_win_over_the_environment() -> None:
    """CLI flags (overrides) take precedence over OUTBOX_* variables."""
    built = read_settings({**BASE_ENV, "OUTBOX_CONCURRENCY": "8"}, {"concurrency": "4"})
    assert built.concurrency == 4


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"http_timeout": "2s", "lease": "7s"},
            "OUTBOX_LEASE (7s) must be longer than OUTBOX_HTTP_TIMEOUT (2s) plus 5s",
        ),
        (
            {"backoff_base": "2m", "backoff_cap": "1m"},
            "OUTBOX_BACKOFF_BASE must not exceed OUTBOX_BACKOFF_CAP",
        ),
        (
            {"probe_initial": "2m", "probe_cap": "1m"},
            "OUTBOX_PROBE_INITIAL must not exceed OUTBOX_PROBE_CAP",
        ),
    ],
)
def test_settings_that_contradict_each_other_are_refused(env: dict[str, str], message: str) -> None:
    """Cross-checks name both variables."""
    assert refused(**env).startswith(message)


def test_direct_construction_is_checked_too() -> None:
    """Settings built in code (demo, tests) meet the same bounds as the environment."""
    with pytest.raises(ConfigError, match="OUTBOX_LEASE must be from 1s to 1h, got 2h"):
        Settings(database_url=DATABASE_URL, api_key=Secret(KEY), lease=timedelta(hours=2))
    with pytest.raises(ConfigError, match="OUTBOX_MAX_ATTEMPTS must be from 1 to 1000, got 0"):
        RetrySettings(max_attempts=0)
    with pytest.raises(ConfigError, match="OUTBOX_OUTAGE_THRESHOLD must be from 1 to 10000"):
        CircuitSettings(outage_threshold=0)
    with pytest.raises(ConfigError, match="OUTBOX_API_KEY: the key must be printable ASCII"):
        Settings(database_url=DATABASE_URL, api_key=Secret("sk_a\x00b"))
    with pytest.raises(ConfigError, match="OUTBOX_MAX_CLAIMED_BYTES must be from 1MiB to 1GiB"):
        settings().with_changes(max_claimed_bytes=10)


def test_short_shutdown_grace_is_legal_but_warned_about() -> None:
    """A grace shorter than the HTTP timeout plus 5s gives one warning that says what can happen."""
    assert settings(shutdown_grace="3s").warnings() == [
        "OUTBOX_SHUTDOWN_GRACE (3s) is shorter than OUTBOX_HTTP_TIMEOUT (10s) plus 5s: "
        "a SIGTERM may abandon sends the endpoint already received"
    ]
    assert settings(http_timeout="2s", lease="8s", shutdown_grace="7s").warnings() == []


def test_resending_on_429_is_warned_about() -> None:
    """OUTBOX_RETRY_ON_429 is legal, but Ravelin advises against resending: a warning says so."""
    assert any("OUTBOX_RETRY_ON_429" in w for w in settings(retry_on_429="true").warnings())


def test_describe_never_contains_the_key_or_the_password() -> None:
    """describe() gives every setting for the start-up log, without the key or the password."""
    described = settings(max_claimed_bytes="32MiB").describe()
    text = repr(described)
    assert KEY not in text
    assert PASSWORD not in text
    assert described["database_url"] == "postgresql://app:***@db.example.com:5432/app"
    assert described["max_claimed_bytes"] == 32 * 1024**2
    assert described["circuit"]["outage_threshold"] == 10
    assert described["shutdown_grace"] == 15.0


def test_the_key_never_shows_in_repr() -> None:
    """Secret and Settings reprs hide the key."""
    built = settings()
    assert KEY not in repr(built)
    assert KEY not in f"{built.api_key}"
    assert built.api_key.reveal() == KEY


def test_every_error_is_one_line_without_secrets() -> None:
    """A sample of refusals across all kinds: each is a single line free of the key and password."""
    cases: list[dict[str, Any]] = [
        {"lease": "x"},
        {"concurrency": "0"},
        {"rate_limit": "inf"},
        {"endpoint_url": f"https://{KEY}:{PASSWORD}@h/v2"},
        {"database_url": f"postgresql://u:{PASSWORD}@h:bad/d"},
    ]
    for env in cases:
        assert re.fullmatch(r"OUTBOX_[A-Z_]+.*", refused(**env))


def test_listen_database_url_is_checked_and_named_in_errors() -> None:
    """A bad OUTBOX_LISTEN_DATABASE_URL fails at start, naming that variable, never its password."""
    message = refused(listen_database_url=f"mysql://app:{PASSWORD}@db/app")

    assert message.startswith("OUTBOX_LISTEN_DATABASE_URL must be a postgresql:// URL")


def test_listen_database_url_is_optional_and_logged_without_its_password() -> None:
    """Unset means the main URL; set, it appears in the start-up line with the password hidden."""
    direct = f"postgresql://app:{PASSWORD}@db-direct/app"

    assert settings().listen_database_url is None
    described = settings(listen_database_url=direct).describe()
    assert described["listen_database_url"] == "postgresql://app:***@db-direct/app"


# --- every variable, one reader --------------------------------------------------------------------

# (variable, text, where it lands, value): every OUTBOX_* setting but the URL and key, each text
# different from the default, so a row passes only if the variable is really read.
EVERY_VARIABLE = [
    ("OUTBOX_ENDPOINT_URL", "http://127.0.0.1:9/v2/registration", "endpoint_url", None),
    ("OUTBOX_ALLOW_INSECURE_HTTP", "yes", "allow_insecure_http", True),
    ("OUTBOX_CONCURRENCY", "8", "concurrency", 8),
    ("OUTBOX_BATCH_SIZE", "50", "batch_size", 50),
    ("OUTBOX_HTTP_TIMEOUT", "2s", "http_timeout", timedelta(seconds=2)),
    ("OUTBOX_LEASE", "2m", "lease", timedelta(minutes=2)),
    ("OUTBOX_POLL_INTERVAL", "250ms", "poll_interval", 250 * MS),
    ("OUTBOX_POLL_ONLY", "true", "listen", False),
    ("OUTBOX_LISTEN_DATABASE_URL", "postgresql://direct/app", "listen_database_url", None),
    ("OUTBOX_SHUTDOWN_GRACE", "30s", "shutdown_grace", timedelta(seconds=30)),
    ("OUTBOX_FLUSH_INTERVAL", "50ms", "flush_interval", 50 * MS),
    ("OUTBOX_MAX_CLAIMED_BYTES", "32MiB", "max_claimed_bytes", 32 * 1024**2),
    ("OUTBOX_RATE_LIMIT", "50", "rate_limit", 50.0),
    ("OUTBOX_HISTORY_CAP", "5", "history_cap", 5),
    ("OUTBOX_METRICS_PORT", "9100", "metrics_port", 9100),
    ("OUTBOX_BACKLOG_INTERVAL", "15s", "backlog_interval", timedelta(seconds=15)),
    ("OUTBOX_LIVENESS_TIMEOUT", "2m", "liveness_timeout", timedelta(minutes=2)),
    ("OUTBOX_DATABASE_TIMEOUT", "3s", "database_timeout", timedelta(seconds=3)),
    ("OUTBOX_RETAIN_ACKNOWLEDGED", "2d", "retain_acknowledged", timedelta(days=2)),
    ("OUTBOX_RETAIN_DEAD", "90d", "retain_dead", timedelta(days=90)),
    ("OUTBOX_RETAIN_AUDIT", "730d", "retain_audit", timedelta(days=730)),
    ("OUTBOX_RETENTION_INTERVAL", "1h", "retention_interval", timedelta(hours=1)),
    ("OUTBOX_BACKOFF_BASE", "2s", "retry.backoff_base", timedelta(seconds=2)),
    ("OUTBOX_BACKOFF_CAP", "1h", "retry.backoff_cap", timedelta(hours=1)),
    ("OUTBOX_MAX_ATTEMPTS", "7", "retry.max_attempts", 7),
    ("OUTBOX_MAX_AGE", "2h", "retry.max_age", timedelta(hours=2)),
    ("OUTBOX_RETRY_AFTER_MAX", "1m", "retry.retry_after_max", timedelta(minutes=1)),
    ("OUTBOX_RATE_LIMITED_PAUSE", "10s", "retry.rate_limited_pause", timedelta(seconds=10)),
    ("OUTBOX_RETRY_ON_429", "on", "retry.retry_on_429", True),
    ("OUTBOX_PROBE_INITIAL", "2s", "circuit.probe_initial", timedelta(seconds=2)),
    ("OUTBOX_PROBE_CAP", "5m", "circuit.probe_cap", timedelta(minutes=5)),
    ("OUTBOX_OUTAGE_THRESHOLD", "3", "circuit.outage_threshold", 3),
]
REQUIRED_OR_SECRET = {"OUTBOX_DATABASE_URL", "OUTBOX_API_KEY", "OUTBOX_API_KEY_FILE"}


def setting(built: Settings | WorkerSettings, path: str) -> Any:
    """The value at ``retry.max_attempts``-style ``path``."""
    value: Any = built
    for part in path.split("."):
        value = getattr(value, part)
    return value


@pytest.mark.parametrize(("variable", "text", "path", "expected"), EVERY_VARIABLE)
def test_every_variable_sets_its_setting(
    variable: str, text: str, path: str, expected: object
) -> None:
    """Each OUTBOX_* variable, set alone, changes exactly the setting it names."""
    built = read_settings({**BASE_ENV, variable: text})
    default = setting(settings(), path)
    assert setting(built, path) == (text if expected is None else expected) != default


def test_the_table_covers_every_variable_read() -> None:
    """The variables looked up while reading settings are exactly the table's, plus URL and key."""
    env = Recording(dict(BASE_ENV))
    read_settings(env)
    assert {name for name in env.read if name.startswith("OUTBOX_")} == {
        *(row[0] for row in EVERY_VARIABLE),
        *REQUIRED_OR_SECRET,
    }


@pytest.mark.parametrize(("variable", "text", "path", "expected"), EVERY_VARIABLE)
def test_an_empty_variable_counts_as_unset(
    variable: str, text: str, path: str, expected: object
) -> None:
    """``OUTBOX_X=`` (as compose files write an unset value) leaves the default in place."""
    assert setting(read_settings({**BASE_ENV, variable: ""}), path) == setting(settings(), path)


@pytest.mark.parametrize(("variable", "text", "path", "expected"), EVERY_VARIABLE)
def test_a_flag_wins_over_its_variable(
    variable: str, text: str, path: str, expected: object
) -> None:
    """Overrides (the CLI flags, by field name) beat the environment for every setting."""
    name = variable.removeprefix("OUTBOX_").lower()
    built = read_settings({**BASE_ENV, variable: "nonsense"}, {name: text})
    assert setting(built, path) == (text if expected is None else expected)


def test_every_run_flag_overrides_a_variable_of_the_same_name() -> None:
    """Each `outbox-worker run` option (but logging) is a setting's variable, spelled as a flag."""
    from outbox_worker.cli.run import run_command

    env = Recording(dict(BASE_ENV))
    read_settings(env)
    flags = [p.name for p in run_command.params if p.name not in {"log_level", "log_json"}]
    assert flags
    assert all(f"OUTBOX_{str(name).upper()}" in env.read for name in flags)


def test_a_bad_flag_is_refused_naming_its_variable() -> None:
    """A flag's value is parsed like the variable's text, and the message names the variable."""
    with pytest.raises(ConfigError) as caught:
        read_settings(BASE_ENV, {"concurrency": "abc"})
    assert str(caught.value) == "OUTBOX_CONCURRENCY: 'abc' is not a whole number"


def test_the_database_url_alone_comes_from_the_same_reader() -> None:
    """Commands without a key read OUTBOX_DATABASE_URL (or --database-url) through the same rules."""
    assert read_database_url({"OUTBOX_DATABASE_URL": DATABASE_URL}) == DATABASE_URL
    assert read_database_url({"OUTBOX_DATABASE_URL": "x"}, DATABASE_URL) == DATABASE_URL
    with pytest.raises(ConfigError, match=r"^OUTBOX_DATABASE_URL is not set"):
        read_database_url({"OUTBOX_DATABASE_URL": ""})
    with pytest.raises(ConfigError) as caught:
        read_database_url({"OUTBOX_DATABASE_URL": f"postgresql://app:{PASSWORD}@db:54x/app"})
    assert PASSWORD not in str(caught.value)


def test_env_value_reads_one_variable_empty_as_unset() -> None:
    """read_text gives one variable's text, None when it is unset or empty."""
    assert read_text("database_url", {"OUTBOX_DATABASE_URL": DATABASE_URL}) == DATABASE_URL
    assert read_text("database_url", {"OUTBOX_DATABASE_URL": ""}) is None
    assert read_text("database_url", {}) is None


# --- what the worker gets ----------------------------------------------------------------------


def test_the_worker_part_holds_no_key_and_no_database_url() -> None:
    """Settings.worker carries every worker setting but neither the key nor the database URL."""
    built = settings(concurrency="8", max_attempts="7")
    worker = built.worker
    assert type(worker) is WorkerSettings
    assert not hasattr(worker, "api_key")
    assert not hasattr(worker, "database_url")
    assert (worker.concurrency, worker.retry.max_attempts) == (8, 7)
    for item in fields(WorkerSettings):
        assert getattr(worker, item.name) == getattr(built, item.name)
    for shown in (repr(worker), repr(worker.describe()), repr(vars_of(worker))):
        assert KEY not in shown
        assert PASSWORD not in shown


def vars_of(value: WorkerSettings) -> dict[str, Any]:
    """Every field's value, as a debugger would list them."""
    return {item.name: getattr(value, item.name) for item in fields(value)}


def test_the_worker_start_line_names_where_it_delivers_with_secrets_hidden() -> None:
    """The worker's describe() has the endpoint and the redacted database URL, as Settings' has."""
    built = settings()
    described = built.worker.describe()
    assert described["endpoint_url"] == "https://api.ravelin.com/v2/registration"
    assert described["database_url"] == "postgresql://app:***@db.example.com:5432/app"
    assert {k: v for k, v in built.describe().items() if k in described} == described


def test_the_worker_part_warns_as_settings_do() -> None:
    """Warnings depend only on what the worker holds, so both objects give the same lines."""
    built = settings(shutdown_grace="3s", retry_on_429="true", outage_threshold="30")
    assert built.worker.warnings() == built.warnings()
    assert len(built.warnings()) == 3


def test_worker_settings_built_in_code_are_checked_and_need_no_key() -> None:
    """WorkerSettings alone (tests, embedding) meets the same bounds and cross-checks."""
    assert WorkerSettings().describe()["database_url"] == ""
    with pytest.raises(ConfigError, match="OUTBOX_CONCURRENCY must be from 1 to 1000, got 0"):
        WorkerSettings(concurrency=0)
    with pytest.raises(ConfigError, match=r"OUTBOX_LEASE \(7s\) must be longer than"):
        WorkerSettings(http_timeout=timedelta(seconds=2), lease=timedelta(seconds=7))
    with pytest.raises(ConfigError, match="OUTBOX_RATE_LIMIT must be from 0 to 10000, got -1"):
        WorkerSettings(rate_limit=-1)


def test_an_outage_threshold_at_max_attempts_is_warned_about() -> None:
    """A threshold not below max attempts is legal, with a warning naming both variables."""
    assert settings(outage_threshold="25").warnings() == [
        "OUTBOX_OUTAGE_THRESHOLD (25) is not below OUTBOX_MAX_ATTEMPTS (25): a message pending "
        "alone during an outage may be dead-lettered before the outage is recognised"
    ]


def test_the_key_never_shows_however_settings_are_printed(tmp_path: Path) -> None:
    """repr, str, format and describe of the settings, from the variable or the file, hide it."""
    path = tmp_path / "key"
    path.write_text(KEY)
    from_file = read_settings(
        {"OUTBOX_DATABASE_URL": DATABASE_URL, "OUTBOX_API_KEY_FILE": str(path)}
    )
    for built in (settings(), from_file):
        assert built.api_key.reveal() == KEY
        for shown in (
            repr(built),
            str(built),
            f"{built}",
            f"{built.api_key!r}",
            str(built.describe()),
        ):
            assert KEY not in shown
            assert PASSWORD not in shown


# --- durations, as properties ---------------------------------------------------------------------

# A loaded machine (the suite runs beside others) must not fail a property on time alone.
NO_DEADLINE = hypothesis_settings(deadline=None)
UNITS = {"ms": MS, "s": timedelta(seconds=1), "m": timedelta(minutes=1), "h": timedelta(hours=1)}


@NO_DEADLINE
@given(st.integers(min_value=0, max_value=800_000), st.sampled_from(sorted(UNITS)))
def test_a_whole_number_with_a_unit_is_that_many_units(count: int, unit: str) -> None:
    """'<n><unit>' is n times the unit, exactly, for any n within the ceiling."""
    assert parse_duration(f"{count}{unit}") == count * UNITS[unit]


@NO_DEADLINE
@given(st.integers(min_value=0, max_value=36500 * 86_400_000))
def test_format_duration_reads_back_as_the_same_duration(ms: int) -> None:
    """What the messages print (format_duration) parses back to the same value."""
    value = timedelta(milliseconds=ms)
    assert parse_duration(format_duration(value)) == value


@NO_DEADLINE
@given(st.text(max_size=30) | st.from_regex(r"\s*\d{1,30}(\.\d{0,20})?\s*(ms|s|m|h|d|w)?\s*"))
def test_any_text_is_a_duration_in_bounds_or_one_line_naming_the_variable(text: str) -> None:
    """Whatever the text, the result is within the bounds or a one-line ConfigError, never a crash."""
    low, high = DURATION_BOUNDS["lease"]
    message = ""
    try:
        value = parse_duration(text, name="OUTBOX_LEASE", minimum=low, maximum=high)
    except ConfigError as exc:
        message = str(exc)
    if message:
        assert message.startswith("OUTBOX_LEASE")
        assert "\n" not in message
    else:
        assert low <= value <= high
