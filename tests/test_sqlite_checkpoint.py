"""The SQLite runner's WAL checkpoints run beside the event loop, never inside a COMMIT.

SQLite's automatic checkpoint copies the log back into the database inside the COMMIT that
crosses its threshold: 10-40 ms with the event loop blocked, which every waiting request
feels (bench/ussd/latency). ``WalCheckpointer`` does it on its own connection instead; these
tests hold it to what it must keep: a log that stays short under a steady stream of writes
(the plain off-loop PASSIVE checkpoint let it grow without end), every row written, and a
clean stop.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3

import pytest

from models.fastsql import SqliteRunner, WalCheckpointer

ROW_BYTES = 2048
WRITES = 4000


@pytest.fixture
def quick_checkpoints(monkeypatch):
    # The real rhythm (every 100 ms, 1,000 frames) scaled down to what a test writes.
    monkeypatch.setattr(WalCheckpointer, "INTERVAL", 0.002)
    monkeypatch.setattr(WalCheckpointer, "RESTART_FRAMES", 100)


async def _steady_writes(runner: SqliteRunner, wal: str) -> int:
    """WRITES transactions back to back, the loop turning between them as in a server;
    returns the largest the log file grew."""
    largest = 0
    for n in range(WRITES):
        async with runner.transaction() as tx:
            await tx.fetch("INSERT INTO item (body) VALUES (?)", (os.urandom(ROW_BYTES // 2).hex(),))
            await tx.fetch("UPDATE counter SET n = n + 1 WHERE id = 1")
        await asyncio.sleep(0)
        if n % 50 == 0:
            largest = max(largest, os.path.getsize(wal))
    return max(largest, os.path.getsize(wal))


async def _schema(path: str) -> None:
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE item (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
        db.execute("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
        db.execute("INSERT INTO counter VALUES (1, 0)")


async def test_a_steady_stream_of_writes_keeps_the_log_short_and_every_row(tmp_path, quick_checkpoints):
    path = str(tmp_path / "steady.sqlite3")
    await _schema(path)
    runner = SqliteRunner(path)
    checkpointer = runner._checkpointer
    assert checkpointer is not None
    # No COMMIT copies the log back itself: the automatic checkpoint is only a backstop.
    assert runner._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == WalCheckpointer.BACKSTOP_FRAMES
    try:
        largest = await _steady_writes(runner, path + "-wal")
    finally:
        await runner.close()
    written = WRITES * ROW_BYTES
    # The log went back to its beginning again and again: it never held more than a
    # fraction of what was written (8 MB here; without restarts the log holds all of it).
    assert largest < written * 0.4, (largest, written)
    assert checkpointer.restarts >= 3
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT count(*) FROM item").fetchone()[0] == WRITES
        assert db.execute("SELECT n FROM counter").fetchone()[0] == WRITES


async def test_a_reader_holding_the_log_delays_the_restart_but_loses_nothing(tmp_path, quick_checkpoints):
    """Another connection in a long read transaction keeps its snapshot: the FULL checkpoint
    gives up within its busy timeout (the writers go on), and catches up once it is gone."""
    path = str(tmp_path / "reader.sqlite3")
    await _schema(path)
    reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    reader.execute("BEGIN")
    assert reader.execute("SELECT count(*) FROM item").fetchone()[0] == 0  # its snapshot, from now on
    runner = SqliteRunner(path)
    checkpointer = runner._checkpointer
    try:
        for _ in range(300):
            async with runner.transaction() as tx:
                await tx.fetch("INSERT INTO item (body) VALUES (?)", ("x" * ROW_BYTES,))
            await asyncio.sleep(0)
        held = checkpointer.restarts
        assert reader.execute("SELECT count(*) FROM item").fetchone()[0] == 0  # still its snapshot
        reader.execute("COMMIT")
        await _steady_writes(runner, path + "-wal")
        assert held == 0 and checkpointer.restarts > held
    finally:
        reader.close()
        await runner.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM item").fetchone()[0] == 300 + WRITES


async def test_closing_the_runner_stops_its_checkpoints(tmp_path):
    path = str(tmp_path / "close.sqlite3")
    await _schema(path)
    runner = SqliteRunner(path)
    checkpointer = runner._checkpointer
    await runner.close()
    assert checkpointer._task.done() and checkpointer._task.exception() is None
    with pytest.raises(sqlite3.ProgrammingError):  # its connection is closed too
        checkpointer._pragma("PASSIVE")


def test_a_runner_made_outside_an_event_loop_keeps_sqlites_own_checkpoints(tmp_path):
    path = str(tmp_path / "sync.sqlite3")
    runner = SqliteRunner(path)
    assert runner._checkpointer is None
    assert runner._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000
    asyncio.run(runner.close())


async def test_closing_after_the_checkpoints_were_cancelled_still_closes(tmp_path):
    """A loop shutting down cancels the task first: closing the runner then must not raise."""
    path = str(tmp_path / "cancelled.sqlite3")
    await _schema(path)
    runner = SqliteRunner(path)
    task = runner._checkpointer._task
    task.cancel()
    await asyncio.sleep(0)
    await runner.close()
    assert task.cancelled()
    with pytest.raises(sqlite3.ProgrammingError):
        runner._db.execute("SELECT 1")
