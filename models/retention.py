"""Retention: records are kept only as long as they are needed, then purged in small batches.

What goes (cut-offs from ``[retention]``, ``[ussd]`` and ``[sms]``):

- USSD sessions untouched for longer than their TTL or the resume window, whichever is
  longer, plus ``session_grace_seconds`` (a session may still be resumed until then);
- inbound SMS records after ``inbound_sms_days``, and duplicate-window fingerprints once
  they are older than ``sms.inbound_duplicate_seconds`` (useless after the window);
- outbound SMS after ``outbound_sms_days``, only once final (sent, delivered, failed,
  expired): a queued or sending message is never deleted, however old;
- the text of an OTP once it is sent or final (the dispatcher clears it when it marks the
  message; this catches any row left with one);
- OTP challenges ``otp_challenge_hours`` after they expired (the portal may still ask how
  one ended until then), and rate counters whose window ended long ago (twice the longest
  window, an hour, after it began);
- registrations started by SMS (``DK ...``) and never confirmed, once they expired;
- a dossier's notification records (which SMS it was told, or why not) as long as the
  outbound SMS themselves (``outbound_sms_days``), and never while its SMS still waits;
- the one-stop system's event ids after ``dossier_event_days``: a replay older than that is
  applied as an event again, and being older than the dossier's state, it moves nothing
  and sends nothing;
- console sessions once ended or idle past ``console.session_idle_minutes`` (plus
  ``session_grace_seconds``), and audit records after ``audit_log_days``.

Each statement touches at most ``batch_size`` rows (``DELETE ... WHERE id IN (SELECT id
... LIMIT n)``), and the loop is yielded between batches, so a large backlog never holds
the database or the event loop for long. Deletes are idempotent: two purgers at once do
no harm beyond duplicated work, and the lease "purger" keeps it to one across processes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any, Callable, Protocol

import structlog

from models.entities import SmsKind, SmsStatus
from models.fastsql import SqlRunner
from models.leases import Leases, process_holder_id
from models.otp import LONGEST_WINDOW

log = structlog.get_logger("models.retention")

LEASE_NAME = "purger"

Clock = Callable[[], dt.datetime]


class RetentionConfig(Protocol):
    """The parts of the gateway's settings the purger reads."""

    retention: Any  # run_purger, interval_seconds, batch_size, session_grace_seconds, *_days, lease_seconds
    ussd: Any  # session_ttl_seconds, resume_window_seconds
    sms: Any  # inbound_duplicate_seconds
    console: Any  # session_idle_minutes


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


_FINAL = ", ".join(f"'{s.value}'" for s in (SmsStatus.SENT, SmsStatus.DELIVERED, SmsStatus.FAILED, SmsStatus.EXPIRED))

_DELETE_SESSIONS = (
    "DELETE FROM ussd_session WHERE id IN ("
    " SELECT id FROM ussd_session WHERE updated_at < ? LIMIT ?) RETURNING id"
)
_DELETE_INBOUND = (
    "DELETE FROM inbound_sms WHERE id IN ("
    " SELECT id FROM inbound_sms WHERE received_at < ? LIMIT ?) RETURNING id"
)
_DELETE_FINGERPRINTS = (
    "DELETE FROM inbound_fingerprint WHERE id IN ("
    " SELECT id FROM inbound_fingerprint WHERE seen_at < ? LIMIT ?) RETURNING id"
)
_CLEAR_OTP_TEXT = (
    "UPDATE outbound_sms SET text='' WHERE id IN ("
    f" SELECT id FROM outbound_sms WHERE kind='{SmsKind.OTP.value}' AND status IN ({_FINAL}) AND text<>''"
    " LIMIT ?) RETURNING id"
)
_DELETE_OUTBOUND = (
    "DELETE FROM outbound_sms WHERE id IN ("
    f" SELECT id FROM outbound_sms WHERE created_at < ? AND status IN ({_FINAL}) LIMIT ?) RETURNING id"
)

_DELETE_OTP_CHALLENGES = (
    "DELETE FROM otp_challenge WHERE id IN ("
    " SELECT id FROM otp_challenge WHERE expires_at < ? LIMIT ?) RETURNING id"
)
_DELETE_RATE_COUNTERS = (
    "DELETE FROM rate_counter WHERE id IN ("
    " SELECT id FROM rate_counter WHERE window_start < ? LIMIT ?) RETURNING id"
)

