"""/api/v1/otp, the portal's verification API, through real HTTP into the real app.

Keys are made as an operator makes them (``add_api_client``, and the CLI in a subprocess);
codes are read from the console transport's inbox, as the citizen reads them; time moves
with the test clock. Runs on SQLite and on PostgreSQL like the rest of the suite.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import re

import pytest

from gateway import logs
from gateway.api import OPENAPI, add_api_client, api_key_hash, create_api_app, disable_api_client
from gateway.app import SQL
from tests.test_sms import sent_to
from tests.servers import run_cli

LOCAL = "0987542228"
PHONE = "+84987542228"


@pytest.fixture
async def keys(client, clock):
    """Two portals' keys: "portal" and "other"."""
    sql = client.app[SQL]
    return {name: await add_api_client(sql, name, ["otp"], clock.now) for name in ("portal", "other")}


class Api:
    def __init__(self, client, key: str | None) -> None:
        self.client = client
        self.key = key

    def _headers(self, headers):
        merged = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        merged.update(headers or {})
        return merged

    async def post(self, path, body=None, headers=None, **kwargs):
        if body is not None:
            kwargs["json"] = body
        response = await self.client.post(f"/api/v1{path}", headers=self._headers(headers), **kwargs)
        return response.status, await response.json(), response

    async def get(self, path, headers=None):
        response = await self.client.get(f"/api/v1{path}", headers=self._headers(headers))
        return response.status, await response.json(), response

    async def start(self, phone=LOCAL, purpose="portal", **extra):
        return await self.post("/otp", {"phone": phone, "purpose": purpose, **extra})


@pytest.fixture
def portal(client, keys):
    return Api(client, keys["portal"])


@pytest.fixture
def other(client, keys):
    return Api(client, keys["other"])


async def code_sent(client, msisdn=LOCAL, count=1):
    messages = await sent_to(client, msisdn, count)
    assert len(messages) == count, messages
    [code] = re.findall(r"(?<!\d)\d{6}(?!\d)", messages[count - 1]["text"])
    return code


def wrong(code):
    return f"{(int(code) + 1) % 10**6:06d}"


def at_hour_start(clock):
    clock.now = clock.now.replace(minute=1, second=0, microsecond=0)


async def test_start_then_the_code_from_the_sms_approves(portal, client, clock):
    status, body, response = await portal.start(LOCAL, "portal", lang="en")
    assert status == 201, body
    assert set(body) == {"id", "status", "purpose", "expires_at", "resend_after"}
    assert body["status"] == "pending" and body["purpose"] == "portal"
    expires = clock.now.replace(microsecond=0) + dt.timedelta(seconds=300)
    assert body["expires_at"] == expires.isoformat().replace("+00:00", "Z")
    assert response.headers["Location"] == f"/api/v1/otp/{body['id']}"
    [message] = await sent_to(client, LOCAL)
    assert "verify on the public services portal" in message["text"] and "NEVER share" in message["text"]
    code = await code_sent(client)

    status, got, _ = await portal.get(f"/otp/{body['id']}")
    assert (status, got) == (200, {"id": body["id"], "status": "pending", "tries_left": 5})
    status, checked, _ = await portal.post(f"/otp/{body['id']}/check", {"code": code})
    assert (status, checked) == (200, {"id": body["id"], "status": "approved", "tries_left": 0})
    status, got, _ = await portal.get(f"/otp/{body['id']}")
    assert (status, got["status"]) == (200, "approved")
    # An approval is given once: the same code again finds nothing to check.
    status, again, _ = await portal.post(f"/otp/{body['id']}/check", {"code": code})
    assert status == 404 and again["status"] == 404


async def test_x_api_key_header_works_too(client, keys):
    api = Api(client, None)
    status, body, _ = await api.post("/otp", {"phone": LOCAL, "purpose": "portal"}, headers={"X-Api-Key": keys["portal"]})
    assert status == 201, body


