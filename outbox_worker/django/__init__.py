"""Django: enqueue inside ``transaction.atomic()`` on a database alias, and a schema system check.

Needs Django (``pip install 'outbox-worker[django]'``); add ``"outbox_worker.django"`` to
INSTALLED_APPS for the check. ``enqueue`` runs the same one statement as
``outbox_worker.enqueue`` on the alias's connection, through Django's cursor (so its execute
wrappers and error classes apply), with the same validation. The system check (tag
``database``: ``manage.py check --database default`` and ``manage.py migrate`` run it) warns when
an alias in ``OUTBOX_WORKER_DATABASES`` (default ``["default"]``) has no outbox schema, one
behind this version's, or one ahead of it that does not declare this version compatible (one ahead
that does is an Info: a rolling upgrade's older release, which the schema vouches for).

A wing of its own rather than a module of ``integrations``: it is built on ``enqueue``, which
imports ``integrations`` (trace capture), and the wings import each other one way only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

try:
    import django  # noqa: F401
except ImportError as error:
    raise ImportError(
        "outbox_worker.django needs Django: pip install 'outbox-worker[django]'"
    ) from error

from django.apps import AppConfig
from django.conf import settings
from django.core import checks
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db.backends.base.base import BaseDatabaseWrapper

from outbox_worker.drivers import INSERT_FORMAT, message_id
from outbox_worker.enqueue import Update, arguments
from outbox_worker.errors import NotInTransaction
from outbox_worker.migrate import SCHEMA_HEAD, SchemaFit, is_ahead, schema_fit, schema_fit_text

__all__ = ["check_outbox_schema", "enqueue"]

_HINT: Final = (
    "run `outbox-worker migrate` with OUTBOX_DATABASE_URL naming this database, as a deploy step "
    "beside `manage.py migrate`"
)
# Two statements: the second names a table the first finds missing on a database never migrated.
_VERSION_TABLE_EXISTS: Final = "SELECT to_regclass('outbox.alembic_version') IS NOT NULL"
_VERSION: Final = "SELECT version_num FROM outbox.alembic_version"
# The same two steps for revision 0010's compatibility marker (store/connection.py's twins).
_COMPATIBLE_CODE_EXISTS: Final = "SELECT to_regclass('outbox.compatible_code') IS NOT NULL"
_LISTS_CODE: Final = "SELECT EXISTS (SELECT FROM outbox.compatible_code WHERE revision = %s)"


def _postgresql(using: str) -> BaseDatabaseWrapper:
    connection = connections[using]
    if connection.vendor != "postgresql":
        raise TypeError(
            f"the outbox lives in PostgreSQL; Django database {using!r} is {connection.vendor}"
        )
    return connection


def enqueue(
    update: Update,
    *,
    dedup_key: str | None = None,
    using: str = DEFAULT_DB_ALIAS,
    allow_autocommit: bool = False,
) -> int:
    """Store an update in the outbox within the current ``transaction.atomic()`` on ``using``.

    Returns the message id. Raises ``NotInTransaction`` outside ``atomic()`` (Django's
    autocommit would store the update alone) unless ``allow_autocommit`` is true, and
    ``InvalidUpdate`` when the update breaks Ravelin's rules.
    """
    connection = _postgresql(using)
    args = arguments(update, dedup_key)
    # Django runs in autocommit outside atomic(); atomic() (ATOMIC_REQUESTS too) turns it off.
    if not allow_autocommit and connection.get_autocommit():
        raise NotInTransaction("Django")
    with connection.cursor() as cursor:
        cursor.execute(INSERT_FORMAT[len(args) - 2], args)
        return message_id(cursor.fetchone())


def _schema_revision(connection: BaseDatabaseWrapper) -> str | None:
    with connection.cursor() as cursor:
        cursor.execute(_VERSION_TABLE_EXISTS)
        row = cursor.fetchone()
        if row is None or not row[0]:
            return None
        cursor.execute(_VERSION)
        row = cursor.fetchone()
        return None if row is None else str(row[0])


def _lists_head(connection: BaseDatabaseWrapper) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(_COMPATIBLE_CODE_EXISTS)
        row = cursor.fetchone()
        if row is None or not row[0]:
            return False
        cursor.execute(_LISTS_CODE, [SCHEMA_HEAD])
        row = cursor.fetchone()
        return row is not None and bool(row[0])


def _schema_message(alias: str) -> checks.CheckMessage | None:
    connection = connections[alias]
    if connection.vendor != "postgresql":
        return checks.Warning(
            f"OUTBOX_WORKER_DATABASES names {alias!r}, a {connection.vendor} database; "
            "the outbox lives in PostgreSQL",
            id="outbox_worker.W003",
        )
    try:
        revision = _schema_revision(connection)
        listed = is_ahead(revision) and _lists_head(connection)
    except DatabaseError as error:
        # The class only: a driver's message may quote the connection's settings.
        return checks.Warning(
            f"could not read the outbox schema's revision on database {alias!r} "
            f"({type(error).__name__})",
            hint=_HINT,
            id="outbox_worker.W004",
        )
    return _fit_message(alias, revision, schema_fit(revision, lists_head=listed))


def _fit_message(alias: str, revision: str | None, fit: SchemaFit) -> checks.CheckMessage | None:
    if fit is SchemaFit.AT_HEAD:
        return None
    if fit is SchemaFit.MISSING:
        return checks.Warning(
            f"database {alias!r} has no outbox schema: enqueue will fail there",
            hint=_HINT,
            id="outbox_worker.W001",
        )
    if fit is SchemaFit.BEHIND:
        return checks.Warning(
            f"the outbox schema on database {alias!r} is at revision {revision}; this version "
            f"of outbox-worker needs {SCHEMA_HEAD}",
            hint=_HINT,
            id="outbox_worker.W002",
        )
    if fit is SchemaFit.AHEAD_COMPATIBLE:
        return checks.Info(
            f"database {alias!r}: {schema_fit_text(fit, revision)}", id="outbox_worker.I001"
        )
    return checks.Warning(
        f"database {alias!r}: {schema_fit_text(fit, revision)}",
        hint="upgrade outbox-worker in this application to the release that migrated the database",
        id="outbox_worker.W005",
    )


def check_outbox_schema(
    app_configs: Sequence[AppConfig] | None = None,
    databases: Sequence[str] | None = None,
    **kwargs: Any,
) -> list[checks.CheckMessage]:
    """Warn for each outbox database (of those Django asks about) whose schema this version may
    not run on; an Info for one ahead of it that declares it compatible."""
    wanted = getattr(settings, "OUTBOX_WORKER_DATABASES", [DEFAULT_DB_ALIAS])
    found = (_schema_message(alias) for alias in databases or () if alias in wanted)
    return [message for message in found if message is not None]
