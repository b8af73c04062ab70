"""Alembic history of the outbox schema (shipped inside the package so `migrate` works from a wheel)."""
