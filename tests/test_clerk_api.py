"""/api/v1/clerk: a clerk's bearer token, every route, through the real app. A clerk of
agency A can never read or change agency B's dossiers through any route. Runs on SQLite and
PostgreSQL."""

from __future__ import annotations

import pytest

from gateway.api import OPENAPI, add_api_client
from gateway.api_clerk import issue_token
from gateway.app import SERVICES, SQL
from models.audit import CLI
from models.entities import AuditLog, Dossier, DossierStatus, OutboundSms, SmsKind
from tests.test_otp_api import Api
from tests.test_sync_api import AGENCY, OTHER_AGENCY, desk, dossier, keys  # noqa: F401 - fixtures

MINE = f"{AGENCY}-250101-0001"
THEIRS = f"{OTHER_AGENCY}-250101-0007"


@pytest.fixture
async def client(make_client, settings):
    """The app without its dispatcher: it would send an alert while a test reads it queued
    (seen on a fast machine: the console transport sent it between the two requests)."""
    return await make_client(settings.replace(sms={"run_dispatcher": False}))


@pytest.fixture
async def tokens(client, clock, desk):
    app = client.app
    neighbour = Api(client, await add_api_client(app[SQL], "tanky", ["sync"], clock.now, [OTHER_AGENCY]))
    assert (await desk.post("/dossiers", {"dossiers": [dossier(1, fee_due=8000)]}))[0] == 200
    assert (await neighbour.post("/dossiers", {"dossiers": [dossier(7, code=THEIRS, agency=OTHER_AGENCY, status=9)]}))[0] == 200
    made = {}
    for login, agencies, role in (("lan", [AGENCY], "clerk"), ("hoa", [OTHER_AGENCY], "clerk"), ("admin", [], "admin")):
        await app[SERVICES].clerks.create(app[SQL], login=login, name=login.title() + " Nguyen", phone=None, role=role,
                                          agency_codes=agencies, actor=CLI, now=clock.now)
        made[login] = await issue_token(app[SQL], app[SERVICES].clerks, login, clock.now)
    return made


def as_clerk(client, token):
    return Api(client, token)


ROUTES = [
    ("get", "/clerk/dossiers/{code}"),
    ("get", "/clerk/dossiers/{code}/alert-preview"),
    ("post", "/clerk/dossiers/{code}/ready"),
    ("post", "/clerk/dossiers/{code}/collected"),
    ("post", "/clerk/dossiers/{code}/resend"),
]


async def call(api, method, path, body=None):
    if method == "get":
        return await api.get(path)
    return await api.post(path, body)


async def test_ready_sends_the_pickup_alert_and_the_preview_is_exactly_what_goes(client, tokens):
    lan = as_clerk(client, tokens["lan"])
    status, preview, _ = await lan.get(f"/clerk/dossiers/{MINE}/alert-preview")
    assert status == 200 and preview["parts"] == 1 and preview["encoding"] == "gsm7"
    status, body, _ = await lan.post(f"/clerk/dossiers/{MINE}/ready")
    assert status == 200 and body["result"] == "sent", body
    sms = await OutboundSms.get(id=body["sms"]["id"])
    assert sms.kind is SmsKind.PICKUP and sms.text == preview["text"]
    status, state, _ = await lan.get(f"/clerk/sms/{sms.id}")
    assert status == 200 and state["status"] == "queued" and state["code"] == MINE
    status, found, _ = await lan.get(f"/clerk/dossiers/{MINE}")
    assert found["status"] == 9 and sms.id in [m["id"] for m in found["sms"]]
    status, body, _ = await lan.post(f"/clerk/dossiers/{MINE}/collected")
    assert status == 200 and (await Dossier.get(code=MINE)).status is DossierStatus.DELIVERED
    status, body, _ = await lan.post(f"/clerk/dossiers/{MINE}/collected")
    assert status == 409 and body["result"] == "already_collected"
    actions = {a.action for a in await AuditLog.filter(actor="lan", channel="api")}
    assert {"status_changed", "alert_sent"} <= actions


