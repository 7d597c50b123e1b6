"""The Kannel adapter's own table: every sendsms answer, every delivery report type."""

from __future__ import annotations

import pytest
from aiohttp import web

from gateway.messages import BadRequest
from gateway.providers import kannel
from gateway.settings import KannelSettings
from gateway.sms import DeliveryState, OutgoingSms, SendOutcome
from models.sms_text import Encoding

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


# --- inbound text as Kannel sends it: raw query strings, decoded by coding and charset ----

# Captured from smsbox 1.4.5 (fakesmsc MOs, get-url text=%b / text=%a, coding=%c,
# charset=%C): what arrived at the gateway, byte for byte.
TRA_CUU = "Tra cứu hồ sơ 000.32.22.H23-261108-0020"
TRA_CUU_UCS2 = ("%00T%00r%00a%00+%00c%1E%E9%00u%00+%00h%1E%D3%00+%00s%01%A1%00+%000%000%000%00.%003%002"
                "%00.%002%002%00.%00H%002%003%00-%002%006%001%001%000%008%00-%000%000%002%000")
# " Hủy  giá 5 ₫ ’x’ " with mo-recode = false: %b keeps every byte; %a splits at whitespace
# bytes and drops some (the 0x20 of ₫ and of ’ after a space, the trailing space's 0x20).
ODD_UCS2_B = "%00+%00H%1E%E7%00y%00+%00+%00g%00i%00%E1%00+%005%00++%AB%00++%19%00x+%19%00+"
ODD_UCS2_A = "%00+%00H%1E%E7%00y%00+%00+%00g%00i%00%E1%00+%005%00+%AB%00+%19%00x+%19%00"


@pytest.mark.parametrize(
    "query, text",
    [
        # mo-recode = false (smsbox's default): a handset's UCS-2 as raw UTF-16BE bytes.
        (f"from=%2B84987542228&to=8088&text={TRA_CUU_UCS2}&id=u-1&coding=2&charset=UTF-16BE", TRA_CUU),
        (f"from=%2B84987542228&to=8088&text={ODD_UCS2_B}&id=u-1&coding=2&charset=UTF-16BE", " Hủy  giá 5 ₫ ’x’ "),
        # mo-recode = true: recoded to UTF-8, coding 0.
        ("from=%2B84987542228&to=8088&text=Tra+c%E1%BB%A9u+h%E1%BB%93+s%C6%A1+000.32.22.H23-261108-0020"
         "&id=u-1&coding=0&charset=UTF-8", TRA_CUU),
        # GSM text: Kannel holds it as UTF-8.
        ("from=%2B84987542228&to=8088&text=HS+123+%40%C2%A3&id=u-1&coding=0&charset=UTF-8", "HS 123 @£"),
        # An older get-url without coding and charset: UTF-16BE recognised, UTF-8 kept.
        (f"from=%2B84987542228&to=8088&text={TRA_CUU_UCS2}&id=u-1", TRA_CUU),
        ("from=%2B84987542228&to=8088&text=%00H%1E%E7%00y", "Hủy"),
        ("from=%2B84987542228&to=8088&text=%1E%EA", "Ừ"),  # no NUL, but not UTF-8
        ("from=%2B84987542228&to=8088&text=Tra+c%E1%BB%A9u+h%E1%BB%93+s%C6%A1", "Tra cứu hồ sơ"),
        ("from=%2B84987542228&to=8088&text=HS+123", "HS 123"),
        ("from=%2B84987542228&to=8088&text=caf%E9+cr%E8me", "café crème"),  # latin-1, not UTF-16
        # Charsets other SMSC modules or recoding set.
        ("from=%2B84987542228&text=caf%E9&coding=0&charset=WINDOWS-1252", "café"),
        ("from=%2B84987542228&text=caf%E9&coding=0&charset=ISO-8859-1", "café"),
        ("from=%2B84987542228&text=caf%E9&coding=0", "café"),  # coding 0, no charset: UTF-8, else latin-1
        ("from=%2B84987542228&text=%00H%00S&charset=UCS-2", "HS"),
        ("from=%2B84987542228&text=HS+1&coding=0&charset=GSM", "HS 1"),
        # Odd-length UTF-16: %a dropped a whitespace byte; the last, incomplete unit goes.
        ("from=%2B84987542228&text=%00H%00S%00+%001%00&coding=2&charset=UTF-16BE", "HS 1"),
        ("from=%2B84987542228&text=%00H%00S%00+%001%00", "HS 1"),
        ("from=%2B84987542228&text=&coding=2&charset=UTF-16BE", ""),
    ],
)
def test_inbound_text_decoded_from_the_raw_query(query, text):
    params = kannel.params_from_raw_query(query)
    assert params["text"] == text
    message = kannel.parse_inbound(params)
    assert (message.sender, message.text) == ("+84987542228", text)
    # The same from bytes, as aiohttp's raw_query_string is ASCII either way.
    assert kannel.params_from_raw_query(query.encode("ascii"))["text"] == text


