"""/api/v1/dossiers: the one-stop system's sync API, through real HTTP into the real app.

Runs on SQLite and PostgreSQL. SMS are read from the outbox rows the API wrote (the status
SMS waits its debounce, so the console transport has not sent it yet) and, after moving the
clock past the debounce, from the console transport's inbox as the citizen reads them.
"""

from __future__ import annotations

import datetime as dt

import pytest

from gateway.api import add_api_client
from gateway.app import SQL
from models.entities import Dossier, DossierEvent, DossierNotification, DossierStatus, OutboundSms, SmsStatus
from tests.test_otp_api import Api

AGENCY = "000.32.22.H23"  # Phuong Ky (seed)
OTHER_AGENCY = "000.33.22.H23"  # Tan Ky
PHONE = "+84912345678"


@pytest.fixture
async def keys(client, clock):
    sql = client.app[SQL]
    return {
        "desk": await add_api_client(sql, "desk", ["sync"], clock.now, [AGENCY]),
        "neighbour": await add_api_client(sql, "neighbour", ["sync"], clock.now, [OTHER_AGENCY]),
        "portal": await add_api_client(sql, "portal", ["otp"], clock.now),
    }


@pytest.fixture
def desk(client, keys):
    return Api(client, keys["desk"])


@pytest.fixture
def neighbour(client, keys):
    return Api(client, keys["neighbour"])


def dossier(number: int = 1, **extra):
    record = {
        "code": f"{AGENCY}-250101-{number:04d}",
        "agency": AGENCY,
        "procedure": "1.001193",
        "applicant_name": "Tran Thi Binh",
        "applicant_phone": "0912345678",
        "received_at": "2026-12-01T08:00:00+07:00",
        "due_at": "2026-12-04",
        "status": 2,
    }
    record.update(extra)
    return record


def event(event_id: str, status: int, occurred_at: str, number: int = 1, **extra):
    return {"event_id": event_id, "code": f"{AGENCY}-250101-{number:04d}", "status": status,
            "occurred_at": occurred_at, **extra}


async def sms_rows(code: str):
    found = await Dossier.get(code=code)
    ids = [n.outbound_sms_id for n in await DossierNotification.filter(dossier_id=found.id).order_by("id")]
    return [await OutboundSms.get(id=i) for i in ids if i is not None]


async def test_a_new_dossier_is_stored_and_its_applicant_told(desk):
    status, body, _ = await desk.post("/dossiers", {"dossiers": [dossier()]})
    assert status == 200, body
    assert body["results"][0]["outcome"] == "created"
    assert body["results"][0]["sms"]["parts"] == 1
    stored = await Dossier.get(code=dossier()["code"])
    assert stored.status is DossierStatus.RECEIVED and stored.applicant_phone == PHONE
    [sms] = await sms_rows(stored.code)
    assert sms.to_phone == PHONE and "tiep nhan" in sms.text and sms.status is SmsStatus.QUEUED


async def test_the_same_record_again_changes_nothing_and_sends_nothing(desk):
    await desk.post("/dossiers", {"dossiers": [dossier()]})
    status, body, _ = await desk.post("/dossiers", {"dossiers": [dossier()]})
    assert status == 200 and body["results"][0]["outcome"] == "unchanged"
    assert len(await sms_rows(dossier()["code"])) == 1


async def test_events_apply_once_and_older_ones_do_not_move_the_dossier_back(desk):
    await desk.post("/dossiers", {"dossiers": [dossier()]})
    status, body, _ = await desk.post("/dossiers/events", {"events": [
        event("e1", 4, "2026-12-02T09:00:00+07:00"),
        event("e1", 4, "2026-12-02T09:00:00+07:00"),
        event("e0", 5, "2026-12-01T10:00:00+07:00", missing_documents="Ban sao CCCD"),
    ]})
    assert status == 200, body
    assert [r["outcome"] for r in body["results"]] == ["applied", "replayed", "stale"]
    stored = await Dossier.get(code=dossier()["code"])
    assert stored.status is DossierStatus.PROCESSING
    assert {e.event_id: e.outcome for e in await DossierEvent.all()} == {"e1": "applied", "e0": "stale"}
    status, body, _ = await desk.post("/dossiers/events", {"events": [event("e1", 4, "2026-12-02T09:00:00+07:00")]})
    assert body["results"][0]["outcome"] == "replayed"


