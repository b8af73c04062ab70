"""The operator's operations (store/operations.py, operator_queries.py) against real PostgreSQL."""

from __future__ import annotations

import json
from datetime import timedelta

import asyncpg
import pytest

from outbox_worker.demo import queries as demo_store
from outbox_worker.errors import MessageNotFound
from outbox_worker.models import State
from outbox_worker.store import operations as ops
from outbox_worker.store.audit import Actor
from tests.integration.rows import insert_dead_rows, insert_message, snapshot
from tests.waiting import count_by_state, wait_for

ACTOR = Actor.cli("tester")


async def test_list_dead_is_newest_first_and_skips_other_states(pg: asyncpg.Connection) -> None:
    """Only dead rows are listed, the most recently dead first."""
    old = await insert_message(pg, ago=timedelta(hours=3))
    new = await insert_message(pg, ago=timedelta(minutes=1))
    await insert_message(pg, state="pending")
    await insert_message(pg, state="acknowledged")
    rows = await ops.list_dead(pg, ops.DeadFilters())
    assert [r.id for r in rows] == [new, old]
    assert rows[0].payload["customer"]["customerId"] == "c-1"


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (ops.DeadFilters(since=timedelta(hours=1)), ["recent-400", "recent-503"]),
        (ops.DeadFilters(status_code=503), ["recent-503", "old-503"]),
        (ops.DeadFilters(error_contains="UNAVAIL"), ["recent-503", "old-503"]),
        (ops.DeadFilters(error_contains="100%_sure"), ["odd"]),
        (ops.DeadFilters(error_contains="%"), ["odd"]),
        (ops.DeadFilters(limit=2), ["recent-400", "recent-503"]),
        (ops.DeadFilters(status_code=503, limit=1), ["recent-503"]),
        (ops.DeadFilters(since=timedelta(hours=1), status_code=400), ["recent-400"]),
        (ops.DeadFilters(), ["recent-400", "recent-503", "old-503", "odd"]),
        (ops.DeadFilters(error_contains=""), ["recent-400", "recent-503", "old-503", "odd"]),
        (
            ops.DeadFilters(since=timedelta(days=2, hours=12)),
            ["recent-400", "recent-503", "old-503"],
        ),
        (ops.DeadFilters(since=timedelta(days=1), error_contains="unavail"), ["recent-503"]),
        (
            ops.DeadFilters(since=timedelta(days=7), limit=3),
            ["recent-400", "recent-503", "old-503"],
        ),
        (ops.DeadFilters(status_code=503, error_contains="unavail"), ["recent-503", "old-503"]),
        (ops.DeadFilters(error_contains="wrong", limit=5), ["odd"]),
        (ops.DeadFilters(status_code=599), []),
        (ops.DeadFilters(limit=0), []),
        (
            ops.DeadFilters(
                since=timedelta(days=3, hours=1), status_code=503, error_contains="AVAIL", limit=1
            ),
            ["recent-503"],
        ),
    ],
)
async def test_filters_select_the_expected_dead_letters(
    pg: asyncpg.Connection, filters: ops.DeadFilters, expected: list[str]
) -> None:
    """Each filter alone and in combination narrows the dead letters; LIKE wildcards are literal."""
    names = await _insert_filter_rows(pg)
    listed = [names[r.id] for r in await ops.list_dead(pg, filters)]
    assert listed == expected
    assert await ops.count_dead(pg, filters) == len(expected)


async def _insert_filter_rows(pg: asyncpg.Connection) -> dict[int, str]:
    """Four dead letters of different age, status and error, and rows in the other states."""
    rows = {
        "recent-400": dict(ago=timedelta(minutes=1), last_status=400, last_error="bad field"),
        "recent-503": dict(ago=timedelta(minutes=2), last_status=503, last_error="Unavailable"),
        "old-503": dict(ago=timedelta(days=2), last_status=503, last_error="unavailable"),
        "odd": dict(ago=timedelta(days=3), last_status=422, last_error="100%_sure wrong"),
    }
    ids = {name: await insert_message(pg, **kw) for name, kw in rows.items()}  # type: ignore[arg-type]
    for state in ("pending", "acknowledged"):
        await insert_message(pg, state=state, last_status=503, last_error="unavailable")
    return {v: k for k, v in ids.items()}


@pytest.mark.parametrize(
    "filters",
    [
        ops.DeadFilters(since=timedelta(hours=1)),
        ops.DeadFilters(status_code=503),
        ops.DeadFilters(error_contains="%"),
        ops.DeadFilters(limit=3),
        ops.DeadFilters(since=timedelta(days=1), status_code=503, error_contains="un", limit=1),
        ops.DeadFilters(status_code=599),
    ],
)
async def test_requeue_dead_moves_exactly_what_list_dead_shows(
    pg: asyncpg.Connection, filters: ops.DeadFilters
) -> None:
    """A filtered requeue moves the rows `dead list` shows for the same filters, and no other."""
    await _insert_filter_rows(pg)
    shown = {r.id for r in await ops.list_dead(pg, filters)}
    moved = await ops.requeue_dead(pg, filters, actor=ACTOR, batch_size=1)
    assert moved == len(shown)
    requeued = await pg.fetch("SELECT id FROM outbox.messages WHERE requeue_count = 1")
    assert {r["id"] for r in requeued} == shown


