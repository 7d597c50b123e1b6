"""The "http" SMS transport against a real local HTTP server standing in for the aggregator.

Payloads are copied from Africa's Talking's SMS docs ("Send SMS", "SMS Notifications") where
the docs give one; the few replies the docs do not show are marked as such.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time

import aiohttp
import pytest
from aiohttp import web

from gateway.messages import BadRequest
from gateway.providers.http_aggregator import (
    DLR_STATES,
    SEND_STATUS,
    HttpAggregatorTransport,
    parse_dlr,
    parse_inbound,
)
from gateway.settings import HttpSmsSettings
from gateway.sms import DeliveryState, OutgoingSms, SendOutcome
from models.sms_text import Encoding
from tests.waiting import eventually

# --- Provider payloads, verbatim ------------------------------------------------------

# "Send SMS" -> Example Response.
DOCS_SENT = {
    "SMSMessageData": {
        "Message": "Sent to 1/1 Total Cost: KES 0.8000",
        "Recipients": [{
            "statusCode": 101,
            "number": "+254711XXXYYY",
            "status": "Success",
            "cost": "KES 0.8000",
            "messageId": "ATPid_SampleTxnId123",
        }],
    }
}
# "SMS Notifications" -> DoNotDisturbRejection: answered with HTTP 409 and this body.
DOCS_DND_409 = {"SMSMessageData":{"Message":"Sent to 0/1 Total Cost: 0","Recipients":[{"cost":"0","messageId":"None","number":"+2348XXXXXXX","status":"DoNotDisturbRejection","statusCode":409}]}}  # noqa: E501
# Not in the docs; seen in the field when nothing was queued (unregistered sender id).
FIELD_NO_RECIPIENT = {"SMSMessageData": {"Message": "InvalidSenderId", "Recipients": []}}
# Not in the docs as an example; the documented error text of a refused key (HTTP 401).
FIELD_BAD_KEY = "The supplied authentication is invalid"

# "SMS Notifications" -> Delivery Report notification contents (form fields; no example given).
DLR_FORM = {
    "id": "ATPid_SampleTxnId123",
    "status": "Success",
    "phoneNumber": "+84987542228",
    "networkCode": "45204",
    "failureReason": "",
    "retryCount": "0",
}
# "Fetch Messages" -> Example Response (same fields as the incoming-message notification),
# with a Vietnamese sender, text and short code in place of the Kenyan placeholders.
DOCS_INBOUND = {
    "linkId": "SampleLinkId123",
    "text": "TRA 2205130001 hồ sơ đất",
    "to": "8088",
    "id": "15071",
    "date": "2018-03-19T08:34:18.445Z",
    "from": "+84987542228",
    "networkCode": "45204",
}

VI_TEXT = "Hồ sơ 2205130001 đã được duyệt. Mời ông/bà đến UBND xã nhận kết quả & lệ phí 50.000đ?"
API_KEY = "test-api-key-123"


def recipient_reply(code: int, status: str) -> dict:
    """A reply for one recipient, shaped like the documented example for that kind of code."""
    reply = copy.deepcopy(DOCS_SENT if code < 200 else DOCS_DND_409)
    reply["SMSMessageData"]["Recipients"][0].update(statusCode=code, status=status)
    return reply


# --- A real aggregator on 127.0.0.1 ---------------------------------------------------


class Aggregator:
    """Records each send request and answers with whatever the test set."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.status = 201
        self.body: str = json.dumps(DOCS_SENT)
        self.content_type = "application/json"
        self.delay = 0.0
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        form = await request.post()
        self.requests.append({
            "form": list(form.items()),
            "headers": request.headers,
            "raw": await request.read(),
        })
        if self.delay:
            await asyncio.sleep(self.delay)
        return web.Response(status=self.status, text=self.body, content_type=self.content_type)

    def answer(self, body, status: int = 201, content_type: str = "application/json") -> None:
        self.body = body if isinstance(body, str) else json.dumps(body)
        self.status = status
        self.content_type = content_type


@pytest.fixture
async def aggregator(aiohttp_server) -> Aggregator:
    fake = Aggregator()
    app = web.Application()
    app.router.add_post("/version1/messaging", fake.handle)
    server = await aiohttp_server(app, host="127.0.0.1")
    fake.url = str(server.make_url("/version1/messaging"))
    return fake


def make_transport(url: str, **changes) -> HttpAggregatorTransport:
    values = {"url": url, "username": "xaphuongky", "api_key": API_KEY, "timeout_seconds": 5.0}
    return HttpAggregatorTransport(HttpSmsSettings(**(values | changes)))


