"""The outbox: every outbound SMS is a row, written in the transaction that caused it;
a dispatcher sends the rows through the configured transport.

Delivery guarantee: at least once. A message is claimed (status ``sending``, a lease)
before it is sent, and the accepted messages of a batch are marked together after the
batch; a dispatcher killed in between leaves claimed rows whose lease runs out, and they
are sent again. Nothing is lost; a crash can duplicate the messages of the batch it was
sending (at most ``dispatch_batch`` per dead dispatcher). Several dispatchers (processes, on
PostgreSQL) never claim the same row: claims use ``FOR UPDATE SKIP LOCKED`` there, and
SQLite's single writer elsewhere.

One sender among workers: the server's dispatcher (``lease=True``) sends only while it
holds the database lease "dispatcher" (``models.leases``); the other workers' dispatchers
wait beside it and retry every third of ``sms.dispatcher_lease_seconds``, and one takes
over when the holder stops (released at once) or dies (when the lease runs out). A
dispatcher that lost its lease mid-batch finishes that batch: its rows stay its own (the
claims and marks above), only the provider rate is briefly shared by two.

Retries: transient failures back off exponentially (with jitter) up to ``max_attempts``;
permanent failures stop at once; a message older than its time to live is expired rather
than sent late (an OTP after five minutes is noise). Throughput is throttled to the
provider's parts per second. Non-urgent messages wait for the end of quiet hours, and
non-essential ones are not written at all for a phone that opted out.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import time
import zoneinfo
from typing import Any, Callable


from gateway.logs import get_logger
from gateway.metrics import Metrics
from gateway.phones import mask, phone_key
from gateway.settings import Settings, parse_clock
from gateway.sms import DeliveryReport, DeliveryState, OutgoingSms, SendOutcome, SendResult, SmsTransport
from models.sms_text import Encoding, Policy
from menus.texts import LANGUAGES, T, text as catalogue
from models.entities import SmsKind, SmsStatus
from models.fastsql import SqlRunner, Tx, open_runner
from models.leases import LeaseKeeper, Leases, process_holder_id
from models.outbox import OutboxWriter, QueuedSms, QuietHours

log = get_logger("gateway.outbox")

Clock = Callable[[], dt.datetime]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def quiet_hours(settings: Settings) -> QuietHours:
    return QuietHours(
        zoneinfo.ZoneInfo(settings.locale.timezone),
        parse_clock(settings.sms.quiet_start),
        parse_clock(settings.sms.quiet_end),
    )


def outbox_writer(settings: Settings) -> OutboxWriter:
    """The domain's outbox writer, configured from settings and the text catalogue."""
    secret = settings.security.secret_key
    return OutboxWriter(
        policy=Policy(settings.sms.encoding_policy),
        max_parts=settings.sms.max_parts,
        ttl_seconds=settings.sms.message_ttl_seconds,
        quiet=quiet_hours(settings),
        phone_key=lambda phone: phone_key(phone, secret),
        cut_markers={lang: catalogue(lang, T.SMS_CUT) for lang in LANGUAGES},
        default_lang=settings.ussd.default_language,
    )


class Outbox:
    """Writes messages to send: inside a unit of work (``tx``), or in one of its own.

    ``sql`` is the app's runner; without one (a script, a test) one of its own is opened on
    first use (on SQLite a connection of its own, which takes the write lock up front).
    """

    def __init__(self, settings: Settings, clock: Clock = utcnow, sql: SqlRunner | None = None) -> None:
        self._clock = clock
        self._sql = sql
        self._database_url = settings.database.url
        self.writer = outbox_writer(settings)
        self.wakeup = asyncio.Event()

    def after_quiet_hours(self, moment: dt.datetime) -> dt.datetime:
        return self.writer.after_quiet_hours(moment)

    async def enqueue(
        self,
        to: str,
        text: str,
        kind: SmsKind,
        *,
        urgent: bool = False,
        ttl_seconds: int | None = None,
        lang: str | None = None,
        tx: Tx | None = None,
    ) -> QueuedSms | None:
        """Write one message; None if the phone opted out of this kind of message."""
        now = self._clock()
        if tx is None:
            if self._sql is None:
                self._sql = open_runner(self._database_url)
            async with self._sql.transaction() as own:
                queued = await self.writer.enqueue(own, to, text, kind, now, urgent=urgent, ttl_seconds=ttl_seconds, lang=lang)
        else:
            queued = await self.writer.enqueue(tx, to, text, kind, now, urgent=urgent, ttl_seconds=ttl_seconds, lang=lang)
        if queued is None:
            log.info("sms_suppressed_opt_out", to=mask(to), kind=kind.value)
        else:
            self.wakeup.set()
        return queued


