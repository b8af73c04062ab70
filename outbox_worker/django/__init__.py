"""Enqueue from Django inside ``transaction.atomic()``; add ``"outbox_worker.django"`` to
INSTALLED_APPS for the schema check. Needs Django: ``pip install 'outbox-worker[django]'``.
"""

try:
    import django  # noqa: F401
except ImportError as error:
    raise ImportError(
        "outbox_worker.django needs Django: pip install 'outbox-worker[django]'"
    ) from error

from outbox_worker.integrations.django import check_outbox_schema, enqueue

__all__ = ["check_outbox_schema", "enqueue"]