@pytest.fixture
async def transport(aggregator):
    transport = make_transport(aggregator.url)
    await transport.start()
    yield transport
    await transport.close()


def sms(to: str = "+84987542228", text: str = VI_TEXT, sender: str = "") -> OutgoingSms:
    return OutgoingSms(id=7, to=to, text=text, encoding=Encoding.UCS2, parts=2, sender=sender)


# --- What goes on the wire ------------------------------------------------------------


async def test_request_is_the_documented_form_with_api_key_header(transport, aggregator):
    result = await transport.send(sms())

    assert result.outcome is SendOutcome.SENT
    [request] = aggregator.requests
    assert request["form"] == [
        ("username", "xaphuongky"),
        ("to", "+84987542228"),
        ("message", VI_TEXT),  # diacritics, "&", "/" and "?" survive url-encoding
    ]
    assert request["headers"]["apiKey"] == API_KEY
    assert request["headers"]["Accept"] == "application/json"
    assert request["headers"]["Content-Type"].startswith("application/x-www-form-urlencoded")
    # The "+" is percent-encoded: a bare "+" would arrive as a space.
    assert b"to=%2B84987542228" in request["raw"]


async def test_sender_goes_in_from_when_set(transport, aggregator):
    await transport.send(sms(sender="UBND XA"))

    assert ("from", "UBND XA") in aggregator.requests[0]["form"]


async def test_number_without_plus_gets_one(transport, aggregator):
    await transport.send(sms(to="84987542228"))

    assert ("to", "+84987542228") in aggregator.requests[0]["form"]


async def test_concurrent_sends_share_one_session(transport, aggregator):
    results = await asyncio.gather(*(transport.send(sms(text=f"tin {n}")) for n in range(40)))

    assert {r.outcome for r in results} == {SendOutcome.SENT}
    assert sorted(dict(r["form"])["message"] for r in aggregator.requests) == sorted(
        f"tin {n}" for n in range(40)
    )


# --- Every statusCode -----------------------------------------------------------------

STATUS_CASES = [
    (100, "Success", SendOutcome.SENT),
    (101, "Success", SendOutcome.SENT),
    (102, "Success", SendOutcome.SENT),
    (401, "RiskHold", SendOutcome.FAILED),
    (402, "InvalidSenderId", SendOutcome.RETRY),
    (403, "InvalidPhoneNumber", SendOutcome.FAILED),
    (404, "UnsupportedNumberType", SendOutcome.FAILED),
    (405, "InsufficientBalance", SendOutcome.RETRY),
    (406, "UserInBlacklist", SendOutcome.FAILED),
    (407, "CouldNotRoute", SendOutcome.FAILED),
    (409, "DoNotDisturbRejection", SendOutcome.FAILED),
    (500, "InternalServerError", SendOutcome.RETRY),
    (501, "GatewayError", SendOutcome.RETRY),
    (502, "RejectedByGateway", SendOutcome.FAILED),
]


def test_status_table_covers_every_documented_code():
    assert [code for code, _, _ in STATUS_CASES] == sorted(SEND_STATUS)


@pytest.mark.parametrize(("code", "status", "expected"), STATUS_CASES)
async def test_status_code_maps_to_outcome(transport, aggregator, code, status, expected):
    aggregator.answer(recipient_reply(code, status), status=409 if code == 409 else 201)

    result = await transport.send(sms())

    assert result.outcome is expected
    if expected is SendOutcome.SENT:
        assert result.provider_id == "ATPid_SampleTxnId123"
        assert result.error == ""
    else:
        assert result.provider_id is None  # not the literal "None" the reply carries
        assert result.error == f"{code} {status}"


async def test_documented_dnd_reply_on_http_409_is_read(transport, aggregator):
    aggregator.answer(DOCS_DND_409, status=409)

    result = await transport.send(sms())

    assert (result.outcome, result.error) == (SendOutcome.FAILED, "409 DoNotDisturbRejection")


async def test_no_recipient_reply_keeps_the_message_and_says_why(transport, aggregator):
    aggregator.answer(FIELD_NO_RECIPIENT)

    result = await transport.send(sms())

    assert result.outcome is SendOutcome.RETRY
    assert "InvalidSenderId" in result.error


async def test_unknown_status_code_keeps_the_message(transport, aggregator):
    aggregator.answer(recipient_reply(499, "SomethingNew"))

    result = await transport.send(sms())

    assert (result.outcome, result.error) == (SendOutcome.RETRY, "499 SomethingNew")


# --- HTTP and network trouble ---------------------------------------------------------


