"""Registration, PIN, "my dossiers" and delete-my-data over USSD: the real app over real HTTP,
the code read from the console transport's inbox as the phone would read it."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import threading
import zoneinfo

import pytest
from tortoise import connections

from gateway.app import SERVICES, SQL
from gateway.phone_sim import run_phone
from gateway.phones import phone_key
from gateway.sessions import SessionStore
from menus.engine import clip_echo
from models.entities import (
    Citizen, DeletionAudit, Dossier, OutboundSms, PhonePreference, SmsKind, SmsRegistration, UssdSession,
)
from models.seed import DEMO_PHONE
from tests.test_sms import send_text

CALLER = "0912000111"
CALLER_E164 = "+84912000111"
ID_NUMBER = "030090001234"  # Hai Duong, a man born in 1990
NAME = "Nguyen Van An"
BIRTH = "15031990"
PIN = "482915"
OTHER_PIN = "538201"
TZ = zoneinfo.ZoneInfo("Asia/Ho_Chi_Minh")
_CODE = re.compile(r"Ma OTP (\d{6}) ")


async def inbox(client, msisdn: str) -> list[dict]:
    response = await client.get("/sms/console/sent", params={"msisdn": msisdn})
    return (await response.json())["messages"]


async def wait_for_sms(client, msisdn: str, count: int, timeout: float = 5.0) -> list[dict]:
    """The phone's inbox once it holds ``count`` messages; fails loudly after ``timeout``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        messages = await inbox(client, msisdn)
        if len(messages) >= count:
            return messages
        assert asyncio.get_running_loop().time() < deadline, f"{len(messages)} of {count} SMS reached {msisdn}: {messages}"
        await asyncio.sleep(0.02)


async def codes_sent(client, msisdn: str, count: int) -> list[str]:
    """The OTP codes delivered to a phone, once there are ``count`` of them."""
    deadline = asyncio.get_running_loop().time() + 5.0
    while True:
        codes = [m.group(1) for m in (_CODE.search(sms["text"]) for sms in await inbox(client, msisdn)) if m]
        if len(codes) >= count:
            return codes
        assert asyncio.get_running_loop().time() < deadline, f"{len(codes)} of {count} codes reached {msisdn}"
        await asyncio.sleep(0.02)


def at_the_start_of_an_hour(clock) -> None:
    """Move the clock to just after the next full hour: the hourly OTP count runs in fixed UTC
    hours, so a test that fills it must not straddle two."""
    clock.now = clock.now.replace(minute=0, second=1, microsecond=0) + dt.timedelta(hours=1)


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


async def to_code_screen(caller, id_number: str = ID_NUMBER, name: str = NAME, birth: str = BIRTH,
                         shortcut: bool = False) -> str:
    if shortcut:  # *384*2#: straight to the consent, beside any other dialogue of this phone
        await caller.dial("*384*2#")
    else:
        await caller.dial()
        await caller.press("2")
    await caller.press("1")
    await caller.press(id_number)
    await caller.press(name)
    kind, screen = await caller.press(birth)
    assert kind == "CON" and screen.startswith("Ma OTP\nMa da gui qua SMS, het han luc "), screen
    return screen


async def register_by_ussd(client, caller, pin: str = PIN, codes_before: int = 0) -> tuple[str, str]:
    await to_code_screen(caller)
    [*_, code] = await codes_sent(client, caller.msisdn, codes_before + 1)
    await caller.press(code)
    await caller.press(pin)
    return await caller.press(pin)


async def register_directly(client, clock, msisdn: str = CALLER_E164, pin: str | None = PIN, id_number: str = ID_NUMBER,
                            name: str = NAME):
    citizens = client.app[SERVICES].citizens
    async with client.app[SQL].transaction() as tx:
        return await citizens.register(tx, msisdn, citizens.id_hash(id_number), id_number[-3:], name, "vi", clock.now,
                                       pin_hash=await citizens.hash_pin(pin) if pin else None)


async def wait_until_otp_texts_cleared(timeout: float = 5.0) -> None:
    """The dispatcher clears an OTP's text once it marked it sent: wait for every one."""
    deadline = asyncio.get_running_loop().time() + timeout
    while await OutboundSms.filter(kind=SmsKind.OTP).exclude(text="").exists():
        assert asyncio.get_running_loop().time() < deadline, "an OTP text is still in the outbox"
        await asyncio.sleep(0.02)


# The journey ----------------------------------------------------------------------------------

