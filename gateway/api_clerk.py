"""/api/v1/clerk: what a clerk does at the desk, over HTTP, with a per-clerk bearer token.

    GET  /api/v1/clerk/dossiers?q=<code or tail>      find dossiers (within the clerk's agencies)
    GET  /api/v1/clerk/dossiers/{code}                one dossier, its status history, its SMS
    GET  /api/v1/clerk/dossiers/{code}/alert-preview  the exact pickup SMS (text, encoding, parts)
    POST /api/v1/clerk/dossiers/{code}/ready          status 9 and the pickup alert
    POST /api/v1/clerk/dossiers/{code}/collected      status 10
    POST /api/v1/clerk/dossiers/{code}/resend         the last alert again
    POST /api/v1/clerk/alerts  {"codes": [...]}       a pickup alert to each code, one transaction
    GET  /api/v1/clerk/sms/{id}                       one SMS's delivery state

Tokens (``python -m gateway clerk-token LOGIN``) are 256 random bits shown once; only the
SHA-256 is stored. A disabled clerk's tokens are refused (403) at once. A dossier outside the
clerk's agencies is a 404 on every route, as an unknown one; in a bulk list it is reported
as ``other_agency`` and left alone. Every change is audited with channel ``api``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from typing import Any, Awaitable, Callable

from aiohttp import web

from gateway.api import OUTCOME, ApiError, _iso, _now
from gateway.app import OUTBOX, SERVICES, SQL
from models import desk
from models.audit import Actor
from models.clerks import ClerkView
from models.desk_actions import MAX_BULK, ActionResult, Verdict
from models.fastsql import as_datetime

TOKEN_MARK = "ck_"
CLERK = web.RequestKey("api_clerk", ClerkView)
_WWW = {"WWW-Authenticate": 'Bearer realm="clerk"'}


def new_token() -> str:
    return TOKEN_MARK + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


async def issue_token(sql: Any, clerks: Any, login: str, now: dt.datetime) -> str:
    """A new bearer token for a clerk (printed once by the CLI)."""
    clerk = await clerks.by_login(sql, login)
    if clerk is None:
        raise LookupError(f"no clerk with login {login!r}")
    token = new_token()
    async with sql.transaction() as tx:
        await tx.fetch("INSERT INTO clerk_token (clerk_id, token_prefix, token_hash, created_at, revoked)"
                       " VALUES (?,?,?,?,?)", (clerk.id, token[:10], token_hash(token), now, False))
        from models import audit
        from models.audit import CLI

        await audit.record(tx, CLI, "token_issued", now, target=clerk.login)
    return token


def clerk_route(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
    """A route for a clerk's bearer token: 401 without a valid one."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.strip().partition(" ")
        token = value.strip() if scheme.lower() == "bearer" else ""
        if not token.startswith(TOKEN_MARK) or len(token) > 200:
            raise ApiError(401, "a clerk's token is needed: Authorization: Bearer ck_...", headers=_WWW)
        services = request.config_dict[SERVICES]
        rows = await request.config_dict[SQL].fetch(
            "SELECT clerk_id FROM clerk_token WHERE token_hash = ? AND revoked = ?", (token_hash(token), False))
        clerk = await services.clerks.by_id(request.config_dict[SQL], rows[0][0]) if rows else None
        if clerk is None:
            raise ApiError(401, "token not recognised or revoked", headers=_WWW)
        if not clerk.active:
            request[OUTCOME]["client"] = f"clerk:{clerk.login}"
            raise ApiError(403, "this clerk's account is disabled")
        request[CLERK] = clerk
        request[OUTCOME]["client"] = f"clerk:{clerk.login}"
        return await handler(request)

    return guarded


def _actor(request: web.Request) -> Actor:
    clerk = request[CLERK]
    return Actor(clerk.id, clerk.login, "api")


def _when(value: Any) -> str | None:
    moment = as_datetime(value)
    return _iso(moment) if moment else None


def _dossier_json(found: desk.DeskDossier) -> dict[str, Any]:
    return {
        "code": found.code, "agency": found.agency_code, "procedure": found.procedure_name,
        "status": int(found.status), "status_note": found.status_note, "mode": found.mode.value,
        "received_at": _when(found.received_at), "due_at": _when(found.due_at), "fee_due": found.fee_due,
        "pickup_place": found.pickup_place,
    }


def _result_json(result: ActionResult) -> dict[str, Any]:
    said: dict[str, Any] = {"query": result.query, "result": result.verdict.value}
    if result.code:
        said["code"] = result.code
    from gateway.api_sync import sms_summary

    said.update(sms_summary(result.notified))
    return said


