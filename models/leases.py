"""Leases: a named job that only one process may run at a time, shared through the database.

A lease is one row of ``lease`` (name, holder, expires_at). It is taken, renewed and taken
over with one atomic statement, an upsert whose update applies only when the lease has run
out or is already this holder's, so two processes never both hold it, on SQLite (3.35 and
later, for RETURNING) and on PostgreSQL alike. A holder that dies simply stops renewing and
another takes over after ``expires_at``; a holder that stops cleanly releases it at once.

The purger uses the lease "purger", the reminders job "reminders" and the server's SMS
dispatcher "dispatcher" (through ``LeaseKeeper``, which keeps a lease for a loop that runs
beside it). Holders are opaque strings of at most 80 characters, per process:
``process_holder_id()`` gives one like the dispatcher's worker id.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import socket
import time
from typing import Callable, NamedTuple

import structlog

from models.fastsql import SqlRunner, as_datetime

log = structlog.get_logger("models.leases")

HOLDER_MAX_CHARS = 80

_ACQUIRE = (
    "INSERT INTO lease (name, holder, expires_at) VALUES (?, ?, ?)"
    " ON CONFLICT (name) DO UPDATE SET holder=excluded.holder, expires_at=excluded.expires_at"
    " WHERE lease.expires_at < ? OR lease.holder = ?"
    " RETURNING name"
)
_RELEASE = "DELETE FROM lease WHERE name=? AND holder=? RETURNING name"
_CURRENT = "SELECT holder, expires_at FROM lease WHERE name=?"


class LeaseState(NamedTuple):
    holder: str
    expires_at: dt.datetime


def process_holder_id() -> str:
    """One id per process (host, pid, a random tag), like the dispatcher's worker id."""
    tag = f":{os.getpid()}:{random.randrange(16**6):06x}"
    return socket.gethostname()[: HOLDER_MAX_CHARS - len(tag)] + tag


class Leases:
    """Take, renew, release and read named leases through one ``SqlRunner``.

    Every call is one statement in its own transaction (the runners autocommit), so it
    must not be called inside a unit of work that should roll back with it.
    """

    def __init__(self, sql: SqlRunner) -> None:
        self._sql = sql

    async def acquire(self, name: str, holder: str, now: dt.datetime, seconds: float) -> bool:
        """Take ``name`` for ``holder`` until ``now + seconds``, or renew it if ``holder`` has it.

        True when ``holder`` holds it afterwards; False when another holder's lease has not
        run out yet. ``now`` is an aware UTC datetime from the caller's clock.
        """
        if len(holder) > HOLDER_MAX_CHARS:
            raise ValueError(f"lease holder longer than {HOLDER_MAX_CHARS} characters")
        until = now + dt.timedelta(seconds=seconds)
        rows = await self._sql.fetch(_ACQUIRE, (name, holder, until, now, holder))
        return bool(rows)

    async def release(self, name: str, holder: str) -> bool:
        """Give ``name`` up if ``holder`` still has it (another may take it at once)."""
        return bool(await self._sql.fetch(_RELEASE, (name, holder)))

    async def current(self, name: str) -> LeaseState | None:
        """Who has (or last had) ``name`` and until when; None if nobody took it."""
        rows = await self._sql.fetch(_CURRENT, (name,))
        if not rows:
            return None
        holder, expires_at = rows[0]
        moment = as_datetime(expires_at)
        assert moment is not None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.timezone.utc)
        return LeaseState(holder, moment)


class LeaseKeeper:
    """Keeps one lease for a job that runs while it is held: ``keep(stop)`` tries to take it
    every third of ``seconds`` and, once held, renews it at the same pace; ``held`` is set
    while this process holds it. At ``stop`` it is released, so another takes over at once.

    A renewal that fails (the database away for a moment) keeps ``held`` only while the last
    good renewal is recent enough that the lease cannot have run out (two thirds of its
    length); after that the job stops as if another had taken it.
    """

    def __init__(self, leases: Leases, name: str, holder: str, seconds: float,
                 clock: Callable[[], dt.datetime]) -> None:
        self._leases = leases
        self.name = name
        self.holder = holder
        self.seconds = seconds
        self._clock = clock
        self.held = asyncio.Event()
        self._renewed_at: float | None = None  # monotonic time of the last good take or renewal

    async def step(self) -> bool:
        """One attempt to take or renew the lease; True if this process holds it afterwards."""
        was_held = self.held.is_set()
        try:
            ok = await self._leases.acquire(self.name, self.holder, self._clock(), self.seconds)
        except Exception:  # noqa: BLE001 - the next step tries again
            log.exception("lease_renew_failed", lease=self.name, holder=self.holder)
            ok = was_held and self._renewed_at is not None and (
                time.monotonic() - self._renewed_at < self.seconds * 2 / 3)
        else:
            if ok:
                self._renewed_at = time.monotonic()
        if ok and not was_held:
            log.info("lease_taken", lease=self.name, holder=self.holder, seconds=self.seconds)
            self.held.set()
        elif was_held and not ok:
            log.warning("lease_lost", lease=self.name, holder=self.holder)
            self.held.clear()
        return ok

    async def keep(self, stop: asyncio.Event) -> None:
        """Take or renew the lease every third of its length until ``stop``, then release it."""
        try:
            while not stop.is_set():
                await self.step()
                try:
                    await asyncio.wait_for(stop.wait(), timeout=self.seconds / 3)
                except asyncio.TimeoutError:
                    pass
        finally:
            if self.held.is_set():
                self.held.clear()
                try:
                    await self._leases.release(self.name, self.holder)
                    log.info("lease_released", lease=self.name, holder=self.holder)
                except Exception:  # noqa: BLE001 - it runs out on its own
                    log.exception("lease_release_failed", lease=self.name, holder=self.holder)
