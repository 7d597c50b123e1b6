"""One-time codes sent by SMS, for the gateway's own journeys and for the portal's API.

A challenge is one row of ``otp_challenge``: a code sent to a phone for one purpose, kept
only as HMAC-SHA256(key, public_id, code), with an expiry, a count of checks and a status
(pending -> approved | expired | canceled | failed; an approval the gateway's own journey
has acted on becomes ``used``). Every decision is one atomic statement, so the rules hold
with several workers on PostgreSQL as on SQLite:

- **Checks**: one UPDATE raises ``checks`` and decides the status (expired once past
  ``expires_at``, approved when the hash matches, failed when the checks reach
  ``max_checks``) only while the row is still pending, and returns what it decided. Two
  checks of one right code at once: one approves, the other finds nothing pending. A check
  of a challenge that is no longer pending decides nothing; one that was approved already
  answers ``none`` (an approval is given once), the others their final status.
- **One live code per phone, purpose and requester** (the gateway itself, or one API
  client): a partial unique index (migration 0005) says so. A new code no sooner than
  ``resend_seconds`` after the last: the live one is canceled, in the same transaction,
  only once its ``resend_after`` has passed; a start that races another past that check
  meets the index (``ON CONFLICT DO NOTHING``) and is refused as a resend.
- **Per phone per hour, and all phones per minute**: ``rate_counter`` rows in fixed windows
  (UTC hour, UTC minute), each raised by one upsert that only counts below the limit
  (``... DO UPDATE SET count = count + 1 WHERE count < limit RETURNING count``): no row back
  is the limit. The per-phone count is shared by every requester: it protects the phone.

``start`` undoes its own writes when it refuses (a savepoint), so a caller may catch
``OtpLimited`` and still commit the rest of its unit of work (a USSD hop saying "try again
in 40 s"): the old code stays valid, no counter moved. It must run inside a transaction
(``runner.transaction()``), as every method here does.

The code exists in clear only in the SMS text queued in the same transaction; the
dispatcher clears an OTP's text once sent or expired, and an expired OTP is never sent.
Nothing here logs.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import hmac
import math
import secrets
from dataclasses import dataclass
from typing import Callable

from models.entities import SmsKind
from models.fastsql import Tx, as_datetime, current_transaction
from models.outbox import OutboxWriter


_DROP_WAITING_CODES = (
    "UPDATE outbound_sms SET status='expired', text='', last_error='replaced by a newer code'"
    " WHERE to_phone=? AND kind='otp' AND status='queued'"
)


class OtpPurpose(str, enum.Enum):
    REGISTER = "register"
    PIN_RESET = "pin_reset"
    DELETE_DATA = "delete_data"
    PORTAL = "portal"


@dataclass(frozen=True, slots=True)
class OtpStarted:
    public_id: str
    expires_at: dt.datetime
    resend_after: dt.datetime


@dataclass(frozen=True, slots=True)
class OtpVerdict:
    status: str  # approved | pending | expired | canceled | failed | none
    tries_left: int


@dataclass(frozen=True, slots=True)
class OtpPending:
    """The live code of a phone for a purpose, for a screen: "sent, valid 5 min, resend in 60 s"."""

    public_id: str
    expires_at: dt.datetime
    resend_after: dt.datetime
    tries_left: int


class OtpLimited(Exception):
    """No new code now: ``reason`` resend | phone | global, and when to try again."""

    def __init__(self, reason: str, retry_after: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


CODE_DIGITS = 6
# The longest rate window; the purger deletes counters older than twice this.
LONGEST_WINDOW = dt.timedelta(hours=1)
# Statuses as stored. "used" is an approval a journey of the gateway has acted on.
PENDING, APPROVED, EXPIRED, CANCELED, FAILED, USED = "pending", "approved", "expired", "canceled", "failed", "used"
NONE = "none"  # verdict only: no challenge, or nothing left to decide

_OWNER = "COALESCE(api_client_id, 0)"  # 0: the gateway's own journeys (menus, SMS keywords)

_RAISE_COUNTER = (
    "INSERT INTO rate_counter (scope, window_start, count) VALUES (?, ?, 1)"
    " ON CONFLICT (scope, window_start) DO UPDATE SET count = rate_counter.count + 1"
    " WHERE rate_counter.count < ? RETURNING count"
)
# The live code of this phone, purpose and requester gives way once its resend time passed.
_RETIRE_LIVE = (
    "UPDATE otp_challenge SET status = CASE WHEN expires_at <= ? THEN 'expired' ELSE 'canceled' END,"
    " decided_at = ?"
    f" WHERE phone_key = ? AND purpose = ? AND status = 'pending' AND {_OWNER} = ? AND resend_after <= ?"
    " RETURNING id"
)
_LIVE_RESEND_AFTER = (
    "SELECT resend_after FROM otp_challenge"
    f" WHERE phone_key = ? AND purpose = ? AND status = 'pending' AND {_OWNER} = ?"
    " ORDER BY id DESC LIMIT 1"
)
# The partial unique index (one pending row per phone, purpose, requester) refuses a second.
_INSERT = (
    "INSERT INTO otp_challenge (public_id, phone_key, purpose, code_hash, status, checks, api_client_id,"
    " created_at, expires_at, resend_after) VALUES (?, ?, ?, ?, 'pending', 0, ?, ?, ?, ?)"
    " ON CONFLICT DO NOTHING RETURNING id"
)
# One statement decides a check: parameters now, hash, max_checks, (again for decided_at) now,
# hash, max_checks, now, then the row.
_DECIDE = (
    "UPDATE otp_challenge SET checks = checks + 1,"
    " status = CASE WHEN expires_at <= ? THEN 'expired' WHEN code_hash = ? THEN 'approved'"
    " WHEN checks + 1 >= ? THEN 'failed' ELSE 'pending' END,"
    " decided_at = CASE WHEN expires_at <= ? OR code_hash = ? OR checks + 1 >= ? THEN ? ELSE decided_at END"
    " WHERE id = ? AND status = 'pending' RETURNING status, checks"
)
_NEWEST_OWN = (
    "SELECT id, public_id, status, checks FROM otp_challenge"
    " WHERE phone_key = ? AND purpose = ? AND api_client_id IS NULL ORDER BY id DESC LIMIT 1"
)
_BY_PUBLIC_ID = "SELECT id, public_id, status, checks, api_client_id FROM otp_challenge WHERE public_id = ?"
_EXPIRE_ONE = (
    "UPDATE otp_challenge SET status = 'expired', decided_at = ?"
    " WHERE id = ? AND status = 'pending' AND expires_at <= ? RETURNING checks"
)
_CANCEL_ONE = (
    "UPDATE otp_challenge SET status = 'canceled', decided_at = ?"
    " WHERE id = ? AND status = 'pending' RETURNING id"
)
_PENDING_OWN = (
    "SELECT public_id, expires_at, resend_after, checks FROM otp_challenge"
    " WHERE phone_key = ? AND purpose = ? AND api_client_id IS NULL AND status = 'pending' AND expires_at > ?"
    " ORDER BY id DESC LIMIT 1"
)
# An approval is acted on once, and only while it is fresh (code_ttl_seconds after it).
_CONSUME = (
    "UPDATE otp_challenge SET status = 'used' WHERE id = ("
    " SELECT id FROM otp_challenge WHERE phone_key = ? AND purpose = ? AND api_client_id IS NULL"
    " ORDER BY id DESC LIMIT 1) AND status = 'approved' AND decided_at > ? RETURNING id"
)


def _window(now: dt.datetime, length: dt.timedelta) -> dt.datetime:
    """The start of the fixed UTC window of ``length`` (a minute, an hour) that holds ``now``."""
    now = now.astimezone(dt.timezone.utc)
    step = int(length.total_seconds())
    epoch = int(now.timestamp())
    return dt.datetime.fromtimestamp(epoch - epoch % step, dt.timezone.utc)


def _seconds_until(moment: dt.datetime, now: dt.datetime) -> int:
    return max(1, math.ceil((moment - now).total_seconds()))


class OtpService:
    def __init__(
        self,
        settings,  # gateway.settings.OtpSettings (read by attribute)
        outbox: OutboxWriter,
        key: str,
        phone_key: Callable[[str], str],
        sms_text: Callable[[str, "OtpPurpose", str, int], str],  # (lang, purpose, code, minutes)
    ) -> None:
        self._settings = settings
        self._outbox = outbox
        self._key = key
        self._phone_key = phone_key
        self._sms_text = sms_text

    # -- sending a code ---------------------------------------------------------------------

    async def start(
        self, tx: Tx, phone: str, purpose: OtpPurpose, lang: str, now: dt.datetime,
        api_client_id: int | None = None,
    ) -> OtpStarted:
        """Send a new code to ``phone`` (E.164) for ``purpose``; the previous one stops working.

        Raises ``OtpLimited`` having written nothing (see the module's notes).
        """
        if current_transaction() is None:
            raise RuntimeError("OtpService.start runs inside a unit of work: async with runner.transaction() as tx")
        purpose = OtpPurpose(purpose)
        await tx.fetch("SAVEPOINT otp_start")
        try:
            started = await self._start(tx, phone, purpose, lang, now, api_client_id)
        except OtpLimited:
            await tx.fetch("ROLLBACK TO SAVEPOINT otp_start")
            await tx.fetch("RELEASE SAVEPOINT otp_start")
            raise
        await tx.fetch("RELEASE SAVEPOINT otp_start")
        return started

    async def _start(
        self, tx: Tx, phone: str, purpose: OtpPurpose, lang: str, now: dt.datetime, api_client_id: int | None,
    ) -> OtpStarted:
        settings = self._settings
        key = self._phone_key(phone)
        owner = api_client_id or 0
        await tx.fetch(_RETIRE_LIVE, (now, now, key, purpose.value, owner, now))
        live = await tx.fetch(_LIVE_RESEND_AFTER, (key, purpose.value, owner))
        if live:
            raise OtpLimited("resend", _seconds_until(as_datetime(live[0][0]), now))

        hour = _window(now, dt.timedelta(hours=1))
        if not await tx.fetch(_RAISE_COUNTER, (f"otp:phone:{key}", hour, settings.per_phone_per_hour)):
            raise OtpLimited("phone", _seconds_until(hour + dt.timedelta(hours=1), now))
        minute = _window(now, dt.timedelta(minutes=1))
        if not await tx.fetch(_RAISE_COUNTER, ("otp:global", minute, settings.global_per_minute)):
            raise OtpLimited("global", _seconds_until(minute + dt.timedelta(minutes=1), now))

        public_id = secrets.token_urlsafe(16)
        code = f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}"
        expires_at = now + dt.timedelta(seconds=settings.code_ttl_seconds)
        resend_after = now + dt.timedelta(seconds=settings.resend_seconds)
        inserted = await tx.fetch(_INSERT, (
            public_id, key, purpose.value, self._hash(public_id, code), api_client_id, now, expires_at, resend_after,
        ))
        if not inserted:
            # Another start for this phone won the race since the check above (PostgreSQL):
            # its code is the live one. The savepoint undoes the counters raised here.
            live = await tx.fetch(_LIVE_RESEND_AFTER, (key, purpose.value, owner))
            retry = _seconds_until(as_datetime(live[0][0]), now) if live else 1
            raise OtpLimited("resend", retry)
        minutes = max(1, math.ceil(settings.code_ttl_seconds / 60))
        # A replaced code that has not gone out yet (a retry pending) never goes: it no longer works.
        await tx.fetch(_DROP_WAITING_CODES, (phone,))
        await self._outbox.enqueue(
            tx, phone, self._sms_text(lang, purpose, code, minutes), SmsKind.OTP, now,
            urgent=True, ttl_seconds=settings.code_ttl_seconds, lang=lang,
        )
        return OtpStarted(public_id, expires_at, resend_after)

    # -- checking a code --------------------------------------------------------------------

    async def check(self, tx: Tx, phone: str, purpose: OtpPurpose, code: str, now: dt.datetime) -> OtpVerdict:
        """A code the citizen typed, against the newest code the gateway sent this phone for
        ``purpose`` (an older one stopped working when it was replaced)."""
        rows = await tx.fetch(_NEWEST_OWN, (self._phone_key(phone), OtpPurpose(purpose).value))
        if not rows:
            return OtpVerdict(NONE, 0)
        row_id, public_id, status, checks = rows[0]
        return await self._decide(tx, row_id, public_id, status, checks, code, now)

    async def check_by_id(
        self, tx: Tx, public_id: str, code: str, now: dt.datetime, api_client_id: int | None = None,
    ) -> OtpVerdict:
        """The API's check: ``api_client_id`` sees only its own challenges (None: any)."""
        row = await self._own_row(tx, public_id, api_client_id)
        if row is None:
            return OtpVerdict(NONE, 0)
        row_id, public_id, status, checks, _ = row
        return await self._decide(tx, row_id, public_id, status, checks, code, now)

    async def _decide(
        self, tx: Tx, row_id: int, public_id: str, status: str, checks: int, code: str, now: dt.datetime,
    ) -> OtpVerdict:
        if status == PENDING:
            candidate = self._hash(public_id, code)
            limit = self._settings.max_checks
            decided = await tx.fetch(_DECIDE, (now, candidate, limit, now, candidate, limit, now, row_id))
            if decided:
                status, checks = decided[0]
                return OtpVerdict(status, self._tries_left(checks) if status == PENDING else 0)
            # Decided by another check in the meantime: what it decided is final.
            status, checks = (await tx.fetch("SELECT status, checks FROM otp_challenge WHERE id = ?", (row_id,)))[0]
        # Nothing decided by this check: an approval is given once, to the check that won it.
        return OtpVerdict(NONE if status in (APPROVED, USED) else status, 0)

    # -- reading and ending -----------------------------------------------------------------

    async def pending(self, tx: Tx, phone: str, purpose: OtpPurpose, now: dt.datetime) -> OtpPending | None:
        """The live code the gateway sent this phone for ``purpose``, if one is still valid."""
        rows = await tx.fetch(_PENDING_OWN, (self._phone_key(phone), OtpPurpose(purpose).value, now))
        if not rows:
            return None
        public_id, expires_at, resend_after, checks = rows[0]
        return OtpPending(public_id, as_datetime(expires_at), as_datetime(resend_after), self._tries_left(checks))

    async def status(self, tx: Tx, public_id: str, now: dt.datetime, api_client_id: int | None = None) -> OtpVerdict:
        """Where a challenge stands (an expired one is marked so); ``none`` if unknown here.
        A used approval reads as ``approved``."""
        row = await self._own_row(tx, public_id, api_client_id)
        if row is None:
            return OtpVerdict(NONE, 0)
        row_id, _, status, checks, _ = row
        if status == PENDING and await tx.fetch(_EXPIRE_ONE, (now, row_id, now)):
            status = EXPIRED
        if status == USED:
            status = APPROVED
        return OtpVerdict(status, self._tries_left(checks) if status == PENDING else 0)

    async def cancel(self, tx: Tx, public_id: str, api_client_id: int | None = None, now: dt.datetime | None = None) -> bool:
        """Stop a pending code; False if it is unknown here or no longer pending."""
        row = await self._own_row(tx, public_id, api_client_id)
        if row is None:
            return False
        moment = now or dt.datetime.now(dt.timezone.utc)
        return bool(await tx.fetch(_CANCEL_ONE, (moment, row[0])))

    async def consume(self, tx: Tx, phone: str, purpose: OtpPurpose, now: dt.datetime) -> bool:
        """Act on an approval once: True, and the approval is spent (status ``used``), if the
        newest code sent to this phone for ``purpose`` was approved within the last
        ``code_ttl_seconds``. So one approval cannot carry a second registration, PIN reset or
        deletion, and an old approval is no licence either."""
        fresh_after = now - dt.timedelta(seconds=self._settings.code_ttl_seconds)
        return bool(await tx.fetch(_CONSUME, (self._phone_key(phone), OtpPurpose(purpose).value, fresh_after)))

    # -- helpers ----------------------------------------------------------------------------

    async def _own_row(self, tx: Tx, public_id: str, api_client_id: int | None) -> tuple | None:
        rows = await tx.fetch(_BY_PUBLIC_ID, (public_id,))
        if not rows:
            return None
        row = rows[0]
        if api_client_id is not None and row[4] != api_client_id:
            return None  # another client's challenge does not exist for this one
        return row

    def _hash(self, public_id: str, code: str) -> str:
        message = f"otp:{public_id}:{code}".encode("utf-8", "surrogateescape")
        return hmac.new(self._key.encode(), message, hashlib.sha256).hexdigest()

    def _tries_left(self, checks: int) -> int:
        return max(0, self._settings.max_checks - checks)