_NOT_FOUND = "no such dossier for this clerk"


async def _own_dossier(request: web.Request) -> desk.DeskDossier:
    found = await desk.dossier(request.config_dict[SQL], request[CLERK].scope, request.match_info["code"])
    if found is None:
        raise ApiError(404, _NOT_FOUND)
    return found


@clerk_route
async def find_dossiers(request: web.Request) -> web.Response:
    query = request.query.get("q", "")
    if not query or len(query) > 100:
        raise ApiError(400, "q is the full dossier code or its keypad tail", "q")
    found = await desk.find(request.config_dict[SQL], request[CLERK].scope, query)
    return web.json_response({"dossiers": [_dossier_json(d) for d in found]})


@clerk_route
async def get_dossier(request: web.Request) -> web.Response:
    found = await _own_dossier(request)
    sql = request.config_dict[SQL]
    history = await desk.history(sql, found.id)
    messages = await desk.messages(sql, found.id)
    body = _dossier_json(found)
    body["status_history"] = [{"from": int(h.old_status) if h.old_status else None, "to": int(h.new_status),
                               "note": h.note, "at": _when(h.changed_at), "source": h.source} for h in history]
    body["sms"] = [{"id": m.sms_id, "kind": m.kind, "status": m.state, "created_at": _when(m.created_at),
                    "sent_at": _when(m.sent_at), "delivered_at": _when(m.delivered_at),
                    "error": m.last_error or m.skipped or None, "parts": m.parts} for m in messages]
    return web.json_response(body)


@clerk_route
async def preview_alert(request: web.Request) -> web.Response:
    found = await _own_dossier(request)
    lang = request.query.get("lang")
    if lang not in (None, "vi", "en"):
        raise ApiError(400, "lang is vi or en", "lang")
    async with request.config_dict[SQL].transaction() as tx:
        _, prepared = await request.config_dict[SERVICES].desk.preview_ready(tx, request[CLERK].scope, found.code, lang)
    return web.json_response({"code": found.code, "text": prepared.text, "encoding": prepared.encoding.value,
                              "parts": prepared.parts})


async def _act(request: web.Request, action: str) -> web.Response:
    found = await _own_dossier(request)
    services = request.config_dict[SERVICES]
    async with request.config_dict[SQL].transaction() as tx:
        method = getattr(services.desk, action)
        result = await method(tx, request[CLERK].scope, _actor(request), found.code, _now(request))
    request.config_dict[OUTBOX].wakeup.set()
    request[OUTCOME]["result"] = result.verdict.value
    status = 409 if result.verdict is Verdict.ALREADY_COLLECTED else 200
    return web.json_response(_result_json(result), status=status)


@clerk_route
async def mark_ready(request: web.Request) -> web.Response:
    return await _act(request, "mark_ready")


@clerk_route
async def mark_collected(request: web.Request) -> web.Response:
    return await _act(request, "mark_collected")


@clerk_route
async def resend(request: web.Request) -> web.Response:
    return await _act(request, "resend")


@clerk_route
async def bulk_alert(request: web.Request) -> web.Response:
    from gateway.api_sync import _batch

    codes, _ = await _batch(request, "codes", {"codes"})
    if any(not isinstance(code, str) or not code.strip() or len(code) > 100 for code in codes):
        raise ApiError(400, "codes must be dossier codes or keypad tails, as strings", "codes")
    if len(codes) > MAX_BULK:
        raise ApiError(400, f"at most {MAX_BULK} codes", "codes")
    async with request.config_dict[SQL].transaction() as tx:
        results = await request.config_dict[SERVICES].desk.alert_many(
            tx, request[CLERK].scope, _actor(request), [c.strip() for c in codes], _now(request))
    request.config_dict[OUTBOX].wakeup.set()
    request[OUTCOME]["items"] = len(results)
    return web.json_response({"results": [_result_json(r) for r in results]})


@clerk_route
async def sms_state(request: web.Request) -> web.Response:
    raw = request.match_info["id"]
    if not raw.isdigit() or len(raw) > 18:
        raise ApiError(404, "no such SMS for this clerk")
    allowed, params = request[CLERK].scope.where("d.agency_id")
    rows = await request.config_dict[SQL].fetch(
        "SELECT o.id, o.status, o.parts, o.created_at, o.next_attempt_at, o.sent_at, o.delivered_at, o.last_error,"
        " d.code FROM outbound_sms o JOIN dossier_notification n ON n.outbound_sms_id = o.id"
        f" JOIN dossier d ON d.id = n.dossier_id WHERE o.id = ? AND {allowed}", (int(raw), *params))
    if not rows:
        raise ApiError(404, "no such SMS for this clerk")
    sms_id, status, parts, created, due, sent, delivered, error, code = rows[0]
    return web.json_response({"id": sms_id, "code": code, "status": status, "parts": parts,
                              "created_at": _when(created), "not_before": _when(due), "sent_at": _when(sent),
                              "delivered_at": _when(delivered), "error": error or None})


