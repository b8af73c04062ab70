"""Database and endpoint URLs: checked at start, shown with secrets hidden, spelled per driver.

Each check refuses bad input with a one-line ConfigError that names the setting, says what is
allowed, and never repeats a password: the parsers' own messages can quote part of the URL, so
they are described, not quoted.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final
from urllib.parse import parse_qs, unquote, urlsplit

import yarl

from outbox_worker.errors import ConfigError

# Printable ASCII without the space: what a URL or a token may contain unencoded.
PRINTABLE: Final = re.compile(r"[\x21-\x7e]+")
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")
_ENDPOINT = "OUTBOX_ENDPOINT_URL"
_DATABASE = "OUTBOX_DATABASE_URL"
_DATABASE_EXAMPLE = "e.g. postgresql://user:password@db.example.com:5432/app?sslmode=verify-full"
# One entry of a URL's host list: a name or IPv4 address, or an IPv6 address in brackets, and
# an optional port (checked apart, so that a bad one gets its own message).
_HOST_PORT = re.compile(r"(?:\[[0-9A-Fa-f:.%\w]+\]|[^\[\]:/]+)(?::(?P<port>[^:]*))?", re.ASCII)
# What asyncpg (and libpq) accept as target_session_attrs.
SESSION_ATTRS: Final = ("any", "primary", "standby", "prefer-standby", "read-write", "read-only")
# Query parameters that carry a secret: password, sslpassword, passfile's kin, tokens.
_SECRET_PARAMETER = re.compile(r"pass|secret|token", re.IGNORECASE)


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def with_database(url: str, name: str) -> str:
    """The same server URL (user, host, port, query) pointing at another database."""
    return urlsplit(url)._replace(path=f"/{name}").geturl()


def asyncpg_dsn(url: str) -> str:
    """Turn any postgresql URL (with or without a +driver suffix) into one asyncpg accepts."""
    scheme, sep, rest = url.partition("://")
    return f"postgresql{sep}{rest}" if scheme.startswith("postgres") else url


def sqlalchemy_url(url: str, driver: str = "asyncpg") -> str:
    """Turn a postgresql:// URL into SQLAlchemy's postgresql+<driver>:// form."""
    _, sep, rest = url.partition("://")
    return f"postgresql+{driver}{sep}{rest}"


def redact_url(url: str) -> str:
    """A database URL safe to show: the userinfo password and password-like parameters hidden.

    libpq and asyncpg also read a password from ``?password=`` and a key's passphrase from
    ``?sslpassword=``, so any query parameter whose name holds "pass", "secret" or "token" is
    hidden too. A URL that does not even split is hidden whole.
    """
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "postgresql://***"
    netloc = parts.netloc
    if password:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.partition(':')[0]}:***@{host}"
    query = (
        "&".join(_redact_parameter(item) for item in parts.query.split("&")) if parts.query else ""
    )
    return parts._replace(netloc=netloc, query=query).geturl()


def _redact_parameter(item: str) -> str:
    name, equals, _ = item.partition("=")
    return f"{name}=***" if equals and _SECRET_PARAMETER.search(unquote(name)) else item


def url_secrets(url: str) -> list[str]:
    """The secret values a database URL carries (its password, password-like parameters)."""
    found: list[str] = []
    try:
        parts = urlsplit(url)
        if parts.password:
            found += [parts.password, unquote(parts.password)]
    except ValueError:
        return found
    for item in parts.query.split("&"):
        name, equals, value = item.partition("=")
        if equals and value and _SECRET_PARAMETER.search(unquote(name)):
            found += [value, unquote(value)]
    return found