async def test_the_whole_journey_as_the_phone_dials_it(client, phone, clock, settings):
    caller = phone(CALLER)
    await caller.dial()
    _, screen = await caller.press("2")
    assert "Luu so CCCD (ma hoa), ho ten, SDT nay" in screen and "1 Dong y" in screen
    _, screen = await caller.press("1")
    assert screen.splitlines() == ["Dang ky tai khoan", "Nhap so CCCD 12 so (hoac CMND 9 so):", "0 Lai 00 Dau"]
    _, screen = await caller.press(ID_NUMBER)
    assert screen.splitlines()[1] == "Nhap ho ten (co dau hoac khong dau):"
    _, screen = await caller.press(NAME)
    assert screen.splitlines()[1] == "Nhap ngay sinh DDMMYYYY, vd 15031990:"
    assert await Citizen.all().count() == 0 and await OutboundSms.all().count() == 0  # nothing yet
    _, screen = await caller.press(BIRTH)
    expires = (clock.now + dt.timedelta(seconds=settings.otp.code_ttl_seconds)).astimezone(TZ).strftime("%H:%M")
    assert screen.splitlines() == [
        "Ma OTP", f"Ma da gui qua SMS, het han luc {expires}. Nhap 6 so cua ma (1 = gui lai):", "0 Lai 00 Dau"]
    [otp_sms] = await wait_for_sms(client, CALLER, 1)
    assert otp_sms["text"].startswith("Ma OTP ") and "dang ky tai khoan DVC" in otp_sms["text"]
    assert "KHONG chia se ma nay" in otp_sms["text"]
    [code] = await codes_sent(client, CALLER, 1)
    _, screen = await caller.press(code)
    assert screen.splitlines()[1] == "Tao ma PIN 6 so de xem ho so (khong dung ngay sinh, 123456, 111111...):"
    _, screen = await caller.press(PIN)
    assert screen.splitlines()[1] == "Nhap lai ma PIN:"
    kind, screen = await caller.press(PIN)
    assert kind == "END"
    assert screen == "Dang ky tai khoan\nDang ky thanh cong. Chao Nguyen Van An! Chon 3 Ho so cua toi de xem ho so cua ban."

    [citizen] = await Citizen.all()
    citizens = client.app[SERVICES].citizens
    assert citizen.phone_key == phone_key(CALLER_E164, settings.security.secret_key)
    assert citizen.id_hash == citizens.id_hash(ID_NUMBER) and citizen.id_last3 == "234"
    assert citizen.name == NAME and citizen.lang == "vi"
    assert citizen.pin_hash.startswith("scrypt$") and await citizens.verify_pin(PIN, citizen.pin_hash)
    messages = await wait_for_sms(client, CALLER, 2)
    confirmation = messages[1]["text"]
    assert confirmation == (
        "Chao Nguyen Van An, ban da dang ky DVC voi CCCD ...234. Xem ho so: quay *384# chon 3. "
        "Xoa du lieu: gui XOA. Khong phai ban? Goi 0987.542.228.")
    assert messages[1]["parts"] == 1
    reply = await OutboundSms.get(kind=SmsKind.REPLY)
    assert reply.to_phone == CALLER_E164

    # And the PIN opens "my dossiers" straight away.
    await caller.dial()
    _, screen = await caller.press("3")
    assert screen.splitlines() == ["Ho so cua toi", "Nhap ma PIN 6 so:", "0 Lai 00 Dau"]
    _, screen = await caller.press(PIN)
    assert screen.splitlines()[0] == "Ho so cua ban (0):"


async def test_the_phone_simulator_walks_registration_reading_the_code_from_its_inbox(client):
    out: list[str] = []
    code_seen, confirmation_seen = threading.Event(), threading.Event()

    def write(line: str) -> None:
        out.append(line)
        if line.startswith("SMS ") and _CODE.search(line):
            code_seen.set()
        if line.startswith("SMS ") and "ban da dang ky DVC voi CCCD ...234" in line:
            confirmation_seen.set()

    def typed_code() -> str:
        assert code_seen.wait(10), "the simulator never showed the OTP SMS"
        return _CODE.search(next(line for line in reversed(out) if _CODE.search(line))).group(1)

    def quit_once_confirmed() -> str:
        assert confirmation_seen.wait(10), "the simulator never showed the confirmation SMS"
        return "q"

    keys = iter(["2", "1", ID_NUMBER, NAME, BIRTH, typed_code, PIN, PIN, quit_once_confirmed])

    def read(prompt: str) -> str:
        key = next(keys)
        return key() if callable(key) else key

    url = str(client.make_url("")).rstrip("/")
    assert await run_phone(url, CALLER, "*384#", read=read, write=write) == 0
    screens = "\n".join(out)
    assert "| Ma da gui qua SMS, het han luc" in screens
    assert "| Dang ky thanh cong. Chao Nguyen Van An!" in screens
    assert await Citizen.all().count() == 1


