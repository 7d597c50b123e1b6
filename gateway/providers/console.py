"""The console transport: the embedded default. Logs each SMS (number masked) and keeps
what it delivered per phone, so the phone simulator can show a citizen's inbox."""

from __future__ import annotations

import collections
import datetime as dt
import itertools
from dataclasses import dataclass

from gateway.logs import get_logger
from gateway.phones import mask
from gateway.sms import OutgoingSms, SendOutcome, SendResult, SmsTransport

log = get_logger("gateway.sms.console")


@dataclass(frozen=True, slots=True)
class ConsoleMessage:
    sent_at: dt.datetime
    text: str
    encoding: str
    parts: int


class ConsoleTransport(SmsTransport):
    name = "console"

    def __init__(self, keep_per_phone: int = 50) -> None:
        self._inboxes: dict[str, collections.deque[ConsoleMessage]] = collections.defaultdict(
            lambda: collections.deque(maxlen=keep_per_phone)
        )
        self._ids = itertools.count(1)

    async def send(self, message: OutgoingSms) -> SendResult:
        self._inboxes[message.to].append(
            ConsoleMessage(dt.datetime.now(dt.timezone.utc), message.text, message.encoding.value, message.parts)
        )
        # No text in the log: it may be an OTP. The phone simulator shows it from the inbox.
        log.info("sms_console", to=mask(message.to), parts=message.parts, encoding=message.encoding.value)
        return SendResult(SendOutcome.SENT, provider_id=f"console-{next(self._ids)}")

    def inbox(self, phone: str) -> list[ConsoleMessage] | None:
        return list(self._inboxes.get(phone, ()))