BAD_STARTS = [
    ({"purpose": "portal"}, 400, "phone"),
    ({"phone": "12345", "purpose": "portal"}, 400, "phone"),
    ({"phone": "0287654321", "purpose": "portal"}, 400, "phone"),  # a landline gets no SMS
    ({"phone": 987542228, "purpose": "portal"}, 400, "phone"),
    ({"phone": "9" * 100, "purpose": "portal"}, 400, "phone"),
    ({"phone": LOCAL}, 400, "purpose"),
    ({"phone": LOCAL, "purpose": "login"}, 400, "purpose"),
    # The gateway's own journeys issue their codes themselves: not through the portal.
    ({"phone": LOCAL, "purpose": "register"}, 400, "purpose"),
    ({"phone": LOCAL, "purpose": "delete_data"}, 400, "purpose"),
    ({"phone": LOCAL, "purpose": "pin_reset"}, 400, "purpose"),
    ({"phone": LOCAL, "purpose": "portal", "lang": "fr"}, 400, "lang"),
    ({"phone": LOCAL, "purpose": "portal", "phone_number": LOCAL}, 400, "phone_number"),
    ({"phone": LOCAL, "purpose": "portal", "x": {"nested": 1}}, 400, "x"),
]


@pytest.mark.parametrize("body, status, field", BAD_STARTS)
async def test_a_bad_start_names_the_field_and_sends_nothing(portal, client, body, status, field):
    got, error, _ = await portal.post("/otp", body)
    assert (got, error["status"], error.get("field")) == (status, status, field), error
    assert error["error"]
    assert await client.app[SQL].fetch("SELECT id FROM otp_challenge") == []
    assert await client.app[SQL].fetch("SELECT id FROM outbound_sms") == []


async def test_bodies_that_are_not_json_objects_are_refused_in_json(portal):
    for data, content_type, status in (
        ("phone=0987542228&purpose=portal", "application/x-www-form-urlencoded", 415),
        ("{not json", "application/json", 400),
        ('["a list"]', "application/json", 400),
        ("[" * 50000, "application/json", 400),
    ):
        got, error, _ = await portal.post("/otp", data=data, headers={"Content-Type": content_type})
        assert (got, error["status"]) == (status, status), (data[:20], error)


@pytest.mark.parametrize("code", ["12345", "1234567", "12345a", "١٢٣٤٥٦", "", 123456, None])
async def test_a_code_must_be_six_digits(portal, client, code):
    _, started, _ = await portal.start()
    status, error, _ = await portal.post(f"/otp/{started['id']}/check", {"code": code} if code is not None else {})
    assert (status, error["field"]) == (400, "code"), error
    [(checks,)] = await client.app[SQL].fetch("SELECT checks FROM otp_challenge")
    assert checks == 0  # a malformed code is not a try


async def test_no_key_a_wrong_key_a_disabled_client_or_a_missing_scope(client, keys, portal, clock):
    _, started, _ = await portal.start()
    for headers in ({}, {"Authorization": "Bearer gw_nope"}, {"Authorization": f"Basic {keys['portal']}"},
                    {"X-Api-Key": "x" * 5000}):
        for method, path in (("post", "/otp"), ("get", f"/otp/{started['id']}"),
                             ("post", f"/otp/{started['id']}/check"), ("post", f"/otp/{started['id']}/cancel")):
            response = await getattr(client, method)(f"/api/v1{path}", headers=headers, json={})
            body = await response.json()
            assert (response.status, body["status"]) == (401, 401), (headers, path, body)
            assert response.headers["WWW-Authenticate"].startswith("Bearer")

    sql = client.app[SQL]
    assert await disable_api_client(sql, "other")
    status, body, _ = await Api(client, keys["other"]).start()
    assert (status, body["error"]) == (403, "this API client is disabled")

    await sql.fetch("INSERT INTO api_client (name, key_prefix, key_hash, scopes, active, created_at) VALUES (?,?,?,?,?,?)",
                    ("sync-only", "gw_sync", api_key_hash("gw_sync-key"),
                     "sync", True, clock.now))
    status, body, _ = await Api(client, "gw_sync-key").start()
    assert (status, body["status"]) == (403, 403) and "otp" in body["error"]