# Every wrong input re-prompts and says what was wrong -------------------------------------------

@pytest.mark.parametrize("step, typed, notice", [
    ("id", "099090001234", "So CCCD sai: ma tinh 099 khong ton tai."),
    ("id", "003090001234", "So CCCD sai: ma tinh 003 khong ton tai."),
    ("id", "03009000123", "So CCCD gom 12 so (CMND 9 so)."),
    ("name", "An2", "Ho ten chi gom chu cai, dau cach va ' - ."),
    ("name", "A", "Ho ten dai tu 2 den 60 ky tu."),
    ("birth", "01012099", "Ngay sinh phai truoc hom nay."),
    ("birth", "15032005", "Nam sinh khong khop so dinh danh."),
    ("birth", "15031991", "Nam sinh khong khop so dinh danh."),
    ("birth", "31022000", "Ngay sinh khong co that."),
    ("birth", "1503199", "Ngay sinh nhap dang DDMMYYYY, vd 15031990."),
    ("birth", "31121899", "Ngay sinh khong the truoc nam 1900."),
    ("code", "12ab", "Ma OTP gom 6 chu so."),
    ("code", "wrong", "Ma sai, con 4 lan thu."),
    ("pin", "111111", "PIN de doan: 6 so giong nhau."),
    ("pin", "123456", "PIN de doan: day so lien tiep."),
    ("pin", "121212", "PIN de doan: lap lai mot nhom so."),
    ("pin", "150390", "PIN khong duoc la ngay sinh."),
    ("pin", "199003", "PIN khong duoc la ngay sinh."),
    ("pin", "12345", "Ma PIN gom dung 6 chu so."),
    ("again", "538201", "Hai lan nhap khac nhau. Nhap lai, hoac 0 de tao ma khac."),
])
async def test_every_wrong_input_reprompts_and_says_why(client, phone, step, typed, notice):
    caller = phone(CALLER)
    await caller.dial()
    await caller.press("2")
    answers = {"id": ID_NUMBER, "name": NAME, "birth": BIRTH}
    steps = ["id", "name", "birth", "code", "pin", "again"]
    _, before = await caller.press("1")
    for current in steps[: steps.index(step)]:
        value = answers.get(current)
        if current == "code":
            [value] = await codes_sent(client, CALLER, 1)
        elif current in ("pin", "again"):
            value = PIN
        _, before = await caller.press(value)
    if typed == "wrong":
        [code] = await codes_sent(client, CALLER, 1)
        typed = wrong(code)
    kind, screen = await caller.press(typed)
    assert kind == "CON"
    lines = screen.splitlines()
    assert lines[0] == notice
    assert lines[1:] == before.splitlines()[1:]  # the same question again
    assert await Citizen.all().count() == 0


async def test_a_mismatched_pin_can_be_chosen_again_with_0(client, phone):
    caller = phone(CALLER)
    await to_code_screen(caller)
    [code] = await codes_sent(client, CALLER, 1)
    await caller.press(code)
    await caller.press(PIN)
    _, screen = await caller.press(OTHER_PIN)
    assert screen.startswith("Hai lan nhap khac nhau.")
    _, screen = await caller.press("0")
    assert screen.splitlines()[1].startswith("Tao ma PIN 6 so")
    await caller.press(OTHER_PIN)
    kind, screen = await caller.press(OTHER_PIN)
    assert kind == "END" and "Dang ky thanh cong" in screen
    citizen = await Citizen.get()
    assert await client.app[SERVICES].citizens.verify_pin(OTHER_PIN, citizen.pin_hash)


async def test_a_9_digit_cmnd_registers_without_a_year_check(client, phone):
    caller = phone(CALLER)
    await to_code_screen(caller, id_number="123456789", birth="01011985")
    [code] = await codes_sent(client, CALLER, 1)
    await caller.press(code)
    await caller.press(PIN)
    kind, _ = await caller.press(PIN)
    assert kind == "END"
    assert (await Citizen.get()).id_last3 == "789"


# Codes: resumed, resent, limited, replayed --------------------------------------------------------

async def test_the_code_can_be_typed_in_a_resumed_session(client, phone, clock):
    caller = phone(CALLER)
    code_screen = await to_code_screen(caller)
    [code] = await codes_sent(client, CALLER, 1)
    clock.advance(40)  # the network dropped the dialogue; the citizen dials again
    _, screen = await caller.dial()
    assert screen.splitlines() == ["Ban dang dung giua chung.", "1 Tiep tuc", "2 Bat dau lai"]
    _, screen = await caller.press("1")
    assert screen == code_screen
    await caller.press(code)
    await caller.press(PIN)
    kind, screen = await caller.press(PIN)
    assert kind == "END" and "Dang ky thanh cong" in screen
    assert await Citizen.all().count() == 1


