"""outbox_worker.django in a real Django project (tests/django_site) on the test server.

Three databases: ``default`` and ``other`` migrated (outbox and Django's auth tables), ``bare``
with neither. Django's settings are process-wide, so they are configured once for this module, and its models
are imported only after that (inside the tests).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import django
import psycopg
import pytest
from django.conf import settings
from django.core import checks
from django.core.management import call_command
from django.db import connections, transaction
from django.test import Client
from psycopg.conninfo import conninfo_to_dict

import outbox_worker
from outbox_worker.django import enqueue
from outbox_worker.migrate import SCHEMA_HEAD
from tests.cases import VALID_EXAMPLES
from tests.pg import admin_execute, unique_name, with_database

EXAMPLE = VALID_EXAMPLES[0][1]
ALIASES = ("default", "other", "bare")


def _django_database(url: str) -> dict[str, Any]:
    """A DATABASES entry for a libpq URL (a TCP host or an embedded server's socket)."""
    info = conninfo_to_dict(url)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": info["dbname"],
        "USER": info.get("user", ""),
        "PASSWORD": info.get("password", ""),
        "HOST": info.get("host", ""),
        "PORT": info.get("port", ""),
    }


@pytest.fixture(scope="module")
def urls(pg_server_url: str, template_database: str) -> Iterator[dict[str, str]]:
    """The three databases' URLs by alias; Django configured on them, auth tables migrated."""
    names = {alias: unique_name(f"outbox_dj_{alias}") for alias in ALIASES}
    for alias, name in names.items():
        template = "" if alias == "bare" else f' TEMPLATE "{template_database}"'
        admin_execute(pg_server_url, f'CREATE DATABASE "{name}"{template}')
    found = {alias: with_database(pg_server_url, name) for alias, name in names.items()}
    try:
        settings.configure(
            DATABASES={alias: _django_database(url) for alias, url in found.items()},
            INSTALLED_APPS=[
                "django.contrib.auth",
                "django.contrib.contenttypes",
                "outbox_worker.django",
            ],
            ROOT_URLCONF="tests.django_site.urls",
            ALLOWED_HOSTS=["testserver"],
            PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
            OUTBOX_WORKER_DATABASES=list(ALIASES),
            SECRET_KEY="tests only",
            USE_TZ=True,
        )
        django.setup()
        for alias in ("default", "other"):
            call_command("migrate", database=alias, verbosity=0, skip_checks=True)
        yield found
    finally:
        connections.close_all()
        for name in names.values():
            admin_execute(pg_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def site(urls: dict[str, str]) -> Iterator[dict[str, str]]:
    """The databases by alias, emptied of users and outbox rows after each test."""
    yield urls
    for alias in ("default", "other"):
        with psycopg.connect(urls[alias], autocommit=True) as conn:
            conn.execute("TRUNCATE outbox.messages, auth_user CASCADE")


def _outbox(url: str) -> list[tuple[int, str | None, Any]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT id, dedup_key, payload FROM outbox.messages ORDER BY id")
        return [(r[0], r[1], r[2]) for r in rows]


def _users(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT email FROM auth_user ORDER BY id")]


def test_the_readme_view_commits_the_user_and_the_update_together(site: dict[str, str]) -> None:
    """POST /register creates the user and enqueues its update; both are there after the commit."""
    response = Client().post(
        "/register",
        {"email": "ada@example.com", "password": "correct horse"},
        headers={"X-Request-Id": "r-1"},
    )
    assert response.status_code == 201, response.content
    user_id = json.loads(response.content)["id"]
    [(_, dedup_key, payload)] = _outbox(site["default"])
    assert dedup_key == "registration-r-1"
    assert payload["customer"] == {"customerId": str(user_id), "email": "ada@example.com"}
    assert _users(site["default"]) == ["ada@example.com"]


def _register_then_fail(email: str) -> None:
    from django.contrib.auth.models import User

    with transaction.atomic():
        User.objects.create_user(email, email=email)
        enqueue(EXAMPLE, dedup_key=email)
        raise LookupError("the request failed after the enqueue")


def test_a_rolled_back_atomic_block_leaves_neither_user_nor_update(site: dict[str, str]) -> None:
    """An exception after the enqueue rolls back the user and the update together."""
    with pytest.raises(LookupError):
        _register_then_fail("ada@example.com")
    assert _outbox(site["default"]) == []
    assert _users(site["default"]) == []


def test_using_a_second_alias_joins_that_databases_transaction(site: dict[str, str]) -> None:
    """enqueue(using="other") stores in that alias's atomic block, on that database only."""
    from django.contrib.auth.models import User

    with transaction.atomic(using="other"):
        User.objects.db_manager("other").create_user("bo@example.com", email="bo@example.com")
        message_id = enqueue(EXAMPLE, dedup_key="bo", using="other")
    assert [(r[0], r[1]) for r in _outbox(site["other"])] == [(message_id, "bo")]
    assert _users(site["other"]) == ["bo@example.com"]
    assert _outbox(site["default"]) == []


def test_an_enqueue_outside_atomic_is_refused_unless_allowed(site: dict[str, str]) -> None:
    """Outside atomic() Django autocommits: NotInTransaction, unless allow_autocommit=True."""
    with pytest.raises(outbox_worker.NotInTransaction, match="allow_autocommit=True"):
        enqueue(EXAMPLE)
    assert _outbox(site["default"]) == []
    message_id = enqueue(EXAMPLE, allow_autocommit=True)
    assert [r[0] for r in _outbox(site["default"])] == [message_id]


def test_an_invalid_update_is_refused_and_rolls_nothing_in(site: dict[str, str]) -> None:
    """A bad update raises InvalidUpdate inside atomic(); nothing is stored."""
    with pytest.raises(outbox_worker.InvalidUpdate), transaction.atomic():
        enqueue({"timestamp": 1, "registration": {"success": "yes"}})
    assert _outbox(site["default"]) == []


def _outbox_warnings(*aliases: str) -> list[checks.CheckMessage]:
    found = checks.run_checks(databases=list(aliases), tags=[checks.Tags.database])
    return [m for m in found if str(m.id).startswith("outbox_worker.")]


def test_the_system_check_warns_about_a_database_without_the_schema(
    site: dict[str, str],
) -> None:
    """`manage.py check --database bare` warns (W001) that the alias has no outbox schema."""
    assert _outbox_warnings("default", "other") == []
    [warning] = _outbox_warnings("default", "bare")
    assert warning.id == "outbox_worker.W001"
    assert "'bare'" in warning.msg
    assert "outbox-worker migrate" in str(warning.hint)
    out = io.StringIO()
    call_command("check", databases=["bare"], stdout=out, stderr=out)
    assert "outbox_worker.W001" in out.getvalue()


def test_the_system_check_warns_about_a_schema_behind_this_version(
    site: dict[str, str],
) -> None:
    """A database whose outbox schema is at an older revision gets W002 naming both revisions."""
    with psycopg.connect(site["other"], autocommit=True) as conn:
        conn.execute("UPDATE outbox.alembic_version SET version_num = '0007'")
        try:
            [warning] = _outbox_warnings("other")
        finally:
            conn.execute("UPDATE outbox.alembic_version SET version_num = %s", [SCHEMA_HEAD])
    assert warning.id == "outbox_worker.W002"
    assert f"at revision 0007; this version of outbox-worker needs {SCHEMA_HEAD}" in warning.msg


@pytest.mark.parametrize(
    ("listed", "level", "message_id", "says"),
    [
        (True, "Info", "outbox_worker.I001", "and declares it compatible"),
        (False, "Warning", "outbox_worker.W005", "deploy the version that ran migrate"),
    ],
)
def test_the_system_check_on_a_schema_ahead_of_this_version(
    site: dict[str, str], listed: bool, level: str, message_id: str, says: str
) -> None:
    """A newer schema listing this version is an Info (the check passes); one that does not list
    it is a Warning saying to deploy the release that migrated."""
    with psycopg.connect(site["other"], autocommit=True) as conn:
        conn.execute("UPDATE outbox.alembic_version SET version_num = '0099'")
        if not listed:
            conn.execute("DELETE FROM outbox.compatible_code WHERE revision = %s", [SCHEMA_HEAD])
        try:
            [message] = _outbox_warnings("other")
        finally:
            conn.execute("UPDATE outbox.alembic_version SET version_num = %s", [SCHEMA_HEAD])
            conn.execute(
                "INSERT INTO outbox.compatible_code VALUES (%s) ON CONFLICT DO NOTHING",
                [SCHEMA_HEAD],
            )
    assert (type(message).__name__, message.id) == (level, message_id)
    assert f"0099, newer than this version's {SCHEMA_HEAD}" in message.msg
    assert says in message.msg


def test_refusals_through_django_quote_no_personal_data(site: dict[str, str]) -> None:
    """NotInTransaction and InvalidUpdate from outbox_worker.django name no value of the update."""
    from tests.e2e.test_canaries import DEDUP_KEY, PAYLOAD
    from tests.integration.test_enqueue_drivers import _canaries

    broken = {**PAYLOAD, "customer": {**PAYLOAD["customer"], "telephone": "canary-phone-q7x"}}
    with pytest.raises(outbox_worker.NotInTransaction) as refused:
        enqueue(PAYLOAD, dedup_key=DEDUP_KEY)
    with pytest.raises(outbox_worker.InvalidUpdate) as invalid, transaction.atomic():
        enqueue(broken, dedup_key=DEDUP_KEY)
    said = f"{refused.value!r} {refused.value} {invalid.value!r} {invalid.value}"
    assert [c for c in [*_canaries(broken), DEDUP_KEY] if c in said] == []


def test_enqueue_in_a_span_stores_its_trace_context(site: dict[str, str]) -> None:
    """outbox_worker.django.enqueue inside an OpenTelemetry span stores that span's traceparent."""
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("django-app")
    with tracer.start_as_current_span("register") as span, transaction.atomic():
        enqueue(EXAMPLE, dedup_key="traced")
    context = span.get_span_context()
    expected = f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
    with psycopg.connect(site["default"]) as conn:
        row = conn.execute(
            "SELECT trace_context ->> 'traceparent' FROM outbox.messages WHERE dedup_key = 'traced'"
        ).fetchone()
    assert row == (expected,)
