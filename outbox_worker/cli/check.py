"""`outbox-worker check`: is everything in place for the worker to deliver?

One line per check, ``ok   <what>`` or ``fail <what>: <reason>``. The key is tested with a probe
that sends no registration: an empty object, which Ravelin refuses for its shape (400) once it has
accepted the key, and for the key (401/403) before looking at the body.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import click

from outbox_worker.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, database_option, json_option
from outbox_worker.cli import display as fmt
from outbox_worker.cli.operator_kit import run
from outbox_worker.delivery.sender import probe
from outbox_worker.errors import ConfigError, DatabaseUnavailable
from outbox_worker.migrate import SCHEMA_HEAD, SchemaFit, is_ahead, schema_fit, schema_fit_text
from outbox_worker.models import Answer
from outbox_worker.settings.config import Settings, redact_url
from outbox_worker.settings.environment import read_database_url, read_settings
from outbox_worker.store.connection import (
    connected,
    lists_code,
    schema_revision,
    translate_errors,
)

REFUSED = frozenset({401, 403})


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of one check."""

    check: str
    ok: bool
    detail: str = ""

    def line(self) -> str:
        """``ok   what`` or ``fail what: reason``."""
        if self.ok:
            return f"ok   {self.check}" + (f" ({self.detail})" if self.detail else "")
        return f"fail {self.check}: {self.detail}"


async def run_checks(database_url: str | None) -> tuple[list[CheckResult], bool]:
    """Every check in order, and whether the configuration itself was at fault."""
    results: list[CheckResult] = []
    try:
        settings: Settings | None = read_settings(None, {"database_url": database_url})
        results.append(CheckResult("configuration", True))
    except ConfigError as exc:
        settings = None
        results.append(CheckResult("configuration", False, str(exc)))
    try:
        url = settings.database_url if settings else read_database_url(None, database_url)
    except ConfigError:
        return results, True  # the configuration line already says what to set
    results += await _database_checks(url)
    if settings is not None:
        results += await _endpoint_checks(settings)
    return results, settings is None


async def _database_checks(url: str) -> list[CheckResult]:
    reachable = f"database reachable ({redact_url(url)})"
    try:
        async with connected(url, application_name="outbox-worker check") as conn:
            with translate_errors(url):
                revision = await schema_revision(conn)
                listed = is_ahead(revision) and await lists_code(conn, SCHEMA_HEAD)
    except DatabaseUnavailable as exc:
        return [CheckResult(reachable, False, str(exc))]
    return [CheckResult(reachable, True), _schema_check(revision, listed)]


def _schema_check(revision: str | None, listed: bool) -> CheckResult:
    # The verdict the worker's start-up check reaches (ensure_schema_ready), as a line.
    fit = schema_fit(revision, lists_head=listed)
    if fit is SchemaFit.AT_HEAD:
        return CheckResult(f"schema at head ({SCHEMA_HEAD})", True)
    if fit is SchemaFit.AHEAD_COMPATIBLE:
        # Passes: a rolling upgrade's older version, which the schema vouches for.
        return CheckResult("schema compatible", True, schema_fit_text(fit, revision))
    if fit is SchemaFit.AHEAD:
        return CheckResult("schema compatible", False, schema_fit_text(fit, revision))
    if fit is SchemaFit.MISSING:
        return CheckResult(
            "schema at head", False, "the outbox schema does not exist; run `outbox-worker migrate`"
        )
    return CheckResult(
        "schema at head", False, f"at {revision}, needs {SCHEMA_HEAD}; run `outbox-worker migrate`"
    )


async def _endpoint_checks(settings: Settings) -> list[CheckResult]:
    reachable = f"endpoint reachable ({settings.endpoint_url})"
    started = time.monotonic()
    answer = await probe(
        settings.endpoint_url, settings.api_key, timeout_s=settings.http_timeout.total_seconds()
    )
    if answer.status is None:
        return [CheckResult(reachable, False, answer.error or "no answer")]
    took = f"HTTP {answer.status} in {(time.monotonic() - started) * 1000:.0f} ms"
    return [CheckResult(reachable, True, took), _key_check(answer)]


def _key_check(answer: Answer) -> CheckResult:
    status = answer.status
    if status is not None and (200 <= status < 300 or status == 400):
        return CheckResult("key accepted", True)
    if status in REFUSED:
        return CheckResult(
            "key accepted",
            False,
            f"the endpoint refused the key (HTTP {status}); check OUTBOX_API_KEY (the secret key)",
        )
    if status == 404:
        reason = "HTTP 404: no such endpoint; check OUTBOX_ENDPOINT_URL"
    else:
        reason = f"cannot tell: the endpoint answered HTTP {status} to the probe"
    return CheckResult("key accepted", False, reason)


@click.command()
@database_option
@json_option
def check(database_url: str | None, as_json: bool) -> None:
    """Check configuration, database, schema, endpoint and API key.

    Prints one line per check (ok / fail with the reason); exits 0 only if all pass, 1 if a
    check failed, 2 if the configuration is wrong.
    Sends no registration: the key is tested with an empty body that Ravelin rejects for its
    shape (400) when the key is right, and for the key (401/403) when it is wrong.

    \b
    Example:
      OUTBOX_API_KEY_FILE=/run/secrets/ravelin outbox-worker check
    """
    results, config_failed = run(run_checks(database_url))
    all_ok = all(r.ok for r in results)
    if as_json:
        fmt.emit_json({"ok": all_ok, "checks": [asdict(r) for r in results]})
    else:
        for result in results:
            click.echo(result.line())
    if config_failed:
        raise SystemExit(EXIT_USAGE)
    raise SystemExit(EXIT_OK if all_ok else EXIT_FAILURE)


def register(group: click.Group) -> None:
    """Add `check` to ``group``."""
    group.add_command(check)
