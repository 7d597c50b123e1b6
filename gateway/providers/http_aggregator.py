"""SMS over HTTP, for an aggregator in the Africa's Talking style (``sms.transport = "http"``).

Wire facts come from Africa's Talking's SMS docs (developers.africastalking.com, "Send SMS"
and "SMS Notifications"), unless marked as seen in practice:

* Send: ``POST <url>`` as ``application/x-www-form-urlencoded`` with ``username, to, message``
  and optionally ``from``; headers ``apiKey`` and ``Accept: application/json``. The reply is
  ``{"SMSMessageData": {"Message", "Recipients": [{"statusCode", "number", "status", "cost",
  "messageId"}]}}``. ``statusCode`` is the verdict. On success ``status`` says ``"Success"``.
  On failure it repeats the code's name, and ``messageId`` is ``"None"``. DoNotDisturbRejection
  comes back as HTTP 409 that still carries this JSON.
* Seen in practice: success is HTTP 201. A refused key gets HTTP 401 with the plain text
  ``The supplied authentication is invalid``. A request that queues nothing gets
  ``{"Message": "InvalidSenderId", "Recipients": []}``, so the verdict is read from ``Message``.
* Callbacks are form posts. Delivery reports carry ``id`` (= ``messageId``), ``status``,
  ``phoneNumber``, ``networkCode``, ``failureReason`` (only for Rejected/Failed) and
  ``retryCount`` (premium only). Incoming messages carry ``from, to, text, id, date, linkId,
  networkCode``. Neither carries our own message id.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Mapping
from urllib.parse import quote_plus

import aiohttp

from gateway.messages import BadRequest
from gateway.phones import normalize_msisdn
from gateway.settings import HttpSmsSettings
from gateway.sms import (
    DeliveryReport,
    DeliveryState,
    IncomingSms,
    OutgoingSms,
    SendOutcome,
    SendResult,
    SmsTransport,
)

NAME = "http"

# Recipients[].statusCode -> (the name the docs give it, what we do with the message).
SEND_STATUS: dict[int, tuple[str, SendOutcome]] = {
    100: ("Processed", SendOutcome.SENT),
    101: ("Sent", SendOutcome.SENT),
    102: ("Queued", SendOutcome.SENT),
    # Flagged by the aggregator's fraud review: the same text would be held again.
    401: ("RiskHold", SendOutcome.FAILED),
    # RETRY rather than FAILED: the sender id is account configuration (not registered or
    # not approved yet), so every message fails until the operator fixes it, as with a bad key.
    402: ("InvalidSenderId", SendOutcome.RETRY),
    # The number itself is wrong or cannot take SMS: resending cannot help.
    403: ("InvalidPhoneNumber", SendOutcome.FAILED),
    404: ("UnsupportedNumberType", SendOutcome.FAILED),
    # The account ran dry. Once it is topped up the same request goes through, so keep it.
    405: ("InsufficientBalance", SendOutcome.RETRY),
    # The subscriber opted out of this sender: must not be retried.
    406: ("UserInBlacklist", SendOutcome.FAILED),
    # No route from this account to the destination network. Retrying minutes later
    # does not create one.
    407: ("CouldNotRoute", SendOutcome.FAILED),
    # Regulator's do-not-disturb / promotional time window. Our retry backoff (minutes) never
    # outlasts the window, and quiet hours already hold non-urgent SMS back.
    409: ("DoNotDisturbRejection", SendOutcome.FAILED),
    # Aggregator-side faults: transient.
    500: ("InternalServerError", SendOutcome.RETRY),
    501: ("GatewayError", SendOutcome.RETRY),
    # The operator's gateway refused this message: a verdict on the message, not an outage.
    502: ("RejectedByGateway", SendOutcome.FAILED),
}
_OUTCOME_BY_NAME = {name: outcome for name, outcome in SEND_STATUS.values()}

# Delivery-report ``status`` -> our state.
DLR_STATES: dict[str, DeliveryState] = {
    "Sent": DeliveryState.SENT,  # sent by the aggregator's network to the operator
    "Submitted": DeliveryState.SENT,  # submitted to the operator (MSP)
    "Buffered": DeliveryState.QUEUED,  # queued by the operator, e.g. the phone is off
    "Success": DeliveryState.DELIVERED,  # on the handset (final)
    "Rejected": DeliveryState.FAILED,  # rejected by the operator (final)
    "Failed": DeliveryState.FAILED,  # could not be delivered (final)
    "AbsentSubscriber": DeliveryState.FAILED,  # SIM unreachable: phone off or no coverage
    "Expired": DeliveryState.FAILED,  # discarded by the operator's firewall (content/sender)
}

_FORM = "application/x-www-form-urlencoded"

BAD_KEY_ERROR = (
    "HTTP {status}: the aggregator refused the API key; set GATEWAY_HTTP_SMS_API_KEY "
    "(and http_sms.username) correctly. The message is kept and will be retried"
)


def _session_for(concurrency: int) -> Callable[[], aiohttp.ClientSession]:
    def make() -> aiohttp.ClientSession:
        # As many kept-alive connections as the dispatcher has sends in flight.
        connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency, keepalive_timeout=30)
        return aiohttp.ClientSession(connector=connector)

    return make


class HttpAggregatorTransport(SmsTransport):
    name = NAME

    def __init__(
        self,
        settings: HttpSmsSettings,
        session_factory: Callable[[], aiohttp.ClientSession] | None = None,
        concurrency: int = 50,
    ) -> None:
        self._settings = settings
        self._session_factory = session_factory or _session_for(concurrency)
        self._timeout = aiohttp.ClientTimeout(total=settings.timeout_seconds)
        self._session: aiohttp.ClientSession | None = None
        # The form is encoded here, the constant fields once: the same bytes as aiohttp's
        # FormData (``urlencode``, UTF-8), without building a FormData (and its multipart
        # writer) for every message.
        self._headers = {"apiKey": settings.api_key, "Accept": "application/json", "Content-Type": _FORM}
        self._form_start = "username=" + quote_plus(settings.username) + "&to="
        self._from_fields: dict[str, str] = {}

    async def start(self) -> None:
        if self._session is None:
            self._session = self._session_factory()

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def send(self, message: OutgoingSms) -> SendResult:
        if self._session is None:
            raise RuntimeError("HttpAggregatorTransport.send() before start()")
        to = message.to if message.to.startswith("+") else "+" + message.to
        form = self._form_start + quote_plus(to) + "&message=" + quote_plus(message.text)
        if message.sender:
            sender = self._from_fields.get(message.sender)
            if sender is None:
                sender = self._from_fields.setdefault(message.sender, "&from=" + quote_plus(message.sender))
            form += sender
        try:
            async with self._session.post(
                self._settings.url, data=form.encode(), headers=self._headers, timeout=self._timeout
            ) as response:
                body = await response.text(errors="replace")
                status = response.status
        except TimeoutError:
            return SendResult(SendOutcome.RETRY, error=f"no reply within {self._settings.timeout_seconds}s")
        except aiohttp.ClientError as exc:
            return SendResult(SendOutcome.RETRY, error=f"{type(exc).__name__}: {exc}")
        return read_reply(status, body)


def read_reply(status: int, body: str) -> SendResult:
    """What one HTTP answer to a send means for the message."""
    if status == 429:
        return SendResult(SendOutcome.THROTTLED, error="HTTP 429")
    if status in (401, 403):
        return SendResult(SendOutcome.RETRY, error=BAD_KEY_ERROR.format(status=status))
    try:
        recipient, summary = _first_recipient(body)
    except ValueError:
        return SendResult(SendOutcome.RETRY, error=f"HTTP {status}, unreadable reply: {body[:200]!r}")
    if recipient is None:  # nothing was queued; the reason is in Message
        return SendResult(_outcome_for(None, summary), error=f"HTTP {status}, no recipient: {summary}")
    code, word = recipient.get("statusCode"), str(recipient.get("status", ""))
    outcome = _outcome_for(code, word)
    if outcome is SendOutcome.SENT:
        message_id = recipient.get("messageId")
        return SendResult(outcome, provider_id=str(message_id) if message_id else None)
    return SendResult(outcome, error=f"{code} {word}")


def _first_recipient(body: str) -> tuple[dict[str, Any] | None, str]:
    """(``Recipients[0]`` or None, ``Message``); ValueError if the body is not that shape."""
    try:
        data = json.loads(body)["SMSMessageData"]
        recipients = data["Recipients"]
        first = recipients[0] if recipients else None
        if first is not None and not isinstance(first, dict):
            raise TypeError("recipient is not an object")
        return first, str(data.get("Message", ""))
    except (ValueError, LookupError, TypeError, AttributeError) as exc:
        raise ValueError("not an SMSMessageData reply") from exc


def _outcome_for(code: Any, word: str) -> SendOutcome:
    if "throttl" in word.lower():
        return SendOutcome.THROTTLED
    if isinstance(code, int) and code in SEND_STATUS:
        return SEND_STATUS[code][1]
    # Unknown verdicts keep the message: a retry is bounded, a lost message is not.
    return _OUTCOME_BY_NAME.get(word, SendOutcome.RETRY)


def parse_dlr(form: Mapping[str, str]) -> DeliveryReport:
    """The delivery-report callback -> ``DeliveryReport`` (matched on ``provider_id``)."""
    provider_id = (form.get("id") or "").strip()
    if not provider_id:
        raise BadRequest("id is required")
    status = (form.get("status") or "").strip()
    state = DLR_STATES.get(status)
    if state is None:
        raise BadRequest(f"unknown delivery status {status!r}")
    reason = ""
    if state is DeliveryState.FAILED:
        # failureReason only comes with Rejected/Failed; AbsentSubscriber/Expired say it all.
        reason = (form.get("failureReason") or "").strip() or status
    return DeliveryReport(state=state, provider_id=provider_id, reason=reason)


# Answer inbound webhooks with an empty body? (the aggregator only wants a 2xx)
INBOUND_ACK_EMPTY = False

def parse_inbound(form: Mapping[str, str]) -> IncomingSms:
    """The incoming-message callback -> ``IncomingSms``.

    ``date`` is not used: the docs give it no format or time zone, so ``received_at`` is
    the time the gateway received the callback.
    """
    sender = normalize_msisdn(form.get("from"))
    if sender is None:
        raise BadRequest("from is not a valid Vietnamese mobile number")
    return IncomingSms(
        transport=NAME,
        sender=sender,
        receiver=(form.get("to") or "").strip(),
        text=form.get("text") or "",
        provider_id=(form.get("id") or "").strip() or None,
    )
