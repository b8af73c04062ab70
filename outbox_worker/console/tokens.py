"""Sign-in tokens: made and shown once, kept only as scrypt hashes in a file.

A token reads ``ow_<id>_<secret>``. The tokens file holds one line per token (blank lines and
``#`` comments ignored)::

    <id> <role> <name> scrypt$<n>$<r>$<p>$<salt, base64>$<hash, base64>

The id finds the line, so a sign-in costs one scrypt (about 50 ms, 16 MiB), whatever the number
of tokens; the secret is compared with the hash in constant time. The file holds no secret
(a stolen copy would need a brute force of 256 random bits), but only its owner should write it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final

from outbox_worker.errors import ConfigError

SCRYPT_N: Final = 2**14
SCRYPT_R: Final = 8
SCRYPT_P: Final = 1
_PREFIX: Final = "ow"
_TOKEN: Final = re.compile(r"ow_([A-Za-z0-9]{8})_([A-Za-z0-9_-]{20,100})")
_NAME: Final = re.compile(r"[A-Za-z0-9._@+-]{1,64}")
_ID_ALPHABET: Final = "abcdefghijkmnpqrstuvwxyz23456789"


class Role(StrEnum):
    """What a signed-in operator may do: viewers read, admins also act."""

    VIEWER = "viewer"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Operator:
    """Who is asking: a name for the audit trail, a role, and how they signed in."""

    name: str
    role: Role
    via: str  # "token" or "sso"

    @property
    def is_admin(self) -> bool:
        """Whether this operator may act (requeue, purge, pause, reveal)."""
        return self.role is Role.ADMIN


@dataclass(frozen=True, slots=True)
class TokenEntry:
    """One line of the tokens file."""

    id: str
    role: Role
    name: str
    salt: bytes
    digest: bytes
    n: int
    r: int
    p: int


def _hash(secret: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(secret.encode(), salt=salt, n=n, r=r, p=p, maxmem=64 * 2**20, dklen=32)


def check_name(name: str) -> str:
    """A token's owner name as the audit trail shows it; ConfigError if it has odd characters."""
    if not _NAME.fullmatch(name):
        raise ConfigError(
            f"token name {name!r}: use 1-64 letters, digits and . _ @ + - (no spaces)"
        )
    return name


def new_token(name: str, role: Role) -> tuple[str, str]:
    """A fresh token for ``name`` and the tokens-file line that accepts it (hash only)."""
    check_name(name)
    token_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))
    secret = secrets.token_urlsafe(32)
    salt = secrets.token_bytes(16)
    digest = _hash(secret, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    b64 = base64.b64encode
    hashed = f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"
    return f"{_PREFIX}_{token_id}_{secret}", f"{token_id} {role} {name} {hashed}"


def parse_line(line: str, where: str) -> TokenEntry:
    """One tokens-file line; ConfigError naming ``where`` when it is not one."""
    parts = line.split()
    hashed = parts[-1] if len(parts) == 4 else ""
    fields = hashed.split("$")
    shaped = len(fields) == 6 and fields[0] == "scrypt" and re.fullmatch(r"[a-z0-9]{8}", parts[0])
    if not shaped:
        raise ConfigError(
            f"{where}: not a token line (<id> <viewer|admin> <name> scrypt$...); "
            "make lines with `outbox-worker console-token`"
        )
    token_id, role, name, _ = parts
    _, n, r, p, salt, digest = fields
    try:
        entry = TokenEntry(
            token_id,
            Role(role),
            check_name(name),
            base64.b64decode(salt, validate=True),
            base64.b64decode(digest, validate=True),
            int(n),
            int(r),
            int(p),
        )
    except (ValueError, ConfigError):
        raise ConfigError(
            f"{where}: not a token line (<id> <viewer|admin> <name> scrypt$...); "
            "make lines with `outbox-worker console-token`"
        ) from None
    if not (2**10 <= entry.n <= 2**20 and 1 <= entry.r <= 32 and 1 <= entry.p <= 16):
        raise ConfigError(f"{where}: scrypt parameters out of range")
    return entry


class TokenBook:
    """The accepted tokens, by id."""

    def __init__(self, entries: list[TokenEntry]) -> None:
        self._by_id = {e.id: e for e in entries}

    def __len__(self) -> int:
        return len(self._by_id)

    def verify(self, token: str) -> Operator | None:
        """The operator ``token`` signs in, or None (CPU-bound: run it off the event loop)."""
        match = _TOKEN.fullmatch(token.strip())
        if match is None:
            return None
        entry = self._by_id.get(match.group(1))
        if entry is None:
            return None
        digest = _hash(match.group(2), entry.salt, entry.n, entry.r, entry.p)
        if not hmac.compare_digest(digest, entry.digest):
            return None
        return Operator(entry.name, entry.role, "token")


def load_tokens(path: Path) -> TokenBook:
    """The tokens in ``path``; ConfigError when it cannot be read or a line is malformed."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"tokens file {path}: cannot read it ({type(exc).__name__})") from None
    entries = [
        parse_line(line, f"tokens file {path}, line {number}")
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    return TokenBook(entries)


def ephemeral_book(name: str = "local-admin") -> tuple[str, TokenBook]:
    """One admin token that lives as long as this process (a loopback console with no file)."""
    token, line = new_token(name, Role.ADMIN)
    return token, TokenBook([parse_line(line, "generated token")])