async def test_resend_after_the_wait_and_the_old_code_stops_working(client, phone, clock):
    caller = phone(CALLER)
    await to_code_screen(caller)
    [first] = await codes_sent(client, CALLER, 1)
    _, screen = await caller.press("1")
    assert screen.splitlines()[0] == "Doi 60 giay roi bam 1 de gui lai."
    clock.advance(61)
    _, screen = await caller.press("1")
    assert screen.splitlines()[0] == "Da gui ma moi qua SMS."
    expires = (clock.now + dt.timedelta(seconds=300)).astimezone(TZ).strftime("%H:%M")
    assert f"het han luc {expires}" in screen
    [_, second] = await codes_sent(client, CALLER, 2)
    if first != second:
        _, screen = await caller.press(first)
        assert screen.splitlines()[0] == "Ma sai, con 4 lan thu."
    _, screen = await caller.press(second)
    assert screen.splitlines()[1].startswith("Tao ma PIN 6 so")


async def test_an_expired_code_is_refused_and_a_new_one_can_be_asked_for(client, phone, clock):
    caller = phone(CALLER)
    await to_code_screen(caller)
    [code] = await codes_sent(client, CALLER, 1)
    clock.advance(170)
    _, screen = await caller.press("12")  # a hop before the session's 180 s run out
    assert screen.splitlines()[0] == "Ma OTP gom 6 chu so."
    clock.advance(140)  # 310 s after it was sent
    _, screen = await caller.press(code)
    assert screen.splitlines() == ["Ma da het han hoac da dung.", "Ma da het han. Bam 1 de nhan ma moi qua SMS:",
                                   "0 Lai 00 Dau"]
    _, screen = await caller.press("1")
    assert screen.splitlines()[0] == "Da gui ma moi qua SMS."
    [_, fresh] = await codes_sent(client, CALLER, 2)
    _, screen = await caller.press(fresh)
    assert screen.splitlines()[1].startswith("Tao ma PIN 6 so")


async def test_five_wrong_codes_fail_the_challenge(client, phone):
    caller = phone(CALLER)
    await to_code_screen(caller)
    [code] = await codes_sent(client, CALLER, 1)
    notices = []
    guess = code
    for _ in range(5):
        guess = wrong(guess)
        if guess == code:
            guess = wrong(guess)
        _, screen = await caller.press(guess)
        notices.append(screen.splitlines()[0])
    assert notices == ["Ma sai, con 4 lan thu.", "Ma sai, con 3 lan thu.", "Ma sai, con 2 lan thu.",
                       "Ma sai, con 1 lan thu.", "Sai ma qua nhieu lan."]
    _, screen = await caller.press(code)  # even the right one, now
    assert screen.splitlines()[0] == "Sai ma qua nhieu lan."
    _, screen = await caller.press("1")  # a failed code is no live one: a new one at once
    assert screen.splitlines()[0] == "Da gui ma moi qua SMS."
    [_, fresh] = await codes_sent(client, CALLER, 2)
    _, screen = await caller.press(fresh)
    assert screen.splitlines()[1].startswith("Tao ma PIN 6 so")


async def test_the_hourly_limit_of_codes_is_said_and_the_hop_still_commits(client, phone, clock, settings):
    at_the_start_of_an_hour(clock)
    caller = phone(CALLER)
    await to_code_screen(caller)
    for sent in range(2, settings.otp.per_phone_per_hour + 1):
        clock.advance(61)
        _, screen = await caller.press("1")
        assert screen.splitlines()[0] == "Da gui ma moi qua SMS.", sent
    clock.advance(61)
    _, screen = await caller.press("1")
    assert re.match(r"Da gui qua nhieu ma\. Thu lai sau \d+ phut\.", screen.splitlines()[0]), screen
    session = await UssdSession.get(external_id=caller.session_id)
    assert session.last_reply.startswith("Da gui qua nhieu ma")  # the refusal was stored with the hop
    assert await OutboundSms.filter(kind=SmsKind.OTP).count() == settings.otp.per_phone_per_hour


