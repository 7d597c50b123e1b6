"""SMS: keyword commands in, outbox out, delivery reports, opt-out, quiet hours, retries."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from gateway.app import OUTBOX, SQL
from gateway.outbox import Dispatcher, Outbox, backoff_seconds
from gateway.sms import OutgoingSms, SendOutcome, SendResult, SmsTransport
from menus.sms import Command, parse
from models.entities import Dossier, DossierStatus, InboundSms, OutboundSms, SmsKind, SmsStatus
from models.fastsql import open_runner
from models.seed import DEMO_PHONE

# Every keyword and its variants: case, diacritics, spaces, separators.
KEYWORD_CASES = [
    ("HS 000.17.22.H56-210531-0001", Command.STATUS, "000.17.22.H56-210531-0001", "vi"),
    ("hs:000.17.22.h56-210531-0001", Command.STATUS, "000.17.22.H56-210531-0001", "vi"),
    ("Hs. 2105310001", Command.STATUS, "2105310001", "vi"),
    ("  hs   2105310001  ", Command.STATUS, "2105310001", "vi"),
    ("HS2105310001", Command.STATUS, "2105310001", "vi"),
    ("TRACUU 2105310001", Command.STATUS, "2105310001", "vi"),
    ("Tra cứu 2105310001", Command.STATUS, "2105310001", "vi"),
    ("tra cuu:2105310001", Command.STATUS, "2105310001", "vi"),
    ("status 2105310001", Command.STATUS, "2105310001", "en"),
    ("TT khai sinh", Command.PROCEDURE, "KHAI SINH", "vi"),
    ("tt: Đăng ký kết hôn", Command.PROCEDURE, "DANG KY KET HON", "vi"),
    ("info marriage", Command.PROCEDURE, "MARRIAGE", "en"),
    ("TG", Command.HELP, "", "vi"),
    ("tg.", Command.HELP, "", "vi"),
    ("HELP", Command.HELP, "", "en"),
    ("help me", Command.HELP, "ME", "en"),
    ("?", Command.HELP, "", "vi"),
    ("HUY", Command.OPT_OUT, "", "vi"),
    ("Hủy", Command.OPT_OUT, "", "vi"),
    ("huỷ", Command.OPT_OUT, "", "vi"),
    ("STOP", Command.OPT_OUT, "", "en"),
    ("DK TB", Command.OPT_IN, "", "vi"),
    ("dktb", Command.OPT_IN, "", "vi"),
    ("Đk  tb", Command.OPT_IN, "", "vi"),
    ("start", Command.OPT_IN, "", "en"),
    ("DK 030090001234 Nguyen Van An 15031990", Command.REGISTER, "030090001234 NGUYEN VAN AN 15031990", "vi"),
    ("dk: Nguyễn Văn An 15/03/1990 030090001234", Command.REGISTER, "NGUYEN VAN AN 15/03/1990 030090001234", "vi"),
    ("DK030090001234 An 15031990", Command.REGISTER, "030090001234 AN 15031990", "vi"),
    ("DK", Command.REGISTER, "", "vi"),
    ("DKTB", Command.OPT_IN, "", "vi"),
    ("DONG Y", Command.CONSENT, "", "vi"),
    ("Đồng ý", Command.CONSENT, "", "vi"),
    ("dongy.", Command.CONSENT, "", "vi"),
    ("OTP 123456", Command.CODE, "123456", "vi"),
    ("otp:123456", Command.CODE, "123456", "vi"),
    ("123456", Command.CODE, "123456", "vi"),
    (" 123456. ", Command.CODE, "123456", "vi"),
    ("1234567", Command.UNKNOWN, "1234567", "vi"),
    ("XOA", Command.DELETE, "", "vi"),
    ("Xóa 123456", Command.DELETE, "123456", "vi"),
    ("xoa du lieu", Command.DELETE, "DU LIEU", "vi"),
    ("XOAY", Command.UNKNOWN, "XOAY", "vi"),
    ("BUUDIEN", Command.POSTAL, "", "vi"),
    ("Bưu điện 2105310001", Command.POSTAL, "2105310001", "vi"),
    ("post 2105310001", Command.POSTAL, "2105310001", "en"),
    ("XONG 2105310001", Command.CLERK_READY, "2105310001", "vi"),
    ("xong.000.17.22.h56-210531-0001", Command.CLERK_READY, "000.17.22.H56-210531-0001", "vi"),
    ("Trả 2105310001", Command.CLERK_COLLECTED, "2105310001", "vi"),
    ("Tra cuu 2105310001", Command.STATUS, "2105310001", "vi"),
    ("GUI LAI 2105310001", Command.CLERK_RESEND, "2105310001", "vi"),
    ("guilai 2105310001", Command.CLERK_RESEND, "2105310001", "vi"),
    ("HSX 123", Command.UNKNOWN, "HSX 123", "vi"),
    ("xin chao", Command.UNKNOWN, "XIN CHAO", "vi"),
    ("", Command.UNKNOWN, "", "vi"),
]


@pytest.mark.parametrize("message, command, argument, lang", KEYWORD_CASES)
def test_keywords_forgive_case_diacritics_spaces_and_separators(message, command, argument, lang):
    parsed = parse(message)
    assert (parsed.command, parsed.argument, parsed.lang) == (command, argument, lang)


def test_every_keyword_has_a_case():
    from menus.sms import KEYWORDS

    covered = {parse(m).command for m, *_ in KEYWORD_CASES}
    assert {c for _, c, _ in KEYWORDS} <= covered


async def send_text(client, text, sender="0987542228", to="8088", provider_id=None):
    payload = {"from": sender, "to": to, "text": text}
    if provider_id:
        payload["id"] = provider_id
    response = await client.post("/sms/json/inbound", json=payload)
    assert response.status == 200, await response.text()
    return (await response.json())["status"]


async def sent_to(client, msisdn, count=1, timeout=5.0):
    """Wait for the console transport to deliver ``count`` messages to a phone; fail if it
    has not within ``timeout`` (a short list must not reach the caller's checks)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        response = await client.get("/sms/console/sent", params={"msisdn": msisdn})
        messages = (await response.json())["messages"]
        if len(messages) >= count:
            return messages
        assert asyncio.get_running_loop().time() < deadline, (
            f"timed out after {timeout}s: {len(messages)} of {count} SMS delivered to {msisdn}: {messages}")
        await asyncio.sleep(0.05)


async def test_status_by_sms_reaches_the_phone_through_the_outbox(client):
    dossier = await Dossier.filter(status=DossierStatus.READY, applicant_phone=DEMO_PHONE, mode="mot_phan").first()
    assert await send_text(client, f"hs {dossier.code.lower()}") == "accepted"
    messages = await sent_to(client, "0987542228")
    assert len(messages) == 1
    text = messages[0]["text"]
    assert text.startswith(f"Ho so {dossier.code}:")
    assert "Trang thai: Da co ket qua, moi den nhan." in text
    assert f"Nguoi nop: {dossier.applicant_name}." in text
    assert messages[0]["encoding"] == "gsm7"
    row = await OutboundSms.get(to_phone=DEMO_PHONE)
    assert row.kind is SmsKind.REPLY and row.status is SmsStatus.SENT and row.parts == messages[0]["parts"]
    assert row.parts == (1 if len(text) <= 160 else -(-len(text) // 153))


async def test_status_by_sms_keeps_personal_data_from_other_phones(client):
    dossier = await Dossier.filter(status=DossierStatus.REFUSED, applicant_phone=DEMO_PHONE).first()
    await send_text(client, f"TRA CUU {dossier.code}", sender="0912000111")
    [message] = await sent_to(client, "0912000111")
    assert "Khong duoc tiep nhan" in message["text"]
    assert dossier.applicant_name not in message["text"]
    assert dossier.status_note not in message["text"]


async def test_tail_lookup_by_sms_uses_the_number_texted(client):
    dossier = await Dossier.filter(code__startswith="000.32.22.H23-", status=DossierStatus.PROCESSING).first()
    await send_text(client, f"HS {dossier.tail}", to="8088")
    [message] = await sent_to(client, "0987542228")
    assert message["text"].startswith(f"Ho so {dossier.code}:")


@pytest.mark.parametrize("wording", ["Tra cứu hồ sơ {code}", "HS ma {code}", "hs ma ho so: {code}", "TRA CUU HO SO SO {tail}"])
async def test_status_wordings_people_use(client, wording):
    dossier = await Dossier.filter(code__startswith="000.32.22.H23-", status=DossierStatus.PROCESSING).first()
    await send_text(client, wording.format(code=dossier.code, tail=dossier.tail))
    [message] = await sent_to(client, "0987542228")
    assert message["text"].startswith(f"Ho so {dossier.code}:"), message["text"]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("TT khai sinh", "Dang ky khai sinh. Thoi han: Trong ngay"),
        ("INFO marriage", "Marriage registration. Time: Same day"),
        ("TT phi thuyen", "Khong tim thay thu tuc phi thuyen."),
        ("TT", "Gui TT <ten thu tuc>"),
        ("HS", "Gui HS <ma ho so>"),
        ("HS 000.99.99.H99-200101-0001", "Khong tim thay ho so 000.99.99.H99-200101-0001."),
        ("TG", "DVC UBND xa Phuong Ky: HS <ma ho so> tra cuu ho so"),
        ("HELP", "Public services UBND xa Phuong Ky: STATUS <dossier code>"),
        ("xin chao", "Khong hieu tin nhan."),
    ],
)
async def test_keyword_answers(client, text, expected):
    await send_text(client, text)
    [message] = await sent_to(client, "0987542228")
    assert message["text"].startswith(expected), message["text"]


async def test_duplicates_are_dropped_by_provider_id_and_by_window(client, clock):
    assert await send_text(client, "TG", provider_id="abc-1") == "accepted"
    assert await send_text(client, "TG", provider_id="abc-1") == "duplicate"
    assert await send_text(client, "tg ", provider_id="abc-2") == "duplicate"  # same text, same phone, 2 s later
    clock.advance(121)
    assert await send_text(client, "TG", provider_id="abc-3") == "accepted"
    assert await InboundSms.all().count() == 2
    assert await OutboundSms.all().count() == 2


async def test_opt_out_stops_alerts_but_not_replies_and_opt_in_restores(client):
    outbox: Outbox = client.app[OUTBOX]
    await send_text(client, "HUY")
    [confirm] = await sent_to(client, "0987542228")
    assert confirm["text"].startswith("Da ngung tin bao")
    assert await outbox.enqueue(DEMO_PHONE, "Ho so da co ket qua", SmsKind.PICKUP, urgent=True) is None
    assert await outbox.enqueue(DEMO_PHONE, "Ma OTP 123456", SmsKind.OTP, urgent=True) is not None
    await send_text(client, "DK TB")
    assert await outbox.enqueue(DEMO_PHONE, "Ho so da co ket qua", SmsKind.PICKUP, urgent=True) is not None
    texts = [m["text"] for m in await sent_to(client, "0987542228", count=4)]
    assert "Ho so da co ket qua" in texts and "Ma OTP 123456" in texts
    assert any(t.startswith("Da bat lai tin bao") for t in texts)


@pytest.mark.parametrize(
    "path, body, status",
    [
        ("/sms/json/inbound", {"from": "12345", "to": "8088", "text": "TG"}, 400),
        ("/sms/json/inbound", {"from": "0987542228", "to": "8088"}, 400),
        ("/sms/json/inbound", ["TG"], 400),
        ("/sms/nope/inbound", {"from": "0987542228", "text": "TG"}, 404),
        ("/sms/json/dlr", {"id": "x", "status": "delivered"}, 400),
        ("/sms/json/dlr", {"id": 1, "status": "maybe"}, 400),
        ("/sms/nope/dlr", {"id": 1, "status": "delivered"}, 404),
    ],
)
async def test_bad_sms_webhooks_get_json_errors(client, path, body, status):
    response = await client.post(path, json=body)
    assert response.status == status
    assert "error" in await response.json()
    assert await OutboundSms.all().count() == 0


async def test_kannel_style_inbound_and_delivery_reports(client):
    response = await client.get(
        "/sms/kannel/inbound", params={"from": "84987542228", "to": "8088", "text": "TG", "id": "k-1"}
    )
    assert response.status == 200 and await response.text() == ""  # Kannel would send a body to the phone
    await sent_to(client, "0987542228")
    row = await OutboundSms.get(to_phone=DEMO_PHONE)
    for dlr_type, expected in [("8", SmsStatus.SENT), ("1", SmsStatus.DELIVERED), ("2", SmsStatus.DELIVERED)]:
        response = await client.get("/sms/kannel/dlr", params={"id": str(row.id), "type": dlr_type, "answer": "ACK/"})
        assert response.status == 200
        assert (await OutboundSms.get(id=row.id)).status is expected  # delivered is final
    response = await client.get("/sms/kannel/dlr", params={"id": "999999", "type": "1"})
    assert (await response.json())["status"] == "unknown message"
    response = await client.get("/sms/kannel/dlr", params={"id": str(row.id), "type": "3"})
    assert response.status == 400


async def test_json_delivery_report_failure_is_recorded(client):
    await send_text(client, "TG")
    await sent_to(client, "0987542228")
    row = await OutboundSms.get(to_phone=DEMO_PHONE)
    response = await client.post("/sms/json/dlr", json={"id": row.id, "status": "failed", "reason": "absent subscriber"})
    assert (await response.json())["status"] == "recorded"
    row = await OutboundSms.get(id=row.id)
    assert row.status is SmsStatus.FAILED and row.last_error == "absent subscriber"


# The outbox itself ---------------------------------------------------------------------

def local(hour, minute=0, day=23):
    return dt.datetime(2026, 11, day, hour, minute, tzinfo=dt.timezone(dt.timedelta(hours=7)))


@pytest.mark.parametrize(
    "now, expected",
    [
        (local(12), local(12)),
        (local(20, 59), local(20, 59)),
        (local(21), local(7, day=24)),
        (local(22), local(7, day=24)),
        (local(23, 30), local(7, day=24)),
        (local(3), local(7)),
        (local(6, 59), local(7)),
        (local(7), local(7)),
    ],
)
def test_quiet_hours(settings, now, expected):
    assert Outbox(settings).after_quiet_hours(now.astimezone(dt.timezone.utc)) == expected


async def test_non_urgent_sms_waits_for_morning_urgent_does_not(client, settings):
    night = local(23, 30).astimezone(dt.timezone.utc)
    outbox = Outbox(settings, clock=lambda: night)
    alert = await outbox.enqueue(DEMO_PHONE, "Ho so da co ket qua", SmsKind.PICKUP)
    otp = await outbox.enqueue(DEMO_PHONE, "Ma OTP 123456", SmsKind.OTP, urgent=True, ttl_seconds=300)
    assert alert.next_attempt_at == local(7, day=24)
    assert otp.next_attempt_at == night
    assert otp.expires_at == night + dt.timedelta(seconds=300)


@pytest.mark.parametrize(
    "policy, text, encoding, stored, parts",
    [
        ("unaccent", "Hồ sơ của bạn đã được xử lý xong", "gsm7", "Ho so cua ban da duoc xu ly xong", 1),
        ("unicode", "Hồ sơ của bạn đã được xử lý xong", "ucs2", "Hồ sơ của bạn đã được xử lý xong", 1),
        ("unicode", "Đ" * 71, "ucs2", "Đ" * 71, 2),
        ("unaccent", "Đ" * 161, "gsm7", "D" * 161, 2),
    ],
)
async def test_encoding_and_parts_are_stored_per_message(client, settings, policy, text, encoding, stored, parts):
    outbox = Outbox(settings.replace(sms={"encoding_policy": policy}))
    row = await outbox.enqueue(DEMO_PHONE, text, SmsKind.INFO, urgent=True)
    row = await OutboundSms.get(id=row.id)
    assert (row.encoding, row.text, row.parts) == (encoding, stored, parts)


class ScriptedProvider(SmsTransport):
    """A provider whose answers a test scripts: the wire adapters are tested on their own."""

    name = "scripted"

    def __init__(self, answers):
        self.answers = list(answers)
        self.calls: list[OutgoingSms] = []

    async def send(self, message):
        self.calls.append(message)
        answer = self.answers.pop(0) if self.answers else SendResult(SendOutcome.SENT, "p-ok")
        if isinstance(answer, Exception):
            raise answer
        return answer


async def dispatcher_for(settings, provider, clock):
    url = settings.database.url
    sql = open_runner(url)
    return Dispatcher(settings.replace(sms={"run_dispatcher": False}), provider, sql, clock, worker_id="t"), sql


@pytest.fixture
async def quiet_client(make_client, settings):
    """The app without its own dispatcher: the tests drive one."""
    return await make_client(settings.replace(sms={"run_dispatcher": False}))


async def test_retry_with_backoff_then_sent(quiet_client, settings, clock):
    outbox = Outbox(settings, clock)
    row = await outbox.enqueue(DEMO_PHONE, "Thong bao", SmsKind.INFO, urgent=True)
    provider = ScriptedProvider([SendResult(SendOutcome.RETRY, error="timeout"), RuntimeError("bug in transport")])
    dispatcher, sql = await dispatcher_for(settings, provider, clock)
    assert await dispatcher.dispatch_once() == 1
    first = await OutboundSms.get(id=row.id)
    assert first.status is SmsStatus.QUEUED and first.attempts == 1 and first.last_error == "timeout"
    wait = (first.next_attempt_at - clock.now).total_seconds()
    assert 2.5 <= wait <= 5.0
    assert await dispatcher.dispatch_once() == 0  # not due yet
    clock.advance(wait + 0.1)
    assert await dispatcher.dispatch_once() == 1  # the transport raised: a retry, not a loss
    second = await OutboundSms.get(id=row.id)
    assert second.status is SmsStatus.QUEUED and second.attempts == 2
    clock.advance(3600)
    assert await dispatcher.dispatch_once() == 1
    done = await OutboundSms.get(id=row.id)
    assert done.status is SmsStatus.SENT and done.provider_id == "p-ok" and done.attempts == 3
    await sql.close()


async def test_permanent_failure_and_giving_up_and_throttling(quiet_client, settings, clock):
    outbox = Outbox(settings, clock)
    bad = await outbox.enqueue(DEMO_PHONE, "A", SmsKind.INFO, urgent=True)
    flaky = await outbox.enqueue("+84912000111", "B", SmsKind.INFO, urgent=True)
    busy = await outbox.enqueue("+84912000222", "C", SmsKind.INFO, urgent=True)
    provider = ScriptedProvider([
        SendResult(SendOutcome.FAILED, error="invalid number"),
        SendResult(SendOutcome.RETRY, error="down"),
        SendResult(SendOutcome.THROTTLED, error="slow down"),
    ])
    s = settings.replace(sms={"max_attempts": 2})
    dispatcher, sql = await dispatcher_for(s, provider, clock)
    await dispatcher.dispatch_once()
    assert (await OutboundSms.get(id=bad.id)).status is SmsStatus.FAILED
    throttled = await OutboundSms.get(id=busy.id)
    assert throttled.status is SmsStatus.QUEUED and throttled.attempts == 0
    provider.answers = [SendResult(SendOutcome.RETRY, error="still down")]
    clock.advance(3600)
    await dispatcher.dispatch_once()
    gave_up = await OutboundSms.get(id=flaky.id)
    assert gave_up.status is SmsStatus.FAILED and gave_up.attempts == 2
    assert gave_up.last_error.startswith("gave up after 2 attempts")
    assert (await OutboundSms.get(id=busy.id)).status is SmsStatus.SENT
    await sql.close()


async def test_stale_messages_expire_instead_of_going_out_late(quiet_client, settings, clock):
    outbox = Outbox(settings, clock)
    otp = await outbox.enqueue(DEMO_PHONE, "Ma OTP 123456", SmsKind.OTP, urgent=True, ttl_seconds=300)
    clock.advance(301)
    provider = ScriptedProvider([])
    dispatcher, sql = await dispatcher_for(settings, provider, clock)
    await dispatcher.dispatch_once()
    assert provider.calls == []
    assert (await OutboundSms.get(id=otp.id)).status is SmsStatus.EXPIRED
    await sql.close()


async def test_a_dead_dispatchers_claim_is_taken_over_after_the_lease(quiet_client, settings, clock):
    outbox = Outbox(settings, clock)
    row = await outbox.enqueue(DEMO_PHONE, "A", SmsKind.INFO, urgent=True)
    sql = open_runner(settings.database.url)
    lease = clock.now + dt.timedelta(seconds=60)
    await sql.fetch("UPDATE outbound_sms SET status='sending', claimed_by='dead', claimed_until=? WHERE id=?", (lease, row.id))
    provider = ScriptedProvider([])
    dispatcher, sql2 = await dispatcher_for(settings, provider, clock)
    assert await dispatcher.dispatch_once() == 0
    clock.advance(61)
    assert await dispatcher.dispatch_once() == 1
    assert (await OutboundSms.get(id=row.id)).status is SmsStatus.SENT
    await sql.close()
    await sql2.close()


async def test_concurrent_dispatchers_never_send_a_message_twice(quiet_client, settings, clock):
    outbox = Outbox(settings, clock)
    for n in range(300):
        await outbox.enqueue(f"+8491200{n:04d}", f"Tin {n}", SmsKind.INFO, urgent=True)

    class Slow(ScriptedProvider):
        async def send(self, message):
            await asyncio.sleep(0.001)
            return await super().send(message)

    providers = [Slow([]), Slow([])]
    pairs = [await dispatcher_for(settings.replace(sms={"dispatch_batch": 20, "parts_per_second": 100000}), p, clock) for p in providers]
    for dispatcher, _ in pairs:
        dispatcher._worker = f"w{id(dispatcher)}"

    async def drain(dispatcher):
        while await dispatcher.dispatch_once():
            pass

    await asyncio.gather(*(drain(d) for d, _ in pairs))
    sent = [m.id for p in providers for m in p.calls]
    assert len(sent) == 300 and len(set(sent)) == 300
    assert all(len(p.calls) > 0 for p in providers)  # both really worked
    assert await OutboundSms.filter(status=SmsStatus.SENT).count() == 300
    for _, sql in pairs:
        await sql.close()


def test_backoff_grows_and_is_capped():
    import random

    rng = random.Random(1)
    values = [backoff_seconds(n, 5, 900, rng) for n in range(1, 12)]
    assert 2.5 <= values[0] <= 5
    assert 20 <= values[3] <= 40
    assert all(450 <= v <= 900 for v in values[8:])


async def test_webhooks_need_the_token_when_one_is_configured(make_client, settings):
    client = await make_client(settings.replace(security={"webhook_token": "s3cret"}))
    ussd = {"sessionId": "t1", "serviceCode": "*384#", "phoneNumber": "0987542228", "text": ""}
    assert (await client.post("/ussd/at", data=ussd)).status == 401
    assert (await client.post("/ussd/json", json={})).status == 401
    assert (await client.post("/ussd/at?token=s3cret", data=ussd)).status == 200
    body = {"from": "0987542228", "to": "8088", "text": "TG"}
    response = await client.post("/sms/json/inbound", json=body)
    assert response.status == 401
    response = await client.post("/sms/json/inbound?token=wrong", json=body)
    assert response.status == 401
    response = await client.get("/sms/kannel/dlr", params={"id": "1", "type": "1"})
    assert response.status == 401
    assert await InboundSms.all().count() == 0
    response = await client.post("/sms/json/inbound?token=s3cret", json=body)
    assert response.status == 200
    response = await client.post("/sms/json/inbound", json={**body, "text": "HELP"}, headers={"X-Gateway-Token": "s3cret"})
    assert response.status == 200
    assert await InboundSms.all().count() == 2


async def test_opting_out_also_cancels_alerts_already_waiting(quiet_client, settings):
    client = quiet_client
    night = local(23, 30).astimezone(dt.timezone.utc)
    outbox = Outbox(settings, clock=lambda: night)
    held = await outbox.enqueue(DEMO_PHONE, "Ho so da co ket qua", SmsKind.PICKUP)
    otp = await outbox.enqueue(DEMO_PHONE, "Ma OTP 123456", SmsKind.OTP, urgent=True, ttl_seconds=3600)
    other = await outbox.enqueue("+84912000111", "Ho so da co ket qua", SmsKind.PICKUP)
    await send_text(client, "HUY")
    cancelled = await OutboundSms.get(id=held.id)
    assert cancelled.status is SmsStatus.FAILED and cancelled.last_error == "recipient opted out"
    assert (await OutboundSms.get(id=otp.id)).status is not SmsStatus.FAILED
    assert (await OutboundSms.get(id=other.id)).status is SmsStatus.QUEUED


async def test_quiet_hours_hold_a_backlog_at_send_time(quiet_client, settings, clock):
    day = local(15).astimezone(dt.timezone.utc)
    outbox = Outbox(settings, clock=lambda: day)
    alert = await outbox.enqueue(DEMO_PHONE, "Ho so da co ket qua", SmsKind.PICKUP)
    reply = await outbox.enqueue("+84912000111", "Tra loi", SmsKind.REPLY)
    provider = ScriptedProvider([])
    night = local(23, 10).astimezone(dt.timezone.utc)  # the dispatcher was down until now
    dispatcher, sql = await dispatcher_for(settings, provider, lambda: night)
    assert await dispatcher.dispatch_once() == 2
    assert [m.id for m in provider.calls] == [reply.id]  # a reply is not held
    held = await OutboundSms.get(id=alert.id)
    assert held.status is SmsStatus.QUEUED and held.attempts == 0
    assert held.next_attempt_at == local(7, day=24)
    await sql.close()


async def test_a_report_that_overtakes_the_sent_mark_still_finds_its_message(quiet_client, settings, clock, monkeypatch):
    from gateway import outbox as outbox_module
    from gateway.outbox import record_report
    from gateway.sms import DeliveryReport, DeliveryState

    row = await Outbox(settings, clock).enqueue(DEMO_PHONE, "A", SmsKind.INFO, urgent=True)
    await OutboundSms.filter(id=row.id).update(status=SmsStatus.SENDING, transport="http")
    # The report looks for its message, does not find it and waits: only then is the mark
    # written (as the dispatcher's, a moment later). Seen through the pauses it takes.
    pauses: list[float] = []

    class Watched:
        def __getattr__(self, name):
            return getattr(asyncio, name)

        async def sleep(self, delay, *args):
            pauses.append(delay)
            return await asyncio.sleep(delay, *args)

    monkeypatch.setattr(outbox_module, "asyncio", Watched())
    report = asyncio.create_task(
        record_report(DeliveryReport(DeliveryState.DELIVERED, provider_id="ATXid_late"), "http",
                      quiet_client.server.app[SQL], clock)
    )
    deadline = asyncio.get_running_loop().time() + 5
    while not any(pauses[1:]) and not report.done():  # the first look (after a 0 pause) found nothing
        assert asyncio.get_running_loop().time() < deadline, f"the report never waited: {pauses}"
        await asyncio.sleep(0.005)
    assert not report.done(), "the report gave up (or matched) before the message was marked"
    await OutboundSms.filter(id=row.id).update(provider_id="ATXid_late", status=SmsStatus.SENT)
    assert await report is True
    assert (await OutboundSms.get(id=row.id)).status is SmsStatus.DELIVERED


# -- the dispatcher's and the outbox writer's cheaper paths give what the full ones give --


def test_unaccenting_by_table_is_unaccent_for_every_character_it_takes():
    import random

    from models.outbox import _LATIN, unaccented_one_part
    from models.sms_text import Policy, prepare

    others = ["가", "ᄀ", "ᅡ", "\u0b47", "\u0b3e", "€", "中", "\U0001F600", "`", "\t", "\x07"]
    alphabet = [chr(code) for code in _LATIN] + others
    for char in alphabet:
        fast = unaccented_one_part(char)
        assert fast is None or fast == prepare(char, Policy.UNACCENT), repr(char)
    vietnamese = [c for c in alphabet if c.isascii() or "\u1ea0" <= c <= "\u1eff" or "\u0300" <= c <= "\u036f"
                  or c in "đĐ…“”–"] + others
    rng, hits = random.Random(11), 0
    for _ in range(5000):
        text = "".join(rng.choice(vietnamese) for _ in range(rng.randint(0, 170)))
        fast = unaccented_one_part(text)
        if fast is not None:
            hits += 1
            assert fast == prepare(text, Policy.UNACCENT), repr(text)
    assert hits > 1000  # the fast path really ran
    assert unaccented_one_part("Hồ sơ 000.32.22.H23 đã có kết quả.").text == "Ho so 000.32.22.H23 da co ket qua."
    assert unaccented_one_part("가") is None and unaccented_one_part("x" * 161) is None


async def test_opted_out_many_reads_the_phones_that_turned_notifications_off(quiet_client, settings, clock):
    from gateway.outbox import outbox_writer

    writer = outbox_writer(settings)
    sql = open_runner(settings.database.url)
    off, on = "+84912000111", "+84912000222"
    await sql.fetch("INSERT INTO phone_preference (phone_key, notifications_off, updated_at) VALUES (?,?,?)",
                    (writer.phone_key(off), True, clock.now))
    async with sql.transaction() as tx:
        assert await writer.opted_out_many(tx, [on, off, off]) == {off}
        assert await writer.opted_out_many(tx, []) == set()
        assert await writer.opted_out(tx, off) and not await writer.opted_out(tx, on)
    await sql.close()


async def test_a_run_keeps_claiming_within_the_batch_and_marks_everything(quiet_client, settings, clock):
    """``run`` claims again as the rows are handed out, never holding more than
    ``dispatch_batch`` unmarked rows, and leaves every row marked."""
    outbox = Outbox(settings, clock)
    for n in range(130):
        await outbox.enqueue(f"+8491200{n:04d}", f"Tin {n}", SmsKind.INFO, urgent=True)
    s = settings.replace(sms={"dispatch_batch": 25, "dispatch_concurrency": 10, "parts_per_second": 100000,
                              "idle_poll_seconds": 0.05})
    sql = open_runner(s.database.url)
    held: list[int] = []

    class Watching(ScriptedProvider):
        async def send(self, message):
            rows = await sql.fetch("SELECT count(*) FROM outbound_sms WHERE status='sending'")
            held.append(rows[0][0])
            await asyncio.sleep(0.001)
            return await super().send(message)

    provider = Watching([SendResult(SendOutcome.RETRY, error="once")])
    dispatcher, sql2 = await dispatcher_for(s, provider, clock)
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop))
    try:
        for _ in range(400):
            if await OutboundSms.filter(status=SmsStatus.SENT).count() == 129:
                break
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await task
    assert await OutboundSms.filter(status=SmsStatus.SENT).count() == 129
    assert await OutboundSms.filter(status=SmsStatus.QUEUED, attempts=1, last_error="once").count() == 1
    assert await OutboundSms.filter(status=SmsStatus.SENDING).count() == 0
    assert len(provider.calls) == 130 and len({m.id for m in provider.calls}) == 130
    assert max(held) <= 25
    await sql.close()
    await sql2.close()