async def test_http_429_is_throttled(transport, aggregator):
    aggregator.answer("Too Many Requests", status=429, content_type="text/plain")

    assert (await transport.send(sms())).outcome is SendOutcome.THROTTLED


async def test_throttled_answer_is_throttled(transport, aggregator):
    # Not a documented reply: the verdict word of an aggregator that throttles in the body.
    aggregator.answer({"SMSMessageData": {"Message": "Throttled", "Recipients": []}})

    assert (await transport.send(sms())).outcome is SendOutcome.THROTTLED


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_http_5xx_is_retry(transport, aggregator, status):
    aggregator.answer("<html><body>Bad Gateway</body></html>", status=status, content_type="text/html")

    result = await transport.send(sms())

    assert result.outcome is SendOutcome.RETRY
    assert f"HTTP {status}" in result.error


@pytest.mark.parametrize("status", [401, 403])
async def test_refused_api_key_is_retry_with_a_clear_error(transport, aggregator, status):
    aggregator.answer(FIELD_BAD_KEY, status=status, content_type="text/plain")

    result = await transport.send(sms())

    assert result.outcome is SendOutcome.RETRY
    assert "API key" in result.error
    assert "GATEWAY_HTTP_SMS_API_KEY" in result.error


@pytest.mark.parametrize(
    "body",
    [
        '{"SMSMessageData": {"Message": "Sent to 1/1", "Recipients": [{"statusCode": 101',
        "<html><body>Service Unavailable</body></html>",
        "",
        "[]",
        '{"SMSMessageData": "Sent"}',
        '{"SMSMessageData": {"Message": "Sent to 1/1", "Recipients": ["+84987542228"]}}',
        '{"Recipients": [{"statusCode": 101}]}',
    ],
)
async def test_malformed_reply_is_retry(transport, aggregator, body):
    aggregator.answer(body)

    result = await transport.send(sms())

    assert result.outcome is SendOutcome.RETRY
    assert "unreadable reply" in result.error


async def test_timeout_is_retry(aggregator):
    aggregator.delay = 2.0
    transport = make_transport(aggregator.url, timeout_seconds=0.2)
    await transport.start()
    try:
        started = time.monotonic()
        result = await transport.send(sms())
        elapsed = time.monotonic() - started
    finally:
        await transport.close()

    assert result.outcome is SendOutcome.RETRY
    assert "0.2" in result.error
    assert elapsed < 1.5


async def test_connection_refused_is_retry(unused_tcp_port):
    transport = make_transport(f"http://127.0.0.1:{unused_tcp_port}/version1/messaging")
    await transport.start()
    try:
        result = await transport.send(sms())
    finally:
        await transport.close()

    assert result.outcome is SendOutcome.RETRY
    assert "ClientConnectorError" in result.error


# --- Lifecycle ------------------------------------------------------------------------


async def test_start_opens_the_factory_session_and_close_closes_it(aggregator):
    sessions: list[aiohttp.ClientSession] = []

    def factory() -> aiohttp.ClientSession:
        sessions.append(aiohttp.ClientSession())
        return sessions[-1]

    transport = HttpAggregatorTransport(
        HttpSmsSettings(url=aggregator.url, api_key=API_KEY), session_factory=factory
    )
    await transport.start()
    await transport.start()
    assert (await transport.send(sms())).outcome is SendOutcome.SENT
    await transport.close()
    await transport.close()

    assert len(sessions) == 1 and sessions[0].closed


async def test_default_session_pools_enough_connections(aggregator):
    transport = make_transport(aggregator.url)
    await transport.start()
    try:
        assert transport.name == "http"
        assert transport._session.connector.limit >= 50
    finally:
        await transport.close()


async def test_send_before_start_is_a_programming_error(aggregator):
    with pytest.raises(RuntimeError):
        await make_transport(aggregator.url).send(sms())


# --- Delivery reports -----------------------------------------------------------------

DLR_CASES = [
    ("Sent", "", DeliveryState.SENT, ""),
    ("Submitted", "", DeliveryState.SENT, ""),
    ("Buffered", "", DeliveryState.QUEUED, ""),
    ("Success", "", DeliveryState.DELIVERED, ""),
    ("Rejected", "UserInBlackList", DeliveryState.FAILED, "UserInBlackList"),
    ("Failed", "UserDoesNotExist", DeliveryState.FAILED, "UserDoesNotExist"),
    ("Failed", "", DeliveryState.FAILED, "Failed"),
    ("AbsentSubscriber", "", DeliveryState.FAILED, "AbsentSubscriber"),
    ("Expired", "", DeliveryState.FAILED, "Expired"),
]


