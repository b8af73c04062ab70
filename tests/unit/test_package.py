"""What the installed package promises without running anything: its public names and schema head."""

from __future__ import annotations

import outbox_worker
from outbox_worker import migrate


def test_schema_head_is_the_newest_shipped_revision() -> None:
    """The worker's start-up check expects the revision alembic finds last in the versions."""
    assert migrate.head_revision() == migrate.SCHEMA_HEAD


def test_public_api_names_resolve() -> None:
    """Every name in __all__ resolves, including the lazily imported RegistrationUpdate."""
    for name in outbox_worker.__all__:
        assert getattr(outbox_worker, name) is not None
    assert outbox_worker.RegistrationUpdate.__name__ == "RegistrationUpdate"
