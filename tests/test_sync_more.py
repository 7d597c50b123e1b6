"""More of the one-stop sync API (issue 9), through real HTTP into the real app, on SQLite
and PostgreSQL: quiet hours and the debounce with a fixed clock, opt-outs, the citizen's
language, replayed, stale and no-op events, all-or-nothing batches for every kind of bad
field, keys and agencies, concurrency (in one app and across two real ``gateway run``
workers), ID numbers and phones kept out of storage and logs, the OpenAPI description,
and a Hypothesis fuzz of both batch routes.

SMS are read from the outbox rows the API wrote and from the console transport's inbox
(GET /sms/console/sent), as the citizen reads them, while the test clock moves.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from gateway.api import add_api_client
from gateway.app import SERVICES, SQL
from gateway.settings import from_mapping
from models.db import open_database
from models.entities import (Dossier, DossierEvent, DossierNotification, DossierStatus, DossierStatusChange,
                             OutboundSms, SmsKind, SmsStatus)
from tests.conftest import Clock
from tests.servers import ROOT, GatewayProcess, log_tail, write_settings
from tests.test_otp_api import Api
from tests.test_sms import send_text, sent_to
from tests.test_sync_api import AGENCY, OTHER_AGENCY, PHONE, dossier, event, keys, sms_rows  # noqa: F401 - keys: a fixture

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
LOCAL_PHONE = "0912345678"
ID_NUMBER = "030090001234"
CODE = f"{AGENCY}-250101-0001"


def local(day: int, hour: int, minute: int = 0, second: int = 0) -> dt.datetime:
    return dt.datetime(2026, 12, day, hour, minute, second, tzinfo=TZ)


@pytest.fixture
def clock() -> Clock:
    """Noon in Phuong Ky, whatever the time the suite runs: outside quiet hours, so an SMS
    goes as soon as its debounce is over (the quiet-hours tests set their own time)."""
    fixed = Clock()
    fixed.now = local(2, 12, 0).astimezone(dt.timezone.utc)
    return fixed


@pytest.fixture
def desk(client, keys):
    return Api(client, keys["desk"])


async def at(make_client, settings, clock, moment: dt.datetime):
    """The app, with the test clock fixed at ``moment``, and the desk's key."""
    clock.now = moment.astimezone(dt.timezone.utc)
    client = await make_client(settings)
    key = await add_api_client(client.app[SQL], "desk", ["sync"], clock.now, [AGENCY])
    return client, Api(client, key)


async def nothing_delivered(client, msisdn: str = LOCAL_PHONE, already: int = 0, wait: float = 1.2) -> None:
    """The console transport has delivered no more than ``already`` messages to the phone,
    after giving the dispatcher (polling every 0.5 s) time for a few rounds."""
    await asyncio.sleep(wait)
    response = await client.get("/sms/console/sent", params={"msisdn": msisdn})
    messages = (await response.json())["messages"]
    assert len(messages) == already, messages


async def written() -> dict[str, int]:
    """What a refused request must not have changed."""
    return {
        "dossiers": await Dossier.all().count(),
        "events": await DossierEvent.all().count(),
        "changes": await DossierStatusChange.all().count(),
        "notifications": await DossierNotification.all().count(),
        "sms": await OutboundSms.all().count(),
    }


# -- quiet hours and the debounce, with a fixed clock -----------------------------------------


async def test_an_event_at_half_past_ten_at_night_waits_for_seven_in_the_morning(make_client, settings, clock):
    client, desk = await at(make_client, settings, clock, local(2, 22, 30))
    status, body, _ = await desk.post("/dossiers", {"dossiers": [dossier()], "notify": False})
    assert status == 200 and body["results"][0]["outcome"] == "created", body
    status, body, _ = await desk.post("/dossiers/events", {"events": [event("n1", 4, local(2, 22, 29).isoformat())]})
    assert status == 200 and body["results"][0]["outcome"] == "applied", body
    [sms] = await sms_rows(CODE)
    assert sms.id == body["results"][0]["sms"]["id"]
    assert sms.status is SmsStatus.QUEUED and sms.kind is SmsKind.STATUS
    assert sms.next_attempt_at == local(3, 7, 0)
    _, detail, _ = await desk.get(f"/dossiers/{CODE}")
    assert detail["notifications"][-1]["not_before"] == "2026-12-03T00:00:00Z"  # 07:00 local
    await nothing_delivered(client)
    clock.now = local(3, 6, 59, 59).astimezone(dt.timezone.utc)
    await nothing_delivered(client)
    clock.now = local(3, 7, 0, 1).astimezone(dt.timezone.utc)
    [message] = await sent_to(client, LOCAL_PHONE)
    assert message["text"] == sms.text and "dang xu ly" in message["text"]
    assert (await OutboundSms.get(id=sms.id)).status is SmsStatus.SENT