async def test_find_by_tail_stays_within_the_clerks_agencies(client, tokens):
    status, body, _ = await as_clerk(client, tokens["lan"]).get("/clerk/dossiers?q=2501010007")
    assert status == 200 and body["dossiers"] == []
    status, body, _ = await as_clerk(client, tokens["hoa"]).get("/clerk/dossiers?q=2501010007")
    assert [d["code"] for d in body["dossiers"]] == [THEIRS]
    status, body, _ = await as_clerk(client, tokens["admin"]).get(f"/clerk/dossiers?q={THEIRS}")
    assert [d["code"] for d in body["dossiers"]] == [THEIRS]


@pytest.mark.parametrize("method, path", ROUTES)
async def test_every_dossier_route_is_a_404_for_another_agencys_dossier(client, tokens, method, path):
    status, body, _ = await call(as_clerk(client, tokens["lan"]), method, path.format(code=THEIRS))
    assert status == 404 and "error" in body
    stored = await Dossier.get(code=THEIRS)
    assert stored.status is DossierStatus.READY
    assert not await AuditLog.filter(actor="lan").exists()


async def test_bulk_alert_gives_a_result_per_code_in_one_transaction(client, tokens):
    await as_clerk(client, tokens["admin"]).post(f"/clerk/dossiers/{THEIRS}/collected")
    status, body, _ = await as_clerk(client, tokens["hoa"]).post(
        "/clerk/alerts", {"codes": [THEIRS, MINE, "000.32.22.H23-991231-9999", "nonsense"]})
    assert status == 200, body
    assert [r["result"] for r in body["results"]] == ["already_collected", "other_agency", "unknown", "unknown"]
    assert (await Dossier.get(code=MINE)).status is DossierStatus.RECEIVED
    status, body, _ = await as_clerk(client, tokens["lan"]).post("/clerk/alerts", {"codes": [MINE, MINE, "2501010001"]})
    # The repeat is dropped; the tail names the same dossier: the same one alert for both.
    assert [r["result"] for r in body["results"]] == ["sent", "sent"]
    assert body["results"][0]["sms"]["id"] == body["results"][1]["sms"]["id"]


async def test_an_sms_of_another_agency_is_a_404(client, tokens):
    status, body, _ = await as_clerk(client, tokens["hoa"]).post(f"/clerk/dossiers/{THEIRS}/resend")
    assert status == 200
    status, _, _ = await as_clerk(client, tokens["lan"]).get(f"/clerk/sms/{body['sms']['id']}")
    assert status == 404


@pytest.mark.parametrize("method, path", ROUTES + [("get", "/clerk/dossiers?q=2501010001"), ("post", "/clerk/alerts"),
                                                   ("get", "/clerk/sms/1")])
async def test_every_clerk_route_refuses_anonymous_callers_api_keys_and_disabled_clerks(client, tokens, keys, clock,
                                                                                       method, path):
    path = path.format(code=MINE)
    for api in (Api(client, None), Api(client, keys["desk"]), Api(client, "ck_" + "x" * 43)):
        status, body, _ = await call(api, method, path, {"codes": [MINE]})
        assert status == 401 and "error" in body
    async with client.app[SQL].transaction() as tx:
        await client.app[SERVICES].clerks.set_active(tx, "lan", False, CLI, clock.now)
    status, _, _ = await call(as_clerk(client, tokens["lan"]), method, path, {"codes": [MINE]})
    assert status == 403
    assert (await Dossier.get(code=MINE)).status is DossierStatus.RECEIVED


async def test_the_clerk_routes_are_in_the_openapi_description(client):
    response = await client.get("/api/v1/openapi.json")
    paths = (await response.json())["paths"]
    for route in ("/clerk/dossiers", "/clerk/dossiers/{code}/ready", "/clerk/alerts", "/clerk/sms/{id}"):
        assert route in paths
    assert "clerkToken" in OPENAPI["components"]["securitySchemes"]
