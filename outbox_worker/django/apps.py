"""The app config Django finds for ``"outbox_worker.django"`` in INSTALLED_APPS."""

from outbox_worker.integrations.django import OutboxWorkerConfig

__all__ = ["OutboxWorkerConfig"]
