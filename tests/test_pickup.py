"""Pickup alerts, postal delivery (BUUDIEN by SMS or the USSD status screen) and reminders,
through the real app: dossiers arrive by the sync API, citizens answer by SMS or USSD.
Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest

from gateway.app import SERVICES, SETTINGS, SQL
from models.entities import Dossier, DossierNotification, DossierStatus, OutboundSms, PostalRequest, SmsKind
from models.leases import Leases
from models.reminders import ReminderJob
from tests.test_sms import send_text
from tests.test_sync_api import AGENCY, desk, dossier, event, keys  # noqa: F401 - fixtures

APPLICANT = "0912345678"


async def ready(desk, number=1, mode="toan_trinh", at="2026-12-02T09:00:00+07:00"):
    status, body, _ = await desk.post("/dossiers", {"dossiers": [dossier(number, mode=mode, fee_due=20000)]})
    assert status == 200, body
    status, body, _ = await desk.post("/dossiers/events", {"events": [event(f"ready-{number}", 9, at, number)]})
    assert status == 200 and body["results"][0]["outcome"] == "applied", body
    return await Dossier.get(code=dossier(number)["code"])


async def texts_of(found, kind=None):
    notes = await DossierNotification.filter(dossier_id=found.id).order_by("id")
    rows = [await OutboundSms.get(id=n.outbound_sms_id) for n in notes if n.outbound_sms_id]
    return [r.text for r in rows if kind is None or r.kind is kind]


async def test_the_pickup_alert_says_where_when_what_to_bring_the_fee_and_how_to_ask_for_the_post(desk):
    found = await ready(desk)
    [alert] = await texts_of(found, SmsKind.PICKUP)
    assert "UBND xa Phuong Ky" in alert and "7h30" in alert and "CCCD" in alert and "20.000 d" in alert
    assert "BUUDIEN" in alert and len(alert) <= 160
    partial = await ready(desk, 2, mode="mot_phan")
    [alert] = await texts_of(partial, SmsKind.PICKUP)
    assert "BUUDIEN" not in alert and "CCCD" in alert


async def test_buudien_by_sms_records_the_request_once_and_only_from_the_applicants_phone(client, desk):
    found = await ready(desk)
    assert await send_text(client, "BUUDIEN 000.32.22.H23-250101-0001", sender="0987000111") == "accepted"
    assert not await PostalRequest.filter(dossier_id=found.id).exists()
    assert await send_text(client, "buu dien", sender=APPLICANT) == "accepted"
    request = await PostalRequest.get(dossier_id=found.id)
    assert request.status == "waiting" and request.channel == "sms"
    assert await send_text(client, "BUUDIEN 2501010001", sender=APPLICANT) == "accepted"
    assert await PostalRequest.filter(dossier_id=found.id).count() == 1
    replies = [r.text for r in await OutboundSms.filter(kind=SmsKind.REPLY).order_by("id")]
    assert "Chi so dien thoai" in replies[0]
    assert "Da ghi nhan" in replies[1] and "da co yeu cau" in replies[2]


async def test_buudien_for_a_desk_only_or_unready_dossier_is_refused_with_the_reason(client, desk):
    await ready(desk, 1, mode="mot_phan")
    await desk.post("/dossiers", {"dossiers": [dossier(2, mode="toan_trinh")]})
    await send_text(client, "BUUDIEN 2501010001", sender=APPLICANT)
    await send_text(client, "BUUDIEN 2501010002", sender=APPLICANT)
    replies = [r.text for r in await OutboundSms.filter(kind=SmsKind.REPLY).order_by("id")]
    assert "khong gui buu dien" in replies[0] and "chua co ket qua" in replies[1]
    assert await PostalRequest.all().count() == 0


async def test_the_ussd_status_screen_offers_the_post_to_the_applicant_only(client, desk, phone):
    found = await ready(desk)
    stranger = phone("0987000111")
    await stranger.dial()
    kind, screen = await stranger.press("1", found.tail)
    seen = screen
    while kind == "CON" and "9 Tiep" in screen:
        kind, screen = await stranger.press("9")
        seen += screen
    assert "buu dien" not in seen.lower()
    applicant = phone(APPLICANT)
    await applicant.dial()
    kind, screen = await applicant.press("1", found.tail)
    for _ in range(4):  # the status text pages first; the option follows it
        if "Gui qua buu dien" in screen or kind != "CON" or "9 Tiep" not in screen:
            break
        kind, screen = await applicant.press("9")
    assert kind == "CON" and "Gui qua buu dien" in screen, screen
    choice = next(line.split()[0] for line in screen.splitlines() if "buu dien" in line)
    kind, screen = await applicant.press(choice)
    assert kind == "END" and "Da ghi nhan" in screen, screen
    assert (await PostalRequest.get(dossier_id=found.id)).channel == "ussd"


async def test_reminders_come_after_3_and_7_days_at_most_two_and_stop_once_collected(client, desk, clock):
    app = client.app
    first = await ready(desk, 1, mode="mot_phan", at=clock.now.isoformat())
    second = await ready(desk, 2, mode="mot_phan", at=clock.now.isoformat())
    # The server's own job took the lease at start: this pass runs as its holder.
    held = await Leases(app[SQL]).current("reminders")
    job = ReminderJob(app[SETTINGS], app[SQL], app[SERVICES].dossiers, clock, holder=held.holder)

    async def counts():
        return len(await texts_of(first, SmsKind.REMINDER)), len(await texts_of(second, SmsKind.REMINDER))

    assert await job.run_once() == 0
    clock.advance(3 * 86400 - 120)
    await job.run_once()
    assert await counts() == (0, 0)
    clock.advance(180)
    assert await job.run_once() >= 2  # the demo's own ready dossiers are due too
    assert await counts() == (1, 1)
    assert await job.run_once() == 0  # each reminder once
    await desk.post("/dossiers/events", {"events": [event("taken-2", 10, clock.now.isoformat(), 2)]})
    clock.advance(4 * 86400)
    await job.run_once()
    assert await counts() == (2, 1)
    clock.advance(30 * 86400)
    assert await job.run_once() == 0  # at most two
    reminders = await texts_of(first, SmsKind.REMINDER)
    assert all("Nhac" in r and "CCCD" in r for r in reminders)
    assert (await Dossier.get(id=second.id)).status is DossierStatus.DELIVERED


async def test_a_second_process_does_not_remind_while_the_first_holds_the_lease(client, desk, clock):
    app = client.app
    other = ReminderJob(app[SETTINGS], app[SQL], app[SERVICES].dossiers, clock, holder="other-process")
    assert await other.run_once() is None  # the server's job holds it
    clock.advance(2 * 3600)  # the holder died: its lease ran out
    assert await other.run_once() is not None
    assert (await Leases(app[SQL]).current("reminders")).holder == "other-process"
