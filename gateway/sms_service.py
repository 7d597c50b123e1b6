"""Incoming SMS and delivery reports, whichever transport they came through.

An incoming text is answered by the keyword router, and its record, any opt-out/opt-in
and the reply are written in one transaction; the reply goes out through the outbox like
every SMS. Duplicates are settled by the database inside that transaction, so concurrent
copies of one text (a provider delivering it several times at once, to several workers)
get exactly one answer: the provider's id is a unique key, and the same text from the same
phone claims its fingerprint row with one atomic upsert that only succeeds outside
``inbound_duplicate_seconds``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import time
import zoneinfo
from typing import Callable

from gateway.logs import get_logger
from gateway.outbox import record_report, utcnow
from gateway.phones import mask, phone_key
from gateway.settings import Settings
from gateway.sms import DeliveryReport, IncomingSms, SmsSink
from menus import sms as keywords
from menus.engine import HopContext
from menus.views import Directory
from models.effects import SendSms
from models.entities import SmsKind
from models.fastsql import SqlRunner
from models.inbound import claim_fingerprint, record_inbound
from models.unit_of_work import Services, UnitOfWork

log = get_logger("gateway.sms")


class _Duplicate(Exception):
    """Raised inside the transaction to roll it back: another copy already got its answer."""


def text_digest(text: str, key: str) -> str:
    """What makes two texts "the same": case and runs of white space do not count. Keyed:
    a text may hold an OTP or an ID number, which a plain hash would let anyone recover."""
    return hmac.new(key.encode(), " ".join(text.split()).lower().encode("utf-8", "surrogatepass"),
                    hashlib.sha256).hexdigest()


class SmsService:
    def __init__(
        self, settings: Settings, directory: Directory, sql: SqlRunner, services: Services,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self._settings = settings
        self._directory = directory
        self._sql = sql
        self._services = services
        self._clock = clock
        self._tz = zoneinfo.ZoneInfo(settings.locale.timezone)
        self._window = dt.timedelta(seconds=settings.sms.inbound_duplicate_seconds)

    async def incoming(self, message: IncomingSms) -> bool:
        """Answer one text; False if it was a duplicate and nothing was done."""
        started = time.perf_counter()
        now = self._clock()
        key = phone_key(message.sender, self._settings.security.secret_key)
        digest = text_digest(message.text, self._settings.security.secret_key)
        written = self._services.outbox.written
        try:
            async with self._sql.transaction() as tx:
                if not await claim_fingerprint(tx, key, digest, now, self._window):
                    raise _Duplicate  # the same text from this phone within the window
                agency = await self._directory.agency_for_sms_number(message.receiver)
                ctx = HopContext(directory=self._directory, phone=message.sender, agency=agency, now=now,
                                 tz=self._tz, uow=UnitOfWork(tx, self._services, now))
                answer = await keywords.answer(ctx, message.text)
                if not await record_inbound(tx, message.transport, message.provider_id, key, digest,
                                            answer.command.value, now):
                    raise _Duplicate  # the provider's id was seen before
                reply = SendSms(message.sender, answer.reply, SmsKind.REPLY, answer.lang)
                await self._services.apply(tx, (*answer.effects, reply), now)
        except _Duplicate:
            # The transaction rolled back: nothing of this copy was written.
            self._log(message, "duplicate", started)
            return False
        self._services.wake_if_written(written)
        self._log(message, answer.command.value, started)
        return True

    async def report(self, report: DeliveryReport, transport: str) -> bool:
        return await record_report(report, transport, self._sql, self._clock)

    def sink_for(self, transport: str) -> SmsSink:
        """What a connected transport (SMPP) hands its incoming messages and reports to."""
        service = self

        class _Sink:
            async def incoming(self, message: IncomingSms) -> None:
                await service.incoming(message)

            async def report(self, report: DeliveryReport) -> None:
                await service.report(report, transport)

        return _Sink()

    def _log(self, message: IncomingSms, outcome: str, started: float) -> None:
        log.info(
            "sms_in",
            transport=message.transport,
            phone=mask(message.sender),
            outcome=outcome,
            latency_ms=round((time.perf_counter() - started) * 1000, 2),
        )