class PartsThrottle:
    """A token bucket in SMS parts: at most ``rate`` parts a second, bursts of one second."""

    def __init__(self, rate: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._tokens = rate
        self._monotonic = monotonic
        self._stamp = monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self, parts: int) -> None:
        need = min(parts, self._rate)
        async with self._lock:
            while True:
                now = self._monotonic()
                self._tokens = min(self._rate, self._tokens + (now - self._stamp) * self._rate)
                self._stamp = now
                if self._tokens >= need:
                    self._tokens -= need
                    return
                await asyncio.sleep((need - self._tokens) / self._rate)


# Two claims, each in index order (status, next_attempt_at[, id]) with no sort of the whole
# queue: first claims whose dispatcher died (lease over), then what is due.
_RETURNING = " RETURNING id, to_phone, text, encoding, parts, expires_at, attempts, kind, urgent"
_CLAIM_ABANDONED = (
    "UPDATE outbound_sms SET claimed_by=?, claimed_until=? WHERE id IN ("
    " SELECT id FROM outbound_sms WHERE status='sending' AND claimed_until<? LIMIT ?{lock})" + _RETURNING
)
_CLAIM_DUE = (
    "UPDATE outbound_sms SET status='sending', claimed_by=?, claimed_until=? WHERE id IN ("
    " SELECT id FROM outbound_sms WHERE status='queued' AND next_attempt_at<=?"
    " ORDER BY next_attempt_at, id LIMIT ?{lock})" + _RETURNING
)
# Marks only touch rows this dispatcher still holds: a dispatcher that outlived its lease
# must not undo what the one that took over did.
_MARK_SENT = (
    "UPDATE outbound_sms SET status=CASE WHEN status='sending' THEN 'sent' ELSE status END,"
    " sent_at=?, provider_id=?, transport=?, attempts=attempts+1, claimed_by=NULL, claimed_until=NULL,"
    " text=CASE WHEN kind='otp' THEN '' ELSE text END"  # an OTP's code never rests in the outbox once sent
    " WHERE id=? AND claimed_by=?"
)
_MARK_RETRY = (
    "UPDATE outbound_sms SET status='queued', next_attempt_at=?, attempts=attempts+?, last_error=?,"
    " claimed_by=NULL, claimed_until=NULL WHERE id=? AND status='sending' AND claimed_by=?"
)
_MARK_FINAL = (
    "UPDATE outbound_sms SET status=?, attempts=attempts+?, last_error=?, transport=?,"
    " claimed_by=NULL, claimed_until=NULL, text=CASE WHEN kind='otp' THEN '' ELSE text END"
    " WHERE id=? AND status='sending' AND claimed_by=?"
)
# A send that takes longer than this is abandoned by its transport (they time out at 10 s).
_SLOW_SEND_SECONDS = 15


