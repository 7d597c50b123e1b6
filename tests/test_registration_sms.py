"""Registration and delete-my-data by SMS: DK, DONG Y, OTP <code> or the bare code, XOA, XOA <code>;
through the real app's inbound webhook, the answers read from the console transport's inbox."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from gateway.app import SERVICES, SETTINGS
from menus.sms import registration_fields
from models.citizens import SMS_REGISTRATION_SECONDS
from models.entities import Citizen, DeletionAudit, OutboundSms, SmsKind, SmsRegistration
from tests.test_registration import (
    CALLER, CALLER_E164, ID_NUMBER, PIN, TZ, at_the_start_of_an_hour, codes_sent, inbox, register_directly,
    wait_for_sms, wrong,
)
from tests.test_sms import send_text

CONSENT = ("Se luu so CCCD ...234 (ma hoa), ho ten Nguyen Van An, SDT nay de xem ho so cua ban. "
           "Tra loi DONG Y de dong y. Xoa luc nao: gui XOA.")
HOWTO = "Gui DK <so CCCD> <ho ten> <ngay sinh DDMMYYYY>, vd DK 030090001234 Nguyen Van An 15031990."
NO_REGISTRATION = ("Khong co dang ky nao dang cho (hoac da het han). "
                   "Gui DK <so CCCD> <ho ten> <ngay sinh DDMMYYYY>.")


class Conversation:
    """A phone texting the service number, reading each answer from its inbox."""

    def __init__(self, client, msisdn: str = CALLER) -> None:
        self.client, self.msisdn = client, msisdn

    async def send(self, text: str) -> str:
        """Send ``text``; the reply to it, once delivered (an OTP comes as an SMS of its own)."""
        assert await send_text(self.client, text, sender=self.msisdn) == "accepted"
        reply = await OutboundSms.filter(kind=SmsKind.REPLY).order_by("-id").first()
        everything = await OutboundSms.filter(to_phone=reply.to_phone).count()
        messages = await wait_for_sms(self.client, self.msisdn, everything)
        assert any(m["text"] == reply.text for m in messages)
        assert reply.parts <= self.client.app[SETTINGS].sms.max_parts
        return reply.text


@pytest.mark.parametrize("message, expected", [
    ("DK 030090001234 Nguyễn Văn An 15031990", ("030090001234", "Nguyễn Văn An", "15031990")),
    ("dk nguyễn văn an 15/03/1990 030090001234", ("030090001234", "nguyễn văn an", "15/03/1990")),
    ("Đk: 030.090.001.234, Nguyễn Văn An, 15-03-1990", ("030.090.001.234", "Nguyễn Văn An", "15-03-1990")),
    ("DK030090001234 Nguyen Van An 15031990", ("030090001234", "Nguyen Van An", "15031990")),
    ("  dk   123456789   Le Thi B   01011985 ", ("123456789", "Le Thi B", "01011985")),
    ("DK 15031990 An 030090001234", ("030090001234", "An", "15031990")),
    ("DK", None),
    ("DK 030090001234 15031990", None),  # no name
    ("DK 030090001234 Nguyen Van An", None),  # no date
    ("DK 030090001234 123456789 Nguyen Van An 15031990", None),  # two numbers
])
def test_dk_takes_its_three_parts_in_any_order_and_keeps_the_name_as_typed(message, expected):
    fields = registration_fields(message)
    assert (None if fields is None else (fields.id_number, fields.name, fields.birth)) == expected


@pytest.mark.parametrize("message, typed_name", [
    ("DK 030090001234 Nguyễn Văn An 15031990", "Nguyễn Văn An"),
    ("dk nguyễn văn an 15/03/1990 030090001234", "nguyễn văn an"),
    ("Đk: 030.090.001.234, Nguyễn Văn An, 15-03-1990", "Nguyễn Văn An"),
])
async def test_dk_asks_for_consent_and_keeps_only_hashes(client, message, typed_name):
    talk = Conversation(client)
    said = "nguyen van an" if typed_name.islower() else "Nguyen Van An"  # the SMS goes unaccented
    assert await talk.send(message) == CONSENT.replace("Nguyen Van An", said)
    [held] = await SmsRegistration.all()
    assert held.stage == "consent" and held.id_last3 == "234"
    assert held.id_hash == client.app[SERVICES].citizens.id_hash(ID_NUMBER)
    assert held.name == typed_name
    assert await Citizen.all().count() == 0


@pytest.mark.parametrize("message, answer", [
    ("DK", HOWTO),
    ("DK 030090001234 15031990", HOWTO),
    ("DK 099090001234 Nguyen Van An 15031990",
     "So CCCD sai: ma tinh 099 khong ton tai. Gui lai: DK <so CCCD> <ho ten> <ngay sinh DDMMYYYY>."),
    ("DK 03009000123 Nguyen Van An 15031990", "So CCCD gom 12 so (CMND 9 so). Gui lai:"),
    ("DK 030090001234 Nguyen Van An 15032005", "Nam sinh khong khop so dinh danh. Gui lai:"),
    ("DK 030090001234 Nguyen Van An 31022000", "Ngay sinh khong co that. Gui lai:"),
    ("DK 030090001234 Nguyen Van An 01012099", "Ngay sinh phai truoc hom nay. Gui lai:"),
    ("DK 030090001234 N 15031990", "Ho ten dai tu 2 den 60 ky tu. Gui lai:"),
    ("DK 030090001234 Nguyen V4n An 15031990", "Ho ten chi gom chu cai, dau cach va ' - . Gui lai:"),
])
async def test_refused_dk_says_why_and_stores_nothing(client, message, answer):
    reply = await Conversation(client).send(message)
    assert reply.startswith(answer), reply
    assert await SmsRegistration.all().count() == 0


async def test_the_whole_flow_dk_dong_y_code_then_the_pin_on_ussd(client, phone, clock, settings):
    talk = Conversation(client)
    assert await talk.send("DK 030090001234 Nguyen Van An 15031990") == CONSENT
    expires = (clock.now + dt.timedelta(seconds=settings.otp.code_ttl_seconds)).astimezone(TZ)
    assert await talk.send("dong y") == (
        f"Da gui ma OTP trong tin rieng, het han luc {expires:%H:%M}. Tra loi OTP <ma> hoac chi 6 so cua ma.")
    assert (await SmsRegistration.get()).stage == "otp"
    [code] = await codes_sent(client, CALLER, 1)
    assert await talk.send(f"OTP {code}") == (
        "Dang ky thanh cong, chao Nguyen Van An! Quay *384# chon 2 de dat ma PIN, roi chon 3 de xem ho so.")
    [citizen] = await Citizen.all()
    assert (citizen.name, citizen.id_last3, citizen.pin_hash) == ("Nguyen Van An", "234", None)
    assert await SmsRegistration.all().count() == 0
    assert all(m["parts"] == 1 for m in await inbox(client, CALLER))  # every answer one SMS

    # The PIN is set on USSD: entry 2 asks for it straight away (the code already proved the phone).
    caller = phone(CALLER)
    await caller.dial()
    _, screen = await caller.press("2")
    assert screen.splitlines()[1] == "Nhap ma PIN moi 6 so (khong dung 123456, 111111...):"
    await caller.press(PIN)
    kind, _ = await caller.press(PIN)
    assert kind == "END"
    await caller.dial()
    await caller.press("3")
    _, screen = await caller.press(PIN)
    assert screen.startswith("Ho so cua ban (")


async def test_the_bare_six_digits_are_the_code(client):
    talk = Conversation(client)
    await talk.send("DK 030090001234 Nguyen Van An 15031990")
    await talk.send("DONG Y")
    [code] = await codes_sent(client, CALLER, 1)
    assert (await talk.send(code)).startswith("Dang ky thanh cong, chao Nguyen Van An!")
    assert await Citizen.all().count() == 1


async def test_wrong_codes_count_down_then_fail(client, clock):
    talk = Conversation(client)
    await talk.send("DK 030090001234 Nguyen Van An 15031990")
    await talk.send("DONG Y")
    [code] = await codes_sent(client, CALLER, 1)
    answers = []
    guess = code
    for _ in range(5):
        guess = wrong(guess)
        answers.append(await talk.send(f"OTP {guess}"))
    assert answers[:4] == [f"Ma khong dung, con {n} lan thu. Tra loi OTP <ma>." for n in (4, 3, 2, 1)]
    assert answers[4] == "Sai ma qua nhieu lan. Gui DONG Y de nhan ma moi."
    assert await talk.send(code) == "Sai ma qua nhieu lan. Gui DONG Y de nhan ma moi."
    clock.advance(121)  # past the duplicate window for a second DONG Y
    await talk.send("DONG Y")
    [_, fresh] = await codes_sent(client, CALLER, 2)
    assert (await talk.send(fresh)).startswith("Dang ky thanh cong")


async def test_a_code_before_consent_or_without_a_registration(client):
    talk = Conversation(client)
    assert await talk.send("123456") == NO_REGISTRATION
    assert await talk.send("DONG Y") == NO_REGISTRATION
    await talk.send("DK 030090001234 Nguyen Van An 15031990")
    assert await talk.send("OTP 654321") == "Tra loi DONG Y de dong y luu du lieu, roi nhan ma OTP."
    assert await talk.send("OTP 12") == "Gui OTP kem 6 so cua ma OTP, vd OTP 123456."
    assert await OutboundSms.filter(kind=SmsKind.OTP).count() == 0


async def test_an_expired_registration_and_an_expired_code(client, clock):
    talk = Conversation(client)
    await talk.send("DK 030090001234 Nguyen Van An 15031990")
    clock.advance(SMS_REGISTRATION_SECONDS + 1)
    assert await talk.send("DONG Y") == NO_REGISTRATION
    assert await SmsRegistration.all().count() == 0

    await talk.send("DK 030090001234 Nguyen Van An 15031990")
    clock.advance(121)  # the same text again within the duplicate window would be dropped
    await talk.send("DONG Y")
    [code] = await codes_sent(client, CALLER, 1)
    clock.advance(301)
    assert await talk.send(code) == "Ma da het han hoac da dung. Gui DONG Y de nhan ma moi."
    await talk.send("DONG Y")
    [_, fresh] = await codes_sent(client, CALLER, 2)
    assert (await talk.send(f"OTP {fresh}")).startswith("Dang ky thanh cong")


async def test_a_used_code_cannot_register_twice(client, clock):
    talk = Conversation(client)
    await talk.send("DK 030090001234 Nguyen Van An 15031990")
    await talk.send("DONG Y")
    [code] = await codes_sent(client, CALLER, 1)
    await talk.send(f"OTP {code}")
    clock.advance(121)
    assert await talk.send(f"OTP {code}") == NO_REGISTRATION
    assert await talk.send("DK 030090001234 Nguyen Van An 15031990") == (
        "So nay da dang ky. Quen ma PIN? Quay *384# chon 2. Xoa du lieu: gui XOA.")
    assert await Citizen.all().count() == 1


async def test_a_second_dong_y_waits_for_the_resend_time_and_the_hourly_limit_holds(client, clock, settings):
    at_the_start_of_an_hour(clock)
    talk = Conversation(client)
    await talk.send("DK 030090001234 Nguyen Van An 15031990")
    await talk.send("DONG Y")
    assert (await talk.send("Dong y.")).startswith("Da gui ma OTP trong tin rieng")  # the code just sent still works
    for _ in range(settings.otp.per_phone_per_hour - 1):
        clock.advance(121)
        assert (await talk.send("DONG Y")).startswith("Da gui ma OTP trong tin rieng")
    clock.advance(121)
    assert re.fullmatch(r"Da gui qua nhieu ma\. Thu lai sau \d+ phut\.", await talk.send("DONG Y"))
    assert await OutboundSms.filter(kind=SmsKind.OTP).count() == settings.otp.per_phone_per_hour


# XOA ---------------------------------------------------------------------------------------------

async def test_xoa_with_nothing_stored(client):
    assert await Conversation(client).send("XOA") == "So nay khong co du lieu ca nhan nao duoc luu."
    assert await OutboundSms.filter(kind=SmsKind.OTP).count() == 0


async def test_xoa_sends_a_code_and_xoa_code_deletes(client, clock, settings):
    await register_directly(client, clock)
    talk = Conversation(client)
    await talk.send("HUY")
    expires = (clock.now + dt.timedelta(seconds=settings.otp.code_ttl_seconds)).astimezone(TZ)
    assert await talk.send("Xóa") == (
        f"Da gui ma OTP. Tra loi XOA <ma> truoc {expires:%H:%M} de xoa so CCCD, ho ten, ma PIN, lua chon tin bao. "
        "Ho so o Mot cua van giu.")
    [code] = await codes_sent(client, CALLER, 1)
    assert "xoa du lieu ca nhan DVC" in next(m["text"] for m in await inbox(client, CALLER) if code in m["text"])
    assert await talk.send(code) == "De xoa du lieu, tra loi XOA <ma OTP>."  # the bare code does not delete
    assert await talk.send(f"XOA {wrong(code)}") == "Ma khong dung, con 4 lan thu. Tra loi XOA <ma>."
    assert await talk.send("XOA 12") == "Gui XOA kem 6 so cua ma OTP, vd XOA 123456."
    assert await Citizen.all().count() == 1
    assert await talk.send(f"xoa {code}") == (
        "Da xoa du lieu ca nhan cua so nay (CCCD, ho ten, ma PIN, lua chon tin bao). "
        "Gui HUY neu khong muon nhan tin bao ho so.")
    assert await Citizen.all().count() == 0
    [audit] = await DeletionAudit.all()
    assert (audit.channel, audit.removed) == ("sms", "citizen,pin,preferences,sms_texts")
    clock.advance(121)
    assert await talk.send(f"XOA {code}") == "Ma da het han hoac da dung. Gui XOA de nhan ma moi."
    assert await DeletionAudit.all().count() == 1


async def test_xoa_also_drops_a_registration_waiting_for_consent(client):
    talk = Conversation(client)
    await talk.send("DK 030090001234 Nguyen Van An 15031990")
    await talk.send("XOA")
    [code] = await codes_sent(client, CALLER, 1)
    await talk.send(f"XOA {code}")
    assert await SmsRegistration.all().count() == 0
    assert (await DeletionAudit.get()).removed == "sms_registration,sms_texts"  # the consent reply
    assert await talk.send("DONG Y") == NO_REGISTRATION


async def test_an_opted_out_phone_still_gets_its_codes_and_answers(client):
    talk = Conversation(client)
    await talk.send("HUY")
    await talk.send("DK 030090001234 Nguyen Van An 15031990")
    await talk.send("DONG Y")
    [code] = await codes_sent(client, CALLER, 1)
    assert (await talk.send(code)).startswith("Dang ky thanh cong")
    assert await OutboundSms.filter(to_phone=CALLER_E164, status="failed").count() == 0
