"""Plain SQL for the few hot statements of a USSD hop, without the ORM's per-query cost.

The ORM owns the schema and everything else; the session store and dossier lookups
run a handful of fixed statements through one of these runners, written once with
``?`` placeholders:

- ``SqliteRunner``: the standard library's sqlite3, called synchronously on the event
  loop. A point read or write on a local WAL file takes tens of microseconds, several
  times less than handing it to a thread as the async driver does. Other processes may
  share the file (WAL, busy timeout).
- ``TortoiseRunner``: any Tortoise connection (PostgreSQL via asyncpg), ``?`` turned
  into ``$n``.

Values cross in the ORM's own formats, so rows written here read back through the ORM.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import sqlite3
from typing import Any, Callable, Protocol, Sequence, TypeVar

T = TypeVar("T")


class SqlRunner(Protocol):
    dialect: str  # "sqlite" or "postgres": for the rare statement that must differ

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    async def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """One statement for many rows, in one transaction."""

    async def close(self) -> None: ...


def sqlite_timestamp(moment: dt.datetime) -> str:
    """The ORM's SQLite format, "2026-11-23 23:22:02.795452+00:00", which sorts as text."""
    return moment.astimezone(dt.timezone.utc).isoformat(sep=" ", timespec="microseconds")


def as_datetime(value: Any) -> dt.datetime | None:
    if value is None or isinstance(value, dt.datetime):
        return value
    return dt.datetime.fromisoformat(value)


def _sqlite_values(params: Sequence[Any]) -> list[Any]:
    return [sqlite_timestamp(p) if isinstance(p, dt.datetime) else p for p in params]


class SqliteRunner:
    dialect = "sqlite"
    # Another connection (the ORM's, in a transaction) may hold the write lock across awaits.
    # Waiting inside sqlite3 would block the event loop that transaction needs to finish, so
    # the lock is never waited for here: the statement is retried after yielding the loop.
    BUSY_DEADLINE_SECONDS = 10.0

    def __init__(self, path: str) -> None:
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=0")

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        values = _sqlite_values(params)
        return await self._when_free(lambda: self._db.execute(sql, values).fetchall())

    async def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        values = [_sqlite_values(row) for row in rows]

        def run() -> None:
            self._db.execute("BEGIN IMMEDIATE")  # takes the write lock or fails at once
            try:
                self._db.executemany(sql, values)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

        await self._when_free(run)

    async def _when_free(self, statement: Callable[[], T]) -> T:
        delay, waited = 0.0005, 0.0
        while True:
            try:
                return statement()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or waited > self.BUSY_DEADLINE_SECONDS:
                    raise
            await asyncio.sleep(delay)
            waited += delay
            delay = min(delay * 2, 0.05)

    async def close(self) -> None:
        self._db.close()


_PLACEHOLDER = re.compile(r"\?")


class TortoiseRunner:
    dialect = "postgres"

    def __init__(self, connection: Any) -> None:
        self._conn = connection
        self._numbered: dict[str, str] = {}

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        # execute_query_dict fetches for every statement (execute_query drops RETURNING rows of writes).
        rows = await self._conn.execute_query_dict(self._number(sql), list(params))
        return [tuple(row.values()) for row in rows]

    async def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self._conn.execute_many(self._number(sql), [list(row) for row in rows])

    def _number(self, sql: str) -> str:
        numbered = self._numbered.get(sql)
        if numbered is None:
            counter = iter(range(1, 10_000))
            numbered = self._numbered[sql] = _PLACEHOLDER.sub(lambda _: f"${next(counter)}", sql)
        return numbered

    async def close(self) -> None:
        return None


def open_runner(database_url: str) -> SqlRunner:
    """The runner for the configured database; call once the ORM is connected."""
    if database_url.startswith("sqlite://"):
        return SqliteRunner(database_url.removeprefix("sqlite://").partition("?")[0])
    from tortoise import connections

    return TortoiseRunner(connections.get("default"))
