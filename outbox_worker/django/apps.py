"""The app config Django finds for ``"outbox_worker.django"`` in INSTALLED_APPS."""

from django.apps import AppConfig
from django.core import checks

from outbox_worker.django import check_outbox_schema


class OutboxWorkerConfig(AppConfig):
    """The app ``outbox_worker.django`` in INSTALLED_APPS: registers the schema check."""

    name = "outbox_worker.django"
    label = "outbox_worker"
    verbose_name = "outbox-worker"

    def ready(self) -> None:
        """Register the schema check, run by ``check --database`` and ``migrate``."""
        # Tagged "database": Django runs such checks only when told which databases to query.
        checks.register(check_outbox_schema, checks.Tags.database)
