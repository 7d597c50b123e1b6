"""SMS commands from a clerk's registered phone: XONG (ready + pickup alert), TRA
(collected), GUI LAI (the last alert again), through the real SMS webhook. A phone that is
not a clerk's gets the citizen's answer and changes nothing. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from gateway.app import SERVICES, SQL
from models.audit import CLI
from models.entities import AuditLog, Dossier, DossierNotification, DossierStatus, OutboundSms, SmsKind
from tests.test_sms import send_text
from tests.test_sync_api import AGENCY, OTHER_AGENCY, desk, dossier, keys  # noqa: F401 - fixtures

CLERK_PHONE = "0987111222"
APPLICANT = "+84912345678"


@pytest.fixture
async def clerk(client, clock):
    clerk, _ = await client.app[SERVICES].clerks.create(
        client.app[SQL], login="lan", name="Nguyen Thi Lan", phone=CLERK_PHONE, role="clerk",
        agency_codes=[AGENCY], actor=CLI, now=clock.now)
    return clerk


async def replies_to(phone: str) -> list[str]:
    return [r.text for r in await OutboundSms.filter(kind=SmsKind.REPLY, to_phone=phone).order_by("id")]


async def alerts_of(code: str) -> list[OutboundSms]:
    found = await Dossier.get(code=code)
    notes = await DossierNotification.filter(dossier_id=found.id).order_by("id")
    return [await OutboundSms.get(id=n.outbound_sms_id) for n in notes if n.outbound_sms_id]


async def test_xong_marks_ready_alerts_the_applicant_and_confirms_to_the_clerk(client, desk, clerk):
    await desk.post("/dossiers", {"dossiers": [dossier(fee_due=8000)]}, )
    assert await send_text(client, "xong 2501010001", sender=CLERK_PHONE) == "accepted"
    stored = await Dossier.get(code=dossier()["code"])
    assert stored.status is DossierStatus.READY
    pickup = [s for s in await alerts_of(stored.code) if s.kind is SmsKind.PICKUP]
    assert len(pickup) == 1 and pickup[0].to_phone == APPLICANT and "8.000 d" in pickup[0].text
    [reply] = await replies_to("+84987111222")
    assert "Da bao HS" in reply and stored.code in reply
    actions = [(a.action, a.channel, a.actor, a.target) for a in await AuditLog.filter(channel="sms").order_by("id")]
    assert ("status_changed", "sms", "lan", stored.code) in actions and ("alert_sent", "sms", "lan", stored.code) in actions


async def test_tra_and_gui_lai_from_the_clerk(client, desk, clerk):
    await desk.post("/dossiers", {"dossiers": [dossier(status=9)]})
    code = dossier()["code"]
    before = len(await alerts_of(code))
    await send_text(client, "GUI LAI 2501010001", sender=CLERK_PHONE)
    assert len(await alerts_of(code)) == before + 1
    await send_text(client, f"TRA {code}", sender=CLERK_PHONE)
    assert (await Dossier.get(code=code)).status is DossierStatus.DELIVERED
    await send_text(client, "TRA 2501010001 ", sender=CLERK_PHONE, provider_id="again")
    replies = await replies_to("+84987111222")
    assert "gui lai" in replies[0].lower() and "Da ghi tra ket qua" in replies[1] and "da tra ket qua truoc" in replies[2]


async def test_a_clerk_is_refused_another_agencys_dossier_and_a_tail_stays_in_the_clerks_agency(client, desk, clerk, clock):
    other_code = f"{OTHER_AGENCY}-250101-0001"
    from tests.test_sync_api import keys as _  # noqa: F401
    neighbour = await _neighbour(client, clock)
    status, body, _r = await neighbour.post("/dossiers", {"dossiers": [dossier(code=other_code, agency=OTHER_AGENCY)]})
    assert status == 200, body
    await send_text(client, f"XONG {other_code}", sender=CLERK_PHONE)
    await send_text(client, "XONG 2501010001", sender=CLERK_PHONE)
    assert (await Dossier.get(code=other_code)).status is DossierStatus.RECEIVED
    replies = await replies_to("+84987111222")
    assert "khong thuoc co quan" in replies[0] and "Khong tim thay" in replies[1]


async def _neighbour(client, clock):
    from gateway.api import add_api_client
    from tests.test_otp_api import Api

    return Api(client, await add_api_client(client.app[SQL], "tanky", ["sync"], clock.now, [OTHER_AGENCY]))


async def test_a_phone_that_is_not_a_clerks_gets_the_citizens_answer_and_changes_nothing(client, desk, clerk):
    await desk.post("/dossiers", {"dossiers": [dossier()]})
    code = dossier()["code"]
    await send_text(client, f"XONG {code}", sender="0912345678")
    await send_text(client, f"TRA {code}", sender="0912345678")
    assert (await Dossier.get(code=code)).status is DossierStatus.RECEIVED
    replies = await replies_to(APPLICANT)
    assert "Khong hieu" in replies[0]  # XONG means nothing to a citizen
    assert code in replies[1] and "Trang thai" in replies[1]  # TRA <code>: the citizen's lookup
    assert not await AuditLog.filter(channel="sms").exists()


async def test_a_disabled_clerks_phone_is_a_citizens_phone(client, desk, clerk, clock):
    await desk.post("/dossiers", {"dossiers": [dossier()]})
    async with client.app[SQL].transaction() as tx:
        await client.app[SERVICES].clerks.set_active(tx, "lan", False, CLI, clock.now)
    await send_text(client, "XONG 2501010001", sender=CLERK_PHONE)
    assert (await Dossier.get(code=dossier()["code"])).status is DossierStatus.RECEIVED
