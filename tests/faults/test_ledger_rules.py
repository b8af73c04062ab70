"""The chaos suite's own rules, without processes: the plan is the seed's, the ledger judges fairly."""

from __future__ import annotations

import pytest

from outbox_worker.standin import Received
from tests.faults.driver import Events, Exit
from tests.faults.ledger import Cause, Row, build_ledger, dead_fate, explain
from tests.faults.plan import Fate, MessageFault, Plan, Profile, WindowKind, build_plan

TIMEOUT = 1.0


def received(
    key: str, at: float, status: int = 200, step: str = "200", took: float = 0.01
) -> Received:
    """A request for ``key`` that arrived at ``at`` and was answered ``took`` later."""
    return Received(b"{}", {}, at, status, step, key, at + took)


def test_the_same_seed_gives_the_same_plan() -> None:
    """Schedule, fault assignment and planted rows are a function of the profile and seed only."""
    assert build_plan(Profile.short(11)).digest() == build_plan(Profile.short(11)).digest()
    assert build_plan(Profile.short(11)).digest() != build_plan(Profile.short(12)).digest()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_short_plan_has_every_kind_of_trouble(seed: int) -> None:
    """Each short plan has every window kind, one or two PostgreSQL restarts, kills every few seconds, and its share of faulty messages."""
    plan = build_plan(Profile.short(seed))
    assert {w.kind for w in plan.windows} == set(WindowKind)
    assert all(a.end < b.start for a, b in zip(plan.windows, plan.windows[1:], strict=False))
    assert 1 <= len(plan.pg_restarts) <= 2
    assert all(0 < at < plan.chaos_end for at in plan.pg_restarts)
    gaps = [b.at - a.at for a, b in zip(plan.kills, plan.kills[1:], strict=False)]
    assert gaps
    assert all(3.0 <= gap <= 6.0 for gap in gaps)
    assert len(plan.faults) == 20 + 10 + 20 + 10
    assert {p.kind for p in plan.planted} == {
        "string",
        "array",
        "too-large",
        "history-null",
        "attempts-int-max",
        "attempts-at-bound",
    }
    assert plan.chaos_end < 45


@pytest.mark.parametrize(
    ("row", "fate"),
    [
        (Row(1, "k", "dead", 1, 400, "400 Bad Request: x", False, False), Fate.DEAD_400),
        (Row(1, "k", "dead", 1, 413, "413 Request Entity Too Large", False, False), Fate.DEAD_413),
        (Row(1, "k", "dead", 1, 422, "422 Unprocessable", False, False), Fate.DEAD_422),
        (
            Row(1, "k", "dead", 4, 500, "gave up after 4 attempts: 500", True, False),
            Fate.DEAD_GAVE_UP,
        ),
        (
            Row(1, "k", "dead", 4, None, "gave up after 4 attempts: timeout", False, False),
            Fate.DEAD_GAVE_UP,
        ),
        (
            Row(1, None, "dead", 0, None, "payload is not a JSON object", False, False),
            Fate.DEAD_NOT_OBJECT,
        ),
        (
            Row(1, "k", "dead", 0, None, "payload too large: 1049600 bytes", False, False),
            Fate.DEAD_TOO_LARGE,
        ),
        (
            Row(
                1,
                None,
                "dead",
                0,
                None,
                "the stored payload is a JSON array, not an object (written around outbox.enqueue)",
                False,
                False,
            ),
            Fate.DEAD_NOT_OBJECT,
        ),
        (
            Row(
                1,
                "k",
                "dead",
                0,
                None,
                "the stored payload is 1049600 bytes, over the limit of 1048576",
                False,
                False,
            ),
            Fate.DEAD_TOO_LARGE,
        ),
        (Row(1, "k", "dead", 1, 503, "503 Service Unavailable", False, False), None),
        (Row(1, "k", "dead", 1, None, "cannot connect", False, False), None),
    ],
)
def test_a_dead_row_is_matched_to_the_fault_it_names(row: Row, fate: Fate | None) -> None:
    """A dead row's status or error names the fault that explains it; a 413 is the endpoint's, not "too large" (never sent)."""
    assert dead_fate(row) is fate