async def test_at_noon_the_sms_goes_once_the_debounce_is_over(make_client, settings, clock):
    client, desk = await at(make_client, settings, clock, local(2, 12, 0))
    debounce = settings.notifications.debounce_seconds
    assert debounce > 2
    await desk.post("/dossiers", {"dossiers": [dossier()], "notify": False})
    status, body, _ = await desk.post("/dossiers/events", {"events": [event("d1", 4, local(2, 11, 59).isoformat())]})
    assert status == 200, body
    [sms] = await sms_rows(CODE)
    assert sms.next_attempt_at == local(2, 12, 0) + dt.timedelta(seconds=debounce)
    await nothing_delivered(client)
    clock.advance(debounce - 2)
    await nothing_delivered(client)
    clock.advance(3)
    [message] = await sent_to(client, LOCAL_PHONE)
    assert message["text"] == sms.text


async def test_after_the_debounce_only_the_latest_message_reaches_the_phone(make_client, settings, clock):
    client, desk = await at(make_client, settings, clock, local(2, 10, 0))
    await desk.post("/dossiers", {"dossiers": [dossier()]})  # "received": waits its debounce
    await desk.post("/dossiers/events", {"events": [event("a", 6, local(2, 10, 0).isoformat(), fee_due=20000)]})
    clock.advance(30)
    await desk.post("/dossiers/events", {"events": [event("b", 5, local(2, 10, 1).isoformat(),
                                                          missing_documents="Ban sao CCCD")]})
    clock.advance(30)
    status, body, _ = await desk.post("/dossiers/events", {"events": [event("c", 4, local(2, 10, 2).isoformat())]})
    latest = body["results"][0]["sms"]["id"]
    rows = await sms_rows(CODE)
    assert len(rows) == 4
    assert [r.id for r in rows if r.status is SmsStatus.QUEUED] == [latest]
    await nothing_delivered(client)
    clock.advance(settings.notifications.debounce_seconds + 1)
    [message] = await sent_to(client, LOCAL_PHONE)
    assert "dang xu ly" in message["text"] and message["text"] == (await OutboundSms.get(id=latest)).text
    await nothing_delivered(client, already=1)
    _, detail, _ = await desk.get(f"/dossiers/{CODE}")
    said = [(n["status"], n["sms_status"]) for n in detail["notifications"]]
    assert said == [(2, "failed"), (6, "failed"), (5, "failed"), (4, "sent")]
    assert all(n["error"].startswith("superseded") for n in detail["notifications"][:3])


# -- who gets what ---------------------------------------------------------------------------


async def test_an_opted_out_phone_gets_no_status_sms_and_the_skip_shows(client, desk, clock, settings):
    assert await send_text(client, "HUY", sender=LOCAL_PHONE) == "accepted"
    [confirmation] = await sent_to(client, LOCAL_PHONE)
    status, body, _ = await desk.post("/dossiers", {"dossiers": [dossier()]})
    assert status == 200 and body["results"][0]["sms_skipped"] == "recipient opted out", body
    status, body, _ = await desk.post("/dossiers/events", {"events": [event("o1", 9, "2026-12-02T09:00:00+07:00")]})
    assert body["results"][0]["sms_skipped"] == "recipient opted out", body
    assert await sms_rows(CODE) == []
    _, detail, _ = await desk.get(f"/dossiers/{CODE}")
    assert [(n["kind"], n["skipped"], n["sms_status"]) for n in detail["notifications"]] == [
        ("status", "recipient opted out", None), ("pickup", "recipient opted out", None)]
    clock.advance(settings.notifications.debounce_seconds + 1)
    await nothing_delivered(client, already=1)
    assert await OutboundSms.filter(to_phone=PHONE).count() == 1  # the opt-out's own confirmation
    assert confirmation["text"].startswith("Da ngung")


async def test_a_citizen_who_chose_english_gets_the_english_template(client, desk, clock, settings):
    citizens = client.app[SERVICES].citizens
    async with client.app[SQL].transaction() as tx:
        assert await citizens.register(tx, PHONE, citizens.id_hash(ID_NUMBER), "234", "Binh", "en", clock.now)
    other = dossier(2, applicant_phone="0912000222")  # not registered: Vietnamese
    status, body, _ = await desk.post("/dossiers", {"dossiers": [dossier(), other]})
    assert status == 200, body
    [english] = await sms_rows(CODE)
    [vietnamese] = await sms_rows(other["code"])
    assert english.text.startswith(f"File {CODE}") and "received, due 04/12/2026" in english.text
    assert vietnamese.text.startswith(f"HS {other['code']}") and "da duoc tiep nhan" in vietnamese.text
    await desk.post("/dossiers/events", {"events": [event("en9", 9, "2026-12-02T09:00:00+07:00", fee_due=8000)]})
    clock.advance(settings.notifications.debounce_seconds + 1)
    [message] = await sent_to(client, LOCAL_PHONE)
    assert "ready" in message["text"] and "8,000 VND" in message["text"] and "Bring slip+ID" in message["text"]


