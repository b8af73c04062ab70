"""The operator's statements, each named, described on the line above it, and written out whole.

No statement is assembled at run time: an optional filter is a parameter that may be NULL,
written ``($n IS NULL OR column = $n)`` (as procrastinate's ``sql/queries.sql`` does), so the text
that runs is the text below. The dead-letter filters come in one fixed order wherever they appear:

    $1 dead at or after (timestamptz)    $3 last_error ILIKE pattern (text)
    $2 last HTTP status (int)            $4 dedup key, exactly (text)
    $5, $6 the limit's bound: (dead_at, id) at or after

Planned for their values, the NULL branches fold away and ``dead_at >= $1`` becomes a range of
messages_dead_idx. After five runs of a statement on one connection (a requeue's id walk runs
once a batch) PostgreSQL may switch to one plan for any values, which keeps the ORs and cannot
use that range: so the filtered statements run after PLAN_FOR_VALUES.
"""

from __future__ import annotations

from typing import Final

# Plan the transaction's statements for their values every time. Measured on 400,000 rows (20,000
# dead), a plan for any values read the whole table by id to find a one-hour window's 179 ids
# (66 ms, not 0.2 ms), and sorted every dead letter to list the newest 50 (131 ms, not 2 ms).
PLAN_FOR_VALUES: Final = "SET LOCAL plan_cache_mode = force_custom_plan"

# The database's now() minus $1: a filter's window, fixed once so every batch sees the same one.
CUTOFF: Final = "SELECT now() - $1::interval"

# The newest rows' floor for `--limit N`: the (dead_at, id) of the Nth newest match ($5 = N - 1).
NTH_NEWEST_DEAD: Final = """
SELECT dead_at, id FROM outbox.messages
WHERE state = 'dead'
  AND ($1::timestamptz IS NULL OR dead_at >= $1)
  AND ($2::int IS NULL OR last_status = $2)
  AND ($3::text IS NULL OR last_error ILIKE $3)
  AND ($4::text IS NULL OR dedup_key = $4)
ORDER BY dead_at DESC, id DESC OFFSET $5 LIMIT 1
"""

# `dead list`: the matching dead letters, newest first, at most $7 (NULL: all). The columns are
# named after operations.DeadLetter's fields.
LIST_DEAD: Final = """
SELECT id, created_at, dead_at, attempts, last_status, last_error, requeue_count, dedup_key,
       payload::text AS payload
FROM outbox.messages
WHERE state = 'dead'
  AND ($1::timestamptz IS NULL OR dead_at >= $1)
  AND ($2::int IS NULL OR last_status = $2)
  AND ($3::text IS NULL OR last_error ILIKE $3)
  AND ($4::text IS NULL OR dedup_key = $4)
  AND ($5::timestamptz IS NULL OR (dead_at, id) >= ($5, $6::bigint))
ORDER BY dead_at DESC, id DESC LIMIT $7
"""

# How many dead letters match: what `dead list` would show without a limit, or a requeue move.
COUNT_DEAD: Final = """
SELECT count(*) FROM outbox.messages
WHERE state = 'dead'
  AND ($1::timestamptz IS NULL OR dead_at >= $1)
  AND ($2::int IS NULL OR last_status = $2)
  AND ($3::text IS NULL OR last_error ILIKE $3)
  AND ($4::text IS NULL OR dedup_key = $4)
  AND ($5::timestamptz IS NULL OR (dead_at, id) >= ($5, $6::bigint))
"""

# The console's dead-letter pages: the matching dead letters older than the cursor ($7, $8: the
# last row shown, NULL for the first page), newest first, at most $9. A keyset, never an OFFSET:
# page 4,000 costs what page 1 does.
PAGE_DEAD: Final = """
SELECT id, created_at, dead_at, attempts, last_status, last_error, requeue_count, dedup_key,
       payload::text AS payload
FROM outbox.messages
WHERE state = 'dead'
  AND ($1::timestamptz IS NULL OR dead_at >= $1)
  AND ($2::int IS NULL OR last_status = $2)
  AND ($3::text IS NULL OR last_error ILIKE $3)
  AND ($4::text IS NULL OR dedup_key = $4)
  AND ($5::timestamptz IS NULL OR (dead_at, id) >= ($5, $6::bigint))
  AND ($7::timestamptz IS NULL OR (dead_at, id) < ($7, $8::bigint))
ORDER BY dead_at DESC, id DESC LIMIT $9
"""

# A filtered requeue's next batch: at most $9 matching ids above $7 (the last batch's end) and
# at most $8 (the largest id when the requeue began), in id order.
NEXT_DEAD_IDS: Final = """
SELECT id FROM outbox.messages
WHERE state = 'dead'
  AND ($1::timestamptz IS NULL OR dead_at >= $1)
  AND ($2::int IS NULL OR last_status = $2)
  AND ($3::text IS NULL OR last_error ILIKE $3)
  AND ($4::text IS NULL OR dedup_key = $4)
  AND ($5::timestamptz IS NULL OR (dead_at, id) >= ($5, $6::bigint))
  AND id > $7 AND id <= $8
ORDER BY id LIMIT $9
"""

# The largest id now: rows that die after a requeue starts (larger ids) are not part of it.
MAX_ID: Final = "SELECT max(id) FROM outbox.messages"

