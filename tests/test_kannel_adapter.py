"""The Kannel adapter's own table: every sendsms answer, every delivery report type."""

from __future__ import annotations

import pytest
from aiohttp import web

from gateway.messages import BadRequest
from gateway.providers import kannel
from gateway.settings import KannelSettings
from gateway.sms import DeliveryState, OutgoingSms, SendOutcome
from gateway.sms_text import Encoding

MESSAGE = OutgoingSms(id=42, to="+84987542228", text="Kết quả & hồ sơ", encoding=Encoding.UCS2, parts=1, sender="8088")


@pytest.mark.parametrize(
    "status, body, outcome",
    [
        (202, "0: Accepted for delivery", SendOutcome.SENT),
        (200, "0: Accepted for delivery", SendOutcome.SENT),
        (400, "Sender missing and no global set, rejected", SendOutcome.RETRY),
        (400, "Receiver number couldn't be parsed", SendOutcome.FAILED),
        (403, "Authorization failed for sendsms", SendOutcome.RETRY),
        (503, "Message queue full, try later", SendOutcome.THROTTLED),
        (503, "Bearerbox is down", SendOutcome.RETRY),
        (500, "Internal error", SendOutcome.RETRY),
    ],
)
async def test_sendsms_answers(aiohttp_server, status, body, outcome):
    seen = {}

    async def sendsms(request: web.Request) -> web.Response:
        seen.update(request.query)
        return web.Response(status=status, text=body)

    app = web.Application()
    app.router.add_get("/cgi-bin/sendsms", sendsms)
    server = await aiohttp_server(app)
    transport = kannel.KannelTransport(
        KannelSettings(sendsms_url=str(server.make_url("/cgi-bin/sendsms")), password="pw"), "http://127.0.0.1:8080/"
    )
    await transport.start()
    try:
        result = await transport.send(MESSAGE)
    finally:
        await transport.close()
    assert result.outcome is outcome
    assert seen["text"] == "Kết quả & hồ sơ"
    assert seen["coding"] == "2" and seen["charset"] == "UTF-8"
    assert seen["to"] == "+84987542228" and seen["from"] == "8088" and seen["password"] == "pw"
    assert seen["dlr-mask"] == "31"
    assert seen["dlr-url"] == "http://127.0.0.1:8080/sms/kannel/dlr?id=42&type=%d&answer=%A"


async def test_unreachable_kannel_is_a_retry():
    transport = kannel.KannelTransport(KannelSettings(sendsms_url="http://127.0.0.1:9/cgi-bin/sendsms"), "http://x")
    await transport.start()
    try:
        result = await transport.send(MESSAGE)
    finally:
        await transport.close()
    assert result.outcome is SendOutcome.RETRY and "unreachable" in result.error


@pytest.mark.parametrize(
    "dlr_type, state",
    [("1", DeliveryState.DELIVERED), ("2", DeliveryState.FAILED), ("4", DeliveryState.QUEUED),
     ("8", DeliveryState.SENT), ("16", DeliveryState.FAILED)],
)
def test_every_delivery_report_type(dlr_type, state):
    report = kannel.parse_dlr({"id": "42", "type": dlr_type, "answer": "ACK/"})
    assert (report.state, report.message_id, report.reason) == (state, 42, "ACK/")


def test_the_table_has_no_untested_entry():
    assert set(kannel.DLR_TYPES) == {"1", "2", "4", "8", "16"}


@pytest.mark.parametrize("params", [{"id": "x", "type": "1"}, {"id": "1", "type": "3"}, {"type": "1"}])
def test_bad_delivery_reports(params):
    with pytest.raises(BadRequest):
        kannel.parse_dlr(params)


def test_inbound_parsing():
    message = kannel.parse_inbound({"from": "84987542228", "to": "8088", "text": "HS 123", "id": "u-1"})
    assert (message.sender, message.receiver, message.text, message.provider_id) == ("+84987542228", "8088", "HS 123", "u-1")
    with pytest.raises(BadRequest):
        kannel.parse_inbound({"from": "123", "text": "x"})
    with pytest.raises(BadRequest):
        kannel.parse_inbound({"from": "0987542228"})