async def test_a_dossier_reads_back_with_its_notification_history(desk):
    """GET /dossiers/{code} once an SMS was queued: each notification with its status and its SMS's state."""
    await desk.post("/dossiers", {"dossiers": [dossier(), dossier(2, applicant_phone="0220 3123 456")]})
    await desk.post("/dossiers/events", {"events": [event("h1", 4, "2026-12-02T09:00:00+07:00")]})
    status, body, _ = await desk.get(f"/dossiers/{CODE}")
    assert status == 200, body
    assert [(n["kind"], n["status"], n["sms_status"], n["skipped"]) for n in body["notifications"]] == [
        ("status", 2, "failed", None), ("status", 4, "queued", None)]
    assert body["notifications"][0]["error"].startswith("superseded") and body["notifications"][1]["parts"] == 1
    status, body, _ = await desk.get(f"/dossiers/{dossier(2)['code']}")
    assert status == 200, body
    assert [(n["status"], n["sms_status"]) for n in body["notifications"]] == [(2, None)]


# -- replayed, out of order, unchanged ---------------------------------------------------------


async def test_replayed_and_out_of_order_events_move_the_dossier_once_and_never_back(desk):
    await desk.post("/dossiers", {"dossiers": [dossier()], "notify": False})
    status, body, _ = await desk.post("/dossiers/events", {"events": [event("late", 4, "2026-12-02T10:00:00+07:00")]})
    assert body["results"][0]["outcome"] == "applied"
    # The earlier event arrives after the later one: recorded, not applied, nothing sent.
    status, body, _ = await desk.post("/dossiers/events", {"events": [
        event("early", 5, "2026-12-02T09:00:00+07:00", missing_documents="Ban sao CCCD")]})
    assert status == 200 and body["results"][0]["outcome"] == "stale", body
    assert "sms" not in body["results"][0] and "sms_skipped" not in body["results"][0]
    stored = await Dossier.get(code=CODE)
    assert stored.status is DossierStatus.PROCESSING and stored.status_note == ""
    events = {e.event_id: (e.outcome, e.status) for e in await DossierEvent.all()}
    assert events == {"late": ("applied", DossierStatus.PROCESSING), "early": ("stale", DossierStatus.NEEDS_DOCUMENTS)}
    assert len(await sms_rows(CODE)) == 1
    before = await written()
    # Replays of both, in one batch and again: nothing moves, nothing is sent, nothing is added.
    for _ in range(2):
        status, body, _ = await desk.post("/dossiers/events", {"events": [
            event("early", 5, "2026-12-02T09:00:00+07:00", missing_documents="Ban sao CCCD"),
            event("late", 4, "2026-12-02T10:00:00+07:00")]})
        assert [r["outcome"] for r in body["results"]] == ["replayed", "replayed"], body
    assert await written() == before
    # In one batch, out of order: the later applies, the earlier is stale.
    status, body, _ = await desk.post("/dossiers/events", {"events": [
        event("b2", 9, "2026-12-03T10:00:00+07:00", fee_due=8000), event("b1", 6, "2026-12-03T09:00:00+07:00")]})
    assert [r["outcome"] for r in body["results"]] == ["applied", "stale"], body
    assert (await Dossier.get(code=CODE)).status is DossierStatus.READY
    _, detail, _ = await desk.get(f"/dossiers/{CODE}")
    assert [(h["from"], h["to"]) for h in detail["status_history"]] == [(None, 2), (2, 4), (4, 9)]


async def test_an_event_that_changes_nothing_is_unchanged_and_sends_nothing(desk):
    await desk.post("/dossiers", {"dossiers": [dossier()]})
    await desk.post("/dossiers/events", {"events": [event("s1", 6, "2026-12-02T09:00:00+07:00", fee_due=20000)]})
    before = await written()
    status, body, _ = await desk.post("/dossiers/events", {"events": [
        event("s2", 6, "2026-12-02T09:30:00+07:00", fee_due=20000),
        event("s3", 6, "2026-12-02T09:40:00+07:00"),  # fee_due left out: unchanged too
    ]})
    assert status == 200 and [r["outcome"] for r in body["results"]] == ["unchanged", "unchanged"], body
    after = await written()
    assert after == {**before, "events": before["events"] + 2}
    assert {e.event_id: e.outcome for e in await DossierEvent.all()} == {
        "s1": "applied", "s2": "unchanged", "s3": "unchanged"}
    assert len(await sms_rows(CODE)) == 2
    # The same state pushed again as a dossier record: unchanged, nothing sent.
    status, body, _ = await desk.post("/dossiers", {"dossiers": [dossier(status=6, fee_due=20000)]})
    assert status == 200 and body["results"][0] == {"code": CODE, "outcome": "unchanged"}, body
    assert await written() == after


# -- all or nothing ---------------------------------------------------------------------------

