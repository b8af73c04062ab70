"""The worker's statements, one named constant each: claim, settle, release, due time, schedule.

Every write is guarded by the lease token it was claimed with, so a worker whose lease ran out
and was taken over cannot overwrite the new owner's outcome. ``PostgresStore``
(store/delivery.py) is their only caller.
"""

from __future__ import annotations

# One statement claims a batch. `due` walks the partial pending index in due order; a row whose
# lease ran out is simply due again (claiming moves available_at to the lease end), so crashed
# workers' rows come back without a separate reaper. SKIP LOCKED lets any number of workers claim
# side by side without waiting on each other. `sized` keeps rows while their bodies fit in the
# worker's byte budget ($4); rows that cannot be sent (rows other services wrote: not a JSON
# object, or past the size limit $5) are claimed without their body, to be dead-lettered unsent.
# The age is measured on the database's clock, as every due time is. Bodies come back as their
# UTF-8 bytes (bytea), exactly what is sent, with no decoding and encoding again in the worker.
CLAIM_BATCH = """
WITH due AS (
    SELECT id, available_at, payload FROM outbox.messages
    WHERE state = 'pending' AND available_at <= now()
    ORDER BY available_at, id
    LIMIT $1
    FOR UPDATE SKIP LOCKED
),
measured AS (
    SELECT id, available_at, body, octet_length(body) AS bytes, kind,
        kind = 'object' AND octet_length(body) <= $5 AS sendable
    FROM due, LATERAL (SELECT payload::text AS body, jsonb_typeof(payload) AS kind) AS t
),
sized AS (
    SELECT id, body, bytes, kind, sendable,
        sum(CASE WHEN sendable THEN bytes ELSE 0 END)
            OVER (ORDER BY available_at, id) AS running
    FROM measured
)
UPDATE outbox.messages AS m
SET lease_token = $2, claimed_at = now(), available_at = now() + $3::interval
FROM sized
WHERE m.id = sized.id AND sized.running <= $4
RETURNING m.id, CASE WHEN sized.sendable THEN convert_to(sized.body, 'UTF8') END AS body,
    sized.bytes, sized.kind,
    m.attempts,
    -- max_age counts from a requeue, or a requeued message would be dead at its first failure
    extract(epoch FROM now() - coalesce(m.requeued_at, m.created_at))::float8 AS age_s,
    -- The producer's trace context as two texts (no JSON to decode in the worker), cut one past
    -- their longest valid length: a longer value (another service's row) stays invalid.
    left(m.trace_context ->> 'traceparent', 56), left(m.trace_context ->> 'tracestate', 513)
"""

# One statement settles a whole flush: each row gets its own state, next time and record, and
# only if it is still pending under the token it was claimed with. Tokens travel once per flush
# ($2) and rows point into that array: a flush holds rows of only a few claims. Next times are
# the database's now() plus the policy's delay, never a worker host's clock. Another service may
# have written any history or attempts: a history that is not an array starts afresh and a count
# at the bound of messages_attempts_bounded (1,000,000) stays there, so no row can make the write
# fail (without that check, the integer's own limit is far above it).
SETTLE = """
UPDATE outbox.messages AS m SET
    state = u.state,
    attempts = CASE WHEN m.attempts < 1000000 THEN m.attempts + u.spent ELSE m.attempts END,
    available_at = CASE WHEN u.delay_s IS NULL THEN m.available_at
                        ELSE now() + make_interval(secs => u.delay_s) END,
    lease_token = NULL,
    acknowledged_at = CASE WHEN u.state = 'acknowledged' THEN now() ELSE m.acknowledged_at END,
    dead_at = CASE WHEN u.state = 'dead' THEN now() END,
    last_status = u.status,
    last_error = u.error,
    last_response = u.response,
    history = outbox.history_push(
        CASE WHEN jsonb_typeof(m.history) = 'array' THEN m.history ELSE '[]'::jsonb END,
        jsonb_build_object(
            'at', now(), 'status', u.status, 'error', u.error, 'latency_ms', u.latency_ms
        ),
        $10
    )
FROM unnest(
    $1::bigint[], $3::int[], $4::text[], $5::int[], $6::float8[],
    $7::int[], $8::text[], $9::float8[], $11::jsonb[]
) AS u(id, token, state, spent, delay_s, status, error, latency_ms, response)
WHERE m.id = u.id AND m.lease_token = ($2::uuid[])[u.token] AND m.state = 'pending'
RETURNING m.id
"""