async def test_a_registered_phone_gets_a_pin_reset_through_a_code(client, phone, clock):
    await register_directly(client, clock)
    caller = phone(CALLER)
    await caller.dial()
    _, screen = await caller.press("2")
    assert screen.splitlines() == [
        "Ma PIN", "So nay da dang ky (CCCD ...234). Quen ma PIN? Dat lai bang ma OTP gui qua SMS.", "1 Gui ma OTP",
        "0 Lai 00 Dau"]
    _, screen = await caller.press("1")
    assert screen.startswith("Ma OTP\nMa da gui qua SMS")
    [code] = await codes_sent(client, CALLER, 1)
    assert "dat lai ma PIN DVC" in (await inbox(client, CALLER))[0]["text"]
    _, screen = await caller.press(code)
    assert screen.splitlines()[1] == "Nhap ma PIN moi 6 so (khong dung 123456, 111111...):"
    _, screen = await caller.press("000000")
    assert screen.splitlines()[0] == "PIN de doan: 6 so giong nhau."
    await caller.press(OTHER_PIN)
    kind, screen = await caller.press(OTHER_PIN)
    assert (kind, screen) == ("END", "Ma PIN\nDa dat ma PIN. Chon 3 Ho so cua toi de xem ho so cua ban.")
    messages = await wait_for_sms(client, CALLER, 2)
    assert messages[1]["text"] == "Ma PIN DVC cua so nay vua duoc dat. Neu khong phai ban, goi ngay 0987.542.228."
    citizen = await Citizen.get()
    citizens = client.app[SERVICES].citizens
    assert await citizens.verify_pin(OTHER_PIN, citizen.pin_hash) and not await citizens.verify_pin(PIN, citizen.pin_hash)
    assert await Citizen.all().count() == 1


async def test_a_phone_registered_by_sms_sets_its_first_pin(client, phone, clock):
    await register_directly(client, clock, pin=None)
    caller = phone(CALLER)
    await caller.dial()
    _, screen = await caller.press("3")
    assert screen.splitlines() == ["Ho so cua toi", "Ban chua co ma PIN.", "1 Dat ma PIN", "0 Lai 00 Dau"]
    _, screen = await caller.press("1")
    assert screen.splitlines()[1] == "Nhap ma PIN moi 6 so (khong dung 123456, 111111...):"
    await caller.press(PIN)
    kind, _ = await caller.press(PIN)
    assert kind == "END"
    assert await client.app[SERVICES].citizens.verify_pin(PIN, (await Citizen.get()).pin_hash)
    assert not [sms for sms in await inbox(client, CALLER) if _CODE.search(sms["text"])]  # no code was needed


# PIN brute force ----------------------------------------------------------------------------------

async def test_five_wrong_pins_lock_my_dossiers_for_fifteen_minutes(client, phone, clock, settings):
    await register_directly(client, clock)
    caller = phone(CALLER)
    await caller.dial()
    await caller.press("3")
    _, screen = await caller.press("12")
    assert screen.splitlines()[0] == "Ma PIN gom dung 6 chu so."  # not counted
    notices = []
    for guess in ("100001", "100002", "100003", "100004"):
        _, screen = await caller.press(guess)
        notices.append(screen.splitlines()[0])
    assert notices == ["Sai ma PIN, con 4 lan thu.", "Sai ma PIN, con 3 lan thu.", "Sai ma PIN, con 2 lan thu.",
                       "Sai ma PIN, con 1 lan thu."]
    kind, screen = await caller.press("100005")
    until = (clock.now + dt.timedelta(seconds=settings.pin.lock_seconds)).astimezone(TZ)
    assert kind == "END"
    assert screen == (f"Ho so cua toi\nSai ma PIN qua nhieu lan. Thu lai sau {until:%H:%M} ngay {until:%d/%m}, "
                      "hoac chon 2 de dat lai ma PIN.")
    clock.advance(600)
    await caller.dial()
    kind, screen = await caller.press("3")  # locked: not even asked
    assert kind == "END" and "Sai ma PIN qua nhieu lan" in screen
    clock.advance(301)
    await caller.dial()
    _, screen = await caller.press("3")
    assert screen.splitlines()[1] == "Nhap ma PIN 6 so:"
    _, screen = await caller.press(PIN)
    assert screen.startswith("Ho so cua ban (")
    assert (await Citizen.get()).pin_failures == 0


# My dossiers ---------------------------------------------------------------------------------------

async def list_labels(caller, screen: str) -> tuple[list[str], dict[str, tuple[int, str]]]:
    """Every dossier label of the list, and where each is: label -> (page, key)."""
    labels, where, page = [], {}, 0
    while True:
        for line in screen.splitlines()[1:-1]:
            key, _, label = line.partition(" ")
            labels.append(label)
            where[label] = (page, key)
        if "9 Tiep" not in screen:
            return labels, where
        _, screen = await caller.press("9")
        page += 1