def test_dlr_table_covers_every_documented_status():
    assert {status for status, _, _, _ in DLR_CASES} == set(DLR_STATES)


@pytest.mark.parametrize(("status", "failure_reason", "state", "reason"), DLR_CASES)
def test_dlr_status_maps_to_state(status, failure_reason, state, reason):
    report = parse_dlr(DLR_FORM | {"status": status, "failureReason": failure_reason})

    assert report.state is state
    assert report.reason == reason
    assert report.provider_id == "ATPid_SampleTxnId123"
    assert report.message_id is None


def test_dlr_without_failure_reason_field():
    form = {k: v for k, v in DLR_FORM.items() if k != "failureReason"}

    assert parse_dlr(form).state is DeliveryState.DELIVERED


@pytest.mark.parametrize("status", ["Delivered", "success", "", "DELIVRD"])
def test_dlr_unknown_status_is_bad_request(status):
    with pytest.raises(BadRequest):
        parse_dlr(DLR_FORM | {"status": status})


def test_dlr_without_id_is_bad_request():
    with pytest.raises(BadRequest):
        parse_dlr(DLR_FORM | {"id": ""})


# --- Incoming messages ----------------------------------------------------------------


def test_inbound_documented_fields():
    message = parse_inbound(DOCS_INBOUND)

    assert message.transport == "http"
    assert message.sender == "+84987542228"
    assert message.receiver == "8088"
    assert message.text == "TRA 2205130001 hồ sơ đất"
    assert message.provider_id == "15071"


@pytest.mark.parametrize("raw", ["+84987542228", "84987542228", "0987542228"])
def test_inbound_sender_is_normalised(raw):
    assert parse_inbound(DOCS_INBOUND | {"from": raw}).sender == "+84987542228"


@pytest.mark.parametrize("raw", ["+254711XXXYYY", "+254711082282", "02438253253", ""])
def test_inbound_sender_not_a_vn_mobile_is_bad_request(raw):
    with pytest.raises(BadRequest):
        parse_inbound(DOCS_INBOUND | {"from": raw})


def test_inbound_without_from_or_id():
    with pytest.raises(BadRequest):
        parse_inbound({k: v for k, v in DOCS_INBOUND.items() if k != "from"})
    assert parse_inbound(DOCS_INBOUND | {"id": ""}).provider_id is None


async def test_callbacks_parse_a_real_url_encoded_post(aiohttp_client):
    """Both parsers take aiohttp's decoded form as it arrives on a real socket."""

    async def inbound(request: web.Request) -> web.Response:
        message = parse_inbound(await request.post())
        return web.json_response({"sender": message.sender, "text": message.text})

    async def dlr(request: web.Request) -> web.Response:
        report = parse_dlr(await request.post())
        return web.json_response({"state": report.state.value, "reason": report.reason})

    app = web.Application()
    app.router.add_post("/sms/inbound", inbound)
    app.router.add_post("/sms/dlr", dlr)
    client = await aiohttp_client(app)

    response = await client.post("/sms/inbound", data=DOCS_INBOUND)
    assert await response.json() == {"sender": "+84987542228", "text": "TRA 2205130001 hồ sơ đất"}
    response = await client.post(
        "/sms/dlr", data=DLR_FORM | {"status": "Rejected", "failureReason": "UserInBlackList"}
    )
    assert await response.json() == {"state": "failed", "reason": "UserInBlackList"}


# --- Inside the real app --------------------------------------------------------------
# gateway.app.create_app with sms.transport = "http" pointed at the stand-in aggregator:
# the aggregator's callbacks are posted to /sms/http/* as it posts them, and the replies
# they cause go out through the app's outbox and transport to the aggregator.


def sent_reply(message_id: str, number: str = "+84987542228") -> dict:
    reply = copy.deepcopy(DOCS_SENT)
    reply["SMSMessageData"]["Message"] = "Sent to 1/1 Total Cost: VND 250.0000"
    reply["SMSMessageData"]["Recipients"][0].update(number=number, cost="VND 250.0000", messageId=message_id)
    return reply


@pytest.fixture
async def http_app(make_client, settings, aggregator):
    """The real app, SMS out through the stand-in aggregator."""
    return await make_client(settings.replace(
        sms={"transport": "http", "sender": "UBND XA"},
        http_sms={"url": aggregator.url, "username": "xaphuongky", "api_key": API_KEY, "timeout_seconds": 5.0},
    ))


async def requests_to_aggregator(aggregator, count: int) -> list[dict]:
    async def enough():
        return len(aggregator.requests) >= count

    await eventually(enough, 5, f"{count} send request(s) at the aggregator")
    return [dict(r["form"]) for r in aggregator.requests]