async def test_a_batch_with_one_bad_item_applies_nothing(desk):
    items = [dossier(1), dossier(2, applicant_phone="not a phone"), dossier(3, status=11)]
    status, body, _ = await desk.post("/dossiers", {"dossiers": items})
    assert status == 400
    assert [(e["index"], e["field"]) for e in body["errors"]] == [(1, "applicant_phone"), (2, "status")]
    assert body["field"] == "dossiers[1].applicant_phone"
    assert await Dossier.filter(code__startswith=f"{AGENCY}-250101").count() == 0


async def test_a_client_touches_only_its_agencies(desk, neighbour):
    await desk.post("/dossiers", {"dossiers": [dossier()]})
    status, body, _ = await neighbour.post("/dossiers", {"dossiers": [dossier(agency=OTHER_AGENCY, procedure="1.001193")]})
    assert status == 400 and body["errors"][0]["field"] == "code"
    status, body, _ = await neighbour.post("/dossiers/events", {"events": [event("x", 9, "2026-12-02T09:00:00+07:00")]})
    assert status == 400 and body["errors"][0]["field"] == "code"
    status, _, _ = await neighbour.get(f"/dossiers/{dossier()['code']}")
    assert status == 404
    assert (await Dossier.get(code=dossier()["code"])).status is DossierStatus.RECEIVED


async def test_a_change_and_its_reversal_inside_the_debounce_send_one_message_the_latest(desk, clock):
    await desk.post("/dossiers", {"dossiers": [dossier()]}, )
    await desk.post("/dossiers/events", {"events": [event("a", 6, "2026-12-02T09:00:00+07:00", fee_due=20000)]})
    await desk.post("/dossiers/events", {"events": [event("b", 4, "2026-12-02T09:01:00+07:00", fee_due=0)]})
    rows = await sms_rows(dossier()["code"])
    waiting = [r for r in rows if r.status is SmsStatus.QUEUED]
    assert len(waiting) == 1 and "dang xu ly" in waiting[0].text
    assert all(r.last_error.startswith("superseded") for r in rows if r is not waiting[0])


async def test_an_invalid_phone_is_stored_and_the_skip_is_visible(desk):
    status, body, _ = await desk.post("/dossiers", {"dossiers": [dossier(applicant_phone="0220 3123 456")]})
    assert status == 200 and body["results"][0]["sms_skipped"].startswith("applicant phone")
    status, body, _ = await desk.get(f"/dossiers/{dossier()['code']}")
    assert status == 200
    assert body["notifications"][0]["skipped"].startswith("applicant phone")
    assert body["notifications"][0]["sms_status"] is None


async def test_a_full_batch_of_1000_arrives_whole_and_is_applied(desk):
    # A 1,000-item body (~250 kB) reaches the server in several TCP reads: all of it must be read.
    items = [dossier(n, applicant_phone=f"0912{n:06d}") for n in range(1, 1001)]
    status, body, _ = await desk.post("/dossiers", {"dossiers": items})
    assert status == 200, body
    assert body["counts"] == {"created": 1000}
    status, body, _ = await desk.post("/dossiers/events", {"events": [
        event(f"full-{n}", 4 if n % 2 else 9, "2026-12-02T09:00:00+07:00", number=n) for n in range(1, 1001)]})
    assert status == 200, body
    assert body["counts"] == {"applied": 1000}
    assert await DossierNotification.all().count() == 2000


async def test_a_record_without_a_status_keeps_the_dossiers_own(desk):
    await desk.post("/dossiers", {"dossiers": [dossier(status=4)]})
    record = dossier()
    del record["status"]
    status, body, _ = await desk.post("/dossiers", {"dossiers": [record]})
    assert status == 200 and body["results"][0]["outcome"] == "unchanged", body
    assert (await Dossier.get(code=record["code"])).status is DossierStatus.PROCESSING
    assert len(await sms_rows(record["code"])) == 1
