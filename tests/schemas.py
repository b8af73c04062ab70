"""What a migrated database lacks or has beyond ``schema.metadata``, for the migration tests."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from outbox_worker.schema import SCHEMA, include_name, metadata
from outbox_worker.settings.config import sqlalchemy_url


def schema_diff(url: str) -> list[object]:
    """Alembic's differences between the database at ``url`` and schema.metadata; [] when equal."""
    engine = create_engine(sqlalchemy_url(url, "psycopg"))
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={
                    "include_schemas": True,
                    "include_name": include_name,
                    "version_table_schema": SCHEMA,
                },
            )
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()