BAD_DOSSIER_FIELDS = [
    ("code", {"code": "not a dossier code"}),
    ("code", {"code": "000.32.22.H23-250101"}),
    ("code", {"code": 12345}),
    ("agency", {"agency": "000.00.00.H00"}),
    ("agency", {"agency": OTHER_AGENCY}),  # exists, but not this client's
    ("agency", {"agency": None}),
    ("procedure", {"procedure": "9.999999"}),
    ("applicant_name", {"applicant_name": "   "}),
    ("applicant_name", {"applicant_name": "x" * 121}),
    ("applicant_phone", {"applicant_phone": "call me"}),
    ("applicant_phone", {"applicant_phone": ["0912345678"]}),
    ("id_number", {"id_number": "12345"}),
    ("id_number", {"id_number": "999090001234"}),  # no such province
    ("id_number", {"id_number": {"n": ID_NUMBER}}),
    ("received_at", {"received_at": "2026-13-01"}),
    ("received_at", {"received_at": "yesterday"}),
    ("received_at", {"received_at": "1999-12-31T23:00:00+00:00"}),
    ("received_at", {"received_at": "0001-01-01"}),
    ("received_at", {"received_at": "9999-12-31"}),
    ("received_at", {"received_at": None}),
    ("due_at", {"due_at": "2026-02-30"}),
    ("status_at", {"status_at": "2026-12-01T25:00:00+07:00"}),
    ("status", {"status": 0}),
    ("status", {"status": 11}),
    ("status", {"status": "ready"}),
    ("status", {"status": True}),
    ("status", {"status": 2.5}),
    ("status", {"status": "\u00b2"}),  # a digit to str.isdigit, not to int()
    ("status", {"status": "9" * 5000}),
    ("fee_due", {"fee_due": -1}),
    ("fee_due", {"fee_due": 1.5}),
    ("fee_due", {"fee_due": "20k"}),
    ("fee_due", {"fee_due": 10 ** 30}),
    ("fee_due", {"fee_due": "\u00b2"}),
    ("mode", {"mode": "level4"}),
    ("mode", {"mode": 4}),
    ("pickup_place", {"pickup_place": "x" * 301}),
    ("status_note", {"status_note": "a\x00b"}),
    ("colour", {"colour": "red"}),
]


@pytest.mark.parametrize("field, spoiled", BAD_DOSSIER_FIELDS, ids=[f"{f}={str(s)[:30]}" for f, s in BAD_DOSSIER_FIELDS])
async def test_a_dossier_batch_with_one_bad_item_applies_nothing(desk, field, spoiled):
    await desk.post("/dossiers", {"dossiers": [dossier(9)]})
    before = await written()
    items = [dossier(1), dossier(2, **spoiled), dossier(3), dossier(9, status=4)]
    status, body, _ = await desk.post("/dossiers", {"dossiers": items})
    assert status == 400, body
    assert [(e["index"], e["field"]) for e in body["errors"]] == [(1, field)], body
    assert body["field"] == f"dossiers[1].{field}" and "nothing applied" in body["error"]
    assert await written() == before
    assert (await Dossier.get(code=dossier(9)["code"])).status is DossierStatus.RECEIVED


async def test_the_same_code_twice_in_one_batch_applies_nothing(desk):
    before = await written()
    status, body, _ = await desk.post("/dossiers", {"dossiers": [dossier(1), dossier(2), dossier(1, status=4)]})
    assert status == 400 and [(e["index"], e["field"]) for e in body["errors"]] == [(2, "code")], body
    # The same code spelt differently is the same dossier.
    status, body, _ = await desk.post("/dossiers", {"dossiers": [dossier(1), dossier(1, code=CODE.lower())]})
    assert status == 400 and body["errors"][0]["index"] == 1, body
    assert await written() == before


BAD_EVENT_FIELDS = [
    ("event_id", {"event_id": "has space"}),
    ("event_id", {"event_id": "x" * 65}),
    ("event_id", {"event_id": None}),
    ("code", {"code": f"{AGENCY}-250101-0777"}),  # no such dossier
    ("code", {"code": f"{OTHER_AGENCY}-250101-0001"}),
    ("code", {"code": "nope"}),
    ("status", {"status": 0}),
    ("status", {"status": "\u00b2"}),
    ("status", {"status": None}),
    ("occurred_at", {"occurred_at": "soon"}),
    ("occurred_at", {"occurred_at": "0001-01-01"}),
    ("occurred_at", {"occurred_at": None}),
    ("due_at", {"due_at": "2026-12-32"}),
    ("fee_due", {"fee_due": -5}),
    ("fee_due", {"fee_due": [1]}),
    ("missing_documents", {"missing_documents": "CCCD"}),  # with status 4
    ("reason", {"reason": "x" * 301}),
    ("applicant_phone", {"applicant_phone": LOCAL_PHONE}),  # not an event field
]


@pytest.mark.parametrize("field, spoiled", BAD_EVENT_FIELDS, ids=[f"{f}={str(s)[:30]}" for f, s in BAD_EVENT_FIELDS])
async def test_an_event_batch_with_one_bad_item_applies_nothing(desk, field, spoiled):
    await desk.post("/dossiers", {"dossiers": [dossier(1), dossier(2)]})
    before = await written()
    items = [event("g1", 4, "2026-12-02T09:00:00+07:00"), {**event("g2", 4, "2026-12-02T09:00:00+07:00", 2), **spoiled},
             event("g3", 9, "2026-12-02T10:00:00+07:00")]
    status, body, _ = await desk.post("/dossiers/events", {"events": items})
    assert status == 400, body
    assert [(e["index"], e["field"]) for e in body["errors"]] == [(1, field)], body
    assert await written() == before
    assert {d.status for d in await Dossier.filter(code__in=[dossier(1)["code"], dossier(2)["code"]])} == {
        DossierStatus.RECEIVED}


