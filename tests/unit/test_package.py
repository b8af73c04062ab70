"""What the installed package promises without running anything: its public names and schema head."""

from __future__ import annotations

import subprocess
import sys

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


def test_importing_the_package_imports_no_optional_driver() -> None:
    """psycopg, psycopg2 and Django stay unimported until a caller passes their objects."""
    probe = (
        "import sys, outbox_worker, outbox_worker.drivers, outbox_worker.enqueue\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in OPTIONAL)\n"
        "print(loaded)\n"
    )
    optional = "OPTIONAL = {'psycopg', 'psycopg2', 'django'}\n"
    done = subprocess.run(
        [sys.executable, "-c", optional + probe], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"


def test_outbox_worker_django_without_django_names_the_extra() -> None:
    """Where Django is not installed, importing outbox_worker.django says which extra to install."""
    probe = (
        "import sys\n"
        "sys.modules['django'] = None  # as if Django were not installed\n"
        "try:\n"
        "    import outbox_worker.django\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == (
        "outbox_worker.django needs Django: pip install 'outbox-worker[django]'"
    )
