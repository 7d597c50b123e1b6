"""Every dossier notice fits one GSM-7 part with the longest realistic data, through the
real app: dossiers pushed over /api/v1 into every status, the reminder job's reminders,
and the texts read back from the outbox rows the changes wrote.

The data is the worst of the demo catalogue (``models.seed``): the longest agency name,
address, desk hours (vi and en) and hotline in one agency, a procedure with the longest
Vietnamese and English names, a fee of 200,000 d, notes of about 100 characters, and the
longest dossier codes the parser accepts (a 6-digit date with a sub-unit, the 8-digit
date and 7- or 8-digit sequence of ``G09.20-20260609-0092637``, a long agency part). Each
notice must also keep what the citizen needs (DESIGN.md's status table). Runs on SQLite
and PostgreSQL like the rest of the suite.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from zoneinfo import ZoneInfo

import pytest

from gateway.api import add_api_client
from gateway.app import SERVICES, SQL
from menus.texts import T, text
from models.entities import Agency, Dossier, DossierNotification, DossierStatus, FilingMode, OutboundSms, Procedure, SmsKind
from models.reminders import ReminderJob
from models.seed import NEIGHBOUR, PHUONG_KY, PROCEDURES
from models.sms_text import Encoding, Policy, prepare
from tests.test_otp_api import Api

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
LANGS = ("vi", "en")
PHONES = {"vi": "+84912000101", "en": "+84912000102"}  # the "en" phone is a citizen who chose English
FEE = 200_000
AMOUNT = {"vi": "200.000 d", "en": "200,000 VND"}
ID_WORD = {"vi": "CCCD", "en": "ID"}
CODES = [
    "000.32.22.H23.CA-250101-0001",
    "G09.20-20260609-0092637",
    "000.32.22.H23.CA-20250101-00923456",
    "G09.20.H23.CA.TP.VP.XA.PHUONG.KY-20261123-00923456",
]
NOTES = {
    DossierStatus.REFUSED: {"reason": "Ho so khong thuoc tham quyen giai quyet cua UBND xa, de nghi nop tai "
                                      "UBND huyen Tu Ky theo quy dinh"},
    DossierStatus.NEEDS_DOCUMENTS: {"missing_documents": "Ban sao Giay chung sinh co chung thuc; To khai dang ky "
                                                         "khai sinh co chu ky cua cha hoac me"},
    DossierStatus.STOPPED: {"reason": "Nguoi nop khong bo sung giay to dung han theo thong bao ngay 02/12/2026 "
                                      "cua bo phan Mot cua xa"},
}
DUE = dt.datetime(2026, 12, 24, tzinfo=TZ)
AGENCY = "000.99.22.H23"


def _longest(*values: str) -> str:
    return max(values, key=len)


LONGEST = dict(
    code=AGENCY,
    name=_longest(PHUONG_KY["name"], NEIGHBOUR["name"]),
    address=_longest(PHUONG_KY["address"], NEIGHBOUR["address"]),
    desk_hours=_longest(PHUONG_KY["desk_hours"], NEIGHBOUR["desk_hours"]),
    desk_hours_en=_longest(PHUONG_KY["desk_hours_en"], NEIGHBOUR["desk_hours_en"]),
    hotline=_longest(PHUONG_KY["hotline"], NEIGHBOUR["hotline"]),
    service_code="*399#",
    sms_number="8099",
)
PROCEDURE_NAME = {"vi": _longest(*(p.name for p in PROCEDURES)), "en": _longest(*(p.name_en for p in PROCEDURES))}


def test_the_data_is_the_worst_case():
    """What the notices are measured with is at least as long as anything in the catalogue."""
    for agency in (PHUONG_KY, NEIGHBOUR):
        assert all(len(agency[key]) <= len(LONGEST[key])
                   for key in ("name", "address", "desk_hours", "desk_hours_en", "hotline"))
    assert all(len(p.name) <= len(PROCEDURE_NAME["vi"]) and len(p.name_en) <= len(PROCEDURE_NAME["en"])
               for p in PROCEDURES)
    assert all(90 <= len(next(iter(note.values()))) <= 300 for note in NOTES.values())
    assert max(len(c.rsplit("-", 2)[1] + c.rsplit("-", 2)[2]) for c in CODES) == 16  # the longest tail parsed
    assert all(len(code) <= 64 for code in CODES)


@pytest.fixture
async def worst_case(make_client, settings, clock):
    """The app without dispatcher or reminder loop (the test runs the job), an agency with
    the longest data, a client for it, and a registered citizen who chose English."""
    client = await make_client(settings.replace(sms={"run_dispatcher": False}, notifications={"run_reminders": False}))
    agency = await Agency.create(**LONGEST)
    base = PROCEDURES[0]
    await Procedure.create(agency=agency, code="9.999999", position=1, name=PROCEDURE_NAME["vi"],
                           name_en=PROCEDURE_NAME["en"], processing_time=base.time, processing_time_en=base.time_en,
                           fee=base.fee, fee_en=base.fee_en, documents=base.documents, documents_en=base.documents_en)
    sql = client.app[SQL]
    citizens = client.app[SERVICES].citizens
    async with sql.transaction() as tx:
        assert await citizens.register(tx, PHONES["en"], citizens.id_hash("030090001234"), "234", "An", "en", clock.now)
    key = await add_api_client(sql, "worst-case", ["sync"], clock.now, [AGENCY])
    return client, Api(client, key)


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(TZ).isoformat(timespec="seconds")


async def test_every_notice_fits_one_gsm7_part_and_keeps_what_the_citizen_needs(worst_case, settings, clock):
    client, api = worst_case
    # One dossier per language, mode and code (the code's last digit tells them apart).
    combos = [(lang, mode, code[:-1] + str(n)) for code in CODES
              for n, (lang, mode) in enumerate(itertools.product(LANGS, FilingMode))]
    received = clock.now - dt.timedelta(days=1)
    status, body, _ = await api.post("/dossiers", {"dossiers": [
        {"code": code, "agency": AGENCY, "procedure": "9.999999", "applicant_name": "Nguyen Thi Phuong Thao",
         "applicant_phone": PHONES[lang], "received_at": _iso(received), "due_at": _iso(DUE), "fee_due": FEE,
         "pickup_place": LONGEST["address"], "mode": mode.value, "status": 1}
        for lang, mode, code in combos
    ]})
    assert status == 200, body
    assert {r["outcome"] for r in body["results"]} == {"created"}

    async def push(status: DossierStatus, at: dt.datetime) -> None:
        extra = dict(NOTES.get(status, {}))
        if status in (DossierStatus.NEEDS_PAYMENT, DossierStatus.READY):
            extra["fee_due"] = FEE
        answer, body, _ = await api.post("/dossiers/events", {"events": [
            {"event_id": f"{n}-{int(status)}", "code": code, "status": int(status), "occurred_at": _iso(at), **extra}
            for n, (_, _, code) in enumerate(combos)
        ]})
        assert answer == 200, body
        assert {r["outcome"] for r in body["results"]} == {"applied"}, body

    moment = clock.now
    for status in DossierStatus:
        if status in (DossierStatus.FILED, DossierStatus.DELIVERED):
            continue
        moment += dt.timedelta(minutes=1)
        await push(status, moment)
    # The result waits uncollected: the job's two reminders (3 and 7 days by default).
    job = ReminderJob(settings, client.app[SQL], client.app[SERVICES].dossiers, clock)
    for days in (settings.notifications.reminder_first_days, settings.notifications.reminder_second_days):
        clock.now = moment + dt.timedelta(days=days, minutes=1)
        assert await job.run_once() >= len(combos)  # the demo's own ready dossiers too
    await job.release()
    await push(DossierStatus.DELIVERED, clock.now)

    problems, seen = [], set()
    for lang, mode, code in combos:
        dossier = await Dossier.get(code=code)
        notifications = await DossierNotification.filter(dossier_id=dossier.id).order_by("id")
        assert [n.kind for n in notifications].count(SmsKind.REMINDER) == 2, (lang, mode, code)
        for notification in notifications:
            what = (lang, mode.value, code, int(notification.status), notification.kind.value)
            assert notification.outbound_sms_id is not None, (what, notification.skipped)
            sms = await OutboundSms.get(id=notification.outbound_sms_id)
            seen.add((lang, mode, notification.status, notification.kind))
            problems += [(what, miss, sms.text) for miss in _misses(lang, mode, code, notification, sms)]
    assert not problems, "\n".join(f"{what}: {miss}: {said!r} ({len(said)} chars)" for what, miss, said in problems)
    expected = {(lang, mode, s, SmsKind.PICKUP if s is DossierStatus.READY else SmsKind.STATUS)
                for lang, mode in itertools.product(LANGS, FilingMode) for s in DossierStatus}
    expected |= {(lang, mode, DossierStatus.READY, SmsKind.REMINDER) for lang, mode in itertools.product(LANGS, FilingMode)}
    assert seen == expected


def _misses(lang: str, mode: FilingMode, code: str, notification, sms) -> list[str]:
    said = sms.text
    prepared = prepare(said, Policy.UNACCENT)
    misses = []
    if prepared.encoding is not Encoding.GSM7 or prepared.parts != 1 or (sms.encoding, sms.parts) != ("gsm7", 1):
        misses.append(f"not one GSM-7 part ({prepared.encoding.value}, {prepared.parts} parts; stored {sms.encoding}, "
                      f"{sms.parts})")
    if not said.isascii():
        misses.append("not ASCII")
    date, sequence = code.rsplit("-", 2)[1:]
    if code not in said and date + sequence not in said:
        misses.append("the dossier reference (code or keypad tail)")
    status = notification.status
    if status in (DossierStatus.RECEIVED, DossierStatus.PROCESSING) and DUE.strftime("%d/%m/%Y") not in said:
        misses.append("the due date")
    if status in (DossierStatus.REFUSED, DossierStatus.STOPPED) and LONGEST["hotline"] not in said:
        misses.append("the hotline")
    if status in NOTES and next(iter(NOTES[status].values()))[:30] not in said:
        misses.append("the start of the note")
    if status is DossierStatus.NEEDS_PAYMENT and AMOUNT[lang] not in said:
        misses.append("the amount")
    if status is DossierStatus.READY:
        if LONGEST["address"] not in said and LONGEST["name"] not in said:
            misses.append("the place")
        hours = LONGEST["desk_hours_en" if lang == "en" else "desk_hours"]
        if hours not in said:
            misses.append("the desk hours")
        if ID_WORD[lang] not in said:
            misses.append(f"what to bring ({ID_WORD[lang]})")
        if AMOUNT[lang] not in said:
            misses.append("the fee")
        # The reminder may leave the post out: the pickup alert offered it already.
        if mode is FilingMode.FULL and notification.kind is SmsKind.PICKUP and "BUUDIEN" not in said:
            misses.append("how to ask for the post (BUUDIEN)")
        if notification.kind is SmsKind.REMINDER and said.split(" ", 1)[0] != text(lang, T.NOTICE_REMINDER, number=1,
                                                                                      ref="").split(" ", 1)[0]:
            misses.append("that it is a reminder")
    return misses


def test_beyond_the_catalogue_a_full_pickup_alert_drops_the_hours_before_the_post():
    """Data longer than any agency's (an operator's own wording): the alert still fits one
    part, and for a "toan trinh" dossier the offer of the post outlives the desk hours."""
    from menus.notices import Notices
    from menus.views import AgencyView, DossierView, Localized

    hours = "Thu 2 den thu 6: sang 7h30-11h30, chieu 13h30-17h00; sang thu 7: 7h30-11h30 (tru ngay le, Tet)"
    agency = AgencyView(1, AGENCY, LONGEST["name"], LONGEST["address"], Localized(hours, hours), LONGEST["hotline"])
    dossier = DossierView(
        id=1, code=CODES[-1], agency=agency, procedure_name=Localized(PROCEDURE_NAME["vi"], PROCEDURE_NAME["en"]),
        applicant_name="An", applicant_phone="+84912345678", status=DossierStatus.READY, status_note="",
        received_at=DUE, due_at=DUE, fee_due=FEE, pickup_place=LONGEST["address"], mode=FilingMode.FULL)
    notices = Notices("Asia/Ho_Chi_Minh")
    for lang in LANGS:
        said = notices(lang, SmsKind.PICKUP, dossier)
        prepared = prepare(said, Policy.UNACCENT)
        assert (prepared.encoding, prepared.parts) == (Encoding.GSM7, 1), said
        assert "BUUDIEN" in said and hours not in said and AMOUNT[lang] in said and ID_WORD[lang] in said, said
        partial = notices(lang, SmsKind.PICKUP, dataclasses.replace(dossier, mode=FilingMode.PARTIAL))
        assert "BUUDIEN" not in partial and prepare(partial, Policy.UNACCENT).parts == 1, partial