def backoff_seconds(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter: attempt 1 waits up to ``base``, then doubles."""
    ceiling = min(cap, base * 2 ** max(attempt - 1, 0))
    return (rng or random).uniform(ceiling / 2, ceiling)


DISPATCHER_LEASE = "dispatcher"


class Dispatcher:
    """Claims due messages and sends them. Run one per process (``run``), or call ``dispatch_once``.

    With ``lease`` (the server's), ``run`` sends only while this process holds the database
    lease "dispatcher": one dispatcher among several workers at a time.
    """

    def __init__(
        self,
        settings: Settings,
        transport: SmsTransport,
        sql: SqlRunner,
        clock: Clock = utcnow,
        worker_id: str | None = None,
        wakeup: asyncio.Event | None = None,
        metrics: Metrics | None = None,
        lease: bool = False,
    ) -> None:
        self._metrics = metrics
        self._sms = settings.sms
        self._transport = transport
        self._sql = sql
        self._clock = clock
        self._worker = worker_id or process_holder_id()  # host:pid:random, as before
        self.lease: LeaseKeeper | None = None
        if lease:
            self.lease = LeaseKeeper(Leases(sql), DISPATCHER_LEASE, self._worker[:80],
                                     settings.sms.dispatcher_lease_seconds, clock)
        self._throttle = PartsThrottle(settings.sms.parts_per_second)
        self._quiet = quiet_hours(settings)
        self._slots = asyncio.Semaphore(settings.sms.dispatch_concurrency)
        lock = " FOR UPDATE SKIP LOCKED" if sql.dialect == "postgres" else ""
        self._claims = (_CLAIM_ABANDONED.format(lock=lock), _CLAIM_DUE.format(lock=lock))
        self._wakeup = wakeup or asyncio.Event()
        self._paused_until = 0.0
        self._sent: list[tuple[Any, ...]] = []
        rounds = -(-settings.sms.dispatch_batch // settings.sms.dispatch_concurrency)
        if settings.sms.claim_lease_seconds < rounds * _SLOW_SEND_SECONDS:
            log.warning(
                "claim_lease_short",
                hint=f"a batch of slow sends can outlast the {settings.sms.claim_lease_seconds} s lease "
                f"({rounds} rounds of up to {_SLOW_SEND_SECONDS} s) and another dispatcher would send it again",
            )

    async def run(self, stop: asyncio.Event) -> None:
        log.info("dispatcher_started", worker=self._worker, transport=self._transport.name,
                 lease=self.lease.name if self.lease else None)
        keeper, keeper_stop = None, asyncio.Event()
        if self.lease is not None:
            keeper = asyncio.create_task(self.lease.keep(keeper_stop), name="dispatcher-lease")
        try:
            while not stop.is_set():
                if self.lease is not None and not self.lease.held.is_set():
                    # Another process sends: wait until this one takes the lease (or stops).
                    await _first_of(stop.wait(), self.lease.held.wait())
                    continue
                try:
                    handled = await self.dispatch_once()
                except Exception:  # noqa: BLE001 - a bad moment of the database must not end the loop
                    log.exception("dispatch_failed")
                    handled = 0
                if handled == 0:
                    self._wakeup.clear()
                    await _first_of(stop.wait(), self._wakeup.wait(), timeout=self._sms.idle_poll_seconds)
        finally:
            # Released only once the batch in hand is done: the next holder starts after it.
            keeper_stop.set()
            if keeper is not None:
                await keeper
        log.info("dispatcher_stopped", worker=self._worker)

    async def dispatch_once(self) -> int:
        """Claim one batch of due messages and send it; returns how many were claimed."""
        pause = self._paused_until - time.monotonic()
        if pause > 0:
            await asyncio.sleep(pause)
        now = self._clock()
        lease = now + dt.timedelta(seconds=self._sms.claim_lease_seconds)
        rows: list[tuple[Any, ...]] = []
        for claim in self._claims:
            room = self._sms.dispatch_batch - len(rows)
            if room > 0:
                rows += await self._sql.fetch(claim, (self._worker, lease, now, room))
        if not rows:
            return 0
        await asyncio.gather(*(self._send_one(row, now) for row in sorted(rows)))
        await self._flush_sent()
        return len(rows)

    async def _flush_sent(self) -> None:
        """Mark accepted messages together: one commit for many, not one each."""
        sent, self._sent = self._sent, []
        if sent:
            await self._sql.execute_many(_MARK_SENT, sent)

    async def _send_one(self, row: tuple[Any, ...], claimed_at: dt.datetime) -> None:
        message_id, to, text, encoding, parts, expires_at, attempts, kind, urgent = row
        if not urgent and not SmsKind(kind).essential:
            # Quiet hours hold for retries and backlogs too, not only for new messages.
            release = self._quiet.release(claimed_at)
            if release > claimed_at:
                await self._sql.fetch(_MARK_RETRY, (release, 0, "held for quiet hours", message_id, self._worker))
                return
        if _as_aware(expires_at) <= claimed_at:
            await self._sql.fetch(
                _MARK_FINAL, (SmsStatus.EXPIRED.value, 0, "expired before sending", "", message_id, self._worker)
            )
            log.info("sms_expired", sms_id=message_id)
            return
        message = OutgoingSms(message_id, to, text, Encoding(encoding), parts, self._sms.sender)
        async with self._slots:
            await self._throttle.acquire(parts)
            started = time.perf_counter()
            try:
                result = await self._transport.send(message)
            except Exception as exc:  # noqa: BLE001 - a transport bug must not lose the message
                log.exception("transport_raised", sms_id=message_id)
                result = SendResult(SendOutcome.RETRY, error=f"transport error: {type(exc).__name__}")
        await self._record(message, attempts, result, time.perf_counter() - started)

    async def _record(self, message: OutgoingSms, attempts: int, result: SendResult, seconds: float) -> None:
        now = self._clock()
        transport = self._transport.name
        if result.outcome is SendOutcome.SENT:
            self._sent.append((now, result.provider_id, transport, message.id, self._worker))
            if len(self._sent) >= self._sms.dispatch_concurrency:
                # About once a round: delivery reports matched by the provider's id must find it.
                await self._flush_sent()
        elif result.outcome is SendOutcome.THROTTLED:
            # The provider is saturated: slow everyone down a little, spend no attempt.
            self._paused_until = time.monotonic() + 1.0
            await self._sql.fetch(
                _MARK_RETRY, (now + dt.timedelta(seconds=1), 0, result.error[:300], message.id, self._worker)
            )
        elif result.outcome is SendOutcome.RETRY and attempts + 1 < self._sms.max_attempts:
            delay = backoff_seconds(attempts + 1, self._sms.retry_base_seconds, self._sms.retry_max_seconds)
            await self._sql.fetch(
                _MARK_RETRY, (now + dt.timedelta(seconds=delay), 1, result.error[:300], message.id, self._worker)
            )
        else:
            error = result.error if result.outcome is SendOutcome.FAILED else f"gave up after {attempts + 1} attempts: {result.error}"
            await self._sql.fetch(
                _MARK_FINAL, (SmsStatus.FAILED.value, 1, error[:300], transport, message.id, self._worker)
            )
        if self._metrics is not None:
            self._metrics.sms_sent.labels(transport, result.outcome.value).inc()
            if result.outcome is SendOutcome.SENT:
                self._metrics.sms_parts.labels(transport).inc(message.parts)
        log.info(
            "sms_send",
            sms_id=message.id,
            to=mask(message.to),
            transport=transport,
            outcome=result.outcome.value,
            parts=message.parts,
            encoding=message.encoding.value,
            attempt=attempts + 1,
            latency_ms=round(seconds * 1000, 2),
        )


async def _first_of(*waits: Any, timeout: float | None = None) -> None:
    """Until the first of ``waits`` (coroutines) is done, or ``timeout``; the rest are cancelled."""
    waiters = [asyncio.ensure_future(wait) for wait in waits]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


def _as_aware(value: Any) -> dt.datetime:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


_REPORT_STATUS = {
    DeliveryState.DELIVERED: SmsStatus.DELIVERED,
    DeliveryState.FAILED: SmsStatus.FAILED,
}


_REPORT_FIND_BY_ID = "SELECT id, status FROM outbound_sms WHERE id=?"
_REPORT_FIND_BY_PROVIDER = "SELECT id, status FROM outbound_sms WHERE transport=? AND provider_id=? LIMIT 1"
# Guarded by the status it was read in, so a report racing another (or the dispatcher's
# mark) never moves a message backwards.
_REPORT_DELIVERED = "UPDATE outbound_sms SET status='delivered', delivered_at=? WHERE id=? AND status<>'delivered'"
_REPORT_FAILED = (
    "UPDATE outbound_sms SET status='failed', last_error=? WHERE id=? AND status IN ('sending', 'sent')"
)


async def record_report(report: DeliveryReport, transport: str, sql: SqlRunner, clock: Clock = utcnow) -> bool:
    """Apply a delivery report to its message; False if no message matches."""
    if report.message_id is not None:
        rows = await sql.fetch(_REPORT_FIND_BY_ID, (report.message_id,))
    else:
        rows = []
        # A fast report can overtake the dispatcher marking the message with the provider's
        # id (marks are written about once a round): give it a moment before giving up.
        for delay in (0, 0.1, 0.2, 0.4, 0.8):
            await asyncio.sleep(delay)
            rows = await sql.fetch(_REPORT_FIND_BY_PROVIDER, (transport, report.provider_id))
            if rows:
                break
    if not rows:
        log.warning("dlr_unmatched", transport=transport, provider_id=report.provider_id, sms_id=report.message_id)
        return False
    message_id = rows[0][0]
    final = _REPORT_STATUS.get(report.state)
    applied: list = []
    if final is SmsStatus.DELIVERED:
        applied = await sql.fetch(_REPORT_DELIVERED + " RETURNING id", (clock(), message_id))
    elif final is SmsStatus.FAILED:
        applied = await sql.fetch(_REPORT_FAILED + " RETURNING id", ((report.reason or "delivery failed")[:300], message_id))
    log.info("sms_report", sms_id=message_id, transport=transport, state=report.state.value, applied=bool(applied))
    return True
