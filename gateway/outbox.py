"""The outbox: every outbound SMS is a row, written in the transaction that caused it;
a dispatcher sends the rows through the configured transport.

Delivery guarantee: at least once. A message is claimed (status ``sending``, a lease)
before it is sent, and marked after it was sent, together with the others sent about the
same time (about once a round, and in the transaction of the next claim); a dispatcher
killed in between leaves claimed rows whose lease runs out, and they are sent again.
Nothing is lost; a crash can duplicate the messages it held (claimed, not yet marked),
never more than ``dispatch_batch`` per dead dispatcher. Several dispatchers (processes, on
PostgreSQL) never claim the same row: claims use ``FOR UPDATE SKIP LOCKED`` there, and
SQLite's single writer elsewhere.

One sender among workers: the server's dispatcher (``lease=True``) sends only while it
holds the database lease "dispatcher" (``models.leases``); the other workers' dispatchers
wait beside it and retry every third of ``sms.dispatcher_lease_seconds``, and one takes
over when the holder stops (released at once) or dies (when the lease runs out). A
dispatcher that lost its lease finishes the rows it holds, and claims no more: its rows
stay its own (the claims and marks above), only the provider rate is briefly shared by two.

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
from collections import deque
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
        if not self._lock.locked():  # nobody waiting: take the tokens without the lock
            now = self._monotonic()
            tokens = min(self._rate, self._tokens + (now - self._stamp) * self._rate)
            self._stamp = now
            if tokens >= need:
                self._tokens = tokens - need
                return
            self._tokens = tokens
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
_MARKS = (_MARK_SENT, _MARK_RETRY, _MARK_FINAL)
_SENT, _RETRY, _FINAL = range(3)
# A send that takes longer than this is abandoned by its transport (they time out at 10 s).
_SLOW_SEND_SECONDS = 15


def backoff_seconds(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter: attempt 1 waits up to ``base``, then doubles."""
    ceiling = min(cap, base * 2 ** max(attempt - 1, 0))
    return (rng or random).uniform(ceiling / 2, ceiling)


DISPATCHER_LEASE = "dispatcher"
_ESSENTIAL_KINDS = frozenset(kind.value for kind in SmsKind if kind.essential)