def hide_url_secrets(text: str, url: str) -> str:
    """``text`` (a driver's error message, say) with every secret of ``url`` replaced by ***."""
    for secret in sorted(url_secrets(url), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def check_database_url(url: str, *, name: str = _DATABASE) -> str:
    """Return the URL if it is a well-formed postgresql:// URL; errors never show a password.

    ``name`` is the setting the errors name (OUTBOX_DATABASE_URL, OUTBOX_LISTEN_DATABASE_URL).
    """
    scheme, sep, _ = url.partition("://")
    if not sep or scheme.split("+")[0] not in {"postgresql", "postgres"}:
        raise ConfigError(f"{name} must be a postgresql:// URL, {_DATABASE_EXAMPLE}")
    if not PRINTABLE.fullmatch(url):
        raise ConfigError(
            f"{name} contains a space, a control character or a non-ASCII character; "
            "percent-encode it (in the password too)"
        )
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        # The parser's own message can quote part of the password: describe, do not quote.
        why = "an IPv6 host needs both [ and ]" if "IPv6" in str(exc) else "bad port"
        raise ConfigError(f"{name} is malformed ({why}); {_DATABASE_EXAMPLE}") from None
    problem = _hosts_problem(parts.netloc.rpartition("@")[2])
    if problem:
        raise ConfigError(f"{name} is malformed ({problem}); {_DATABASE_EXAMPLE}")
    # An unencoded / ? or # in the password ends the host early; the rest lands in the path or
    # query, where redaction would not find it. The @ left behind gives it away.
    if "@" in url[len(scheme) + 3 + len(parts.netloc) :]:
        raise ConfigError(
            f"{name} has an @ after the host: percent-encode special characters in the "
            "user name and password (/ as %2F, ? as %3F, # as %23, @ as %40)"
        )
    attrs = parse_qs(parts.query).get("target_session_attrs", [])
    if any(value not in SESSION_ATTRS for value in attrs):
        raise ConfigError(
            f"{name}: target_session_attrs must be one of {', '.join(SESSION_ATTRS)} "
            "(read-write finds the primary among several hosts)"
        )
    return url


def _hosts_problem(hosts: str) -> str | None:
    """What is wrong with a URL's host list (``h1:5432,[::1]:5433,h3``), or None.

    Several hosts, each with its own port, are how libpq and asyncpg find the primary after a
    failover (with ``target_session_attrs=read-write``), so each is checked on its own.
    """
    if not hosts:
        return None  # the host may come from ?host= or the environment (a Unix socket)
    for host in hosts.split(","):
        match = _HOST_PORT.fullmatch(host)
        if match is None:
            return "an IPv6 host needs both [ and ]" if "[" in host or "]" in host else "bad host"
        port = match["port"] or ""
        if port and not (port.isdigit() and int(port) <= 65535):
            return "bad port"
        if port and int(port) == 0:
            return "the port must be from 1 to 65535"
    return None


def check_endpoint_url(url: str, *, allow_insecure_http: bool) -> str:
    """Return the endpoint URL if the HTTP client will parse it as meant, else raise ConfigError.

    Parsed with yarl, as aiohttp parses it. Errors show the host at most, never the whole URL.
    """
    authority = re.split(r"[/?#]", url.partition("://")[2], maxsplit=1)[0]
    if "@" in authority:
        raise ConfigError(
            f"{_ENDPOINT} must not carry credentials (user:password@); "
            "the key goes in OUTBOX_API_KEY or OUTBOX_API_KEY_FILE"
        )
    if not PRINTABLE.fullmatch(url):
        raise ConfigError(
            f"{_ENDPOINT} must be printable ASCII without spaces: percent-encode the path, "
            "write a non-ASCII host in its xn-- form"
        )
    try:
        parsed = yarl.URL(url)
    except ValueError as exc:  # yarl's reasons: the port or an IPv6 bracket
        raise ConfigError(f"{_ENDPOINT} is malformed: {exc}") from None
    if parsed.scheme not in {"https", "http"} or not parsed.raw_host:
        raise ConfigError(
            f"{_ENDPOINT} must be an http(s) URL with a host, e.g. https://api.ravelin.com/v2/registration"
        )
    _check_endpoint_authority(parsed.raw_host, authority)
    if parsed.fragment or "#" in url:
        raise ConfigError(f"{_ENDPOINT} must not carry a #fragment")
    if any(key.lower() == "score" for key in parsed.query):
        raise ConfigError(
            f"{_ENDPOINT} must not carry ?score=: that is the recommendation checkpoint"
        )
    host = parsed.host or parsed.raw_host
    if parsed.scheme == "http" and not (is_loopback(host) or allow_insecure_http):
        raise ConfigError(
            f"{_ENDPOINT} uses plain http to {host}; use https, "
            "or set OUTBOX_ALLOW_INSECURE_HTTP=true if you really mean it"
        )
    return url


def _check_endpoint_authority(raw_host: str, authority: str) -> None:
    """Refuse a host that DNS cannot resolve as written, and a port yarl would rewrite."""
    try:
        ipaddress.ip_address(raw_host)
    except ValueError:
        labels = raw_host.removesuffix(".").split(".")
        if not all(_HOST_LABEL.fullmatch(label) for label in labels):
            raise ConfigError(f"{_ENDPOINT}: {raw_host!r} is not a valid host name") from None
    # yarl accepts ':', ':+80' and ':0' and quietly rewrites or keeps them: be strict instead.
    host_port = authority.rpartition("]")[2] if authority.startswith("[") else authority
    if ":" not in host_port:
        return
    port = host_port.rpartition(":")[2]
    if not (re.fullmatch(r"\d{1,5}", port, re.ASCII) and 1 <= int(port) <= 65535):
        raise ConfigError(f"{_ENDPOINT}: the port must be a number from 1 to 65535")