@pytest.mark.parametrize("route, list_name, item", [("/dossiers", "dossiers", dossier()),
                                                     ("/dossiers/events", "events", event("w", 4, "2026-12-02"))])
@pytest.mark.parametrize("case", ["too many", "empty", "not a list", "wrong content type", "not json", "a list body",
                                  "a string body", "unknown top-level field", "bad charset", "deep nesting"])
async def test_a_malformed_batch_is_refused_whole(desk, route, list_name, item, case):
    await desk.post("/dossiers", {"dossiers": [dossier(1)], "notify": False})
    before = await written()
    kwargs: dict = {}
    expected = 400
    if case == "too many":
        kwargs["json"] = {list_name: [item] * 1001}
    elif case == "empty":
        kwargs["json"] = {list_name: []}
    elif case == "not a list":
        kwargs["json"] = {list_name: item}
    elif case == "wrong content type":
        kwargs.update(data=json.dumps({list_name: [item]}), headers={"Content-Type": "text/plain"})
        expected = 415
    elif case == "not json":
        kwargs.update(data=b'{"' + list_name.encode() + b'": [', headers={"Content-Type": "application/json"})
    elif case == "a list body":
        kwargs["json"] = [item]
    elif case == "a string body":
        kwargs["json"] = "dossiers"
    elif case == "unknown top-level field":
        kwargs["json"] = {list_name: [item], "dry_run": True}
    elif case == "bad charset":
        kwargs.update(data=json.dumps({list_name: [item]}).encode(),
                      headers={"Content-Type": "application/json; charset=klingon"})
    elif case == "deep nesting":
        kwargs.update(data=b'{"' + list_name.encode() + b'": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
                      headers={"Content-Type": "application/json"})
    response = await desk.client.post(f"/api/v1{route}", headers={"Authorization": f"Bearer {desk.key}",
                                                                  **kwargs.pop("headers", {})}, **kwargs)
    assert response.status == expected, await response.text()
    assert response.content_type == "application/json" and (await response.json())["error"]
    assert await written() == before


async def test_keys_scopes_and_agencies(client, keys, desk):
    await desk.post("/dossiers", {"dossiers": [dossier()]})
    before = await written()
    routes = [("POST", "/dossiers", {"dossiers": [dossier(2)]}),
              ("POST", "/dossiers/events", {"events": [event("k", 4, "2026-12-02")]}),
              ("GET", f"/dossiers/{CODE}", None)]
    for method, path, body in routes:
        for headers, expected in [({}, 401), ({"Authorization": "Bearer nope"}, 401), ({"X-Api-Key": "x" * 5000}, 401),
                                  ({"Authorization": f"Bearer {keys['portal']}"}, 403)]:
            response = await client.request(method, f"/api/v1{path}", json=body, headers=headers)
            assert response.status == expected, (method, path, headers, await response.text())
            assert (await response.json())["error"]
    assert await written() == before
    neighbour = Api(client, keys["neighbour"])
    for path in (f"/dossiers/{CODE}", f"/dossiers/{CODE.lower()}", "/dossiers/nonsense", f"/dossiers/{AGENCY}-250101-0999"):
        status, body, _ = await neighbour.get(path)
        assert status == 404 and body["error"] == "no such dossier for this client", (path, body)
    status, body, _ = await desk.get(f"/dossiers/{CODE.lower()}")
    assert status == 200 and body["code"] == CODE
    # X-Api-Key is the other way to send the key.
    status, body, _ = await Api(client, None).get(f"/dossiers/{CODE}", headers={"X-Api-Key": keys["desk"]})
    assert status == 200 and body["status"] == 2


# -- concurrency -------------------------------------------------------------------------------


async def test_twenty_copies_of_one_event_batch_at_once_apply_once(desk):
    await desk.post("/dossiers", {"dossiers": [dossier()], "notify": False})
    batch = {"events": [event("same", 9, "2026-12-02T09:00:00+07:00", fee_due=8000)]}
    answers = await asyncio.gather(*(desk.post("/dossiers/events", batch) for _ in range(20)))
    assert [status for status, _, _ in answers] == [200] * 20, [b for s, b, _ in answers if s != 200][:2]
    outcomes = sorted(body["results"][0]["outcome"] for _, body, _ in answers)
    assert outcomes == ["applied"] + ["replayed"] * 19
    assert await DossierEvent.all().count() == 1
    assert len(await sms_rows(CODE)) == 1
    assert await DossierStatusChange.filter(dossier__code=CODE).count() == 2  # created, then 2 -> 9


