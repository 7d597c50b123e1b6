"""The latest-input JSON contract through POST /ussd/json."""

from __future__ import annotations

import pytest

from gateway.app import DIRECTORY
from models.entities import Dossier, DossierStatus, UssdSession


async def hop(client, session_id, value, new=False, hop_id=None, code="*384#", msisdn="84987542228"):
    payload = {"session_id": session_id, "msisdn": msisdn, "service_code": code, "input": value, "new": new}
    if hop_id is not None:
        payload["hop_id"] = hop_id
    response = await client.post("/ussd/json", json=payload)
    assert response.status == 200, await response.text()
    return await response.json()


async def test_a_lookup_over_the_json_contract(client):
    dossier = await Dossier.filter(status=DossierStatus.PROCESSING).first()
    reply = await hop(client, "j1", "", new=True)
    assert reply["end"] is False
    assert reply["text"].startswith("DVC UBND xa Phuong Ky\n1 Tra cuu ho so")
    reply = await hop(client, "j1", "1")
    assert reply["text"].startswith("Nhap ma ho so")
    reply = await hop(client, "j1", dossier.code)
    assert reply["text"].startswith(f"Ho so {dossier.code}")
    reply = await hop(client, "j1", "00")
    reply = await hop(client, "j1", "0")
    assert reply == {"text": "Cam on ban da dung dich vu cong.", "end": True}


async def test_hop_id_marks_retries_and_same_input_without_it_is_a_new_input(client):
    await hop(client, "j2", "", new=True, hop_id=1)
    first = await hop(client, "j2", "4", hop_id=2)
    page2 = await hop(client, "j2", "9", hop_id=3)
    retried = await hop(client, "j2", "9", hop_id=3)
    assert retried == page2
    assert (await UssdSession.get(external_id="j2")).hops == 3
    page3 = await hop(client, "j2", "9", hop_id=4)  # a real second "9"
    assert page3 != page2
    assert first["text"].startswith("Thu tuc hanh chinh:")


async def test_shortcut_in_the_service_code(client):
    dossier = await Dossier.filter(status=DossierStatus.RECEIVED, code__startswith="000.32.22.H23-").first()
    reply = await hop(client, "j3", "", new=True, code=f"*384*1*{dossier.tail}#")
    assert reply["text"].startswith(f"Ho so {dossier.code}")


@pytest.mark.parametrize(
    "payload, message",
    [
        ([], "JSON object"),
        ({"msisdn": "0987542228", "service_code": "*384#"}, "session_id"),
        ({"session_id": "a", "msisdn": "123", "service_code": "*384#"}, "msisdn"),
        ({"session_id": "a", "msisdn": "0987542228"}, "service_code"),
        ({"session_id": "a", "msisdn": "0987542228", "service_code": "*384#", "input": 5}, "input"),
        ({"session_id": "a", "msisdn": "0987542228", "service_code": "*384#", "new": "yes"}, "new"),
        ({"session_id": "a", "msisdn": "0987542228", "service_code": "*384#", "hop_id": [1]}, "hop_id"),
    ],
)
async def test_contract_violations_get_a_json_400(client, payload, message):
    response = await client.post("/ussd/json", json=payload)
    assert response.status == 400
    assert message in (await response.json())["error"]


async def test_body_that_is_not_json(client):
    response = await client.post("/ussd/json", data=b"{nope", headers={"Content-Type": "application/json"})
    assert response.status == 400
    assert (await response.json())["error"] == "body is not valid JSON"


async def test_a_recycled_session_id_starts_a_new_dialogue_and_leaks_nothing(client):
    dossier = await Dossier.filter(status=DossierStatus.PROCESSING, applicant_phone="+84987542228").first()
    reply = await hop(client, "reused", "", new=True, hop_id="1", code=f"*384*1*{dossier.code}#")
    assert reply["text"].startswith(f"Ho so {dossier.code}")
    # The gateway reuses the id for another phone: same hop id, new dial.
    stranger = await hop(client, "reused", "", new=True, hop_id="1", msisdn="0912000111")
    assert stranger["text"].startswith("DVC UBND xa Phuong Ky")
    assert dossier.applicant_name not in stranger["text"] and stranger != reply
    # And a fresh dial with the same id from the same phone after the dialogue ended works too.
    await hop(client, "reused", "0", hop_id="2", msisdn="0912000111")
    again = await hop(client, "reused", "", new=True, hop_id="1", msisdn="0912000111")
    assert again["text"].startswith("DVC UBND xa Phuong Ky") and again["end"] is False


async def test_a_retried_first_hop_is_still_a_retry(client):
    first = await hop(client, "first", "", new=True, hop_id="1")
    await UssdSession.filter(external_id="first").update(last_reply="stored answer")
    again = await hop(client, "first", "", new=True, hop_id="1")
    assert again["text"] == "stored answer"
    assert first["text"] != "stored answer"


async def test_cumulative_retry_from_another_phone_is_not_served_the_stored_screen(client):
    dossier = await Dossier.filter(status=DossierStatus.REFUSED, applicant_phone="+84987542228").first()
    form = {"sessionId": "shared", "serviceCode": "*384#", "phoneNumber": "0987542228", "text": ""}
    await client.post("/ussd/at", data=form)
    owner = await client.post("/ussd/at", data={**form, "text": f"1*{dossier.code}"})
    assert dossier.applicant_name in await owner.text()
    other = await client.post("/ussd/at", data={**form, "phoneNumber": "0912000111", "text": f"1*{dossier.code}"})
    assert dossier.applicant_name not in await other.text()


async def test_a_service_on_a_shared_number_keeps_its_sub_code(client):
    from models.entities import Agency

    await Agency.filter(service_code="*385#").update(service_code="*384*55#")
    client.app[DIRECTORY].forget()
    reply = await hop(client, "sub", "", new=True, code="*384*55#")
    assert reply["text"].startswith("DVC UBND xa Tan Ky\n1 Tra cuu ho so")
    reply = await hop(client, "sub2", "", new=True, code="*384*55*4#")
    assert reply["text"].startswith("Thu tuc hanh chinh:")
    reply = await hop(client, "sub3", "", new=True, code="*384#")
    assert reply["text"].startswith("DVC UBND xa Phuong Ky")
