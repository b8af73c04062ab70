"""The application's own rows that the enqueue benches write in the same transaction as a message.

Each bench's transaction is a signup: a ``users`` row, then the enqueue (or, as the floor, the
same JSON in a plain ``bench_plain`` row). The statements are spelled once per placeholder style:
``$1`` (asyncpg), ``%s`` (psycopg, psycopg2, Django) and ``:name`` (SQLAlchemy ``text``).
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import text

APP_TABLES: Final = """
CREATE TABLE IF NOT EXISTS users (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS bench_plain (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    payload jsonb NOT NULL,
    created_at timestamptz DEFAULT now()
);
"""
INSERT_USER: Final = "INSERT INTO users (email) VALUES ($1)"
INSERT_PLAIN: Final = "INSERT INTO bench_plain (payload) VALUES ($1::jsonb)"
INSERT_USER_FORMAT: Final = "INSERT INTO users (email) VALUES (%s)"
INSERT_PLAIN_FORMAT: Final = "INSERT INTO bench_plain (payload) VALUES (%s::jsonb)"
INSERT_USER_NAMED: Final = text("INSERT INTO users (email) VALUES (:email)")
INSERT_PLAIN_NAMED: Final = text(
    "INSERT INTO bench_plain (payload) VALUES (CAST(:payload AS jsonb))"
)


def email_of(update: dict[str, Any]) -> str:
    """The users row's email for ``update``: its registration's username."""
    return str(update["registration"].get("username", "x"))
