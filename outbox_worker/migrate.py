"""Run the outbox schema's alembic history programmatically (no alembic.ini needed).

The history lives in the repository's top-level ``migrations/`` (beside ``alembic.ini``, so plain
``alembic upgrade head`` works from a checkout) and ships inside the wheel as
``outbox_worker/migrations`` (hatch ``force-include``), so ``outbox-worker migrate`` works from an
installed package too.

alembic is imported only by the functions that run it: `outbox-worker run` imports this module
for ``SCHEMA_HEAD`` alone, and every worker process would otherwise pay for alembic at start.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from alembic.config import Config

# Every revision this package ships, oldest first, and the newest of them, for the start-up check
# (a test holds them equal to what alembic finds in migrations/versions: add each new revision).
# Knowing its own history without alembic tells the check whether a schema it does not run on is
# behind this code (run migrate) or ahead of it (another release migrated it).
SCHEMA_HISTORY: Final = (
    "0001",
    "0002",
    "0003",
    "0004",
    "0005",
    "0006",
    "0007",
    "0008",
    "0009",
    "0010",
)
SCHEMA_HEAD: Final = SCHEMA_HISTORY[-1]


class SchemaFit(StrEnum):
    """How the database's outbox schema stands to this code, for every start-up check."""

    MISSING = "missing"  # never migrated
    AT_HEAD = "at_head"
    BEHIND = "behind"  # a revision this code ships, older than its head: run migrate
    AHEAD_COMPATIBLE = "ahead_compatible"  # newer, and outbox.compatible_code lists our head
    AHEAD = "ahead"  # newer (or unknown), and it does not: deploy the version that migrated

    @property
    def runs(self) -> bool:
        """Whether this code may run on the schema."""
        return self in (SchemaFit.AT_HEAD, SchemaFit.AHEAD_COMPATIBLE)


def is_ahead(revision: str | None, history: Sequence[str] = SCHEMA_HISTORY) -> bool:
    """Whether ``revision`` is one this code does not ship: a later release's (only then is
    outbox.compatible_code worth reading)."""
    return revision is not None and revision not in history


def schema_fit(
    revision: str | None,
    *,
    lists_head: bool,
    head: str = SCHEMA_HEAD,
    history: Sequence[str] = SCHEMA_HISTORY,
) -> SchemaFit:
    """Where the schema at ``revision`` stands to this code; ``lists_head``: whether the schema's
    outbox.compatible_code lists ``head`` (consulted only for a revision ahead of this code)."""
    if revision is None:
        return SchemaFit.MISSING
    if revision == head:
        return SchemaFit.AT_HEAD
    if not is_ahead(revision, history):
        return SchemaFit.BEHIND
    return SchemaFit.AHEAD_COMPATIBLE if lists_head else SchemaFit.AHEAD


def schema_fit_text(fit: SchemaFit, revision: str | None, head: str = SCHEMA_HEAD) -> str:
    """One line saying how the schema stands to this code and, unless it runs, what to do."""
    if fit is SchemaFit.MISSING:
        return "the outbox schema does not exist; run `outbox-worker migrate`"
    if fit is SchemaFit.AT_HEAD:
        return f"the outbox schema is at this version's revision {head}"
    if fit is SchemaFit.BEHIND:
        return (
            f"the outbox schema is at revision {revision}, this version needs {head}; "
            "run `outbox-worker migrate`"
        )
    if fit is SchemaFit.AHEAD_COMPATIBLE:
        return (
            f"schema is at {revision}, newer than this version's {head}, and declares it compatible"
        )
    return (
        f"the outbox schema is at revision {revision}, newer than this version's {head}, and "
        "does not declare it compatible: this version is older than the schema; deploy the "
        "version that ran migrate"
    )


def _migrations_dir() -> Path:
    """The packaged history in a wheel, the repository's top-level one in a checkout."""
    package = Path(__file__).parent
    for candidate in (package / "migrations", package.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise FileNotFoundError(f"no migrations directory beside or inside {package}")


MIGRATIONS_DIR = _migrations_dir()
# The SQL files the revisions run (functions, roles): migration_scripts.run_script reads them.
SQL_DIR = MIGRATIONS_DIR / "versions" / "sql"
# The group roles revision 0004 creates, and the SQL that creates and grants them.
ROLES = ("outbox_producer", "outbox_worker", "outbox_operator")
ROLES_SQL = SQL_DIR / "0004_roles.sql"


def alembic_config(database_url: str) -> Config:
    """An alembic Config pointing at the packaged migrations and the given database."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation would choke on a '%' in an escaped password.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def head_revision() -> str:
    """The newest revision this package ships, as alembic reads it from the versions."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config("postgresql://unused/")).get_current_head()
    assert head is not None
    return head


def history() -> list[str]:
    """Every revision this package ships, oldest first, as alembic reads them from the versions."""
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(alembic_config("postgresql://unused/"))
    return [script.revision for script in reversed(list(scripts.walk_revisions()))]


def upgrade(database_url: str, revision: str = "head") -> None:
    """Upgrade the outbox schema to ``revision`` (safe to run twice or concurrently)."""
    from alembic import command

    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    """Downgrade the outbox schema to ``revision`` ('base' removes everything but the schema)."""
    from alembic import command

    command.downgrade(alembic_config(database_url), revision)


def roles_sql() -> str:
    """The SQL that creates the outbox's group roles and grants them their privileges."""
    return ROLES_SQL.read_text(encoding="utf-8")
