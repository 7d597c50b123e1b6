"""Neutral JSON contracts for new adapters: USSD (latest input) and SMS in / delivery reports.

USSD, latest-input contract, for operator gateways.

Request ``{"session_id", "msisdn", "service_code", "input", "new", "hop_id"?}``;
reply ``{"text", "end"}``. ``input`` is only the newest input. ``hop_id`` is optional: a
gateway that sends one gets retries recognised (same ``hop_id`` -> same answer, nothing
done twice); without it every request is a new input.
"""

from __future__ import annotations

import json
from typing import Any

from gateway.messages import BadRequest, UssdReply, UssdRequest
from gateway.sms import DeliveryReport, DeliveryState, IncomingSms
from gateway.phones import normalize_msisdn

CHANNEL = "json"


def parse_ussd(payload: Any) -> UssdRequest:
    if not isinstance(payload, dict):
        raise BadRequest("body must be a JSON object")
    session_id = payload.get("session_id")
    if not isinstance(session_id, str) or not session_id.strip() or len(session_id) > 128:
        raise BadRequest("session_id must be a non-empty string of at most 128 characters")
    msisdn = normalize_msisdn(payload.get("msisdn") if isinstance(payload.get("msisdn"), str) else None)
    if msisdn is None:
        raise BadRequest("msisdn is not a valid Vietnamese mobile number")
    dialled = payload.get("service_code")
    if not isinstance(dialled, str) or not dialled.strip():
        raise BadRequest("service_code must be a non-empty string")
    value = payload.get("input", "")
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise BadRequest("input must be a string")
    new = payload.get("new", False)
    if not isinstance(new, bool):
        raise BadRequest("new must be true or false")
    hop_id = payload.get("hop_id")
    if hop_id is not None and not isinstance(hop_id, (str, int)):
        raise BadRequest("hop_id must be a string or a number")
    return UssdRequest(
        channel=CHANNEL,
        session_id=session_id.strip(),
        msisdn=msisdn,
        service_code=dialled.strip(),
        latest=value,
        new=new,
        hop_id=None if hop_id is None else str(hop_id),
    )


USSD_BODY = "json"  # how the request body comes


def render_ussd(reply: UssdReply) -> tuple[str, str]:
    """(content type, body)."""
    return "application/json", json.dumps({"text": reply.text, "end": reply.end})


# SMS, generic JSON: {"from", "to", "text", "id"?} in; delivery reports
# {"id": <gateway message id>, "status": "delivered|failed|sent|queued", "reason"?}.
DLR_STATES = {
    "delivered": DeliveryState.DELIVERED,
    "failed": DeliveryState.FAILED,
    "sent": DeliveryState.SENT,
    "queued": DeliveryState.QUEUED,
}


# Answer inbound webhooks with an empty body? (answered with a JSON status)
INBOUND_ACK_EMPTY = False
# SMS webhooks come as a JSON object (a form or query string is read too).
SMS_JSON = True

def parse_inbound(payload: Any) -> IncomingSms:
    if not isinstance(payload, dict):
        raise BadRequest("body must be a JSON object")
    sender = normalize_msisdn(payload.get("from") if isinstance(payload.get("from"), str) else None)
    if sender is None:
        raise BadRequest("from is not a valid Vietnamese mobile number")
    text = payload.get("text")
    if not isinstance(text, str):
        raise BadRequest("text must be a string")
    provider_id = payload.get("id")
    return IncomingSms(
        transport="json",
        sender=sender,
        receiver=str(payload.get("to") or ""),
        text=text,
        provider_id=None if provider_id in (None, "") else str(provider_id),
    )


def parse_dlr(payload: Any) -> DeliveryReport:
    if not isinstance(payload, dict):
        raise BadRequest("body must be a JSON object")
    message_id = payload.get("id")
    if not isinstance(message_id, int) and not (isinstance(message_id, str) and message_id.isdigit()):
        raise BadRequest("id must be the gateway's message id")
    state = DLR_STATES.get(str(payload.get("status", "")).lower())
    if state is None:
        raise BadRequest(f"status must be one of {', '.join(DLR_STATES)}")
    return DeliveryReport(state=state, message_id=int(message_id), reason=str(payload.get("reason") or "")[:200])