def test_a_duplicate_after_a_slow_or_late_answer_is_explained_by_the_timeout() -> None:
    """An acceptance answered by the slow step, or later than the HTTP timeout, explains a re-send."""
    events = Events()
    assert (
        explain(received("k", 1.0, step="slow", took=5.0), events, http_timeout=TIMEOUT)
        is Cause.SLOW
    )
    assert explain(received("k", 1.0, took=0.95), events, http_timeout=TIMEOUT) is Cause.SLOW


def test_a_duplicate_is_explained_by_a_kill_or_restart_only_while_the_outcome_was_unwritten() -> (
    None
):
    """A SIGKILL or PostgreSQL restart explains a re-send only between the earlier request and its write-down (answer + slack)."""
    kill = Events(kills=[2.0])
    assert explain(received("k", 1.0), kill, http_timeout=TIMEOUT) is Cause.KILL
    # Read by the stand-in just after the kill: the worker wrote it just before dying.
    assert explain(received("k", 2.05), kill, http_timeout=TIMEOUT) is Cause.KILL
    assert explain(received("k", 3.5), kill, http_timeout=TIMEOUT) is Cause.NOTHING
    assert explain(received("k", -5.0), kill, http_timeout=TIMEOUT) is Cause.NOTHING
    restart = Events(pg_restarts=[(3.0, 5.0)])
    assert explain(received("k", 1.0), restart, http_timeout=TIMEOUT) is Cause.PG_RESTART
    assert explain(received("k", 4.0), restart, http_timeout=TIMEOUT) is Cause.PG_RESTART
    assert explain(received("k", 6.0), restart, http_timeout=TIMEOUT) is Cause.NOTHING


def _balanced(plan: Plan) -> tuple[list[Row], list[Received], Events]:
    rows, answers = [], []
    for i, key in enumerate(plan.keys):
        fate = plan.fate(key)
        if fate is Fate.ACKNOWLEDGED:
            rows.append(Row(i + 1, key, "acknowledged", 1, 200, None, False, False))
            answers.append(received(key, float(i)))
        else:
            rows.append(Row(i + 1, key, "dead", 1, 400, "400 Bad Request", False, False))
            answers.append(received(key, float(i), status=400))
    events = Events(windows=[], chaos_seconds=1.0, drained=True)
    return rows, answers, events


def test_a_balanced_run_balances_and_an_unexplained_duplicate_does_not() -> None:
    """Every row where the plan says, each accepted once: the ledger balances; one more unexplained acceptance fails exactly the duplicates line."""
    quiet = {
        "poison": (0.0, 0),
        "redirects": (0.0, 0),
        "rejected": (0.0, 0),
        "always_500": (0.0, 0),
    }
    plan = build_plan(Profile(updates=30, seed=5, planted_each=0, **quiet))  # type: ignore[arg-type]
    plan.faults[plan.keys[7]] = MessageFault("rejected-400", (400,), Fate.DEAD_400)
    rows, answers, events = _balanced(plan)
    events.windows = [(w.kind, w.start, w.end) for w in plan.windows]
    events.pg_restarts = [(1000.0 + at, 1001.0 + at) for at in plan.pg_restarts]  # long after

    ledger = build_ledger(plan, events, rows, answers, http_timeout=TIMEOUT)
    assert ledger.ok, ledger.table()

    answers.append(received(plan.keys[1], 100.0))
    events.unexpected_exits.append(Exit(1, 1, 50.0, ("boom",)))
    ledger = build_ledger(plan, events, rows, answers, http_timeout=TIMEOUT)
    assert [line.name for line in ledger.failing()] == [
        "duplicates unexplained",
        "worker exits besides the driver's kills",
    ]
    assert "last SIGKILL before the re-send at none" in ledger.table()
    assert "unexpected worker exits in between at [50.0]" in ledger.table()
