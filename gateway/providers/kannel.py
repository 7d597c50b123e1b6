"""Kannel: send through smsbox's sendsms, receive from an smsbox ``sms-service``, and
delivery reports through ``dlr-url``.

Wire facts (checked against Kannel 1.4.5 from Debian, see tests/peers/README.md):
sendsms answers ``202 0: Accepted for delivery`` with no message id, so our own id rides in
the ``dlr-url``; ``coding=2`` needs ``charset=UTF-8``; the ``dlr-url`` ``%d`` is the report
type (1 delivered, 2 failed, 4 queued, 8 at SMSC, 16 SMSC failure) and ``%A`` the SMSC's
answer. The inbound ``get-url`` we ask operators to configure:
``/sms/kannel/inbound?from=%p&to=%P&text=%a&id=%I``. Replies go out through sendsms
(configure the service with ``max-messages = 0``), so they are in the outbox like every SMS.
"""

from __future__ import annotations

from typing import Mapping
from urllib.parse import quote

import aiohttp

from gateway.messages import BadRequest
from gateway.phones import normalize_msisdn
from gateway.settings import KannelSettings
from gateway.sms import (
    DeliveryReport,
    DeliveryState,
    IncomingSms,
    OutgoingSms,
    SendOutcome,
    SendResult,
    SmsTransport,
)
from gateway.sms_text import Encoding

NAME = "kannel"

# dlr-url %d: the report type bit.
DLR_TYPES = {
    "1": DeliveryState.DELIVERED,
    "2": DeliveryState.FAILED,
    "4": DeliveryState.QUEUED,
    "8": DeliveryState.SENT,
    "16": DeliveryState.FAILED,
}
_CODING = {Encoding.GSM7: "0", Encoding.UCS2: "2"}


class KannelTransport(SmsTransport):
    name = NAME

    def __init__(self, settings: KannelSettings, public_base_url: str) -> None:
        self._settings = settings
        self._dlr_base = public_base_url.rstrip("/") + "/sms/kannel/dlr"
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self._settings.timeout_seconds)
        self._session = aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=50))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def sendsms_params(self, message: OutgoingSms) -> dict[str, str]:
        # smsbox expands %d and %A in the dlr-url; our id is a plain number, safe in it.
        dlr_url = f"{self._dlr_base}?id={message.id}&type=%d&answer=%A"
        params = {
            "username": self._settings.username,
            "password": self._settings.password,
            "to": message.to,
            "text": message.text,
            "coding": _CODING[message.encoding],
            "charset": "UTF-8",
            "dlr-mask": str(self._settings.dlr_mask),
            "dlr-url": dlr_url,
        }
        if message.sender:
            params["from"] = message.sender
        return params

    async def send(self, message: OutgoingSms) -> SendResult:
        assert self._session is not None, "start() first"
        query = "&".join(f"{k}={quote(v, safe='')}" for k, v in self.sendsms_params(message).items())
        try:
            async with self._session.get(f"{self._settings.sendsms_url}?{query}") as response:
                body = (await response.text()).strip()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            return SendResult(SendOutcome.RETRY, error=f"kannel unreachable: {type(exc).__name__}")
        if status in (200, 202):
            return SendResult(SendOutcome.SENT)
        if status == 503:  # queue full / bearerbox down: smsbox says so with 503
            return SendResult(SendOutcome.THROTTLED if "queue" in body.lower() else SendOutcome.RETRY, error=body[:200])
        if status in (401, 403) or "sender missing" in body.lower():
            # Wrong credentials or no sender configured: an operator must fix the settings;
            # the message is kept (and retried) rather than lost.
            return SendResult(SendOutcome.RETRY, error=f"kannel refused our settings: {body[:150]}")
        if 400 <= status < 500:
            return SendResult(SendOutcome.FAILED, error=f"kannel rejected the message: {status} {body[:150]}")
        return SendResult(SendOutcome.RETRY, error=f"kannel answered {status}: {body[:150]}")


# Answer inbound webhooks with an empty body? (smsbox sends a non-empty answer body to the phone as a reply)
INBOUND_ACK_EMPTY = True

def parse_inbound(params: Mapping[str, str]) -> IncomingSms:
    sender = normalize_msisdn(params.get("from"))
    if sender is None:
        raise BadRequest("from is not a valid Vietnamese mobile number")
    text = params.get("text")
    if text is None:
        raise BadRequest("text is required")
    return IncomingSms(
        transport=NAME,
        sender=sender,
        receiver=(params.get("to") or "").strip(),
        text=text,
        provider_id=(params.get("id") or None),
    )


def parse_dlr(params: Mapping[str, str]) -> DeliveryReport:
    raw_id = params.get("id", "")
    if not raw_id.isdigit():
        raise BadRequest("id must be the gateway's message id")
    state = DLR_TYPES.get(params.get("type", ""))
    if state is None:
        raise BadRequest(f"unknown delivery report type {params.get('type')!r}")
    return DeliveryReport(state=state, message_id=int(raw_id), reason=(params.get("answer") or "")[:200])
