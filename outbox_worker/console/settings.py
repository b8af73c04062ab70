"""ConsoleSettings: where the console listens and who may sign in, read once at start.

Flags win over the OUTBOX_CONSOLE_* variables. On a loopback address with no tokens file and
no SSO proxy, the console makes one admin token for its own lifetime and prints it (as Jupyter
does), so a local look needs no setup; on any other address it refuses to start without a
tokens file or a trusted SSO proxy.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

from outbox_worker.errors import ConfigError
from outbox_worker.settings.environment import read_database_url, read_text
from outbox_worker.settings.parsing import parse_duration
from outbox_worker.settings.urls import is_loopback

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8089
DEFAULT_SESSION_TTL: Final = timedelta(hours=8)
# oauth2-proxy's names (--set-xauthrequest / --pass-user-headers).
DEFAULT_SSO_USER_HEADER: Final = "X-Forwarded-User"
DEFAULT_SSO_GROUPS_HEADER: Final = "X-Forwarded-Groups"
DEFAULT_SSO_ADMIN_GROUP: Final = "outbox-admins"


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsoleSettings:
    """Everything the console reads at start."""

    database_url: str
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    tokens_file: Path | None = None
    # SSO: trust the user header only from these addresses (the proxy's), never from anyone else.
    trusted_proxies: tuple[Network, ...] = ()
    sso_user_header: str = DEFAULT_SSO_USER_HEADER
    sso_groups_header: str = DEFAULT_SSO_GROUPS_HEADER
    sso_admin_group: str = DEFAULT_SSO_ADMIN_GROUP
    session_ttl: timedelta = DEFAULT_SESSION_TTL
    show_pii: bool = False  # an admin may reveal one message's personal data (audited)
    secure_cookies: bool = False  # set Secure even when the request does not look like TLS
    refresh_s: float = 5.0  # how often an open overview refreshes itself

    @property
    def loopback(self) -> bool:
        """Whether the console listens on this machine only."""
        return is_loopback(self.host)

    @property
    def authenticated(self) -> bool:
        """Whether sign-in is set up (a tokens file or an SSO proxy)."""
        return self.tokens_file is not None or bool(self.trusted_proxies)


def parse_proxies(text: str | None) -> tuple[Network, ...]:
    """'10.0.0.5, 10.1.0.0/16' -> networks; ConfigError names a bad one."""
    if not text:
        return ()
    networks = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(
                f"OUTBOX_CONSOLE_TRUSTED_PROXY: {item!r} is not an IP address or network"
            ) from None
    return tuple(networks)


def read_console_settings(
    flags: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> ConsoleSettings:
    """Settings from the flags (None: not given) over OUTBOX_CONSOLE_* and OUTBOX_DATABASE_URL."""

    def pick(name: str) -> Any:
        flag = flags.get(name)
        return flag if flag is not None else read_text(f"console_{name}", environ)

    tokens = pick("tokens_file")
    ttl = pick("session_ttl")
    settings = ConsoleSettings(
        database_url=read_database_url(environ, flags.get("database_url")),
        host=str(pick("host") or DEFAULT_HOST),
        port=_port(pick("port")),
        tokens_file=Path(tokens) if tokens else None,
        trusted_proxies=parse_proxies(pick("trusted_proxy")),
        sso_user_header=str(pick("sso_user_header") or DEFAULT_SSO_USER_HEADER),
        sso_groups_header=str(pick("sso_groups_header") or DEFAULT_SSO_GROUPS_HEADER),
        sso_admin_group=str(pick("sso_admin_group") or DEFAULT_SSO_ADMIN_GROUP),
        session_ttl=(
            parse_duration(ttl, name="OUTBOX_CONSOLE_SESSION_TTL", minimum=timedelta(minutes=1))
            if ttl
            else DEFAULT_SESSION_TTL
        ),
        show_pii=bool(flags.get("show_pii")),
        secure_cookies=bool(flags.get("secure_cookies")),
    )
    if not settings.loopback and not settings.authenticated:
        raise ConfigError(
            f"the console would listen on {settings.host}, reachable from other machines, with "
            "no sign-in set up; pass --tokens-file (see `outbox-worker console-token`) or "
            "--trusted-proxy, or listen on 127.0.0.1"
        )
    return settings


def _port(value: Any) -> int:
    if value is None:
        return DEFAULT_PORT
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"OUTBOX_CONSOLE_PORT: {value!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"OUTBOX_CONSOLE_PORT: {port} is not between 0 and 65535")
    return port