# `dead show`: everything stored about message $1, as operations.MessageDetail's fields.
GET_MESSAGE: Final = """
SELECT id, state, attempts, dedup_key, created_at, available_at,
       lease_token IS NOT NULL AS claimed, acknowledged_at, dead_at, last_status, last_error,
       last_response::text AS last_response, history::text AS history, requeue_count,
       requeued_at, payload::text AS payload
FROM outbox.messages WHERE id = $1
"""

# The state of each message named in $1 (ids with no row are simply absent).
MESSAGE_STATES: Final = "SELECT id, state FROM outbox.messages WHERE id = ANY($1::bigint[])"

# Back to pending, claimable now, attempts reset; history kept and the requeue counted. Only rows
# still dead move. The NOTIFY wakes running workers at commit, so requeued messages go promptly.
REQUEUE: Final = """
WITH moved AS (
    UPDATE outbox.messages
    SET state = 'pending', attempts = 0, available_at = now(), dead_at = NULL,
        lease_token = NULL, claimed_at = NULL,
        requeue_count = requeue_count + 1, requeued_at = now()
    WHERE id = ANY($1::bigint[]) AND state = 'dead'
    RETURNING id
)
SELECT count(*) AS moved, pg_notify('outbox', '') FROM moved
"""

# What a purge with cutoff $1 would delete, by state; dead letters only when $2 is true.
COUNT_PURGEABLE: Final = """
SELECT
  (SELECT count(*) FROM outbox.messages
     WHERE state = 'acknowledged' AND acknowledged_at < $1) AS acknowledged,
  (SELECT count(*) FROM outbox.messages
     WHERE $2::boolean AND state = 'dead' AND dead_at < $1) AS dead
"""

# One purge batch of at most $2 acknowledged rows finished before $1. The outer WHERE repeats
# the condition: a row that changed since the inner SELECT is kept.
PURGE_ACKNOWLEDGED: Final = """
WITH gone AS (
    DELETE FROM outbox.messages
    WHERE id IN (
        SELECT id FROM outbox.messages
        WHERE state = 'acknowledged' AND acknowledged_at < $1
        LIMIT $2 FOR UPDATE SKIP LOCKED
    )
    AND state = 'acknowledged' AND acknowledged_at < $1
    RETURNING 1
)
SELECT count(*) FROM gone
"""

# One purge batch of at most $2 dead letters dead before $1 (guarded as above).
PURGE_DEAD: Final = """
WITH gone AS (
    DELETE FROM outbox.messages
    WHERE id IN (
        SELECT id FROM outbox.messages
        WHERE state = 'dead' AND dead_at < $1
        LIMIT $2 FOR UPDATE SKIP LOCKED
    )
    AND state = 'dead' AND dead_at < $1
    RETURNING 1
)
SELECT count(*) FROM gone
"""

# `stats`: counts by state, backlog age, recent dead letters and deliveries. Each count is its
# own subquery so it can use the matching partial index.
STATS: Final = """
SELECT
  (SELECT count(*) FROM outbox.messages WHERE state = 'pending') AS pending,
  (SELECT count(*) FROM outbox.messages WHERE state = 'pending' AND lease_token IS NOT NULL)
    AS claimed,
  (SELECT count(*) FROM outbox.messages WHERE state = 'acknowledged') AS acknowledged,
  (SELECT count(*) FROM outbox.messages WHERE state = 'dead') AS dead,
  (SELECT extract(epoch FROM now() - min(created_at))::float8
     FROM outbox.messages WHERE state = 'pending') AS oldest_pending_age_s,
  (SELECT count(*) FROM outbox.messages
     WHERE state = 'dead' AND dead_at >= now() - interval '1 hour') AS dead_last_hour,
  (SELECT count(*) FROM outbox.messages
     WHERE state = 'dead' AND dead_at >= now() - interval '1 day') AS dead_last_day,
  (SELECT count(*) FROM outbox.messages
     WHERE state = 'acknowledged' AND acknowledged_at >= now() - interval '1 minute')
    AS delivered_last_minute,
  (SELECT count(*) FROM outbox.messages
     WHERE state = 'acknowledged' AND acknowledged_at >= now() - interval '1 hour')
    AS delivered_last_hour
"""

# Dead letters grouped by reason, most frequent first, at most $1 (NULL: all); for `stats` and
# the demo's summary. The traceId differs on every answer, so it is cut out here (it stays in
# last_error for `dead show`) and the same reason groups together. The worker masks the values a
# reason quotes before writing it; sample_id (one row of the group) lets `stats` mask a reason an
# older worker wrote with that row's payload.
DEAD_REASONS: Final = r"""
SELECT regexp_replace(
           coalesce(last_error, 'HTTP ' || last_status, 'no reason recorded'),
           ' \(traceId [^)]*\)', '', 'g'
       ) AS reason,
       count(*) AS n,
       min(id) AS sample_id
FROM outbox.messages WHERE state = 'dead'
GROUP BY 1 ORDER BY n DESC, reason LIMIT $1
"""

# The payloads of the messages named in $1 (ids with no row are simply absent).
PAYLOADS: Final = (
    "SELECT id, payload::text AS payload FROM outbox.messages WHERE id = ANY($1::bigint[])"
)