# The common case, plain acknowledgements, in a statement with less to encode per row.
ACKNOWLEDGE = """
UPDATE outbox.messages AS m SET
    state = 'acknowledged',
    attempts = CASE WHEN m.attempts < 1000000 THEN m.attempts + 1 ELSE m.attempts END,
    lease_token = NULL,
    acknowledged_at = now(),
    last_status = u.status,
    last_error = NULL,
    last_response = NULL,
    history = outbox.history_push(
        CASE WHEN jsonb_typeof(m.history) = 'array' THEN m.history ELSE '[]'::jsonb END,
        jsonb_build_object(
            'at', now(), 'status', u.status, 'error', NULL, 'latency_ms', u.latency_ms
        ),
        $6
    )
FROM unnest($1::bigint[], $3::int[], $4::int[], $5::float8[]) AS u(id, token, status, latency_ms)
WHERE m.id = u.id AND m.lease_token = ($2::uuid[])[u.token] AND m.state = 'pending'
RETURNING m.id
"""

# The last resort for one row whose outcome could not be written (the database refused it): dead,
# with the database's reason, touching nothing else of a row that may hold anything.
DEAD_UNWRITABLE = """
UPDATE outbox.messages SET
    state = 'dead', dead_at = now(), lease_token = NULL, last_status = $3, last_error = $4
WHERE id = $1 AND lease_token = $2 AND state = 'pending'
RETURNING id
"""

RELEASE = """
UPDATE outbox.messages AS m
SET lease_token = NULL, available_at = now()
FROM unnest($1::bigint[], $2::uuid[]) AS u(id, token)
WHERE m.id = u.id AND m.lease_token = u.token AND m.state = 'pending'
RETURNING m.id
"""

# NULL when nothing is pending. (greatest() ignores a NULL argument, so greatest(0, NULL) would
# say "due now" of an empty queue and make an idle worker claim every 50 ms.)
SECONDS_UNTIL_DUE = """
SELECT CASE WHEN min(available_at) IS NOT NULL
            THEN greatest(0, extract(epoch FROM min(available_at) - now()))::float8 END
FROM outbox.messages WHERE state = 'pending'
"""

# The fleet's rate limit: reserve the next $2 seconds of the shared send schedule and say when
# they begin. The row lock serializes reservations, so spans never overlap; clock_timestamp()
# (not now(), the transaction's start) is read once the lock is held, so a span never starts
# before a span reserved by a statement that committed first. An idle schedule restarts at the
# present: idle time earns no burst. A next_slot_at written far ahead (by hand, by another
# service) is pulled back to $3 seconds from now, so no row can stall the fleet. The upsert
# recreates a deleted row.
RESERVE_SEND_TIME = """
INSERT INTO outbox.send_schedule AS s (name, next_slot_at)
VALUES ($1, clock_timestamp() + make_interval(secs => $2))
ON CONFLICT (name) DO UPDATE SET next_slot_at = greatest(
        least(s.next_slot_at, clock_timestamp() + make_interval(secs => $3)),
        clock_timestamp()
    ) + make_interval(secs => $2)
RETURNING greatest(0, extract(epoch FROM s.next_slot_at - clock_timestamp())::float8 - $2)
"""
# How far ahead a schedule may already be reserved before a reservation trusts it no longer.
SCHEDULE_HORIZON_S = 60.0