async def test_my_dossiers_by_phone_newest_first_each_opening_to_its_status(client, phone, clock):
    await register_directly(client, clock, msisdn=DEMO_PHONE)
    caller = phone(DEMO_PHONE)
    await caller.dial()
    await caller.press("3")
    _, screen = await caller.press(PIN)
    mine = await Dossier.filter(applicant_phone=DEMO_PHONE).order_by("-received_at", "-id").prefetch_related("procedure")
    assert len(mine) > 7  # more than a page
    assert screen.splitlines()[0] == f"Ho so cua ban ({len(mine)}):"
    labels, where = await list_labels(caller, screen)
    assert labels == [f"{d.received_at.astimezone(TZ):%d/%m/%y} {clip_echo(d.procedure.name, 34)}" for d in mine]
    _, screen = await caller.press(where[labels[-1]][1])  # the oldest, on the last page
    assert screen.splitlines()[0] == f"Ho so {mine[-1].code}"


async def test_a_dropped_dialogue_resumes_before_the_pin_never_behind_it(client, phone, clock):
    await register_directly(client, clock, msisdn=DEMO_PHONE)
    caller = phone(DEMO_PHONE)
    await caller.dial()
    await caller.press("3")
    _, pin_prompt = await caller.press("1" * 5)  # a wrong PIN first: the prompt, with its notice
    _, listing = await caller.press(PIN)
    assert listing.startswith("Ho so cua ban")
    _, opened = await caller.press("1")  # into a dossier, personal details shown
    clock.advance(200)  # the session drops; somebody dials again from this phone
    _, screen = await caller.dial()
    assert screen.startswith("Ban dang dung giua chung.")
    _, screen = await caller.press("1")  # continue: back to the PIN, not to the list
    assert "PIN" in screen and not screen.startswith("Ho so cua ban") and screen != opened
    _, screen = await caller.press(PIN)
    assert screen == listing


async def test_my_dossiers_by_id_hash_show_personal_details_whichever_phone_filed_them(client, phone, clock):
    citizens = client.app[SERVICES].citizens
    await register_directly(client, clock)
    filed_elsewhere = await Dossier.filter(applicant_phone=DEMO_PHONE, status_note__not="").order_by("received_at").limit(2)
    older, newer = filed_elsewhere
    await Dossier.filter(id__in=[older.id, newer.id]).update(applicant_id_hash=citizens.id_hash(ID_NUMBER))
    await Dossier.filter(id=newer.id).update(received_at=clock.now - dt.timedelta(days=1))
    newer = await Dossier.get(id=newer.id).prefetch_related("procedure")
    caller = phone(CALLER)

    # Registered with that ID number, but nothing from the one-stop system ties it to this
    # phone: knowing somebody's ID number opens none of their dossiers.
    await caller.dial()
    await caller.press("3")
    _, screen = await caller.press(PIN)
    assert screen.splitlines()[0] == "Ho so cua ban (0):"

    # The one-stop system filed a dossier of this ID number with this phone: now the ID counts.
    linking = await Dossier.filter(applicant_phone=DEMO_PHONE, status_note="").order_by("-received_at").first()
    await Dossier.filter(id=linking.id).update(applicant_phone=CALLER_E164, applicant_id_hash=citizens.id_hash(ID_NUMBER),
                                               received_at=clock.now - dt.timedelta(days=400))
    await caller.dial()
    await caller.press("3")
    _, screen = await caller.press(PIN)
    lines = screen.splitlines()
    assert lines[0] == "Ho so cua ban (3):"
    assert lines[1].startswith(f"1 {newer.received_at.astimezone(TZ):%d/%m/%y} ")
    assert lines[2].startswith(f"2 {older.received_at.astimezone(TZ):%d/%m/%y} ")
    _, screen = await caller.press("1")
    assert screen.splitlines()[0] == f"Ho so {newer.code}"
    text = screen
    while "9 Tiep" in screen:
        _, screen = await caller.press("9")
        text += "\n" + screen
    assert f"Nguoi nop: {newer.applicant_name}." in text.replace("\n", " ")
    assert "Goi tu so dien thoai nguoi nop" not in text

    # The same dossier looked up by code from this phone, without the PIN: public words only.
    await caller.dial()
    await caller.press("1")
    _, screen = await caller.press(newer.code)
    assert newer.applicant_name not in screen


# Delete my data ------------------------------------------------------------------------------------