# The keys of every count, in the order the purge runs.
_DELETE_SMS_REGISTRATIONS = (
    "DELETE FROM sms_registration WHERE id IN ("
    " SELECT id FROM sms_registration WHERE expires_at < ? LIMIT ?) RETURNING id"
)

# Only once its SMS is final or gone: a record whose SMS still waits (a backlog, quiet
# hours) is how the sync supersedes it and how the dossier's history shows it.
_DELETE_NOTIFICATIONS = (
    "DELETE FROM dossier_notification WHERE id IN ("
    " SELECT n.id FROM dossier_notification n WHERE n.created_at < ? AND NOT EXISTS ("
    f"  SELECT 1 FROM outbound_sms o WHERE o.id = n.outbound_sms_id AND o.status NOT IN ({_FINAL}))"
    " LIMIT ?) RETURNING id"
)
_DELETE_DOSSIER_EVENTS = (
    "DELETE FROM dossier_event WHERE id IN ("
    " SELECT id FROM dossier_event WHERE received_at < ? LIMIT ?) RETURNING id"
)
_DELETE_CLERK_SESSIONS = (
    "DELETE FROM clerk_session WHERE id IN ("
    " SELECT id FROM clerk_session WHERE (ended=? OR last_seen_at < ?) AND last_seen_at < ? LIMIT ?) RETURNING id"
)
_DELETE_AUDIT = (
    "DELETE FROM audit_log WHERE id IN ("
    " SELECT id FROM audit_log WHERE at < ? LIMIT ?) RETURNING id"
)

COUNT_KEYS = ("ussd_sessions", "inbound_sms", "inbound_fingerprints", "otp_texts_cleared", "outbound_sms",
              "otp_challenges", "rate_counters", "sms_registrations", "dossier_notifications", "dossier_events",
              "clerk_sessions", "audit_log")


class LeaseLost(Exception):
    """Another process took the purger's lease during a pass (this one stalled too long)."""


