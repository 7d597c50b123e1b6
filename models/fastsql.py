"""Plain SQL for the few hot statements of a USSD hop, without the ORM's per-query cost.

The ORM owns the schema and everything else; the session store and dossier lookups
run a handful of fixed statements through one of these runners, written once with
``?`` placeholders:

- ``SqliteRunner``: the standard library's sqlite3, called synchronously on the event
  loop. A point read or write on a local WAL file takes tens of microseconds, several
  times less than handing it to a thread as the async driver does. Other processes may
  share the file (WAL, busy timeout). A ``WalCheckpointer`` copies the WAL back into the
  database file beside the loop, so that no COMMIT on the loop does.
- ``TortoiseRunner``: any Tortoise connection (PostgreSQL via asyncpg), ``?`` turned
  into ``$n``.

Values cross in the ORM's own formats, so rows written here read back through the ORM.

A unit of work (a USSD hop: its reads, its session write and its effects; an incoming
SMS with its reply) is ``async with runner.transaction() as tx``: one connection, one
transaction. Inside it, every statement of the task goes through that transaction, whether
sent to ``tx`` or to the runner (a context variable routes it), and a nested
``transaction()`` joins it. On SQLite the runner's one connection is shared by every task
of the process, so a transaction holds it (an asyncio lock) from BEGIN IMMEDIATE to COMMIT;
statements outside a transaction take the same lock for their one statement. Nothing
inside a transaction may wait on the network.
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import re
import sqlite3
from contextlib import asynccontextmanager
from typing import Any, AsyncContextManager, AsyncIterator, Callable, Protocol, Sequence, TypeVar

import structlog

T = TypeVar("T")
_log = structlog.get_logger("gateway.sql")


class Tx(Protocol):
    """Statements inside one transaction (``SqlRunner.transaction``)."""

    dialect: str

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    async def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """One statement for many rows (no result), inside this transaction."""


class SqlRunner(Protocol):
    dialect: str  # "sqlite" or "postgres": for the rare statement that must differ

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    async def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """One statement for many rows, in one transaction."""

    def transaction(self) -> AsyncContextManager[Tx]:
        """One unit of work: committed when the block ends, rolled back if it raises."""

    async def close(self) -> None: ...


# The transaction of the unit of work the task is in: statements sent to the runner go
# through it (sent past it they would wait for the lock their own task holds).
_CURRENT: contextvars.ContextVar["Tx | None"] = contextvars.ContextVar("current_transaction", default=None)


def current_transaction() -> "Tx | None":
    return _CURRENT.get()


_UTC = dt.timezone.utc
_STAMPS: dict[dt.datetime, str] = {}  # a batch writes the same few moments many times over


def sqlite_timestamp(moment: dt.datetime) -> str:
    """The ORM's SQLite format, "2026-11-23 23:22:02.795452+00:00", which sorts as text."""
    if type(moment.tzinfo) is not dt.timezone:  # a zone with folds (or naive): equal is not same instant
        return moment.astimezone(_UTC).isoformat(sep=" ", timespec="microseconds")
    stamp = _STAMPS.get(moment)  # fixed offsets: equal moments are the same instant
    if stamp is None:
        if len(_STAMPS) >= 4096:
            _STAMPS.clear()
        stamp = _STAMPS[moment] = moment.astimezone(_UTC).isoformat(sep=" ", timespec="microseconds")
    return stamp


def as_datetime(value: Any) -> dt.datetime | None:
    if value is None or isinstance(value, dt.datetime):
        return value
    return dt.datetime.fromisoformat(value)


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


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
        wal = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"  # not for :memory:
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=0")
        self._lock = asyncio.Lock()
        self._checkpointer: WalCheckpointer | None = None
        if wal and _loop_running():
            # SQLite's own checkpoint runs inside the COMMIT that crosses its threshold, on
            # the event loop: 10-40 ms of copying with every request waiting. Left as a
            # backstop only, should the checkpointer stall.
            self._db.execute(f"PRAGMA wal_autocheckpoint={WalCheckpointer.BACKSTOP_FRAMES}")
            self._checkpointer = WalCheckpointer(path, self._lock)

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        current = _CURRENT.get()
        if current is not None:
            return await current.fetch(sql, params)
        values = _sqlite_values(params)
        async with self._lock:
            return await self._when_free(lambda: self._db.execute(sql, values).fetchall())

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        current = _CURRENT.get()
        if current is not None:
            yield current  # joins the unit of work the task is in
            return
        async with self._lock:
            await self._when_free(lambda: self._db.execute("BEGIN IMMEDIATE"))
            tx = _SqliteTx(self._db)
            token = _CURRENT.set(tx)
            try:
                yield tx
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            else:
                self._db.execute("COMMIT")
            finally:
                _CURRENT.reset(token)

    async def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if _CURRENT.get() is not None:
            raise RuntimeError("execute_many commits on its own: not inside a unit of work")
        values = [_sqlite_values(row) for row in rows]

        def run() -> None:
            self._db.execute("BEGIN IMMEDIATE")  # takes the write lock or fails at once
            try:
                self._db.executemany(sql, values)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

        async with self._lock:
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
        if self._checkpointer is not None:
            await self._checkpointer.stop()
        self._db.close()


