"""Run the outbox schema's alembic history programmatically (no alembic.ini needed)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# The group roles revision 0004 creates, and the SQL that creates and grants them.
ROLES = ("outbox_producer", "outbox_worker", "outbox_operator")
ROLES_SQL = MIGRATIONS_DIR / "versions" / "sql" / "0004_roles.sql"


def alembic_config(database_url: str) -> Config:
    """An alembic Config pointing at the packaged migrations and the given database."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation would choke on a '%' in an escaped password.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def head_revision() -> str:
    """The newest revision this package ships."""
    head = ScriptDirectory.from_config(alembic_config("postgresql://unused/")).get_current_head()
    assert head is not None
    return head


def upgrade(database_url: str, revision: str = "head") -> None:
    """Upgrade the outbox schema to ``revision`` (safe to run twice or concurrently)."""
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    """Downgrade the outbox schema to ``revision`` ('base' removes everything but the schema)."""
    command.downgrade(alembic_config(database_url), revision)


def roles_sql() -> str:
    """The SQL that creates the outbox's group roles and grants them their privileges."""
    return ROLES_SQL.read_text(encoding="utf-8")