async def test_a_client_sees_only_its_own_verifications(portal, other, client):
    _, started, _ = await portal.start()
    code = await code_sent(client)
    vid = started["id"]
    for status, body, _ in (await other.get(f"/otp/{vid}"), await other.post(f"/otp/{vid}/check", {"code": code}),
                            await other.post(f"/otp/{vid}/cancel")):
        assert (status, body["status"]) == (404, 404), body
    # The other client's tries did not count, and its own start for the phone is its own.
    status, body, _ = await other.start()
    assert status == 201, body
    status, body, _ = await portal.post(f"/otp/{vid}/check", {"code": code})
    assert (status, body["status"]) == (200, "approved")


async def test_unknown_ids_routes_and_methods_answer_json(portal):
    for path in ("/otp/AAAAAAAAAAAAAAAAAAAAAA", "/otp/short", "/otp/" + "A" * 41, "/nothing-here"):
        status, body, _ = await portal.get(path)
        assert (status, body["status"]) == (404, 404), (path, body)
    status, body, _ = await portal.post("/otp/AAAAAAAAAAAAAAAAAAAAAA/check", {"code": "123456"})
    assert status == 404
    response = await portal.client.delete("/api/v1/otp", headers=portal._headers(None))
    body = await response.json()
    assert (response.status, body["status"]) == (405, 405)
    assert "POST" in response.headers["Allow"]


async def test_a_second_start_within_60_s_is_429_with_retry_after(portal, client, clock):
    status, first, _ = await portal.start()
    assert status == 201
    clock.advance(15)
    status, body, response = await portal.start()
    assert status == 429
    assert response.headers["Retry-After"] == "45"
    assert body == {"error": body["error"], "status": 429, "reason": "resend", "retry_after": 45}
    assert len(await client.app[SQL].fetch("SELECT id FROM otp_challenge")) == 1
    clock.advance(45)
    status, second, _ = await portal.start()
    assert status == 201
    status, old, _ = await portal.get(f"/otp/{first['id']}")
    assert old["status"] == "canceled"


async def test_the_sixth_code_for_a_phone_in_an_hour_is_429(portal, client, clock):
    at_hour_start(clock)
    for _ in range(5):
        status, body, _ = await portal.start()
        assert status == 201, body
        clock.advance(60)
    status, body, response = await portal.start()
    assert (status, body["reason"]) == (429, "phone")
    assert int(response.headers["Retry-After"]) == body["retry_after"] == 3600 - 60 - 300


async def test_brute_force_five_wrong_codes_then_the_right_one_is_failed(portal, client):
    _, started, _ = await portal.start()
    code = await code_sent(client)
    answers = [await portal.post(f"/otp/{started['id']}/check", {"code": wrong(code)}) for _ in range(5)]
    assert [(s, b["status"], b["tries_left"]) for s, b, _ in answers] == [
        (200, "pending", 4), (200, "pending", 3), (200, "pending", 2), (200, "pending", 1), (200, "failed", 0)]
    status, body, _ = await portal.post(f"/otp/{started['id']}/check", {"code": code})
    assert (status, body["status"]) == (200, "failed")


async def test_an_expired_code_reads_expired(portal, client, clock):
    _, started, _ = await portal.start()
    code = await code_sent(client)
    clock.advance(300)
    status, body, _ = await portal.get(f"/otp/{started['id']}")
    assert (status, body["status"]) == (200, "expired")
    status, body, _ = await portal.post(f"/otp/{started['id']}/check", {"code": code})
    assert (status, body["status"]) == (200, "expired")


async def test_cancel(portal, client):
    _, started, _ = await portal.start()
    code = await code_sent(client)
    status, body, _ = await portal.post(f"/otp/{started['id']}/cancel")
    assert (status, body["status"]) == (200, "canceled")
    status, body, _ = await portal.post(f"/otp/{started['id']}/cancel")
    assert (status, body["status"], body["verification_status"]) == (409, 409, "canceled")
    status, body, _ = await portal.post(f"/otp/{started['id']}/check", {"code": code})
    assert (status, body["status"]) == (200, "canceled")


async def test_two_checks_of_the_right_code_at_once_approve_once(portal, client):
    _, started, _ = await portal.start()
    code = await code_sent(client)
    answers = await asyncio.gather(*(portal.post(f"/otp/{started['id']}/check", {"code": code}) for _ in range(4)))
    assert sorted(status for status, _, _ in answers) == [200, 404, 404, 404]


def _routes(api_app) -> set[tuple[str, str]]:
    return {(route.resource.canonical, route.method.lower())
            for route in api_app.router.routes() if route.method != "HEAD"}