def add_routes(api: web.Application) -> None:
    api.router.add_get("/clerk/dossiers", find_dossiers, name="clerk_find")
    api.router.add_get("/clerk/dossiers/{code}", get_dossier, name="clerk_dossier")
    api.router.add_get("/clerk/dossiers/{code}/alert-preview", preview_alert, name="clerk_preview")
    api.router.add_post("/clerk/dossiers/{code}/ready", mark_ready, name="clerk_ready")
    api.router.add_post("/clerk/dossiers/{code}/collected", mark_collected, name="clerk_collected")
    api.router.add_post("/clerk/dossiers/{code}/resend", resend, name="clerk_resend")
    api.router.add_post("/clerk/alerts", bulk_alert, name="clerk_alerts")
    api.router.add_get("/clerk/sms/{id}", sms_state, name="clerk_sms")


def openapi_paths() -> dict[str, Any]:
    from gateway.api import _refs

    security = [{"clerkToken": []}]
    code = [{"name": "code", "in": "path", "required": True, "schema": {"type": "string"}}]
    ok = {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}
    result = {"description": "What the action did: sent | done | already_collected (409)",
              "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ClerkResult"}}}}

    def op(op_id: str, summary: str, answer: dict, *refs: str, **extra: Any) -> dict[str, Any]:
        return {"operationId": op_id, "summary": summary, "security": security,
                "responses": {"200": answer, **_refs("Unauthorized", "Forbidden", *refs)}, **extra}

    return {
        "/clerk/dossiers": {"get": op("clerkFind", "Find dossiers by full code or keypad tail (own agencies)", ok,
                                      "BadRequest", parameters=[{"name": "q", "in": "query", "required": True,
                                                                 "schema": {"type": "string"}}])},
        "/clerk/dossiers/{code}": {"parameters": code, "get": op(
            "clerkDossier", "A dossier with its status history and every SMS about it", ok, "NotFound")},
        "/clerk/dossiers/{code}/alert-preview": {"parameters": code, "get": op(
            "clerkPreview", "The exact pickup SMS: text, encoding, parts; in the applicant's language unless lang is given",
            ok, "NotFound", "BadRequest", parameters=[{"name": "lang", "in": "query", "required": False,
                                                        "schema": {"type": "string", "enum": ["vi", "en"]}}])},
        "/clerk/dossiers/{code}/ready": {"parameters": code, "post": op(
            "clerkReady", "Mark ready (9) and send the pickup alert (again, if ready already)", result, "NotFound", "Conflict")},
        "/clerk/dossiers/{code}/collected": {"parameters": code, "post": op(
            "clerkCollected", "Mark collected (10)", result, "NotFound", "Conflict")},
        "/clerk/dossiers/{code}/resend": {"parameters": code, "post": op(
            "clerkResend", "Send the dossier's last alert again", result, "NotFound")},
        "/clerk/alerts": {"post": op(
            "clerkBulkAlert", "A pickup alert to each code (up to 1,000), one transaction, a result per code",
            ok, "BadRequest", requestBody={"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["codes"], "additionalProperties": False,
                "properties": {"codes": {"type": "array", "maxItems": MAX_BULK, "items": {"type": "string"}}}}}}})},
        "/clerk/sms/{id}": {"parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
                            "get": op("clerkSms", "One SMS's delivery state", ok, "NotFound")},
    }


def openapi_components() -> tuple[dict[str, Any], dict[str, Any]]:
    schemes = {"clerkToken": {"type": "http", "scheme": "bearer",
                              "description": "A clerk's token: python -m gateway clerk-token LOGIN"}}
    schemas = {"ClerkResult": {"type": "object", "required": ["query", "result"], "properties": {
        "query": {"type": "string"}, "code": {"type": "string"},
        "result": {"type": "string", "enum": [v.value for v in Verdict]},
        "sms": {"type": "object", "properties": {"id": {"type": "integer"}, "parts": {"type": "integer"}}},
        "sms_skipped": {"type": "string"}}}}
    return schemes, schemas
