"""What hostile and broken callers found, each as the behaviour a user or operator meets.

Through the real app over real HTTP, on SQLite and (in CI's second run) PostgreSQL:
duplicates under concurrency settled by the database, no 5xx from odd input (and nothing
written), bounded work per request, replies of bounded length, caches that do not grow,
and USSD retries that all get the one stored answer.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from structlog.testing import capture_logs

from gateway import phones
from gateway.settings import from_mapping
from menus.texts import T, text
from models.entities import InboundSms, OutboundSms, UssdSession
from models.seed import DEMO_PHONE
from tests.conftest import Phone

TOKEN = "hardening-token"


async def _written() -> tuple[int, int, int]:
    return await UssdSession.all().count(), await InboundSms.all().count(), await OutboundSms.all().count()


# Duplicates under concurrency ---------------------------------------------------------

@pytest.mark.parametrize("copies, distinct_ids", [(8, True), (20, True), (20, False)])
async def test_one_text_delivered_many_times_at_once_gets_exactly_one_reply(client, copies, distinct_ids):
    async def deliver(n: int) -> str:
        payload = {"from": "0987542228", "to": "8088", "text": "TG"}
        if distinct_ids:
            payload["id"] = f"copy-{n}"
        response = await client.post("/sms/json/inbound", json=payload)
        assert response.status == 200, await response.text()
        return (await response.json())["status"]

    outcomes = await asyncio.gather(*(deliver(n) for n in range(copies)))
    assert sorted(outcomes) == ["accepted"] + ["duplicate"] * (copies - 1)
    assert await InboundSms.all().count() == 1
    assert await OutboundSms.filter(to_phone=DEMO_PHONE).count() == 1


async def test_the_same_text_after_the_window_is_answered_again(client, clock):
    for expected in ("accepted", "duplicate"):
        response = await client.post("/sms/json/inbound", json={"from": "0987542228", "to": "8088", "text": "TG"})
        assert (await response.json())["status"] == expected
    clock.advance(121)
    response = await client.post("/sms/json/inbound", json={"from": "0987542228", "to": "8088", "text": " tg "})
    assert (await response.json())["status"] == "accepted"
    assert await OutboundSms.filter(to_phone=DEMO_PHONE).count() == 2


# No 5xx from odd input, and nothing written -------------------------------------------

@pytest.fixture
async def guarded(make_client, database_url):
    """The app as the README tells operators to deploy it: webhook token set."""
    settings = from_mapping(
        {"database": {"url": database_url}, "logging": {"format": "json"}, "sms": {"run_dispatcher": False}},
        environ={"GATEWAY_SECRET_KEY": "test-secret", "GATEWAY_WEBHOOK_TOKEN": TOKEN},
    )
    return await make_client(settings)


AUTH = {"X-Gateway-Token": TOKEN}
NUL_CASES = [
    ("/ussd/at", "form", {"sessionId": "s\x00", "serviceCode": "*384#", "phoneNumber": "0987542228", "text": ""}, "sessionId"),
    ("/ussd/at", "form", {"sessionId": "s1", "serviceCode": "*384#", "phoneNumber": "0987542228", "text": "1\x00"}, "text"),
    ("/ussd/json", "json", {"session_id": "s1", "msisdn": "0987542228", "service_code": "*384#\x00", "input": ""}, "service_code"),
    ("/sms/json/inbound", "json", {"from": "0987542228", "to": "8088", "text": "TG\x00"}, "text"),
    ("/sms/http/inbound", "form", {"from": "0987542228", "to": "8088", "text": "TG", "id": "a\x00"}, "id"),
    ("/sms/json/dlr", "json", {"id": 1, "status": "delivered", "reason": "\x00"}, "reason"),
]


@pytest.mark.parametrize("path, kind, body, field", NUL_CASES)
async def test_nul_bytes_are_refused_naming_the_field_and_nothing_is_written(guarded, path, kind, body, field):
    before = await _written()
    if kind == "json":
        response = await guarded.post(path, json=body, headers=AUTH)
    else:
        response = await guarded.post(path, data=body, headers=AUTH)
    assert response.status == 400
    answer = await response.json()
    assert answer["field"] == field and "NUL" in answer["error"]
    assert await _written() == before


def _kannel_query(**fields: str) -> str:
    from urllib.parse import urlencode

    return "/sms/kannel/inbound?" + urlencode({"token": TOKEN, **fields})


BAD_BODIES = [
    # (path, content type, raw body, status, field or None)
    ("/ussd/at", "multipart/form-data", b"sessionId=1", 400, None),
    ("/ussd/at", "multipart/form-data; boundary=B", b"--B\r\nbroken", 400, None),
    ("/ussd/at", "application/x-www-form-urlencoded; charset=klingon", b"sessionId=1", 415, "Content-Type"),
    ("/ussd/json", "application/json; charset=klingon", b"{}", 415, "Content-Type"),
    ("/ussd/json", "application/json", b"[" * 50_000 + b"]" * 50_000, 400, None),
    ("/ussd/json", "application/json", b"42", 400, None),
    ("/ussd/json", "application/json", b'["a"]', 400, None),
    ("/sms/json/inbound", "application/json", b'{"from": "0987542228", "text": {"a": ' * 3000 + b"1" + b"}" * 6000, 400, None),
    ("/sms/json/inbound", "application/json", b'"TG"', 400, None),
    ("/sms/json/inbound", "application/json", b'{"from": "0987542228", "text": "TG", "id": "' + b"x" * 200 + b'"}', 400, "id"),
    ("/sms/json/dlr", "application/json", b'{"id": 99999999999999999999999, "status": "delivered"}', 400, "id"),
    ("/sms/json/dlr", "application/json", b'{"id": "99999999999999999999999", "status": "delivered"}', 400, "id"),
    ("/sms/kannel/dlr", "application/json", b'{"id": 1}', 415, "Content-Type"),
    ("/sms/http/inbound", "application/x-www-form-urlencoded; charset=utf-8", b"from=0987542228&text=%FF%FE", 400, None),
]


@pytest.mark.parametrize("path, content_type, body, status, field", BAD_BODIES)
async def test_malformed_bodies_get_a_json_4xx_and_nothing_is_written(guarded, path, content_type, body, status, field):
    before = await _written()
    response = await guarded.post(path, data=body, headers={**AUTH, "Content-Type": content_type})
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    answer = await response.json()
    assert answer["error"] and answer["status"] == status
    assert answer.get("field") == field
    assert await _written() == before


async def test_a_kannel_dlr_with_an_id_past_int64_is_refused(guarded):
    response = await guarded.get(_kannel_query(id="9" * 25, type="1").replace("inbound", "dlr"))
    assert response.status == 400 and (await response.json())["field"] == "id"


async def _raw_request(port: int, request: bytes) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    response = await reader.read()
    writer.close()
    status = int(response.split(b" ", 2)[1])
    return status, response.partition(b"\r\n\r\n")[2]


async def test_a_token_header_that_is_not_utf8_is_refused_not_a_crash(guarded):
    before = await _written()
    body = b'{"from": "0987542228", "to": "8088", "text": "TG"}'
    status, answer = await _raw_request(guarded.port, (
        b"POST /sms/json/inbound HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nX-Gateway-Token: \xff\xfe\xc3(" + TOKEN.encode() + b"\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    ))
    assert status == 401
    assert json.loads(answer)["field"] == "token"
    assert await _written() == before


async def test_every_refused_webhook_is_logged_with_route_and_reason_and_nothing_personal(guarded):
    with capture_logs() as captured:
        await guarded.post("/sms/json/inbound", json={"from": "0987542228", "to": "8088", "text": "TG"})
        await guarded.get(_kannel_query(**{"from": "0987542228", "text": "HS 1"}).replace(TOKEN, "wrong"))
        await guarded.post("/ussd/at", data={"sessionId": "s1", "phoneNumber": "0987542228"}, headers=AUTH)
    refused = [entry for entry in captured if entry["event"] == "webhook_refused"]
    assert [(r["route"], r["status"]) for r in refused] == [
        ("/sms/{transport}/inbound", 401), ("/sms/{transport}/inbound", 401), ("/ussd/{contract}", 400)]
    assert refused[2]["reason"] == "serviceCode is required"
    assert "987542228" not in json.dumps(refused)


# Bounded work per request --------------------------------------------------------------

async def test_a_megabyte_of_inputs_is_refused_within_the_contract_without_stepping(client, monkeypatch):
    import menus.engine

    steps = 0
    real_apply = menus.engine._apply

    async def counting_apply(*args):
        nonlocal steps
        steps += 1
        return await real_apply(*args)

    monkeypatch.setattr(menus.engine, "_apply", counting_apply)
    # As a hostile caller sends it: the stars unencoded, just under the 1 MiB body limit.
    body = b"sessionId=big&serviceCode=*384%23&phoneNumber=0987542228&text=" + b"1*" * 520_000
    response = await client.post("/ussd/at", data=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status == 200
    assert await response.text() == "END " + text("vi", T.SORRY_TOO_LONG)
    assert steps == 0
    assert await UssdSession.all().count() == 0


async def test_too_many_inputs_in_one_hop_end_with_an_apology_and_leave_the_session_as_it_was(phone):
    caller = phone()
    await caller.dial()
    before = await UssdSession.get(external_id=caller.session_id)
    kind, screen = await caller.post("*".join(["4", "9"] * 7))  # 14 inputs at once
    assert (kind, screen) == ("END", text("vi", T.SORRY_TOO_LONG))
    after = await UssdSession.get(external_id=caller.session_id)
    assert (after.hops, after.last_request, after.state) == (before.hops, before.last_request, before.state)
    # A dial string with too many segments is no shortcut either.
    kind, _ = await phone().dial("*384*" + "*".join(["1"] * 20) + "#")
    assert kind == "END"


async def test_a_reply_never_echoes_unbounded_input_and_is_cut_to_three_parts(client):
    from tests.test_sms import sent_to

    response = await client.post("/sms/json/inbound", json={"from": "0987542228", "to": "8088", "text": "TT " + "a" * 20_000})
    assert response.status == 200
    [message] = await sent_to(client, "0987542228")
    assert message["parts"] == 1 and "a" * 41 not in message["text"]
    row = await OutboundSms.get(to_phone=DEMO_PHONE)
    assert row.parts <= 3


async def test_the_outbox_cuts_any_message_to_max_parts_and_says_so(client):
    from gateway.app import OUTBOX
    from models.entities import SmsKind

    outbox = client.server.app[OUTBOX]
    long_text = "Thong bao ve ho so cua ban. " * 200
    row = await outbox.enqueue(DEMO_PHONE, long_text, SmsKind.INFO, lang="en")
    assert row.parts == 3 and row.text.endswith(text("en", T.SMS_CUT))
    row = await outbox.enqueue(DEMO_PHONE, "Ngắn thôi.", SmsKind.INFO)
    assert row.parts == 1 and not row.text.endswith(text("vi", T.SMS_CUT))


async def test_refused_huge_phone_numbers_do_not_grow_the_parse_cache(client):
    phones._normalize.cache_clear()
    for n in range(300):
        form = {"sessionId": f"s{n}", "serviceCode": "*384#", "phoneNumber": f"{n:05d}" + "9" * 100_000, "text": ""}
        response = await client.post("/ussd/at", data=form)
        assert response.status == 400
    assert phones._normalize.cache_info().currsize == 0
    await Phone(client).dial()
    assert phones._normalize.cache_info().currsize == 1


# USSD retries under concurrency --------------------------------------------------------

async def test_twenty_copies_of_a_first_hop_at_once_all_get_the_one_stored_answer(client, clock):
    # A dropped dialogue of the same phone makes the first hop offer to resume it: the
    # copies must not see (and end) the session their own twin has just stored.
    earlier = Phone(client)
    await earlier.dial()
    await earlier.press("4")
    await earlier.press("9")
    clock.advance(30)
    form = {"sessionId": "twins", "serviceCode": "*384#", "phoneNumber": "0987542228", "text": ""}
    answers = await asyncio.gather(*(client.post("/ussd/at", data=form) for _ in range(20)))
    bodies = {await answer.text() for answer in answers}
    assert len(bodies) == 1, bodies
    [body] = bodies
    assert body.startswith("CON Ban dang dung giua chung.")
    session = await UssdSession.get(external_id="twins")
    assert session.hops == 1 and not session.ended


async def test_a_late_copy_of_an_earlier_hop_is_answered_without_moving_the_session(phone):
    caller = phone()
    await caller.dial()
    await caller.press("4")
    _, page_two = await caller.press("9")
    session = await UssdSession.get(external_id=caller.session_id)
    for late in ("4", ""):
        kind, screen = await caller.post(late)
        assert (kind, screen) == ("CON", page_two)
    after = await UssdSession.get(external_id=caller.session_id)
    assert (after.hops, after.last_request) == (session.hops, session.last_request)
    assert after.hops == 3 and after.last_request.startswith("2:")  # two inputs, "4*9", kept hashed
    _, screen = await caller.press("8")  # the dialogue carries on from where it was
    assert screen.startswith("Thu tuc")


async def test_what_the_caller_typed_never_rests_in_the_session_row(phone):
    """Cumulative texts carry OTPs and PINs: the row keeps keyed hashes of them only."""
    caller = phone()
    await caller.dial()
    await caller.press("1")
    await caller.press("2610300002")
    session = await UssdSession.get(external_id=caller.session_id)
    assert "2610300002" not in session.last_request and "1*" not in session.last_request
    assert "2610300002" not in json.dumps(session.state)


# Charsets the http/json adapters are given ---------------------------------------------

@pytest.mark.parametrize("charset", ["utf-16", "utf-8", "windows-1258"])
async def test_a_json_sms_in_the_charset_it_declares_is_read_as_the_phone_wrote_it(client, charset):
    from tests.test_sms import sent_to

    body = json.dumps({"from": "0987542228", "to": "8088", "text": "Hủy"}, ensure_ascii=False)
    if charset == "windows-1258":  # Vietnamese Windows code page: decomposed tones
        import unicodedata

        body = unicodedata.normalize("NFD", body)
    response = await client.post("/sms/json/inbound", data=body.encode(charset),
                                 headers={"Content-Type": f"application/json; charset={charset}"})
    assert response.status == 200, await response.text()
    [reply] = await sent_to(client, "0987542228")
    assert reply["text"].startswith("Da ngung tin bao"), reply


async def test_a_form_sms_in_latin1_is_decoded_by_its_charset(client):
    from tests.test_sms import sent_to

    response = await client.post("/sms/http/inbound", data="from=0987542228&to=8088&text=%3F".encode("latin-1"),
                                 headers={"Content-Type": "application/x-www-form-urlencoded; charset=iso-8859-1"})
    assert response.status == 200, await response.text()
    [reply] = await sent_to(client, "0987542228")
    assert reply["text"].startswith("DVC")



@pytest.mark.parametrize("body", [
    "", "&", "a=1&&b=2", "a", "a=&=b", "text=1%2A2%2A3&phoneNumber=%2B84987542228", "x=a+b%20c",
    "k%3D=v%26", "x=%ZZ", "x=%e1%bb%87",
])
def test_form_pairs_are_parse_qsl_pairs(body):
    from urllib.parse import parse_qsl

    from gateway.webhook_input import form_pairs

    assert form_pairs(body, "utf-8") == parse_qsl(body, keep_blank_values=True, encoding="utf-8", errors="strict")


def test_form_pairs_refuse_what_parse_qsl_refuses():
    from gateway.webhook_input import MAX_FIELDS, form_pairs

    with pytest.raises(ValueError):
        form_pairs("&".join(["a=1"] * (MAX_FIELDS + 1)), "utf-8")
    with pytest.raises(UnicodeDecodeError):
        form_pairs("x=%ff", "utf-8")
    assert len(form_pairs("&".join(["a=1"] * MAX_FIELDS), "utf-8")) == MAX_FIELDS


def test_a_menu_state_stored_before_with_every_key_reads_back_the_same():
    """States are now stored without their defaults; one written with every key (by an
    earlier version, still live in the table at an upgrade) reads back to the same state."""
    from menus.engine import MenuState

    old = {"lang": "vi", "stack": [{"s": "main", "a": {}, "p": 0}, {"s": "lookup_result", "a": {"id": 7}, "p": 1}],
           "choices": {"9": {"cmd": "next"}, "1": {"go": {"s": "postal_done", "a": {"id": 7}, "p": 0}}},
           "resumable": [], "settled": False}
    state = MenuState.from_json(old)
    compact = state.to_json()
    assert MenuState.from_json(compact) == state
    assert compact["stack"][0] == {"s": "main"} and "resumable" not in compact and "settled" not in compact
    assert len(json.dumps(compact)) < len(json.dumps(old))


def test_a_session_state_only_the_stdlib_can_write_reads_back():
    """orjson refuses a lone surrogate and an int past 64 bits; the stdlib writes them, and
    the state must read back the same, not break every later hop of the session."""
    from gateway.sessions import _json, _state

    for state in ({"typed": "\ud800x"}, {"n": 2**70}, {"name": "Nguyễn", "page": 2}):
        assert _state(_json(state)) == state