async def test_two_batches_creating_the_same_dossier_at_once_create_it_once(desk):
    answers = await asyncio.gather(*(desk.post("/dossiers", {"dossiers": [dossier()]}) for _ in range(2)))
    assert [status for status, _, _ in answers] == [200, 200], answers
    outcomes = sorted(body["results"][0]["outcome"] for _, body, _ in answers)
    assert outcomes[0] == "created" and outcomes[1] in ("unchanged", "updated"), outcomes
    assert await Dossier.filter(code=CODE).count() == 1
    assert len(await sms_rows(CODE)) == 1


TOKEN = "sync-workers-token"


@pytest.fixture
async def two_workers(tmp_path, database_url):
    """Two real ``gateway run`` processes on the suite's database, and a sync key."""
    env = {"GATEWAY_SECRET_KEY": "test-secret", "GATEWAY_WEBHOOK_TOKEN": TOKEN, "GATEWAY_DATABASE_URL": database_url}
    settings = write_settings(tmp_path / "settings.toml", {
        "database": {"migrate_on_start": False},
        "logging": {"format": "json"},
        "sms": {"run_dispatcher": False},
        "notifications": {"run_reminders": False},
    })
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
    outputs = []
    for command in (["migrate"], ["seed"], ["add-api-client", "--name", "desk", "--scopes", "sync", "--agency", AGENCY]):
        done = subprocess.run([sys.executable, "-m", "gateway", "--settings", str(settings), *command],
                              cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout)
    key = outputs[-1].strip().splitlines()[-1]
    workers = [GatewayProcess(settings, tmp_path / f"worker{n}.log", env) for n in (1, 2)]
    try:
        for worker in workers:
            await worker.start()
        async with open_database(database_url):
            yield workers, key
    finally:
        for worker in workers:
            worker.stop()


async def _spread(workers, key, path, bodies):
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as http:
        async def send(n, body):
            async with http.post(workers[n % 2].base_url + "/api/v1" + path, json=body) as response:
                return response.status, await response.json()

        return await asyncio.gather(*(send(n, body) for n, body in enumerate(bodies)))


async def test_two_workers_receiving_the_same_event_at_once_make_one_change_and_one_sms(two_workers):
    workers, key = two_workers
    [(status, body)] = await _spread(workers, key, "/dossiers", [{"dossiers": [dossier()], "notify": False}])
    assert status == 200 and body["results"][0]["outcome"] == "created", body
    batch = {"events": [event("twice", 9, "2026-12-02T09:00:00+07:00", fee_due=8000)]}
    answers = await _spread(workers, key, "/dossiers/events", [batch] * 20)
    assert [status for status, _ in answers] == [200] * 20, (answers, [log_tail(w.log_path) for w in workers])
    assert sorted(b["results"][0]["outcome"] for _, b in answers) == ["applied"] + ["replayed"] * 19
    assert await DossierEvent.all().count() == 1
    assert await DossierStatusChange.filter(dossier__code=CODE).count() == 2
    assert len(await sms_rows(CODE)) == 1


async def test_two_workers_creating_the_same_new_dossier_at_once_create_it_once(two_workers):
    workers, key = two_workers
    for number in range(1, 6):  # a few rounds: the race is not won the same way every time
        answers = await _spread(workers, key, "/dossiers", [{"dossiers": [dossier(number)]}] * 2)
        assert [status for status, _ in answers] == [200, 200], (answers, [log_tail(w.log_path) for w in workers])
        outcomes = sorted(b["results"][0]["outcome"] for _, b in answers)
        assert outcomes[0] == "created" and outcomes[1] in ("unchanged", "updated"), outcomes
        code = dossier(number)["code"]
        assert await Dossier.filter(code=code).count() == 1
        assert len(await sms_rows(code)) == 1, number


# -- personal data -----------------------------------------------------------------------------