async def test_inbound_callback_gets_its_reply_through_the_aggregator_and_dlrs_settle_it(http_app, aggregator):
    from models.entities import Dossier, DossierStatus, InboundSms, OutboundSms, SmsKind, SmsStatus
    from models.seed import DEMO_PHONE

    client = http_app
    dossier = await Dossier.filter(code__startswith="000.32.22.H23-", status=DossierStatus.READY,
                                   applicant_phone=DEMO_PHONE).first()
    assert dossier is not None
    aggregator.answer(sent_reply("ATPid_7d1b8e0f5c"))
    inbound = DOCS_INBOUND | {"text": f"Tra cứu hồ sơ {dossier.code}", "id": "15072",
                              "linkId": "c2f1c5a4-1b1e-4e55-9f0e-0d9a1f2b3c4d"}

    response = await client.post("/sms/http/inbound", data=inbound)  # a form post, as the aggregator sends
    assert response.status == 200, await response.text()
    assert await response.json() == {"status": "accepted"}

    [form] = await requests_to_aggregator(aggregator, 1)
    assert aggregator.requests[0]["headers"]["apiKey"] == API_KEY
    assert (form["username"], form["to"], form["from"]) == ("xaphuongky", "+84987542228", "UBND XA")
    assert form["message"].startswith(f"Ho so {dossier.code}:"), form["message"]
    assert f"Nguoi nop: {dossier.applicant_name}." in form["message"]

    [record] = await InboundSms.all()
    assert (record.transport, record.provider_id, record.keyword) == ("http", "15072", "status")

    async def reply_sent():
        row = await OutboundSms.get_or_none(kind=SmsKind.REPLY)
        return row if row is not None and row.status is SmsStatus.SENT else None

    reply = await eventually(reply_sent, 5, "the reply marked sent")
    assert (reply.to_phone, reply.transport, reply.provider_id, reply.text) == (
        DEMO_PHONE, "http", "ATPid_7d1b8e0f5c", form["message"])

    # The aggregator's delivery reports for it, in the order it sends them.
    for status, expected in [("Submitted", SmsStatus.SENT), ("Buffered", SmsStatus.SENT),
                             ("Success", SmsStatus.DELIVERED)]:
        response = await client.post("/sms/http/dlr", data=DLR_FORM | {"id": "ATPid_7d1b8e0f5c", "status": status})
        assert response.status == 200 and await response.json() == {"status": "recorded"}
        assert (await OutboundSms.get(id=reply.id)).status is expected, status

    # The same callback again (the aggregator retries when our 200 was slow): no second reply.
    response = await client.post("/sms/http/inbound", data=inbound)
    assert await response.json() == {"status": "duplicate"}
    assert await OutboundSms.filter(kind=SmsKind.REPLY).count() == 1 and await InboundSms.all().count() == 1


async def test_help_keyword_and_a_failed_delivery_report_through_the_app(http_app, aggregator):
    from models.entities import OutboundSms, SmsKind, SmsStatus

    client = http_app
    aggregator.answer(sent_reply("ATPid_2b9c44e1aa"))
    response = await client.post("/sms/http/inbound", data=DOCS_INBOUND | {"text": "TG", "id": "15073"})
    assert await response.json() == {"status": "accepted"}

    [form] = await requests_to_aggregator(aggregator, 1)
    assert form["message"].startswith("DVC UBND xa Phuong Ky: HS <ma ho so> tra cuu ho so"), form["message"]

    async def reply_sent():
        row = await OutboundSms.get_or_none(kind=SmsKind.REPLY)
        return row if row is not None and row.status is SmsStatus.SENT else None

    reply = await eventually(reply_sent, 5, "the reply marked sent")
    assert reply.provider_id == "ATPid_2b9c44e1aa"

    rejected = DLR_FORM | {"id": "ATPid_2b9c44e1aa", "status": "Rejected", "failureReason": "UserInBlackList"}
    response = await client.post("/sms/http/dlr", data=rejected)
    assert await response.json() == {"status": "recorded"}
    row = await OutboundSms.get(id=reply.id)
    assert (row.status, row.last_error) == (SmsStatus.FAILED, "UserInBlackList")

    # A report the aggregator sends with an unknown status is refused, and changes nothing.
    response = await client.post("/sms/http/dlr", data=DLR_FORM | {"id": "ATPid_2b9c44e1aa", "status": "Delivered"})
    assert response.status == 400 and "error" in await response.json()
    assert (await OutboundSms.get(id=reply.id)).status is SmsStatus.FAILED
