"""Run the outbox schema's alembic history programmatically (no alembic.ini needed).

The history lives in the repository's top-level ``migrations/`` (beside ``alembic.ini``, so plain
``alembic upgrade head`` works from a checkout) and ships inside the wheel as
``outbox_worker/migrations`` (hatch ``force-include``), so ``outbox-worker migrate`` works from an
installed package too.

alembic is imported only by the functions that run it: `outbox-worker run` imports this module
for ``SCHEMA_HEAD`` alone, and every worker process would otherwise pay for alembic at start.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from alembic.config import Config

# The newest revision this package ships, for the worker's start-up check (a test holds it equal
# to what alembic finds in migrations/versions: bump it with every new revision).
SCHEMA_HEAD: Final = "0009"


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