async def test_an_id_number_is_kept_only_as_a_keyed_hash(client, desk):
    status, body, _ = await desk.post("/dossiers", {"dossiers": [dossier(id_number=ID_NUMBER)]})
    assert status == 200, body
    stored = await Dossier.get(code=CODE)
    citizens = client.app[SERVICES].citizens
    assert stored.applicant_id_hash == citizens.id_hash(ID_NUMBER)
    assert stored.applicant_id_hash not in (hashlib.sha256(ID_NUMBER.encode()).hexdigest(), ID_NUMBER)
    assert len(stored.applicant_id_hash) == 64 and ID_NUMBER not in stored.applicant_id_hash
    # Nowhere in the database: every text of every row of every table.
    sql = client.app[SQL]
    if sql.dialect == "postgres":
        tables = [r[0] for r in await sql.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")]
    else:
        tables = [r[0] for r in await sql.fetch("SELECT name FROM sqlite_master WHERE type = 'table'")]
    assert "dossier" in tables
    for table in tables:
        for row in await sql.fetch(f'SELECT * FROM "{table}"'):
            assert ID_NUMBER not in " ".join(map(str, row)), table
    _, detail, _ = await desk.get(f"/dossiers/{CODE}")
    assert ID_NUMBER not in json.dumps(detail) and "id_number" not in detail


async def test_no_phone_or_id_number_in_clear_in_any_log_line(client, desk, log_stream):
    spaced = "0912 345 678"
    await desk.post("/dossiers", {"dossiers": [dossier(applicant_phone=spaced, id_number=ID_NUMBER)]})
    await desk.post("/dossiers", {"dossiers": [dossier(2, applicant_phone="+84 912 345 678", id_number="123")]})  # 400
    await desk.post("/dossiers", {"dossiers": [dossier(3, applicant_phone="0912345678x", id_number=ID_NUMBER)]})
    await desk.post("/dossiers", {"dossiers": [dossier(4, id_number=ID_NUMBER, colour=LOCAL_PHONE)]})
    await desk.post("/dossiers", {"dossiers": [{**dossier(5), LOCAL_PHONE: ID_NUMBER}]})  # a number as a field name
    await desk.post("/dossiers/events", {"events": [event("p1", 9, "2026-12-02T09:00:00+07:00")]})
    await desk.post("/dossiers/events", {"events": [event(ID_NUMBER, 4, "2026-12-02T10:00:00+07:00")]})
    await desk.post("/dossiers/events", {"events": [event("p3", 4, LOCAL_PHONE)]})
    await desk.get(f"/dossiers/{CODE}")
    await desk.get(f"/dossiers/{LOCAL_PHONE}")
    await Api(client, None).post("/dossiers", {"dossiers": [dossier(applicant_phone=LOCAL_PHONE)]})  # 401
    lines = log_stream.getvalue().splitlines()
    assert sum('"api_request"' in line for line in lines) == 11, lines
    for line in lines:
        for clear in (LOCAL_PHONE, "912345678", PHONE, spaced, "912 345 678", ID_NUMBER):
            assert clear not in line, line


# -- the OpenAPI description -------------------------------------------------------------------


async def test_the_openapi_description_covers_the_dossier_routes(client, desk):
    from openapi_schema_validator import OAS31Validator
    from openapi_spec_validator import validate

    from gateway.sync_input import DOSSIER_FIELDS, EVENT_FIELDS

    response = await client.get("/api/v1/openapi.json")
    assert response.status == 200
    spec = await response.json()
    validate(spec)  # a valid OpenAPI 3.1 document, every $ref resolving
    paths = spec["paths"]
    assert set(paths["/dossiers"]) == {"post"} and set(paths["/dossiers/events"]) == {"post"}
    assert "get" in paths["/dossiers/{code}"]
    schemas = spec["components"]["schemas"]

    def body_schema(operation):
        ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        return ref.rsplit("/", 1)[-1]

    assert body_schema(paths["/dossiers"]["post"]) == "DossierBatch"
    assert body_schema(paths["/dossiers/events"]["post"]) == "EventBatch"
    assert set(schemas["Dossier"]["properties"]) == DOSSIER_FIELDS
    assert set(schemas["StatusEvent"]["properties"]) == EVENT_FIELDS
    for operation, code in ((paths["/dossiers"]["post"], "200"), (paths["/dossiers/events"]["post"], "200"),
                            (paths["/dossiers/{code}"]["get"], "200")):
        assert operation["responses"][code]["content"]["application/json"]["schema"]["$ref"]
        assert {"401", "403"} <= set(operation["responses"])

    def validator(name):
        return OAS31Validator({"$ref": f"#/components/schemas/{name}", "components": {"schemas": schemas}})

    # What the API accepts and answers matches what the description says.
    batch = {"dossiers": [dossier(id_number=ID_NUMBER, fee_due=8000, mode="toan_trinh")]}
    validator("DossierBatch").validate(batch)
    status, answer, _ = await desk.post("/dossiers", batch)
    assert status == 200
    validator("BatchResults").validate(answer)
    events = {"events": [event("o1", 9, "2026-12-02T09:00:00+07:00", fee_due=8000)]}
    validator("EventBatch").validate(events)
    status, answer, _ = await desk.post("/dossiers/events", events)
    assert status == 200
    validator("BatchResults").validate(answer)
    status, detail, _ = await desk.get(f"/dossiers/{CODE}")
    validator("DossierDetail").validate(detail)
    assert list(validator("DossierBatch").iter_errors({"dossiers": [{**dossier(), "colour": "red"}]}))
    assert list(validator("EventBatch").iter_errors({"events": [{**events["events"][0], "status": 11}]}))


# -- fuzz --------------------------------------------------------------------------------------

FUZZ_EXAMPLES = int(os.environ.get("GATEWAY_FUZZ_EXAMPLES", "100"))

hostile_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2 ** 80), max_value=2 ** 80), st.floats(),
    st.sampled_from([0, 1, 9, 10, 11, -1, 2 ** 31, 2 ** 63, 10 ** 30]),
    st.text(max_size=30),
    st.sampled_from([
        "", " ", "\x00", "a\x00b", "\ud800", "x\udfffy", "9" * 5000, "\u00b2", "\u0663", "\u0669" * 10, "Tr\u1ea7n Th\u1ecb B\u00ecnh",
        "0912345678", "+84912345678", "0912 345 678", ID_NUMBER, "123456789", "999090001234",
        "2026-12-02", "2026-02-30", "0001-01-01", "9999-12-31", "1900-01-01", "2026-12-02T25:00:00+07:00",
        "2026-12-02T08:00:00+24:00", "2026-12-02T08:00:00Z", "2026-12-02T08:00:00.123456789+07:00", "20261202",
        "2026-W49-3", "2026-336", " 2026-12-02 ", "2100-12-31T23:59:59-12:00", "1999-12-31T23:59:59+00:00",
        "mot_phan", "toan_trinh", AGENCY, OTHER_AGENCY, "1.001193", CODE, CODE.lower(), "G09.20-20260609-0092637",
        f"{AGENCY}-\u0662\u0666\u0661\u0662\u0660\u0661-0001", "x" * 301, "e" * 65,
    ]),
)
hostile_values = st.recursive(
    hostile_scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)
