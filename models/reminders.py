"""Reminders for results that wait uncollected (status 9), sent by one process at a time.

``ReminderJob.run`` looks every ``notifications.reminder_interval_seconds`` for due
reminders (``DossierService.send_due_reminders``) while it holds the lease "reminders";
``run_once`` is one pass (``python -m gateway remind``). Each reminder is claimed in the
database (a conditional update of the dossier's count), so even two passes at once send a
reminder once; the lease only saves the duplicated work. A pass writes at most ``batch``
reminders per transaction and goes on until none is due.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any, Callable

import structlog

from models.fastsql import SqlRunner
from models.leases import Leases, process_holder_id

log = structlog.get_logger("models.reminders")

LEASE_NAME = "reminders"


class ReminderJob:
    def __init__(self, settings: Any, sql: SqlRunner, dossiers: Any, clock: Callable[[], dt.datetime],
                 on_sms_queued: Callable[[], None] = lambda: None, holder: str | None = None,
                 batch: int = 200) -> None:
        self._settings = settings.notifications
        self._sql = sql
        self._dossiers = dossiers
        self._clock = clock
        self._on_sms_queued = on_sms_queued
        self._leases = Leases(sql)
        self.holder = holder or process_holder_id()
        self._batch = batch
        self._held = False

    async def run_once(self) -> int | None:
        """Send every due reminder; None when another process holds the lease."""
        lease_seconds = max(60, 2 * self._settings.reminder_interval_seconds)
        if not await self._leases.acquire(LEASE_NAME, self.holder, self._clock(), lease_seconds):
            return None
        self._held = True
        started, sent = time.perf_counter(), 0
        while True:
            async with self._sql.transaction() as tx:
                written = await self._dossiers.send_due_reminders(tx, self._clock(), self._batch)
            sent += written
            if written < self._batch:
                break
        if sent:
            self._on_sms_queued()
        log.info("reminders", holder=self.holder, sent=sent, elapsed_ms=round((time.perf_counter() - started) * 1000, 2))
        return sent

    async def release(self) -> None:
        if self._held:
            self._held = False
            await self._leases.release(LEASE_NAME, self.holder)

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                try:
                    await self.run_once()
                except Exception:  # noqa: BLE001 - a bad moment of the database must not end the loop
                    log.exception("reminders_failed", holder=self.holder)
                try:
                    await asyncio.wait_for(stop.wait(), timeout=self._settings.reminder_interval_seconds)
                except asyncio.TimeoutError:
                    pass
        finally:
            try:
                await self.release()
            except Exception:  # noqa: BLE001 - it runs out on its own
                log.exception("reminders_release_failed", holder=self.holder)