class Purger:
    """Deletes what retention no longer needs. ``purge_once`` for one pass, ``run`` in a server."""

    def __init__(self, settings: RetentionConfig, sql: SqlRunner, clock: Clock = _utcnow, holder: str | None = None) -> None:
        self._retention = settings.retention
        self._ussd = settings.ussd
        self._sms = settings.sms
        self._console = settings.console
        self._sql = sql
        self._clock = clock
        self._leases = Leases(sql)
        self.holder = holder or process_holder_id()
        self._taken_at: float | None = None  # monotonic time the lease was last taken or renewed
        self._stop: asyncio.Event | None = None

    # -- the lease ---------------------------------------------------------------------------

    async def take_lease(self) -> bool:
        """Take or renew the lease "purger" for this process; False if another holds it."""
        held = await self._leases.acquire(LEASE_NAME, self.holder, self._clock(), self._retention.lease_seconds)
        self._taken_at = time.monotonic() if held else None
        return held

    async def release_lease(self) -> None:
        if self._taken_at is not None:
            self._taken_at = None
            await self._leases.release(LEASE_NAME, self.holder)

    # -- purging -----------------------------------------------------------------------------

    def cutoffs(self, now: dt.datetime) -> dict[str, dt.datetime]:
        r = self._retention
        session_keep = max(self._ussd.session_ttl_seconds, self._ussd.resume_window_seconds) + r.session_grace_seconds
        return {
            "ussd_sessions": now - dt.timedelta(seconds=session_keep),
            "inbound_sms": now - dt.timedelta(days=r.inbound_sms_days),
            "inbound_fingerprints": now - dt.timedelta(seconds=self._sms.inbound_duplicate_seconds),
            "outbound_sms": now - dt.timedelta(days=r.outbound_sms_days),
            "otp_challenges": now - dt.timedelta(hours=r.otp_challenge_hours),
            "rate_counters": now - 2 * LONGEST_WINDOW,
            "dossier_notifications": now - dt.timedelta(days=r.outbound_sms_days),
            "dossier_events": now - dt.timedelta(days=r.dossier_event_days),
            # An ended session goes after the grace; one left open, once idle past the timeout too.
            "clerk_sessions_ended": now - dt.timedelta(seconds=r.session_grace_seconds),
            "clerk_sessions_idle": now - dt.timedelta(minutes=self._console.session_idle_minutes,
                                                      seconds=r.session_grace_seconds),
            "audit_log": now - dt.timedelta(days=r.audit_log_days),
        }

    async def purge_once(self, now: dt.datetime) -> dict[str, int]:
        """One pass over every table, each in batches until fewer than a batch was left.

        Returns how many rows each step deleted (or, for OTP texts, cleared).
        """
        cut = self.cutoffs(now)
        steps = (
            ("ussd_sessions", _DELETE_SESSIONS, (cut["ussd_sessions"],)),
            ("inbound_sms", _DELETE_INBOUND, (cut["inbound_sms"],)),
            ("inbound_fingerprints", _DELETE_FINGERPRINTS, (cut["inbound_fingerprints"],)),
            ("otp_texts_cleared", _CLEAR_OTP_TEXT, ()),
            ("outbound_sms", _DELETE_OUTBOUND, (cut["outbound_sms"],)),
            ("otp_challenges", _DELETE_OTP_CHALLENGES, (cut["otp_challenges"],)),
            ("rate_counters", _DELETE_RATE_COUNTERS, (cut["rate_counters"],)),
            ("sms_registrations", _DELETE_SMS_REGISTRATIONS, (now,)),  # abandoned DK ... never confirmed
            ("dossier_notifications", _DELETE_NOTIFICATIONS, (cut["dossier_notifications"],)),
            ("dossier_events", _DELETE_DOSSIER_EVENTS, (cut["dossier_events"],)),
            ("clerk_sessions", _DELETE_CLERK_SESSIONS,
             (True, cut["clerk_sessions_idle"], cut["clerk_sessions_ended"])),
            ("audit_log", _DELETE_AUDIT, (cut["audit_log"],)),
        )
        counts = dict.fromkeys(COUNT_KEYS, 0)
        for key, statement, params in steps:
            if self._stopping():
                break
            done = await self._in_batches(statement, params)
            counts[key] = done
        return counts

    async def purge_all(self) -> dict[str, int]:
        """Passes until one finds nothing left (the CLI's full purge)."""
        total = dict.fromkeys(COUNT_KEYS, 0)
        while not self._stopping():
            counts = await self.purge_once(self._clock())
            for key, value in counts.items():
                total[key] = total.get(key, 0) + value
            if not any(counts.values()):
                break
        return total

    async def _in_batches(self, statement: str, params: tuple[Any, ...]) -> int:
        batch = self._retention.batch_size
        done = 0
        while True:
            rows = await self._sql.fetch(statement, (*params, batch))
            done += len(rows)
            if len(rows) < batch:
                return done
            await asyncio.sleep(0)  # let hops and sends through between batches
            if self._stopping():
                return done
            await self._renew_if_due()

    def _stopping(self) -> bool:
        return self._stop is not None and self._stop.is_set()

    async def _renew_if_due(self) -> None:
        """A long pass renews its lease before it can run out, and stops if it was lost."""
        if self._taken_at is None:
            return
        if time.monotonic() - self._taken_at >= self._retention.lease_seconds / 3:
            if not await self.take_lease():
                raise LeaseLost(LEASE_NAME)

    # -- in a server -------------------------------------------------------------------------

    async def run_once(self) -> dict[str, int] | None:
        """Take the lease and purge; None when another process holds it."""
        if not await self.take_lease():
            return None
        started = time.perf_counter()
        try:
            counts = await self.purge_once(self._clock())
        except LeaseLost:
            log.warning("purge_lease_lost", holder=self.holder)
            return None
        log.info("purge", holder=self.holder, elapsed_ms=round((time.perf_counter() - started) * 1000, 2), **counts)
        return counts

    async def run(self, stop: asyncio.Event) -> None:
        """Every ``interval_seconds`` until ``stop``: purge if this process holds the lease."""
        self._stop = stop
        log.info("purger_started", holder=self.holder, interval_seconds=self._retention.interval_seconds)
        try:
            while not stop.is_set():
                try:
                    await self.run_once()
                except Exception:  # noqa: BLE001 - a bad moment of the database must not end the loop
                    log.exception("purge_failed", holder=self.holder)
                try:
                    await asyncio.wait_for(stop.wait(), timeout=self._retention.interval_seconds)
                except asyncio.TimeoutError:
                    pass
        finally:
            try:
                await self.release_lease()
            except Exception:  # noqa: BLE001 - it runs out on its own
                log.exception("purger_release_failed", holder=self.holder)
            log.info("purger_stopped", holder=self.holder)