async def test_delete_my_data_by_ussd_with_a_code(client, phone, clock):
    await register_directly(client, clock)
    await send_text(client, "HUY", sender=CALLER)  # a preference to delete too
    await wait_for_sms(client, CALLER, 1)
    caller = phone(CALLER)
    await caller.dial()
    await caller.press("6")
    _, screen = await caller.press("2")
    assert screen.splitlines() == [
        "Xoa du lieu ca nhan",
        "Se xoa so CCCD (ma hoa), ho ten, ma PIN, lua chon tin bao. Ho so o Mot cua van giu. Xac nhan bang ma OTP.",
        "1 Gui ma OTP", "0 Lai 00 Dau"]
    _, screen = await caller.press("1")
    assert screen.startswith("Ma OTP\nMa da gui qua SMS")
    [code] = await codes_sent(client, CALLER, 1)
    assert await Citizen.all().count() == 1
    _, screen = await caller.press(wrong(code))
    assert screen.splitlines()[0] == "Ma sai, con 4 lan thu."
    kind, screen = await caller.press(code)
    assert (kind, screen) == ("END", "Xoa du lieu ca nhan\nDa xoa du lieu ca nhan cua ban. Tin bao ho so van gui; "
                                     "nhan HUY de ngung.")
    assert await Citizen.all().count() == 0
    assert await PhonePreference.all().count() == 0 and await SmsRegistration.all().count() == 0
    [audit] = await DeletionAudit.all()
    assert (audit.channel, audit.removed) == ("ussd", "citizen,pin,preferences,sms_texts")
    # What was sent before (the confirmation quoting the name) keeps its delivery record only.
    assert not await OutboundSms.filter(text__contains=NAME).exists()
    assert await OutboundSms.filter(to_phone=CALLER_E164, text="").exists()
    messages = await wait_for_sms(client, CALLER, 3)
    assert messages[-1]["text"].startswith("Da xoa du lieu ca nhan cua so nay (CCCD, ho ten, ma PIN, lua chon tin bao).")

    # Nothing left to delete now.
    await caller.dial()
    await caller.press("6")
    kind, screen = await caller.press("2")
    assert (kind, screen) == ("END", "Xoa du lieu ca nhan\nSo nay khong co du lieu ca nhan nao duoc luu.")


# One citizen per phone; a hop does all of its work or none ------------------------------------------

async def at_the_last_pin(client, caller, codes_before: int, shortcut: bool = False) -> None:
    await to_code_screen(caller, shortcut=shortcut)
    [*_, code] = await codes_sent(client, caller.msisdn, codes_before + 1)
    await caller.press(code)
    await caller.press(PIN)


async def test_two_sessions_registering_one_phone_at_once_make_one_citizen(client, phone):
    first, second = phone(CALLER), phone(CALLER)
    await at_the_last_pin(client, first, 0)
    await at_the_last_pin(client, second, 1, shortcut=True)
    answers = await asyncio.gather(first.press(PIN), second.press(PIN))
    screens = sorted(screen for _, screen in answers)
    assert [kind for kind, _ in answers] == ["END", "END"]
    assert screens == [
        "Dang ky tai khoan\nDang ky thanh cong. Chao Nguyen Van An! Chon 3 Ho so cua toi de xem ho so cua ban.",
        "Dang ky tai khoan\nSo dien thoai nay da duoc dang ky. Chon 2 de dat lai ma PIN.",
    ]
    assert await Citizen.all().count() == 1
    assert await OutboundSms.filter(kind=SmsKind.REPLY).count() == 1


async def test_a_crash_between_the_citizen_insert_and_the_commit_leaves_nothing(client, phone, monkeypatch):
    caller = phone(CALLER)
    await at_the_last_pin(client, caller, 0)
    real_advance = SessionStore.advance
    seen_inside: list[int] = []

    async def crash(self, tx, *args, **kwargs):
        # The step already registered the citizen in this very transaction...
        seen_inside.append((await tx.fetch("SELECT count(*) FROM citizen"))[0][0])
        raise RuntimeError("worker killed before the commit")

    monkeypatch.setattr(SessionStore, "advance", crash)
    kind, screen = await caller.press(PIN)
    assert (kind, screen) == ("END", "Xin loi, he thong dang gap su co. Vui long quay so lai sau it phut.")
    assert seen_inside == [1]
    # ...and it all rolled back: no citizen, no confirmation SMS, the session where it was.
    assert await Citizen.all().count() == 0
    assert await OutboundSms.filter(kind=SmsKind.REPLY).count() == 0
    session = await UssdSession.get(external_id=caller.session_id)
    assert session.state["stack"][-1]["s"] == "register_pin_again"

    monkeypatch.setattr(SessionStore, "advance", real_advance)
    kind, screen = await caller.post("*".join(caller.inputs))  # the aggregator retries the hop
    assert kind == "END" and "Dang ky thanh cong" in screen
    assert await Citizen.all().count() == 1
    assert await OutboundSms.filter(kind=SmsKind.REPLY).count() == 1


