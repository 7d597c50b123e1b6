"""USSD, latest-input contract: a neutral JSON shape for operator gateways.

Request ``{"session_id", "msisdn", "service_code", "input", "new", "hop_id"?}``;
reply ``{"text", "end"}``. ``input`` is only the newest input. ``hop_id`` is optional: a
gateway that sends one gets retries recognised (same ``hop_id`` -> same answer, nothing
done twice); without it every request is a new input.
"""

from __future__ import annotations

from typing import Any

from gateway.messages import BadRequest, UssdReply, UssdRequest, split_service_code
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
    base, shortcut = split_service_code(dialled)
    return UssdRequest(
        channel=CHANNEL,
        session_id=session_id.strip(),
        msisdn=msisdn,
        service_code=base,
        shortcut=shortcut,
        latest=value,
        new=new,
        hop_id=None if hop_id is None else str(hop_id),
    )


def render_ussd(reply: UssdReply) -> dict[str, Any]:
    return {"text": reply.text, "end": reply.end}