async def test_get_message_returns_every_detail(pg: asyncpg.Connection) -> None:
    """get_message returns state, history, dedup key and Ravelin's last response."""
    history = [{"at": "2024-01-01T00:00:00+00:00", "status": 400, "error": "bad", "latency_ms": 12}]
    message_id = await insert_message(
        pg, history=history, dedup_key="k-1", last_response={"traceId": "t-1"}
    )
    detail = await ops.get_message(pg, message_id)
    assert detail.state is State.DEAD
    assert detail.history == history
    assert detail.dedup_key == "k-1"
    assert detail.last_response == {"traceId": "t-1"}
    assert not detail.claimed


async def test_get_message_of_unknown_id_raises_not_found(pg: asyncpg.Connection) -> None:
    """An id with no row raises MessageNotFound naming it."""
    with pytest.raises(MessageNotFound, match="no message with id 999"):
        await ops.get_message(pg, 999)


async def test_requeue_ids_moves_dead_to_pending_and_keeps_history(pg: asyncpg.Connection) -> None:
    """A requeued message is pending, claimable now, attempts 0, requeue counted, history kept."""
    history = [{"at": "2024-01-01T00:00:00+00:00", "status": 503, "error": "x", "latency_ms": 5}]
    message_id = await insert_message(pg, attempts=25, history=history)
    result = await ops.requeue_ids(pg, [message_id], actor=ACTOR)
    assert result == ops.RequeueResult(requeued=1, not_dead={})
    row = await pg.fetchrow(
        "SELECT state, attempts, dead_at, requeue_count, requeued_at, history::text, "
        "available_at <= now() AS due FROM outbox.messages WHERE id = $1",
        message_id,
    )
    assert row is not None
    assert (row["state"], row["attempts"], row["dead_at"], row["requeue_count"]) == (
        "pending",
        0,
        None,
        1,
    )
    assert row["requeued_at"] is not None
    assert row["due"]
    assert json.loads(row["history"]) == history


async def test_requeue_notifies_workers(pg: asyncpg.Connection, database_url: str) -> None:
    """A requeue sends NOTIFY outbox so listening workers wake at once."""
    listener = await asyncpg.connect(database_url)
    received: list[str] = []
    try:
        await listener.add_listener("outbox", lambda *args: received.append(args[2]))
        await ops.requeue_ids(pg, [await insert_message(pg)], actor=ACTOR)
        await wait_for(lambda: received, timeout=5, message="NOTIFY outbox")
    finally:
        await listener.close()


async def test_requeue_of_a_message_not_dead_changes_nothing(pg: asyncpg.Connection) -> None:
    """Requeueing a pending or acknowledged message reports its state and leaves it alone."""
    pending = await insert_message(pg, state="pending")
    done = await insert_message(pg, state="acknowledged")
    before = await snapshot(pg)
    result = await ops.requeue_ids(pg, [pending, done], actor=ACTOR)
    assert result.requeued == 0
    assert result.not_dead == {pending: State.PENDING, done: State.ACKNOWLEDGED}
    assert await snapshot(pg) == before


async def test_requeue_of_unknown_id_changes_nothing(pg: asyncpg.Connection) -> None:
    """One unknown id among known ones raises MessageNotFound before anything moves."""
    dead = await insert_message(pg)
    before = await snapshot(pg)
    with pytest.raises(MessageNotFound, match="no message with id 12345"):
        await ops.requeue_ids(pg, [dead, 12345], actor=ACTOR)
    assert await snapshot(pg) == before


async def test_requeue_dead_works_in_batches_with_progress(pg: asyncpg.Connection) -> None:
    """A filtered requeue walks the rows in batches, reports each, and moves only matches."""
    await insert_dead_rows(pg, 1_050, last_status=503)
    other = await insert_message(pg, last_status=400)
    batches: list[int] = []
    moved = await ops.requeue_dead(
        pg,
        ops.DeadFilters(status_code=503),
        actor=ACTOR,
        batch_size=100,
        on_progress=batches.append,
    )
    assert moved == 1_050
    assert batches == [100] * 10 + [50]
    assert await count_by_state(pg) == {"pending": 1_050, "dead": 1}
    assert (await ops.get_message(pg, other)).state is State.DEAD


async def test_requeue_dead_with_limit_moves_the_newest(pg: asyncpg.Connection) -> None:
    """--limit N requeues exactly the N rows `dead list --limit N` shows."""
    await insert_dead_rows(pg, 30)
    shown = [r.id for r in await ops.list_dead(pg, ops.DeadFilters(limit=7))]
    moved = await ops.requeue_dead(pg, ops.DeadFilters(limit=7), actor=ACTOR, batch_size=3)
    assert moved == 7
    pending = [
        r["id"] for r in await pg.fetch("SELECT id FROM outbox.messages WHERE state = 'pending'")
    ]
    assert sorted(pending) == sorted(shown)