dossier_keys = st.sampled_from(sorted(["code", "agency", "procedure", "applicant_name", "applicant_phone", "id_number",
                                       "received_at", "due_at", "fee_due", "pickup_place", "mode", "status",
                                       "status_note", "status_at", "colour", ""]))
event_keys = st.sampled_from(sorted(["event_id", "code", "status", "occurred_at", "reason", "missing_documents",
                                     "due_at", "fee_due", "note", "\x00"]))


@st.composite
def hostile_items(draw, keys, valid):
    item = dict(valid) if draw(st.integers(0, 4)) else {}
    for key in draw(st.lists(keys, max_size=3, unique=True)):
        if draw(st.integers(0, 5)) == 0:
            item.pop(key, None)
        else:
            item[key] = draw(hostile_values)
    return item


@st.composite
def sync_requests(draw):
    if draw(st.booleans()):
        route, list_name = "/dossiers", "dossiers"
        valid = dossier(draw(st.integers(1, 3)))
        items = st.one_of(hostile_items(dossier_keys, valid), hostile_values)
    else:
        route, list_name = "/dossiers/events", "events"
        valid = event(draw(st.sampled_from(["f1", "f2", "f3"])), draw(st.integers(1, 10)), "2026-12-02T09:00:00+07:00")
        items = st.one_of(hostile_items(event_keys, valid), hostile_values)
    body = {list_name: draw(st.lists(items, min_size=0, max_size=4))}
    if draw(st.integers(0, 5)) == 0:
        body = draw(st.one_of(hostile_values, st.builds(lambda extra: {**body, **extra},
                                                        st.dictionaries(st.sampled_from(["notify", "x", list_name]),
                                                                        hostile_values, max_size=2))))
    raw = json.dumps(body).encode()
    if draw(st.integers(0, 10)) == 0:
        depth = draw(st.integers(50, 50_000))
        raw = b'{"' + list_name.encode() + b'": [' + b"[" * depth + b"]" * depth + b"]}"
    content_type = draw(st.sampled_from(["application/json"] * 8 + ["application/json; charset=utf-16", "text/plain"]))
    return route, raw, content_type


_FUZZ: dict[str, tuple] = {}


async def _fuzz_client(make_client, database_url):
    """One app for all examples (Hypothesis reuses the function's fixtures), with a key."""
    found = _FUZZ.get(database_url)
    if found is None or found[0].session.closed:
        client = await make_client(from_mapping(
            {"database": {"url": database_url}, "logging": {"format": "json"},
             "sms": {"run_dispatcher": False}, "retention": {"run_purger": False},
             "notifications": {"run_reminders": False}},
            environ={"GATEWAY_SECRET_KEY": "test-secret"}))
        key = await add_api_client(client.app[SQL], "fuzz", ["sync"], dt.datetime.now(dt.timezone.utc), [AGENCY])
        status, body, _ = await Api(client, key).post("/dossiers", {"dossiers": [dossier(1), dossier(2), dossier(3)]})
        assert status == 200, body
        found = _FUZZ[database_url] = (client, key)
    return found


@hypothesis_settings(max_examples=FUZZ_EXAMPLES, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                            HealthCheck.data_too_large])
@given(request=sync_requests())
async def test_no_batch_gets_a_5xx_and_a_refused_one_writes_nothing(make_client, database_url, request):
    client, key = await _fuzz_client(make_client, database_url)
    route, raw, content_type = request
    before = await written()
    response = await client.post(f"/api/v1{route}", data=raw,
                                 headers={"Authorization": f"Bearer {key}", "Content-Type": content_type})
    text = await response.text(errors="replace")
    assert response.status < 500, (response.status, text[:300], raw[:300])
    assert response.content_type == "application/json", text[:200]
    answer = json.loads(text)
    if response.status >= 400:
        assert answer["error"] and answer["status"] == response.status
        assert await written() == before, ("a refused batch wrote something", raw[:300])
    else:
        assert response.status == 200 and len(answer["results"]) == len(json.loads(raw)[route.rsplit("/", 1)[-1]])
