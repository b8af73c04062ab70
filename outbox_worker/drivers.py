"""How enqueue stores a serialized update through each driver, inside the caller's transaction.

One function per kind of connection: it refuses (``NotInTransaction``) when the statement would
commit on its own, then runs the one statement, ``outbox.insert_message``, written out below in
the driver's parameter style. ``resolve`` finds the function for a connection's class by the
names of the class and its bases, so psycopg and psycopg2 are never imported here: their
connections are recognised when a caller passes one, and nothing changes when neither is installed.

What "not inside a transaction" means for each driver:

    asyncpg       ``is_in_transaction()`` is false: each statement outside ``conn.transaction()``
                  commits alone.
    SQLAlchemy    the connection runs in AUTOCOMMIT isolation. Otherwise a Connection or Session
                  begins a transaction before its first statement ("autobegin") that only the
                  caller's commit ends, so an enqueue as the first statement still joins it.
    psycopg 3     ``autocommit`` is on and no ``conn.transaction()`` block is open.
    psycopg2      ``autocommit`` is on and no transaction is open. psycopg2's ``with conn:`` on an
                  autocommit connection sends BEGIN only with its first statement, so an enqueue
                  that comes first in such a block is refused too: write first, or BEGIN.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from functools import cache
from typing import TYPE_CHECKING, Any, Final, TypeAlias

from outbox_worker.errors import NotInTransaction

if TYPE_CHECKING:
    from sqlalchemy import TextClause

#: What every statement takes, in its order: the update's JSON text, the dedup key and, only
#: when the caller is traced, its W3C trace context as JSON (revision 0009).
Args: TypeAlias = tuple[str, str | None] | tuple[str, str | None, str]
SyncInsert: TypeAlias = Callable[[Any, Args, bool], int]
AsyncInsert: TypeAlias = Callable[[Any, Args, bool], Awaitable[int]]

# The update was checked in Python by the same rules outbox.enqueue() applies in PL/pgSQL (the
# tests hold the two to the same answers), so this path skips the second check, which would more
# than double the cost of an enqueue. outbox.insert_message() stores it (dedup rules, and a
# NOTIFY at commit at most once per 10 ms across all transactions: migration 0006) in one round
# trip; it is SECURITY DEFINER, so a producer role needs no privilege on the table itself.
# The same statement in each driver's parameter style, written out rather than built, each with
# the trace context's third argument only when there is one: an application without tracing
# sends the same statement as before.
INSERT_ASYNCPG: Final = "SELECT outbox.insert_message($1::jsonb, $2)"
INSERT_TRACED_ASYNCPG: Final = "SELECT outbox.insert_message($1::jsonb, $2, $3::jsonb)"
_INSERT_SQLALCHEMY: Final = "SELECT outbox.insert_message(CAST(:payload AS jsonb), :dedup_key)"
_INSERT_TRACED_SQLALCHEMY: Final = (
    "SELECT outbox.insert_message(CAST(:payload AS jsonb), :dedup_key, CAST(:trace AS jsonb))"
)
#: psycopg 3, psycopg2 and Django's cursors ("format" parameter style), by argument count - 2.
INSERT_FORMAT: Final = (
    "SELECT outbox.insert_message(%s::jsonb, %s) AS message_id",
    "SELECT outbox.insert_message(%s::jsonb, %s, %s::jsonb) AS message_id",
)
# psycopg 3's RawCursor takes PostgreSQL's own placeholders.
_INSERT_RAW: Final = (
    "SELECT outbox.insert_message($1::jsonb, $2) AS message_id",
    "SELECT outbox.insert_message($1::jsonb, $2, $3::jsonb) AS message_id",
)

_PQTRANS_IDLE: Final = 0  # libpq's PQTRANS_IDLE: connected, no transaction open


def message_id(row: Any) -> int:
    """The id from ``insert_message``'s one row, whatever row factory the caller's cursor has."""
    # tuple rows (the default, namedtuple_row, psycopg2's DictRow) or dict rows (dict_row,
    # RealDictCursor), both named message_id by the statement.
    return int(row["message_id"] if isinstance(row, Mapping) else row[0])


# --- SQLAlchemy --------------------------------------------------------------------------------


@cache
def _sqlalchemy_insert(traced: bool) -> TextClause:
    # SQLAlchemy is imported on first use: every worker process imports this package.
    from sqlalchemy import text

    return text(_INSERT_TRACED_SQLALCHEMY if traced else _INSERT_SQLALCHEMY)


def _sqlalchemy_call(args: Args) -> tuple[TextClause, dict[str, str | None]]:
    params = {"payload": args[0], "dedup_key": args[1]}
    if len(args) == 3:
        params["trace"] = args[2]
    return _sqlalchemy_insert(len(args) == 3), params


def _sqlalchemy_autocommits(sync_conn: Any) -> bool:
    # The DBAPI connection's own flag: SQLAlchemy's AUTOCOMMIT isolation level sets it (on the
    # engine or per connection), and then even conn.begin() opens no transaction on the server.
    return bool(getattr(sync_conn.connection.dbapi_connection, "autocommit", False))


def _sqlalchemy_connection(conn: Any, args: Args, allow_autocommit: bool) -> int:
    if not allow_autocommit and _sqlalchemy_autocommits(conn):
        raise NotInTransaction("SQLAlchemy")
    return int(conn.execute(*_sqlalchemy_call(args)).scalar_one())


def _sqlalchemy_session(session: Any, args: Args, allow_autocommit: bool) -> int:
    return _sqlalchemy_connection(session.connection(), args, allow_autocommit)


async def _sqlalchemy_async_connection(conn: Any, args: Args, allow_autocommit: bool) -> int:
    if not allow_autocommit and _sqlalchemy_autocommits(conn.sync_connection):
        raise NotInTransaction("SQLAlchemy")
    return int((await conn.execute(*_sqlalchemy_call(args))).scalar_one())


async def _sqlalchemy_async_session(session: Any, args: Args, allow_autocommit: bool) -> int:
    conn = await session.connection()
    return await _sqlalchemy_async_connection(conn, args, allow_autocommit)


# --- psycopg 3 ---------------------------------------------------------------------------------


def _psycopg_autocommits(conn: Any) -> bool:
    # Without autocommit psycopg sends BEGIN before the first statement and the caller commits;
    # with it, only `with conn.transaction():` (BEGIN sent on entry) or a BEGIN opens one.
    return bool(conn.autocommit) and conn.pgconn.transaction_status == _PQTRANS_IDLE


def _psycopg_connection(conn: Any, args: Args, allow_autocommit: bool) -> int:
    return _psycopg_cursor(conn.cursor(), args, allow_autocommit)


def _psycopg_cursor(
    cursor: Any, args: Args, allow_autocommit: bool, sql: tuple[str, str] = INSERT_FORMAT
) -> int:
    if not allow_autocommit and _psycopg_autocommits(cursor.connection):
        raise NotInTransaction("psycopg")
    cursor.execute(sql[len(args) - 2], args)
    return message_id(cursor.fetchone())


def _psycopg_raw_cursor(cursor: Any, args: Args, allow_autocommit: bool) -> int:
    return _psycopg_cursor(cursor, args, allow_autocommit, _INSERT_RAW)


async def _psycopg_async_connection(conn: Any, args: Args, allow_autocommit: bool) -> int:
    return await _psycopg_async_cursor(conn.cursor(), args, allow_autocommit)


async def _psycopg_async_cursor(
    cursor: Any, args: Args, allow_autocommit: bool, sql: tuple[str, str] = INSERT_FORMAT
) -> int:
    if not allow_autocommit and _psycopg_autocommits(cursor.connection):
        raise NotInTransaction("psycopg")
    await cursor.execute(sql[len(args) - 2], args)
    return message_id(await cursor.fetchone())


async def _psycopg_async_raw_cursor(cursor: Any, args: Args, allow_autocommit: bool) -> int:
    return await _psycopg_async_cursor(cursor, args, allow_autocommit, _INSERT_RAW)


# --- psycopg2 ----------------------------------------------------------------------------------


def _psycopg2_connection(conn: Any, args: Args, allow_autocommit: bool) -> int:
    cursor = conn.cursor()
    try:
        return _psycopg2_cursor(cursor, args, allow_autocommit)
    finally:
        cursor.close()


def _psycopg2_cursor(cursor: Any, args: Args, allow_autocommit: bool) -> int:
    conn = cursor.connection
    if not allow_autocommit and conn.autocommit and conn.get_transaction_status() == _PQTRANS_IDLE:
        raise NotInTransaction("psycopg2")
    cursor.execute(INSERT_FORMAT[len(args) - 2], args)
    return message_id(cursor.fetchone())


# --- lookup ------------------------------------------------------------------------------------

# (top-level package, class name) of each accepted class or base class. psycopg gives its public
# classes the module "psycopg", psycopg2 "psycopg2.extensions"; subclasses (ClientCursor,
# RealDictCursor, a pool's connection class, ...) are found through their bases.
_SYNC: Final[dict[tuple[str, str], SyncInsert]] = {
    ("sqlalchemy", "Connection"): _sqlalchemy_connection,
    ("sqlalchemy", "Session"): _sqlalchemy_session,
    ("sqlalchemy", "scoped_session"): _sqlalchemy_session,
    ("psycopg", "Connection"): _psycopg_connection,
    ("psycopg", "RawCursor"): _psycopg_raw_cursor,
    ("psycopg", "Cursor"): _psycopg_cursor,
    ("psycopg2", "connection"): _psycopg2_connection,
    ("psycopg2", "cursor"): _psycopg2_cursor,
}
# asyncpg's own connections are handled inline by enqueue_async, before any lookup.
_ASYNC: Final[dict[tuple[str, str], AsyncInsert]] = {
    ("sqlalchemy", "AsyncConnection"): _sqlalchemy_async_connection,
    ("sqlalchemy", "AsyncSession"): _sqlalchemy_async_session,
    ("psycopg", "AsyncConnection"): _psycopg_async_connection,
    ("psycopg", "AsyncRawCursor"): _psycopg_async_raw_cursor,
    ("psycopg", "AsyncCursor"): _psycopg_async_cursor,
}


def _find(kind: type, table: Mapping[tuple[str, str], Any]) -> Any:
    for base in kind.__mro__:
        found = table.get((base.__module__.partition(".")[0], base.__name__))
        if found is not None:
            return found
    return None


# Found once per class: the lookup is on every enqueue's path.
_sync_found: dict[type, SyncInsert] = {}
_async_found: dict[type, AsyncInsert] = {}


def resolve_sync(kind: type) -> SyncInsert:
    """The function that enqueues on a connection or cursor of class ``kind``, for ``enqueue``."""
    found = _sync_found.get(kind)
    if found is None:
        found = _find(kind, _SYNC)
        if found is None:
            hint = "; it is asynchronous: await enqueue_async" if _find(kind, _ASYNC) else ""
            raise TypeError(f"enqueue cannot use a {kind.__module__}.{kind.__qualname__}{hint}")
        _sync_found[kind] = found
    return found


def resolve_async(kind: type) -> AsyncInsert:
    """The function that enqueues on a connection or cursor of class ``kind``, for enqueue_async."""
    found = _async_found.get(kind)
    if found is None:
        found = _find(kind, _ASYNC)
        if found is None:
            hint = "; it is synchronous: call enqueue" if _find(kind, _SYNC) else ""
            raise TypeError(
                f"enqueue_async cannot use a {kind.__module__}.{kind.__qualname__}{hint}"
            )
        _async_found[kind] = found
    return found
