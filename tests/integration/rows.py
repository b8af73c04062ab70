"""Rows for the operator tests, written straight into outbox.messages (no worker needed)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import asyncpg

# A registration update full of personal data whose every value the tests look for.
PII_PAYLOAD: dict[str, Any] = {
    "timestamp": 1700000000000,
    "registration": {
        "success": False,
        "username": "jsmith_secret",
        "registrationMechanism": {
            "password": {
                "passwordHashed": "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8",
                "success": False,
                "failureReason": "emailAlreadyRegistered",
            }
        },
        "app": {"name": "ShopApp", "platform": "ios"},
    },
    "customer": {
        "customerId": "cust-42",
        "email": "john.smith@example.com",
        "name": "Johnathan Smithers",
        "givenName": "Johnathan",
        "familyName": "Smithers",
        "telephone": "+447700900123",
        "location": {
            "latitude": 51.50735,
            "longitude": -0.12776,
            "street1": "221B Baker Street",
            "postalCode": "NW1 6XE",
            "city": "Marylebone",
            "country": "GBR",
        },
    },
    "device": {
        "deviceId": "dev-9",
        "ipAddress": "81.152.33.44",
        "userAgent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) SecretAgent/1.0",
    },
}
PII_VALUES = [
    "john.smith@example.com",
    "john.smith",
    "example.com",
    "jsmith_secret",
    "Johnathan",
    "Smithers",
    "+447700900123",
    "7700900123",
    "81.152.33.44",
    "33.44",
    "SecretAgent",
    "iPhone OS",
    "221B Baker",
    "NW1 6XE",
    "Marylebone",
    "51.50735",
    "0.12776",
    "5e884898da28",
]
PII_ERROR = "email john.smith@example.com is already registered (from 81.152.33.44)"

SIMPLE_PAYLOAD: dict[str, Any] = {
    "timestamp": 1700000000000,
    "registration": {"success": True},
    "customer": {"customerId": "c-1"},
}


async def insert_message(
    pg: asyncpg.Connection,
    *,
    state: str = "dead",
    payload: dict[str, Any] | None = None,
    ago: timedelta = timedelta(minutes=5),
    last_status: int | None = 400,
    last_error: str | None = "Invalid Request: bad field",
    attempts: int = 1,
    history: list[dict[str, Any]] | None = None,
    dedup_key: str | None = None,
    last_response: dict[str, Any] | None = None,
) -> int:
    """Insert one message in ``state``, finished (dead/acknowledged) ``ago``; return its id."""
    message_id: int = await pg.fetchval(
        """
        INSERT INTO outbox.messages (payload, state, attempts, dedup_key, created_at, dead_at,
            acknowledged_at, last_status, last_error, history, last_response)
        VALUES ($1::jsonb, $2, $3, $4, now() - $5::interval - interval '1 minute',
            CASE WHEN $2 = 'dead' THEN now() - $5::interval END,
            CASE WHEN $2 = 'acknowledged' THEN now() - $5::interval END,
            $6, $7, $8::jsonb, $9::jsonb)
        RETURNING id
        """,
        json.dumps(payload or SIMPLE_PAYLOAD),
        state,
        attempts,
        dedup_key,
        ago,
        last_status,
        last_error,
        json.dumps(history or []),
        json.dumps(last_response) if last_response is not None else None,
    )
    return message_id


async def insert_dead_rows(pg: asyncpg.Connection, count: int, *, last_status: int = 503) -> None:
    """Insert ``count`` dead rows in one statement."""
    await pg.execute(
        """
        INSERT INTO outbox.messages (payload, state, attempts, dead_at, last_status, last_error)
        SELECT jsonb_build_object('timestamp', 1700000000000,
                                  'registration', jsonb_build_object('success', true),
                                  'customer', jsonb_build_object('customerId', 'c-' || g)),
               'dead', 25, now() - make_interval(secs => g), $2, 'HTTP 503: Service Unavailable'
        FROM generate_series(1, $1::int) AS g
        """,
        count,
        last_status,
    )


async def snapshot(pg: asyncpg.Connection) -> list[tuple[Any, ...]]:
    """Every row's id, state, attempts, dead_at, requeue_count: compare before and after."""
    rows = await pg.fetch(
        "SELECT id, state, attempts, dead_at, acknowledged_at, requeue_count, available_at "
        "FROM outbox.messages ORDER BY id"
    )
    return [tuple(r) for r in rows]


async def drop_row_constraints(pg: asyncpg.Connection) -> None:
    """Drop revision 0004's row checks, so a test can plant the rows they refuse.

    The worker's defences against such rows stay tested: a database may still hold rows written
    before 0004, or an administrator may have dropped the checks.
    """
    for name in ("messages_history_array", "messages_attempts_bounded", "messages_payload_object"):
        await pg.execute(f"ALTER TABLE outbox.messages DROP CONSTRAINT {name}")


async def stored_bodies(pg: asyncpg.Connection) -> list[bytes]:
    """Every row's payload as the text the worker sends, encoded."""
    rows = await pg.fetch("SELECT payload::text AS body FROM outbox.messages")
    return [r["body"].encode() for r in rows]