async def test_requeue_dead_with_no_rows_is_zero(pg: asyncpg.Connection) -> None:
    """An empty table requeues nothing and does not fail."""
    assert await ops.requeue_dead(pg, ops.DeadFilters(), actor=ACTOR) == 0


async def test_purge_deletes_old_acknowledged_rows_only(pg: asyncpg.Connection) -> None:
    """Purge removes acknowledged rows older than the cutoff; dead and recent ones stay."""
    await insert_message(pg, state="acknowledged", ago=timedelta(days=8))
    await insert_message(pg, state="acknowledged", ago=timedelta(days=9))
    recent = await insert_message(pg, state="acknowledged", ago=timedelta(days=1))
    old_dead = await insert_message(pg, state="dead", ago=timedelta(days=30))
    pending = await insert_message(pg, state="pending")
    result = await ops.purge(pg, timedelta(days=7), actor=ACTOR, batch_size=1)
    assert result == ops.PurgeCounts(acknowledged=2, dead=0)
    left = [r["id"] for r in await pg.fetch("SELECT id FROM outbox.messages ORDER BY id")]
    assert left == [recent, old_dead, pending]


async def test_purge_include_dead_deletes_old_dead_letters(pg: asyncpg.Connection) -> None:
    """With include_dead, old dead letters go too."""
    await insert_message(pg, state="dead", ago=timedelta(days=30))
    await insert_message(pg, state="dead", ago=timedelta(hours=1))
    result = await ops.purge(pg, timedelta(days=7), actor=ACTOR, include_dead=True)
    assert result == ops.PurgeCounts(acknowledged=0, dead=1)


async def test_purge_dry_run_counts_and_deletes_nothing(pg: asyncpg.Connection) -> None:
    """A dry run reports what would go and leaves every row in place."""
    await insert_message(pg, state="acknowledged", ago=timedelta(days=8))
    await insert_message(pg, state="dead", ago=timedelta(days=8))
    before = await snapshot(pg)
    result = await ops.purge(pg, timedelta(days=7), actor=ACTOR, include_dead=True, dry_run=True)
    assert result == ops.PurgeCounts(acknowledged=1, dead=1)
    assert await snapshot(pg) == before


async def test_stats_counts_states_windows_and_reasons(pg: asyncpg.Connection) -> None:
    """Stats counts by state, recent dead letters and deliveries, and ranks dead reasons."""
    await insert_message(pg, state="pending")
    await pg.execute("UPDATE outbox.messages SET lease_token = gen_random_uuid()")
    await insert_message(pg, state="pending")
    await insert_message(pg, state="acknowledged", ago=timedelta(seconds=10))
    await insert_message(pg, state="acknowledged", ago=timedelta(minutes=10))
    await insert_message(pg, state="acknowledged", ago=timedelta(days=2))
    await insert_message(pg, ago=timedelta(minutes=10), last_error="timeout")
    await insert_message(pg, ago=timedelta(hours=5), last_error="timeout")
    await insert_message(pg, ago=timedelta(days=3), last_error=None, last_status=422)
    s = await ops.stats(pg)
    assert (s.pending, s.claimed, s.acknowledged, s.dead) == (2, 1, 3, 3)
    assert (s.dead_last_hour, s.dead_last_day) == (1, 2)
    assert (s.delivered_last_minute, s.delivered_last_hour) == (1, 2)
    assert s.oldest_pending_age_s is not None
    assert s.oldest_pending_age_s >= 60
    assert s.top_dead_reasons == [("timeout", 2), ("HTTP 422", 1)]


async def test_stats_of_an_empty_outbox(pg: asyncpg.Connection) -> None:
    """An empty outbox has zero counts and no pending age."""
    s = await ops.stats(pg)
    assert (s.pending, s.dead, s.oldest_pending_age_s, s.top_dead_reasons) == (0, 0, None, [])


async def test_top_dead_reasons_group_across_trace_ids(pg: asyncpg.Connection) -> None:
    """The same Ravelin error with different traceIds counts as one reason."""
    for trace in ("9f641b70-aaaa", "0c1d2e3f-bbbb"):
        await insert_message(
            pg, last_status=400, last_error=f"400 Bad Request: missing customerId (traceId {trace})"
        )
    s = await ops.stats(pg)
    assert s.top_dead_reasons == [("400 Bad Request: missing customerId", 2)]


async def test_stats_caps_the_reasons_and_the_demo_lists_them_all(pg: asyncpg.Connection) -> None:
    """`stats` ranks the top N reasons; the demo's summary, the same query, lists every reason."""
    for n in range(7):
        for _ in range(n + 1):
            await insert_message(pg, last_status=400, last_error=f"reason {n} (traceId t-{n})")
    expected = [(f"reason {n}", n + 1) for n in reversed(range(7))]
    assert (await ops.stats(pg, top=3)).top_dead_reasons == expected[:3]
    assert await demo_store.dead_reasons(pg) == expected