class WalCheckpointer:
    """Keeps a WAL file short from the event loop's side, with a connection of its own whose
    statements run on a worker thread (sqlite3 releases the GIL while it copies).

    Every ``INTERVAL`` a PASSIVE checkpoint copies what it can while writers go on. Once the
    log holds ``RESTART_FRAMES`` (SQLite's default threshold), a FULL one copies the tail
    while the runner's lock is held (this process's statements wait a few milliseconds, as
    for any transaction) and other connections' writers are held off (the ORM's, another
    process's: they wait through their own busy timeout). Every frame is then copied, so the
    next writer starts the log again from its beginning. Without that step a steady stream
    of writes never leaves such a moment and the log grows without end (measured: 41 MB for
    8 MB of rows in ``tests/test_sqlite_checkpoint.py``).
    """

    INTERVAL = 0.1
    RESTART_FRAMES = 1000
    BACKSTOP_FRAMES = 10_000  # the writers' own automatic checkpoint, should this one stall
    # How long the FULL checkpoint waits for another connection's writer or reader, with this
    # process's statements waiting too: on a busy file it gives up and the next round tries.
    BUSY_MS = 20

    def __init__(self, path: str, lock: asyncio.Lock) -> None:
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute(f"PRAGMA busy_timeout={self.BUSY_MS}")
        self._lock = lock
        self._stopped = asyncio.Event()
        self.restarts = 0  # FULL checkpoints that copied the whole log (for the tests)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="wal-checkpoint")

    async def stop(self) -> None:
        self._stopped.set()
        # Lets the checkpoint under way finish (its connection is not in use after), and does
        # not raise what ended the task (a cancelled loop, a bug already logged).
        await asyncio.wait([self._task])
        self._db.close()

    async def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                await asyncio.wait_for(self._stopped.wait(), self.INTERVAL)
                return
            except asyncio.TimeoutError:
                pass
            try:
                await self.checkpoint()
            except sqlite3.Error as exc:  # busy or locked by another process: the next round
                _log.warning("wal_checkpoint_failed", error=str(exc))
            except Exception:  # noqa: BLE001 - a bug: logged; the writers' backstop takes over
                _log.exception("wal_checkpointer_crashed")
                return

    async def checkpoint(self) -> None:
        _, log, _ = await asyncio.to_thread(self._pragma, "PASSIVE")
        if log >= self.RESTART_FRAMES:
            async with self._lock:
                busy, log, copied = await asyncio.to_thread(self._pragma, "FULL")
            if not busy and copied == log:
                self.restarts += 1

    def _pragma(self, mode: str) -> tuple[int, int, int]:
        return self._db.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()


class _SqliteTx:
    dialect = "sqlite"

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        # The write lock is held since BEGIN IMMEDIATE: nothing to wait for.
        return self._db.execute(sql, _sqlite_values(params)).fetchall()

    async def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self._db.executemany(sql, [_sqlite_values(row) for row in rows])


_PLACEHOLDER = re.compile(r"\?")


class TortoiseRunner:
    def __init__(self, connection: Any, connection_name: str = "default") -> None:
        self._conn = connection
        self._connection_name = connection_name
        self.dialect = connection.capabilities.dialect  # "postgres", or "sqlite" (aiosqlite)
        self._numbered: dict[str, str] = {}

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        current = _CURRENT.get()
        if current is not None:
            return await current.fetch(sql, params)
        return await _tortoise_fetch(self._conn, self._number(sql), params, self.dialect)

    async def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if _CURRENT.get() is not None:
            raise RuntimeError("execute_many commits on its own: not inside a unit of work")
        convert = _sqlite_values if self.dialect == "sqlite" else list
        await self._conn.execute_many(self._number(sql), [convert(row) for row in rows])

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        current = _CURRENT.get()
        if current is not None:
            yield current  # joins the unit of work the task is in
            return
        from tortoise.transactions import in_transaction

        async with in_transaction(self._connection_name) as connection:
            tx = _TortoiseTx(connection, self._number, self.dialect)
            token = _CURRENT.set(tx)
            try:
                yield tx
            finally:
                _CURRENT.reset(token)

    def _number(self, sql: str) -> str:
        if self.dialect != "postgres":
            return sql
        numbered = self._numbered.get(sql)
        if numbered is None:
            counter = iter(range(1, 10_000))
            numbered = self._numbered[sql] = _PLACEHOLDER.sub(lambda _: f"${next(counter)}", sql)
        return numbered

    async def close(self) -> None:
        return None


async def _tortoise_fetch(connection: Any, sql: str, params: Sequence[Any], dialect: str) -> list[tuple[Any, ...]]:
    # execute_query_dict fetches for every statement (execute_query drops RETURNING rows of writes).
    values = _sqlite_values(params) if dialect == "sqlite" else list(params)
    rows = await connection.execute_query_dict(sql, values)
    return [tuple(row.values()) for row in rows]


class _TortoiseTx:
    def __init__(self, connection: Any, number: Callable[[str], str], dialect: str) -> None:
        self._conn = connection
        self._number = number
        self.dialect = dialect

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return await _tortoise_fetch(self._conn, self._number(sql), params, self.dialect)

    async def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            convert = _sqlite_values if self.dialect == "sqlite" else list
            await self._conn.execute_many(self._number(sql), [convert(row) for row in rows])


def orm_runner() -> SqlRunner:
    """A runner over the ORM's own connection, for scripts and tests that have no app."""
    from tortoise import connections

    return TortoiseRunner(connections.get("default"))


def open_runner(database_url: str) -> SqlRunner:
    """The runner for the configured database; call once the ORM is connected."""
    if database_url.startswith("sqlite://"):
        return SqliteRunner(database_url.removeprefix("sqlite://").partition("?")[0])
    from tortoise import connections

    return TortoiseRunner(connections.get("default"))