class Dispatcher:
    """Claims due messages and sends them. Run one per process (``run``), or call ``dispatch_once``.

    ``dispatch_concurrency`` senders share the rows claimed. ``run`` keeps them all busy
    from one claim to the next: when the claimed rows are all handed out, one sender makes
    the next claim, for as many rows as bring what this dispatcher holds (claimed, not yet
    marked) back to ``dispatch_batch``, while the others finish their sends. So it never
    holds more than ``dispatch_batch`` rows, which bounds what a crash sends twice, and
    there is no pause between batches. The marks of finished sends are written together:
    about once a round (``dispatch_concurrency`` accepted), and in the transaction of each
    claim (statements per message: a share of one claim and of one ``executemany``).
    ``dispatch_once`` is one claim, sent and marked.

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
        self._batch = settings.sms.dispatch_batch
        # No more sends in flight than rows held: the batch bounds both.
        self._concurrency = max(1, min(settings.sms.dispatch_concurrency, self._batch))
        lock = " FOR UPDATE SKIP LOCKED" if sql.dialect == "postgres" else ""
        self._claims = (_CLAIM_ABANDONED.format(lock=lock), _CLAIM_DUE.format(lock=lock))
        self._wakeup = wakeup or asyncio.Event()
        self._paused_until = 0.0
        # Marks decided, not yet written: parameters of _MARK_SENT, _MARK_RETRY, _MARK_FINAL.
        self._marks: tuple[list[tuple[Any, ...]], ...] = ([], [], [])
        self._held = 0  # rows claimed by this dispatcher whose mark is not written yet
        self._log = log
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
                    # Marks kept from a failed write are this dispatcher's to write, lease or
                    # not (they only touch rows it still holds): else its sends go again.
                    await self._write_pending_marks()
                    # Another process sends: wait until this one takes the lease (or stops).
                    await _first_of(stop.wait(), self.lease.held.wait(), timeout=self._sms.idle_poll_seconds
                                    if any(self._marks) else None)
                    continue
                try:
                    handled = await self._drain(stop)
                except Exception:  # noqa: BLE001 - a bad moment of the database must not end the loop
                    log.exception("dispatch_failed")
                    handled = 0
                if handled == 0:
                    self._wakeup.clear()
                    await _first_of(stop.wait(), self._wakeup.wait(), timeout=self._sms.idle_poll_seconds)
        finally:
            await self._write_pending_marks()
            # Released only once the rows in hand are sent: the next holder starts after them.
            keeper_stop.set()
            if keeper is not None:
                await keeper
        log.info("dispatcher_stopped", worker=self._worker)

    async def _write_pending_marks(self) -> None:
        if any(self._marks):
            try:
                await self._write_marks()
            except Exception:  # noqa: BLE001 - kept for the next try
                log.exception("dispatch_marks_failed")

    async def dispatch_once(self) -> int:
        """Claim one batch of due messages and send it; returns how many were claimed."""
        return await self._drain(None)

    def _may_claim_again(self, stop: asyncio.Event | None) -> bool:
        if stop is None:  # dispatch_once: one claim
            return False
        return not stop.is_set() and (self.lease is None or self.lease.held.is_set())

    async def _drain(self, stop: asyncio.Event | None) -> int:
        """Send what is due, claiming again each time the claimed rows are handed out, until
        a claim finds nothing, ``stop`` is set or the lease is lost (``stop`` None: one claim
        only). Every row claimed is sent (or released) and marked before it returns; returns
        how many rows were claimed."""
        # One bound logger for the drain's lines, not one built per line (as ``log.info`` does).
        self._log = log.bind()
        queue: deque[tuple[Any, ...]] = deque()
        claimed = claims = 0
        finished = False
        failure: BaseException | None = None
        refill = asyncio.Lock()

        async def sender() -> None:
            nonlocal claimed, claims, finished, failure
            while True:
                if not queue:
                    if finished:
                        return
                    async with refill:  # one claim at a time; the others wait for its rows
                        while not queue and not finished:
                            if claims and not self._may_claim_again(stop):
                                finished = True
                                break
                            try:
                                got = await self._claim(queue)
                            except Exception as exc:  # noqa: BLE001 - re-raised once the sends in flight are marked
                                failure, finished = exc, True
                                break
                            claims += 1
                            claimed += got
                            if got == 0:
                                finished = True
                    continue
                row = queue.popleft()
                try:
                    await self._send(row)
                except Exception:  # noqa: BLE001 - one bad row must not stop the others, nor stay unmarked
                    log.exception("dispatch_row_failed", sms_id=row[0])
                    self._marks[_RETRY].append((self._clock() + dt.timedelta(seconds=self._sms.retry_base_seconds), 1,
                                                "dispatcher error", row[0], self._worker))
                if len(self._marks[_SENT]) >= self._concurrency:
                    # About once a round: delivery reports matched by the provider's id must find it.
                    try:
                        await self._write_marks()
                    except Exception as exc:  # noqa: BLE001 - kept, written with the next claim or at the end
                        failure, finished = exc, True

        try:
            await asyncio.gather(*(sender() for _ in range(self._concurrency)))
        finally:
            try:
                await self._write_marks()  # whatever was sent is marked, even on the way out
            finally:
                # Every row claimed is marked now, or its mark waits unwritten: a row lost in
                # between (a claim that failed half-way) is released by its claim lease.
                self._held = sum(len(rows) for rows in self._marks)
        if failure is not None:
            raise failure
        return claimed

    async def _write_marks(self, claim_at: dt.datetime | None = None) -> list[tuple[Any, ...]]:
        """Write the marks decided so far, in one transaction; with ``claim_at``, claim in the
        same transaction as many rows as bring the held ones back to ``dispatch_batch``."""
        marks = self._marks
        written = sum(len(rows) for rows in marks)
        if not written and claim_at is None:
            return []
        self._marks = ([], [], [])
        claimed: list[tuple[Any, ...]] = []
        try:
            async with self._sql.transaction() as tx:
                for statement, rows in zip(_MARKS, marks):
                    if rows:
                        await tx.execute_many(statement, rows)
                if claim_at is not None:
                    lease = claim_at + dt.timedelta(seconds=self._sms.claim_lease_seconds)
                    room = self._batch - (self._held - written)
                    for claim in self._claims:
                        if room - len(claimed) > 0:
                            claimed += await tx.fetch(claim, (self._worker, lease, claim_at, room - len(claimed)))
        except BaseException:
            for kept, rows in zip(self._marks, marks):  # not written: kept for the next try
                kept[:0] = rows
            raise
        self._held += len(claimed) - written
        return claimed

    async def _claim(self, queue: deque[tuple[Any, ...]]) -> int:
        """One claim (with the marks so far); the rows to send go to ``queue``, those that
        must wait for quiet hours or have expired get their marks. Returns how many were claimed."""
        pause = self._paused_until - time.monotonic()
        if pause > 0:
            await asyncio.sleep(pause)
        now = self._clock()
        rows = await self._write_marks(claim_at=now)
        if not rows:
            return 0
        worker = self._worker
        release: dt.datetime | None = None
        retry, final = self._marks[_RETRY], self._marks[_FINAL]
        rows.sort()
        for row in rows:
            message_id, expires_at, kind, urgent = row[0], row[5], row[7], row[8]
            if not urgent and kind not in _ESSENTIAL_KINDS:
                # Quiet hours hold for retries and backlogs too, not only for new messages.
                if release is None:
                    release = self._quiet.release(now)
                if release > now:
                    retry.append((release, 0, "held for quiet hours", message_id, worker))
                    continue
            if _as_aware(expires_at) <= now:
                final.append((SmsStatus.EXPIRED.value, 0, "expired before sending", "", message_id, worker))
                log.info("sms_expired", sms_id=message_id)
                continue
            queue.append(row)
        return len(rows)

    async def _send(self, row: tuple[Any, ...]) -> None:
        message_id, to, text, encoding, parts, _expires, attempts, _kind, _urgent = row
        pause = self._paused_until - time.monotonic()
        if pause > 0:  # the provider said it is saturated: everyone slows down
            await asyncio.sleep(pause)
        message = OutgoingSms(message_id, to, text, Encoding(encoding), parts, self._sms.sender)
        await self._throttle.acquire(parts)
        started = time.perf_counter()
        try:
            result = await self._transport.send(message)
        except Exception as exc:  # noqa: BLE001 - a transport bug must not lose the message
            log.exception("transport_raised", sms_id=message_id)
            result = SendResult(SendOutcome.RETRY, error=f"transport error: {type(exc).__name__}")
        self._record(message, attempts, result, time.perf_counter() - started)

    def _record(self, message: OutgoingSms, attempts: int, result: SendResult, seconds: float) -> None:
        """The mark the result calls for, to write with the next ones; its metrics and log line."""
        now = self._clock()
        transport = self._transport.name
        outcome = result.outcome
        if outcome is SendOutcome.SENT:
            self._marks[_SENT].append((now, result.provider_id, transport, message.id, self._worker))
        elif outcome is SendOutcome.THROTTLED:
            # The provider is saturated: slow everyone down a little, spend no attempt.
            self._paused_until = time.monotonic() + 1.0
            self._marks[_RETRY].append((now + dt.timedelta(seconds=1), 0, result.error[:300], message.id, self._worker))
        elif outcome is SendOutcome.RETRY and attempts + 1 < self._sms.max_attempts:
            delay = backoff_seconds(attempts + 1, self._sms.retry_base_seconds, self._sms.retry_max_seconds)
            self._marks[_RETRY].append(
                (now + dt.timedelta(seconds=delay), 1, result.error[:300], message.id, self._worker))
        else:
            error = result.error if outcome is SendOutcome.FAILED else f"gave up after {attempts + 1} attempts: {result.error}"
            self._marks[_FINAL].append((SmsStatus.FAILED.value, 1, error[:300], transport, message.id, self._worker))
        if self._metrics is not None:
            self._metrics.sms_sent.labels(transport, outcome.value).inc()
            if outcome is SendOutcome.SENT:
                self._metrics.sms_parts.labels(transport).inc(message.parts)
        self._log.info(
            "sms_send",
            sms_id=message.id,
            to=mask(message.to),
            transport=transport,
            outcome=outcome.value,
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
