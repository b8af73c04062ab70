"""How a database's schema revision stands to this code (migrate.schema_fit), as a table."""

from __future__ import annotations

import pytest

from outbox_worker.migrate import SchemaFit, is_ahead, schema_fit, schema_fit_text

HISTORY = ("0001", "0002", "0003")


@pytest.mark.parametrize(
    ("revision", "lists_head", "fit"),
    [
        (None, False, SchemaFit.MISSING),
        ("0003", False, SchemaFit.AT_HEAD),
        ("0001", True, SchemaFit.BEHIND),  # the marker never excuses a schema behind: migrate
        ("0004", True, SchemaFit.AHEAD_COMPATIBLE),
        ("0004", False, SchemaFit.AHEAD),
    ],
)
def test_schema_fit(revision: str | None, lists_head: bool, fit: SchemaFit) -> None:
    """Missing, at head, behind, or ahead with or without this version listed."""
    assert schema_fit(revision, lists_head=lists_head, head="0003", history=HISTORY) is fit


def test_only_a_revision_this_code_does_not_ship_is_ahead() -> None:
    """The marker is read only for a revision outside this code's history."""
    assert [is_ahead(r, HISTORY) for r in (None, "0001", "0003", "0004")] == [
        False,
        False,
        False,
        True,
    ]


@pytest.mark.parametrize(
    ("fit", "says"),
    [
        (SchemaFit.MISSING, "run `outbox-worker migrate`"),
        (SchemaFit.BEHIND, "this version needs 0003; run `outbox-worker migrate`"),
        (SchemaFit.AHEAD_COMPATIBLE, "newer than this version's 0003, and declares it compatible"),
        (SchemaFit.AHEAD, "this version is older than the schema; deploy the version that ran"),
    ],
)
def test_each_fit_says_what_to_do(fit: SchemaFit, says: str) -> None:
    """Each refusal names its remedy; the accepted newer schema says why it is accepted."""
    assert says in schema_fit_text(fit, "0001" if fit is SchemaFit.BEHIND else "0004", "0003")
    assert fit.runs is (fit is SchemaFit.AHEAD_COMPATIBLE)
