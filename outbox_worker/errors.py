"""The one exception tree of outbox-worker.

Every error this package raises on purpose derives from ``OutboxError``; foreign exceptions
(asyncpg, aiohttp, SQLAlchemy) are translated at the edge that meets them.

    OutboxError
    ├── ConfigError              bad or missing configuration; the CLI exits 2
    ├── InvalidUpdate            (also ValueError) a registration update that breaks the rules;
    │                            carries every bad field as (path, message)
    ├── NotInTransaction         enqueue was called outside a transaction (the dual write the
    │                            outbox prevents); ``allow_autocommit=True`` opts out
    ├── SchemaNotReady           no outbox schema this version runs on: missing or behind
    │                            (run `migrate`), or ahead and not listing this version
    ├── MessageNotFound          an operator named an id that does not exist
    ├── InvalidRequest           (also ValueError) an operator's request is malformed (exit 2)
    ├── DatabaseUnavailable      the database cannot be reached (transient for the worker)
    │   └── LoginRefused         the server refused the login, or the database does not
    │                            exist: a configuration error at start (exit 2)
    └── StatementRejected        the database refused one statement (bad data, a constraint,
                                 a timeout); carries the SQLSTATE

A POST that gets no HTTP answer (timeout, refused or dropped connection) raises nothing: the
sender returns it as an ``Answer`` without a status, which the answer policy classifies.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


class OutboxError(Exception):
    """Root of every error outbox-worker raises on purpose."""

    #: process exit code the CLI uses for this error
    exit_code: int = 1


class ConfigError(OutboxError):
    """The configuration is missing or wrong; the message says what to set."""

    exit_code = 2


@dataclass(frozen=True, slots=True)
class FieldError:
    """One rule broken by one field of an update, named by its JSON path."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class InvalidUpdate(OutboxError, ValueError):
    """A registration update breaks Ravelin's rules; ``errors`` names every bad field."""

    exit_code = 2

    def __init__(self, errors: Iterable[FieldError]) -> None:
        self.errors: Sequence[FieldError] = tuple(errors)
        count = len(self.errors)
        listed = "; ".join(str(e) for e in self.errors)
        noun = "problem" if count == 1 else "problems"
        super().__init__(f"invalid registration update ({count} {noun}): {listed}")

    @property
    def paths(self) -> list[str]:
        """The JSON paths of the bad fields, in the order found."""
        return [e.path for e in self.errors]


class NotInTransaction(OutboxError):
    """``enqueue`` was called on a connection with no open transaction, so it would commit alone.

    That is the dual write the outbox exists to prevent: the update stored even when the writes
    it reports roll back. A script that means each enqueue to commit on its own (a backfill)
    passes ``allow_autocommit=True``.
    """

    def __init__(self, driver: str) -> None:
        self.driver = driver
        super().__init__(
            f"enqueue refused: the {driver} connection is not inside a transaction, so the update "
            "would commit on its own, apart from the writes it reports (the dual write the outbox "
            "prevents). Enqueue inside your transaction (engine.begin(), conn.transaction(), "
            "transaction.atomic(), ...), or pass allow_autocommit=True where each enqueue is "
            "meant to commit alone, as in a backfill script"
        )


class SchemaNotReady(OutboxError):
    """The outbox schema is missing or behind (run ``outbox-worker migrate``), or ahead of this
    version without listing it in outbox.compatible_code (deploy the version that migrated)."""

    exit_code = 2


class MessageNotFound(OutboxError):
    """No message has the id an operator asked for."""

    def __init__(self, message_id: int) -> None:
        self.message_id = message_id
        super().__init__(f"no message with id {message_id}")


class InvalidRequest(OutboxError, ValueError):
    """An operator's request is malformed (an empty or overlong pause reason); nothing changed."""

    exit_code = 2


class DatabaseUnavailable(OutboxError):
    """The database could not be reached or dropped the connection."""


class LoginRefused(DatabaseUnavailable):
    """The server refused the login or has no such database: wrong configuration, not an outage.

    A running worker still waits it out (a password rotation, a database being restored); at
    start it is a configuration error.
    """

    exit_code = 2


class StatementRejected(OutboxError):
    """The database refused a statement; the connection itself is fine.

    The message names the error class and SQLSTATE and never quotes a value: a refused value may
    be a payload's personal data.
    """

    def __init__(self, reason: str, *, sqlstate: str | None = None) -> None:
        self.sqlstate = sqlstate
        super().__init__(reason)