async def test_a_crash_while_applying_the_effects_leaves_nothing(client, phone, monkeypatch):
    caller = phone(CALLER)
    await at_the_last_pin(client, caller, 0)
    outbox = client.app[SERVICES].outbox

    async def broken_enqueue(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(outbox, "enqueue", broken_enqueue)
    kind, _ = await caller.press(PIN)
    assert kind == "END"
    assert await Citizen.all().count() == 0
    assert (await UssdSession.get(external_id=caller.session_id)).hops == 8  # not moved on


async def test_a_retried_final_hop_repeats_none_of_its_effects(client, phone):
    caller = phone(CALLER)
    await at_the_last_pin(client, caller, 0)
    caller.inputs.append(PIN)
    final = "*".join(caller.inputs)
    first = await caller.post(final)
    again = await caller.post(final)
    copies = await asyncio.gather(caller.post(final), caller.post(final))
    assert first == again == copies[0] == copies[1]
    assert first[0] == "END" and "Dang ky thanh cong" in first[1]
    assert await Citizen.all().count() == 1
    assert await OutboundSms.filter(kind=SmsKind.REPLY).count() == 1


async def test_two_copies_of_the_final_hop_at_once_make_one_citizen(client, phone):
    caller = phone(CALLER)
    await at_the_last_pin(client, caller, 0)
    caller.inputs.append(PIN)
    final = "*".join(caller.inputs)
    copies = await asyncio.gather(*(caller.post(final) for _ in range(4)))
    assert len(set(copies)) == 1 and copies[0][0] == "END"
    assert await Citizen.all().count() == 1
    assert await OutboundSms.filter(kind=SmsKind.REPLY).count() == 1


# No OTP, PIN or ID number in a log line or at rest ----------------------------------------------------

async def every_stored_text() -> list[str]:
    connection = connections.get("default")
    if connection.capabilities.dialect == "sqlite":
        rows = await connection.execute_query_dict("SELECT name FROM sqlite_master WHERE type='table'")
        tables = [row["name"] for row in rows]
    else:
        rows = await connection.execute_query_dict(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")
        tables = [row["table_name"] for row in rows]
    values = []
    for table in tables:
        for row in await connection.execute_query_dict(f'SELECT * FROM "{table}"'):
            values += [f"{table}.{column}={value}" for column, value in row.items() if value is not None]
    return values


_TIMESTAMP = re.compile(r"=\d{4}-\d\d-\d\d[ T]\d\d:\d\d")


def assert_nowhere(secret: str, texts: list[str], what: str) -> None:
    bounded = re.compile(rf"(?<![0-9A-Za-z]){secret}(?![0-9A-Za-z])")
    for value in texts:
        if _TIMESTAMP.search(value):
            continue  # a timestamp's microseconds are six digits too
        assert secret not in value if len(secret) > 6 else not bounded.search(value), f"{what} at rest: {value[:300]}"


async def test_no_code_pin_or_id_number_in_any_log_line_or_at_rest(client, phone, clock, log_stream):
    caller = phone(CALLER)
    kind, _ = await register_by_ussd(client, caller)
    assert kind == "END"
    codes = await codes_sent(client, CALLER, 1)
    # A PIN typed wrong and right, a reset with a new code, and a registration by SMS.
    await caller.dial()
    await caller.press("3")
    await caller.press(OTHER_PIN)
    await caller.press(PIN)
    await caller.dial()
    await caller.press("2")
    await caller.press("1")
    [_, reset_code] = await codes_sent(client, CALLER, 2)
    await caller.press(reset_code)
    await caller.press(OTHER_PIN)
    await caller.press(OTHER_PIN)
    other = "0912000222"
    await send_text(client, f"DK {ID_NUMBER[:-1]}5 Tran Thi Binh {BIRTH}", sender=other)
    await send_text(client, "DONG Y", sender=other)
    [sms_code] = await codes_sent(client, other, 1)
    await send_text(client, f"OTP {sms_code}", sender=other)
    await wait_for_sms(client, other, 3)
    assert await Citizen.all().count() == 2
    await wait_until_otp_texts_cleared()

    logged = log_stream.getvalue()
    assert "ussd_hop" in logged and "sms_in" in logged  # the log was written where we read it
    stored = await every_stored_text()
    assert any(value.startswith("citizen.id_hash=") for value in stored)  # the walk saw the tables
    for secret, what in [(ID_NUMBER, "ID number"), (ID_NUMBER[:-1] + "5", "ID number"), (PIN, "PIN"),
                         (OTHER_PIN, "PIN"), *((c, "OTP") for c in [*codes, reset_code, sms_code])]:
        assert secret not in logged, f"{what} in the log"
        assert_nowhere(secret, stored, what)
