"""Identity rules (every refusal has a case), PIN hashes, and the PIN lockout on a real database."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac

import pytest

from gateway.app import SERVICES, SQL
from models import identity
from models.entities import Citizen, DeletionAudit, PhonePreference, SmsRegistration
from models.identity import IdNumber, Reason, Refusal

TODAY = dt.date(2026, 11, 23)
BORN = dt.date(1990, 3, 15)

ID_CASES = [
    ("030090001234", None),  # Hai Duong, a man born in 1990
    ("079 190 001 234", None),  # spaces, as people write it
    ("001.203.001234", None),  # dots
    ("096303001234", None),  # the last province code
    ("123456789", None),  # a 9-digit CMND
    ("", Reason.ID_FORMAT),
    ("12345678", Reason.ID_FORMAT),
    ("1234567890", Reason.ID_FORMAT),
    ("03009000123", Reason.ID_FORMAT),
    ("0300900012345", Reason.ID_FORMAT),
    ("03009000123a", Reason.ID_FORMAT),
    ("０３００９０００１２３４", Reason.ID_FORMAT),  # full-width digits are not keypad digits
    ("000000000", Reason.ID_FORMAT),
    ("099090001234", Reason.ID_PROVINCE),  # past the last code
    ("000090001234", Reason.ID_PROVINCE),
    ("003090001234", Reason.ID_PROVINCE),  # a gap in the list: no province has 003
    ("097090001234", Reason.ID_PROVINCE),
]


@pytest.mark.parametrize("raw, reason", ID_CASES)
def test_id_numbers(raw, reason):
    parsed = identity.parse_id_number(raw)
    if reason is None:
        assert isinstance(parsed, IdNumber) and parsed.digits == "".join(c for c in raw if c.isdigit())
        assert parsed.last3 == parsed.digits[-3:]
    else:
        assert isinstance(parsed, Refusal) and parsed.reason is reason


def test_a_refused_province_is_named():
    assert identity.parse_id_number("099090001234") == Refusal(Reason.ID_PROVINCE, {"province": "099"})


def test_the_province_list_is_the_63_codes_from_001_to_096():
    assert len(identity.PROVINCE_CODES) == 63
    assert min(identity.PROVINCE_CODES) == "001" and max(identity.PROVINCE_CODES) == "096"
    assert "030" in identity.PROVINCE_CODES  # Hai Duong


@pytest.mark.parametrize("number, born, matches", [
    ("030090001234", dt.date(1990, 3, 15), True),  # 0: man, 1900s
    ("030190001234", dt.date(1990, 3, 15), True),  # 1: woman, 1900s
    ("030203001234", dt.date(2003, 1, 1), True),  # 2: man, 2000s
    ("030303001234", dt.date(2003, 1, 1), True),  # 3: woman, 2000s
    ("030000001234", dt.date(1900, 1, 1), True),
    ("030290001234", dt.date(1990, 3, 15), False),  # 2000s digit, born in the 1900s
    ("030091001234", dt.date(1990, 3, 15), False),  # another year
    ("030003001234", dt.date(2003, 1, 1), False),  # 1900s digit, born in 2003
    ("123456789", dt.date(1990, 3, 15), True),  # a CMND carries no birth year
])
def test_century_and_year_digits_against_the_date_of_birth(number, born, matches):
    parsed = identity.parse_id_number(number)
    assert isinstance(parsed, IdNumber)
    refusal = identity.check_id_birth(parsed, born)
    assert (refusal is None) is matches
    if not matches:
        assert refusal.reason is Reason.ID_BIRTH_YEAR


def test_birth_codes():
    assert identity.birth_codes(dt.date(1990, 3, 15)) == {"090", "190"}
    assert identity.birth_codes(dt.date(2003, 1, 1)) == {"203", "303"}
    assert identity.birth_codes(dt.date(2100, 1, 1)) == {"400", "500"}


NAME_CASES = [
    ("Nguyễn Văn An", "Nguyễn Văn An"),  # kept as typed, accents and all
    ("  Nguyen   Van  An ", "Nguyen Van An"),
    ("Đặng Thị Ánh-Tuyết", "Đặng Thị Ánh-Tuyết"),
    ("Nguye\u0302\u0303n Va\u0306n An", "Nguyễn Văn An"),  # tones typed as combining marks: NFC
    ("O'Neil J.", "O'Neil J."),
    ("An", "An"),
    ("A" * 60, "A" * 60),
    ("A", Reason.NAME_LENGTH),
    ("", Reason.NAME_LENGTH),
    ("A" * 61, Reason.NAME_LENGTH),
    ("Nguyen Van An 2", Reason.NAME_CHARACTERS),
    ("Nguyen_Van", Reason.NAME_CHARACTERS),
    ("--", Reason.NAME_CHARACTERS),
    (". An", Reason.NAME_CHARACTERS),
    ("李小龍", Reason.NAME_CHARACTERS),
    ("An@mail", Reason.NAME_CHARACTERS),
]


@pytest.mark.parametrize("raw, expected", NAME_CASES)
def test_names(raw, expected):
    parsed = identity.parse_name(raw)
    if isinstance(expected, Reason):
        assert isinstance(parsed, Refusal) and parsed.reason is expected
    else:
        assert parsed == expected


BIRTH_CASES = [
    ("15031990", dt.date(1990, 3, 15)),
    ("15/03/1990", dt.date(1990, 3, 15)),
    ("1-3-1990", dt.date(1990, 3, 1)),
    ("15.03.1990", dt.date(1990, 3, 15)),
    ("29022000", dt.date(2000, 2, 29)),  # a leap day
    ("01011900", dt.date(1900, 1, 1)),
    ("22112026", dt.date(2026, 11, 22)),  # yesterday
    ("1503199", Reason.BIRTH_FORMAT),
    ("15-03-90", Reason.BIRTH_FORMAT),
    ("\u0661\u0665/\u0660\u0663/\u0661\u0669\u0669\u0660", Reason.BIRTH_FORMAT),  # Arabic-Indic digits
    ("abc", Reason.BIRTH_FORMAT),
    ("", Reason.BIRTH_FORMAT),
    ("31022000", Reason.BIRTH_NOT_A_DATE),
    ("29022001", Reason.BIRTH_NOT_A_DATE),
    ("00011990", Reason.BIRTH_NOT_A_DATE),
    ("15131990", Reason.BIRTH_NOT_A_DATE),
    ("23112026", Reason.BIRTH_FUTURE),  # today
    ("01012030", Reason.BIRTH_FUTURE),
    ("31121899", Reason.BIRTH_TOO_EARLY),
]


@pytest.mark.parametrize("raw, expected", BIRTH_CASES)
def test_dates_of_birth(raw, expected):
    parsed = identity.parse_birth_date(raw, TODAY)
    if isinstance(expected, Reason):
        assert isinstance(parsed, Refusal) and parsed.reason is expected
    else:
        assert parsed == expected


PIN_CASES = [
    ("482915", None, None),
    ("150390", None, Reason.PIN_BIRTH_DATE),  # date unknown (a reset): no PIN that reads as a date
    ("031590", None, Reason.PIN_BIRTH_DATE),  # MMDDYY
    ("900315", None, Reason.PIN_BIRTH_DATE),  # YYMMDD
    ("482915", None, None),  # no day and month in any order: fine
    ("150390", dt.date(1985, 1, 1), None),  # the date known, and it is another one
    ("48291", None, Reason.PIN_FORMAT),
    ("4829150", None, Reason.PIN_FORMAT),
    ("48a915", None, Reason.PIN_FORMAT),
    ("", None, Reason.PIN_FORMAT),
    ("000000", None, Reason.PIN_SAME_DIGITS),
    ("777777", None, Reason.PIN_SAME_DIGITS),
    ("123456", None, Reason.PIN_SEQUENCE),
    ("654321", None, Reason.PIN_SEQUENCE),
    ("012345", None, Reason.PIN_SEQUENCE),
    ("987654", None, Reason.PIN_SEQUENCE),
    ("345678", None, Reason.PIN_SEQUENCE),
    ("121212", None, Reason.PIN_REPEATED),
    ("123123", None, Reason.PIN_REPEATED),
    ("909090", None, Reason.PIN_REPEATED),
    ("482915", BORN, None),
    ("150390", BORN, Reason.PIN_BIRTH_DATE),  # DDMMYY
    ("900315", BORN, Reason.PIN_BIRTH_DATE),  # YYMMDD
    ("031590", BORN, Reason.PIN_BIRTH_DATE),  # MMDDYY
    ("150319", BORN, Reason.PIN_BIRTH_DATE),  # DDMMYYYY, first six
    ("031990", BORN, Reason.PIN_BIRTH_DATE),  # MMYYYY
    ("199003", BORN, Reason.PIN_BIRTH_DATE),  # YYYYMM
    ("151990", BORN, Reason.PIN_BIRTH_DATE),  # DDYYYY, inside MMDDYYYY
    ("901503", BORN, Reason.PIN_BIRTH_DATE),  # YYDDMM
]


@pytest.mark.parametrize("pin, born, reason", PIN_CASES)
def test_pins(pin, born, reason):
    refusal = identity.check_pin(pin, born)
    assert (refusal.reason if refusal else None) is reason


def test_every_reason_has_a_case():
    seen = {r for _, r in ID_CASES} | {r for _, r in NAME_CASES} | {r for _, r in BIRTH_CASES}
    seen |= {r for _, _, r in PIN_CASES} | {Reason.ID_BIRTH_YEAR}
    assert set(Reason) <= seen


def test_birth_date_pins_are_every_form():
    forms = identity.birth_date_pins(BORN)
    assert {"150390", "900315", "031590", "901503", "150319", "503199", "031990", "199003", "990031",
            "031519", "315199", "151990"} == forms


# PIN hashes ------------------------------------------------------------------------------

@pytest.fixture
def citizens(settings):
    from models.citizens import CitizenService

    return CitizenService(settings.pin, "id-key", lambda phone: "key-" + phone)


async def test_a_pin_hash_is_scrypt_with_its_parameters_and_a_random_salt(citizens, settings):
    stored = await citizens.hash_pin("482915")
    scheme, n, r, p, salt, digest = stored.split("$")
    assert (scheme, int(n), int(r), int(p)) == ("scrypt", settings.pin.scrypt_n, settings.pin.scrypt_r, settings.pin.scrypt_p)
    assert len(base64.b64decode(salt)) == 16
    expected = hashlib.scrypt(b"482915", salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                              maxmem=64 << 20, dklen=32)
    assert base64.b64decode(digest) == expected
    assert "482915" not in stored
    assert await citizens.hash_pin("482915") != stored  # another salt


@pytest.mark.parametrize("typed, stored_kind, ok", [
    ("482915", "right", True),
    ("482916", "right", False),
    ("482915", "none", False),
    ("482915", "garbage", False),
    ("482915", "other scheme", False),
])
async def test_pin_verification(citizens, typed, stored_kind, ok):
    stored = {
        "right": await citizens.hash_pin("482915"),
        "none": None,
        "garbage": "scrypt$x$y",
        "other scheme": "bcrypt$16384$8$1$AAAA$BBBB",
    }[stored_kind]
    assert await citizens.verify_pin(typed, stored) is ok


async def test_hashing_runs_off_the_event_loop(citizens):
    ticks = 0
    done = False

    async def tick():
        nonlocal ticks
        while not done:
            ticks += 1
            await asyncio.sleep(0)

    ticker = asyncio.create_task(tick())
    await citizens.hash_pin("482915")
    done = True
    await ticker
    assert ticks > 10  # the loop kept turning while scrypt ran (~50 ms)


def test_the_id_hash_is_hmac_sha256_with_the_id_key(citizens):
    assert citizens.id_hash("030090001234") == hmac.new(b"id-key", b"030090001234", hashlib.sha256).hexdigest()


# The lockout and the rest, on the real database ------------------------------------------

async def test_five_wrong_pins_lock_for_fifteen_minutes_and_the_count_restarts_after(client, clock, settings):
    citizens, sql = client.app[SERVICES].citizens, client.app[SQL]
    now = clock.now
    async with sql.transaction() as tx:
        citizen = await citizens.register(tx, "+84912000111", citizens.id_hash("030090001234"), "234", "An", "vi", now,
                                          pin_hash=await citizens.hash_pin("482915"))
    assert citizen is not None and citizen.has_pin

    async def attempt(pin, at):
        async with sql.transaction() as tx:
            current = await citizens.by_phone(tx, "+84912000111")
            return await citizens.check_pin(tx, current, pin, at)

    assert [(await attempt("000001", now)).tries_left for _ in range(4)] == [4, 3, 2, 1]
    fifth = await attempt("000002", now)
    assert not fifth.ok and fifth.tries_left == 0
    assert fifth.locked_until == now + dt.timedelta(seconds=settings.pin.lock_seconds)
    during = await attempt("482915", now + dt.timedelta(seconds=899))  # the right PIN, while locked
    assert not during.ok and during.locked_until == fifth.locked_until
    row = await Citizen.get(id=citizen.id)
    assert row.pin_failures == 5
    after = await attempt("000003", now + dt.timedelta(seconds=901))
    assert not after.ok and after.tries_left == 4 and after.locked_until is None
    right = await attempt("482915", now + dt.timedelta(seconds=902))
    assert right.ok
    row = await Citizen.get(id=citizen.id)
    assert row.pin_failures == 0 and row.pin_locked_until is None


async def test_a_new_pin_clears_the_lock(client, clock):
    citizens, sql = client.app[SERVICES].citizens, client.app[SQL]
    async with sql.transaction() as tx:
        citizen = await citizens.register(tx, "+84912000111", "h", "234", "An", "vi", clock.now,
                                          pin_hash=await citizens.hash_pin("482915"))
        for _ in range(5):
            verdict = await citizens.pin_attempt(tx, citizen, False, clock.now)
        assert verdict.locked_until is not None
        await citizens.set_pin(tx, citizen.id, await citizens.hash_pin("538201"), clock.now)
        current = await citizens.by_phone(tx, "+84912000111")
        assert current.pin_failures == 0 and current.locked_at(clock.now) is None
        assert (await citizens.check_pin(tx, current, "538201", clock.now)).ok


async def test_one_phone_is_one_citizen(client, clock):
    citizens, sql = client.app[SERVICES].citizens, client.app[SQL]
    async with sql.transaction() as tx:
        first = await citizens.register(tx, "+84912000111", "h1", "234", "An", "vi", clock.now)
        second = await citizens.register(tx, "+84912000111", "h2", "567", "Binh", "vi", clock.now)
    assert first is not None and second is None
    assert [c.id_hash for c in await Citizen.all()] == ["h1"]


async def test_delete_removes_the_citizen_preferences_and_sms_registration_and_audits_anonymously(client, clock):
    citizens, sql = client.app[SERVICES].citizens, client.app[SQL]
    async with sql.transaction() as tx:
        await citizens.register(tx, "+84912000111", "h1", "234", "An", "vi", clock.now, pin_hash="scrypt$1$1$1$a$b")
        await citizens.start_sms_registration(tx, "+84912000111", "h1", "234", "An", "vi", clock.now)
        await tx.fetch("INSERT INTO phone_preference (phone_key, notifications_off, updated_at) VALUES (?,?,?)",
                       ("key-x", True, clock.now))  # another phone's: stays
        await tx.fetch("INSERT INTO phone_preference (phone_key, notifications_off, updated_at) VALUES (?,?,?)",
                       (client.app[SERVICES].citizens._phone_key("+84912000111"), True, clock.now))
        assert await citizens.has_data(tx, "+84912000111")
        removed = await citizens.delete(tx, "+84912000111", "sms", clock.now)
        assert not await citizens.has_data(tx, "+84912000111")
    assert removed == ("citizen", "pin", "preferences", "sms_registration")
    assert await Citizen.all().count() == 0 and await SmsRegistration.all().count() == 0
    assert [p.phone_key for p in await PhonePreference.all()] == ["key-x"]
    [audit] = await DeletionAudit.all()
    assert (audit.channel, audit.removed) == ("sms", "citizen,pin,preferences,sms_registration")
    assert set(DeletionAudit._meta.fields_map) == {"id", "deleted_at", "channel", "removed"}  # nothing says who


async def test_an_expired_sms_registration_is_gone(client, clock):
    from models.citizens import SMS_REGISTRATION_SECONDS

    citizens, sql = client.app[SERVICES].citizens, client.app[SQL]
    async with sql.transaction() as tx:
        await citizens.start_sms_registration(tx, "+84912000111", "h1", "234", "An", "vi", clock.now)
        assert await citizens.sms_registration(tx, "+84912000111", clock.now) is not None
        later = clock.now + dt.timedelta(seconds=SMS_REGISTRATION_SECONDS)
        assert await citizens.sms_registration(tx, "+84912000111", later) is None
    assert await SmsRegistration.all().count() == 0