async def test_a_row_that_breaks_the_dispatcher_is_retried_and_the_others_go(quiet_client, settings, clock):
    """An error outside the transport (here a row whose encoding is not one the gateway
    knows) marks that row for a retry; the other rows are sent, none stays claimed, and the
    dispatcher keeps its room to claim (run after run)."""
    outbox = Outbox(settings, clock)
    rows = [await outbox.enqueue(f"+8491200{n:04d}", f"Tin {n}", SmsKind.INFO, urgent=True) for n in range(12)]
    sql = open_runner(settings.database.url)
    await sql.fetch("UPDATE outbound_sms SET encoding='bogus' WHERE id=?", (rows[3].id,))
    s = settings.replace(sms={"dispatch_batch": 5, "dispatch_concurrency": 3, "parts_per_second": 100000})
    dispatcher, sql2 = await dispatcher_for(s, ScriptedProvider([]), clock)
    for _ in range(6):
        await dispatcher.dispatch_once()
    assert await OutboundSms.filter(status=SmsStatus.SENT).count() == 11
    broken = await OutboundSms.get(id=rows[3].id)
    assert broken.status is SmsStatus.QUEUED and broken.attempts == 1 and broken.last_error == "dispatcher error"
    assert await OutboundSms.filter(status=SmsStatus.SENDING).count() == 0
    assert dispatcher._held == 0
    await sql.close()
    await sql2.close()