def test_odd_length_utf16_from_percent_a_is_read_as_far_as_it_can_be():
    text = kannel.params_from_raw_query(f"from=84987542228&text={ODD_UCS2_A}&coding=2&charset=UTF-16BE")["text"]
    assert text.startswith(" Hủy  giá 5 ")  # what follows the lost byte is garbled, not refused
    assert "\x00" not in text


@pytest.mark.parametrize(
    "query, field",
    [
        ("from=84987542228&text=HS+1&coding=0&charset=X-KLINGON", "charset"),
        ("from=84987542228&text=SFMgMQ%3D%3D&charset=base64", "charset"),  # a codec, not a charset
        ("from=84987542228&text=HS+1&charset=unicode_escape", "charset"),
        ("from=84987542228&text=HS+1&charset=" + "U" * 5000, "charset"),
        ("from=84987542228&text=HS+1&coding=7", "coding"),
    ],
)
def test_unknown_charset_or_coding_is_a_bad_request(query, field):
    with pytest.raises(BadRequest, match=f"^{field} "):
        kannel.params_from_raw_query(query)


def test_other_fields_are_utf8_and_the_first_of_repeats_counts():
    params = kannel.params_from_raw_query("from=%2B84987542228&to=8088&id=a%2Bb&token=t%C3%A9+1&token=x&text=HS")
    assert params == {"from": "+84987542228", "to": "8088", "id": "a+b", "token": "té 1", "text": "HS"}
    with pytest.raises(BadRequest):
        kannel.params_from_raw_query("&".join(f"f{i}=1" for i in range(100)))


def test_parse_inbound_decodes_text_still_in_bytes():
    message = kannel.parse_inbound({"from": "84987542228", "text": "Hủy".encode("utf-16-be"), "coding": "2"})
    assert message.text == "Hủy"


async def test_the_app_reads_kannel_text_from_the_raw_query(make_client, settings):
    """Through the real app: the UTF-16BE text is read by coding/charset, not by aiohttp's
    UTF-8 reading of the query; an unknown charset is a 400 naming it."""
    from yarl import URL

    from models.entities import Dossier, DossierStatus, OutboundSms
    from models.seed import DEMO_PHONE

    client = await make_client(settings)
    dossier = await Dossier.filter(status=DossierStatus.PROCESSING, applicant_phone=DEMO_PHONE).first()
    text = "".join(f"%{b:02X}" for b in f"Tra cứu hồ sơ {dossier.code}".encode("utf-16-be"))
    query = f"from=%2B84987542228&to=8088&text={text}&id=kannel-uuid-1&coding=2&charset=UTF-16BE"
    base = str(client.make_url("/sms/kannel/inbound"))
    # encoded=True: sent as Kannel sends it, not re-quoted by the client.
    response = await client.session.get(URL(f"{base}?{query}", encoded=True))
    assert response.status == 200, await response.text()
    [reply] = await OutboundSms.filter(to_phone=DEMO_PHONE).order_by("-id").limit(1)
    assert reply.text.startswith(f"Ho so {dossier.code}:"), reply.text

    response = await client.session.get(URL(f"{base}?from=%2B84987542228&text=HS+1&coding=0&charset=X-KLINGON", encoded=True))
    assert response.status == 400
    body = await response.json()
    assert "charset" in body["error"]


# --- the dlr-url carries the webhook token --------------------------------------------------

def test_the_dlr_url_carries_the_webhook_token_escaped_for_smsbox():
    transport = kannel.KannelTransport(KannelSettings(), "http://127.0.0.1:8080/", webhook_token="a+b/%é")
    dlr_url = transport.sendsms_params(MESSAGE)["dlr-url"]
    # URL-encoded, then each % doubled: smsbox expands %x codes in a dlr-url (%% is a %).
    assert dlr_url == "http://127.0.0.1:8080/sms/kannel/dlr?id=42&type=%d&answer=%A&token=a%%2Bb%%2F%%25%%C3%%A9"


def test_build_transport_hands_kannel_the_token():
    from gateway.providers import build_transport
    from gateway.settings import from_mapping

    settings = from_mapping(
        {"sms": {"transport": "kannel", "public_base_url": "https://gw.example"}},
        environ={"GATEWAY_SECRET_KEY": "s", "GATEWAY_WEBHOOK_TOKEN": "tok3n"},
    )
    transport = build_transport(settings, sink=None)
    assert transport.sendsms_params(MESSAGE)["dlr-url"].endswith("&answer=%A&token=tok3n")
