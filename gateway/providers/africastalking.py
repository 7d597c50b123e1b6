"""USSD, cumulative contract (Africa's Talking and the aggregators that copy it).

POST form ``sessionId, serviceCode, phoneNumber, networkCode, text``; ``text`` is empty on
dial, then every input so far joined by ``*``. Reply ``text/plain``: ``CON <screen>`` to
continue, ``END <screen>`` to finish.
"""

from __future__ import annotations

from typing import Mapping

from gateway.messages import BadRequest, UssdReply, UssdRequest
from gateway.phones import normalize_msisdn

CHANNEL = "at"


def parse_ussd(form: Mapping[str, str]) -> UssdRequest:
    session_id = (form.get("sessionId") or "").strip()
    if not session_id:
        raise BadRequest("sessionId is required")
    if len(session_id) > 128:
        raise BadRequest("sessionId is too long")
    msisdn = normalize_msisdn(form.get("phoneNumber"))
    if msisdn is None:
        raise BadRequest("phoneNumber is not a valid Vietnamese mobile number")
    dialled = (form.get("serviceCode") or "").strip()
    if not dialled:
        raise BadRequest("serviceCode is required")
    return UssdRequest(
        channel=CHANNEL,
        session_id=session_id,
        msisdn=msisdn,
        service_code=dialled.strip(),
        cumulative=form.get("text") or "",
    )


USSD_BODY = "form"  # how the request body comes


def render_ussd(reply: UssdReply) -> tuple[str, str]:
    """(content type, body)."""
    return "text/plain", ("END " if reply.end else "CON ") + reply.text