async def test_the_openapi_description_is_valid_served_without_a_key_and_covers_every_route(client):
    from openapi_spec_validator import validate

    response = await client.get("/api/v1/openapi.json")
    assert response.status == 200
    served = await response.json()
    assert served == json.loads(json.dumps(OPENAPI))
    validate(served)
    described = {(path, method) for path, item in served["paths"].items()
                 for method in item if method in ("get", "post", "put", "patch", "delete")}
    assert described == _routes(create_api_app(lambda: None))
    # What the mounted app serves under /api/v1 is the same set.
    mounted = {(route.resource.canonical.removeprefix("/api/v1"), route.method.lower())
               for route in client.app.router.routes()
               if route.resource is not None and route.resource.canonical.startswith("/api/v1/") and route.method != "HEAD"}
    assert mounted == described
    for path, item in served["paths"].items():
        for method, operation in item.items():
            if method not in ("get", "post"):
                continue
            if operation.get("security") == []:
                continue
            assert {"401", "403"} <= set(operation["responses"]), (path, method)
            if "{id}" in path:
                assert "404" in operation["responses"], (path, method)
    assert "Retry-After" in served["components"]["responses"]["TooManyRequests"]["headers"]
    assert "429" in served["paths"]["/otp"]["post"]["responses"]


async def test_no_code_key_or_phone_in_any_log_line(client, keys, portal, clock):
    stream = io.StringIO()
    logs.configure("debug", "json", stream=stream)
    try:
        _, started, _ = await portal.start()
        code = await code_sent(client)
        await portal.start()  # 429: the code is still live
        await portal.post(f"/otp/{started['id']}/check", {"code": wrong(code)})
        await portal.post(f"/otp/{started['id']}/check", {"code": code})
        await Api(client, keys["portal"] + "x").start()  # 401
        await portal.post("/otp", {"phone": "0987542228999", "purpose": "portal"})  # 400
    finally:
        logs.configure("info", "json")
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    requests = [line for line in lines if line["event"] == "api_request"]
    assert [(r["route"], r["status"]) for r in requests] == [
        ("/api/v1/otp", 201), ("/api/v1/otp", 429), ("/api/v1/otp/{id}/check", 200),
        ("/api/v1/otp/{id}/check", 200), ("/api/v1/otp", 401), ("/api/v1/otp", 400)]
    assert [r["client"] for r in requests] == ["portal"] * 4 + ["-", "portal"]
    assert requests[1]["limit"] == "resend" and requests[3]["otp_status"] == "approved"
    rendered = stream.getvalue()
    for secret in (code, keys["portal"], keys["portal"][3:20], "987542228"):
        assert secret not in rendered, secret


async def test_the_cli_makes_a_key_once_and_disables_it(client, settings, tmp_path):
    settings_file = tmp_path / "settings.toml"
    settings_file.write_text(f'[database]\nurl = "{settings.database.url}"\n')
    code, out, err = await run_cli(settings_file, "add-api-client", "--name", "portal", "--scopes", "otp")
    assert code == 0, err
    key = out.strip().splitlines()[-1]
    assert re.fullmatch(r"gw_[A-Za-z0-9_-]{43}", key), out
    [(prefix, key_hash, scopes, active)] = await client.app[SQL].fetch(
        "SELECT key_prefix, key_hash, scopes, active FROM api_client")
    assert key not in (prefix, key_hash) and key.startswith(prefix) and len(key_hash) == 64
    assert scopes == "otp" and bool(active)
    status, body, _ = await Api(client, key).start()
    assert status == 201, body

    code, out, err = await run_cli(settings_file, "add-api-client", "--name", "portal")
    assert code == 1 and "exists already" in err
    code, out, err = await run_cli(settings_file, "add-api-client", "--name", "x", "--scopes", "everything")
    assert code == 1 and "scopes" in err
    code, out, err = await run_cli(settings_file, "add-api-client", "--disable", "portal")
    assert code == 0, err
    status, body, _ = await Api(client, key).start()
    assert status == 403, body
    code, out, err = await run_cli(settings_file, "add-api-client", "--disable", "nobody")
    assert code == 1 and "no API client" in err
