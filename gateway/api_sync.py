"""/api/v1 for one-stop systems: dossiers and their status changes, in batches.

    POST /api/v1/dossiers         {"dossiers": [...], "notify"?: true}  create or update by code
    POST /api/v1/dossiers/events  {"events": [...]}                     status changes by event id
    GET  /api/v1/dossiers/{code}                                        the dossier, its history, its SMS

A client (``add-api-client --scopes sync --agency CODE``) reaches only its agencies'
dossiers: another agency's dossier is refused in a batch and a 404 when read. A batch
holds at most 1,000 items and is applied whole or not at all: any bad item answers 400
with one error per bad item (``errors: [{index, field, error}]``) and nothing is written.
Each item's result says what it did (created, updated, unchanged; applied, unchanged,
stale, replayed) and the SMS it queued, or why none.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from gateway.api import CALLER, OUTCOME, ApiError, _iso, _now, requires
from gateway.app import OUTBOX, SERVICES, SETTINGS, SQL
from gateway.sync_input import FieldFault, Reader
from models import dossier_code
from models.dossiers import MAX_BATCH, BatchRejected, ItemResult, Outcome

MAX_BODY_BYTES = 4 * 1024 * 1024
_AGENCIES = "SELECT agency_id FROM api_client_agency WHERE api_client_id = ?"


class BatchFaults(ApiError):
    def __init__(self, list_name: str, errors: list[tuple[int, str, str]]) -> None:
        first = errors[0]
        super().__init__(
            400, f"{len(errors)} of the {list_name} refused, nothing applied: {list_name}[{first[0]}].{first[1]}: {first[2]}",
            f"{list_name}[{first[0]}].{first[1]}" if first[1] else f"{list_name}[{first[0]}]",
            extra={"errors": [{"index": i, "field": f, "error": e} for i, f, e in errors[:100]]},
        )


async def _batch(request: web.Request, list_name: str, allowed: set[str]) -> tuple[list[Any], dict[str, Any]]:
    if request.content_type != "application/json":
        raise ApiError(415, "send the body as JSON (Content-Type: application/json)", "Content-Type")
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise ApiError(413, f"a batch body is at most {MAX_BODY_BYTES} bytes")
    # read(n) returns what has arrived, not n bytes: a full batch comes in several TCP reads.
    chunks, size = [], 0
    while size <= MAX_BODY_BYTES:
        chunk = await request.content.read(MAX_BODY_BYTES + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > MAX_BODY_BYTES:
        raise ApiError(413, f"a batch body is at most {MAX_BODY_BYTES} bytes")
    raw = b"".join(chunks)
    try:
        body = json.loads(raw.decode(request.charset or "utf-8"))
    except (ValueError, RecursionError, LookupError):
        raise ApiError(400, "body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "body must be a JSON object")
    for name in body:
        if name not in allowed:
            raise ApiError(400, f"unknown field {str(name)[:40]!r}; known: {', '.join(sorted(allowed))}", str(name)[:40])
    items = body.get(list_name)
    if not isinstance(items, list) or not items:
        raise ApiError(400, f"{list_name} must be a non-empty list", list_name)
    if len(items) > MAX_BATCH:
        raise ApiError(400, f"at most {MAX_BATCH} {list_name} in one request", list_name)
    return items, body


async def _agencies(request: web.Request) -> set[int]:
    rows = await request.config_dict[SQL].fetch(_AGENCIES, (request[CALLER].id,))
    return {row[0] for row in rows}


def _reader(request: web.Request) -> Reader:
    services = request.config_dict[SERVICES]
    return Reader(services.dossiers.directory, services.citizens.id_hash, request.config_dict[SETTINGS].locale.timezone)


def _result(result: ItemResult) -> dict[str, Any]:
    said: dict[str, Any] = {"code": result.code, "outcome": result.outcome.value}
    if result.event_id:
        said["event_id"] = result.event_id
    said.update(sms_summary(result.notified))
    return said


def sms_summary(notified: Any) -> dict[str, Any]:
    """The SMS an item queued (id, parts), or why none: as every batch result says it."""
    if notified is None:
        return {}
    if notified.sms_id is not None:
        return {"sms": {"id": notified.sms_id, "parts": notified.parts}}
    return {"sms_skipped": notified.skipped}


def _counts(results: list[ItemResult]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for result in results:
        counts[result.outcome.value] = counts.get(result.outcome.value, 0) + 1
    return counts


@requires("sync")
async def upsert_dossiers(request: web.Request) -> web.Response:
    items, body = await _batch(request, "dossiers", {"dossiers", "notify"})
    notify = body.get("notify", True)
    if not isinstance(notify, bool):
        raise ApiError(400, "notify must be true or false", "notify")
    agencies = await _agencies(request)
    reader = _reader(request)
    records, errors = [], []
    for index, item in enumerate(items):
        try:
            records.append(await reader.dossier(item, agencies))
        except FieldFault as fault:
            errors.append((index, fault.field, str(fault)))
    if errors:
        raise BatchFaults("dossiers", errors)
    seen: dict[str, int] = {}
    for index, record in enumerate(records):
        if record.code in seen:
            errors.append((index, "code", f"the same code as dossiers[{seen[record.code]}]"))
        seen.setdefault(record.code, index)
    if errors:
        raise BatchFaults("dossiers", errors)
    services = request.config_dict[SERVICES]
    try:
        async with request.config_dict[SQL].transaction() as tx:
            results = await services.dossiers.upsert(
                tx, records, _now(request), source=f"api:{request[CALLER].name}"[:40], notify=notify,
                allowed_agencies=agencies)
    except BatchRejected as rejected:
        raise BatchFaults("dossiers", rejected.errors) from None
    request.config_dict[OUTBOX].wakeup.set()
    counts = _counts(results)
    request[OUTCOME].update(items=len(results), **counts)
    return web.json_response({"results": [_result(r) for r in results], "counts": counts})


@requires("sync")
async def push_events(request: web.Request) -> web.Response:
    items, _ = await _batch(request, "events", {"events"})
    reader = _reader(request)
    events, errors = [], []
    for index, item in enumerate(items):
        try:
            events.append(reader.event(item))
        except FieldFault as fault:
            errors.append((index, fault.field, str(fault)))
    if errors:
        raise BatchFaults("events", errors)
    agencies = await _agencies(request)
    caller = request[CALLER]
    try:
        async with request.config_dict[SQL].transaction() as tx:
            results = await request.config_dict[SERVICES].dossiers.apply_events(
                tx, caller.id, events, _now(request), source=f"api:{caller.name}"[:40], allowed_agencies=agencies)
    except BatchRejected as rejected:
        raise BatchFaults("events", rejected.errors) from None
    request.config_dict[OUTBOX].wakeup.set()
    counts = _counts(results)
    request[OUTCOME].update(items=len(results), **counts)
    return web.json_response({"results": [_result(r) for r in results], "counts": counts})


@requires("sync")
async def get_dossier(request: web.Request) -> web.Response:
    code = dossier_code.parse(request.match_info["code"])
    if code is None:
        raise ApiError(404, "no such dossier for this client")
    agencies = await _agencies(request)
    services = request.config_dict[SERVICES]
    async with request.config_dict[SQL].transaction() as tx:
        view = await services.dossiers.directory.dossier_by_code(code.text)
        if view is None or view.agency.id not in agencies:
            raise ApiError(404, "no such dossier for this client")
        changes = await tx.fetch(
            "SELECT old_status, new_status, note, changed_at, source FROM dossier_status_change"
            " WHERE dossier_id = ? ORDER BY changed_at, id", (view.id,))
        history = await services.dossiers.history(tx, view.id)
        postal = await tx.fetch("SELECT status, requested_at, channel FROM postal_request WHERE dossier_id = ?", (view.id,))
    from models.fastsql import as_datetime

    def when(value: Any) -> str | None:
        moment = as_datetime(value)
        return _iso(moment) if moment else None

    return web.json_response({
        "code": view.code,
        "agency": view.agency.code,
        "status": int(view.status),
        "status_note": view.status_note,
        "mode": view.mode.value,
        "received_at": when(view.received_at),
        "due_at": when(view.due_at),
        "fee_due": view.fee_due,
        "pickup_place": view.pickup_place,
        "status_history": [
            {"from": old, "to": new, "note": note, "at": when(at), "source": source}
            for old, new, note, at, source in changes
        ],
        "notifications": [
            {
                "kind": n.kind.value, "status": int(n.status), "created_at": when(n.created_at),
                "sms_status": n.sms_status.value if n.sms_status else None, "skipped": n.skipped or None,
                "parts": n.parts, "not_before": when(n.queued_for), "sent_at": when(n.sent_at),
                "delivered_at": when(n.delivered_at), "error": n.error or None,
            }
            for n in history
        ],
        "postal_request": {"status": postal[0][0], "requested_at": when(postal[0][1]), "channel": postal[0][2]}
        if postal else None,
    })


def add_routes(api: web.Application) -> None:
    api.router.add_post("/dossiers", upsert_dossiers, name="dossiers_upsert")
    api.router.add_post("/dossiers/events", push_events, name="dossiers_events")
    api.router.add_get("/dossiers/{code}", get_dossier, name="dossier")


_OUTCOMES = [o.value for o in Outcome]


def openapi_paths() -> dict[str, Any]:
    from gateway.api import _answer, _json_body, _refs

    return {
        "/dossiers": {
            "post": {
                "operationId": "upsertDossiers",
                "summary": "Create or update up to 1,000 dossiers by code (all or nothing)",
                "description": (
                    "A record equal to the stored dossier changes nothing and sends nothing. A new dossier, or a "
                    "change of its status (status_at not older than the current state), sends the applicant the "
                    "status SMS unless notify is false. ID numbers are hashed on arrival and never stored."
                ),
                "requestBody": _json_body("DossierBatch"),
                "responses": {"200": _answer("One result per dossier, in order", "BatchResults"),
                              **_refs("BadRequest", "Unauthorized", "Forbidden", "UnsupportedMediaType")},
            },
        },
        "/dossiers/events": {
            "post": {
                "operationId": "pushStatusEvents",
                "summary": "Push up to 1,000 status changes (all or nothing), idempotent by event_id",
                "description": (
                    "A replayed event_id changes nothing and sends nothing (replayed). An event older than the "
                    "dossier's current state is recorded but does not move it back (stale). Each real change "
                    "queues the applicant's SMS, which waits a short debounce: a later change replaces it."
                ),
                "requestBody": _json_body("EventBatch"),
                "responses": {"200": _answer("One result per event, in order", "BatchResults"),
                              **_refs("BadRequest", "Unauthorized", "Forbidden", "UnsupportedMediaType")},
            },
        },
        "/dossiers/{code}": {
            "parameters": [{"name": "code", "in": "path", "required": True, "schema": {"type": "string"}}],
            "get": {
                "operationId": "getDossier",
                "summary": "A dossier with its status history and every SMS meant for its applicant",
                "responses": {"200": _answer("The dossier", "DossierDetail"), **_refs("Unauthorized", "Forbidden", "NotFound")},
            },
        },
    }


def openapi_schemas() -> dict[str, Any]:
    moment = {"type": "string", "description": "ISO 8601 with offset, or a date (local midnight)"}
    return {
        "Dossier": {
            "type": "object",
            "additionalProperties": False,
            "required": ["code", "agency", "procedure", "applicant_name", "applicant_phone", "received_at"],
            "properties": {
                "code": {"type": "string", "maxLength": 64, "examples": ["000.32.22.H23-261201-0001"]},
                "agency": {"type": "string", "description": "Agency code; one of the client's"},
                "procedure": {"type": "string", "description": "Procedure code within the agency, e.g. 1.001193"},
                "applicant_name": {"type": "string", "maxLength": 120},
                "applicant_phone": {"type": "string", "maxLength": 20,
                                    "description": "A VN mobile gets the SMS; any other number is stored and its SMS skipped"},
                "id_number": {"type": "string", "description": "9 or 12 digits; hashed on arrival, never stored"},
                "received_at": moment, "due_at": moment, "status_at": moment,
                "fee_due": {"type": "integer", "minimum": 0, "description": "VND still to pay at pickup"},
                "pickup_place": {"type": "string", "maxLength": 300},
                "mode": {"type": "string", "enum": ["mot_phan", "toan_trinh"], "default": "mot_phan"},
                "status": {"type": "integer", "minimum": 1, "maximum": 10, "default": 1},
                "status_note": {"type": "string", "maxLength": 300},
            },
        },
        "DossierBatch": {
            "type": "object", "additionalProperties": False, "required": ["dossiers"],
            "properties": {"dossiers": {"type": "array", "minItems": 1, "maxItems": MAX_BATCH,
                                        "items": {"$ref": "#/components/schemas/Dossier"}},
                           "notify": {"type": "boolean", "default": True}},
        },
        "StatusEvent": {
            "type": "object", "additionalProperties": False, "required": ["event_id", "code", "status", "occurred_at"],
            "properties": {
                "event_id": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"},
                "code": {"type": "string"},
                "status": {"type": "integer", "minimum": 1, "maximum": 10},
                "occurred_at": moment,
                "reason": {"type": "string", "maxLength": 300, "description": "Why refused (3) or stopped (8)"},
                "missing_documents": {"type": "string", "maxLength": 300, "description": "With status 5"},
                "due_at": moment,
                "fee_due": {"type": "integer", "minimum": 0},
            },
        },
        "EventBatch": {
            "type": "object", "additionalProperties": False, "required": ["events"],
            "properties": {"events": {"type": "array", "minItems": 1, "maxItems": MAX_BATCH,
                                      "items": {"$ref": "#/components/schemas/StatusEvent"}}},
        },
        "BatchResults": {
            "type": "object", "required": ["results", "counts"],
            "properties": {
                "results": {"type": "array", "items": {
                    "type": "object", "required": ["code", "outcome"],
                    "properties": {
                        "code": {"type": "string"}, "event_id": {"type": "string"},
                        "outcome": {"type": "string", "enum": _OUTCOMES},
                        "sms": {"type": "object", "properties": {"id": {"type": "integer"}, "parts": {"type": "integer"}}},
                        "sms_skipped": {"type": "string", "description": "Why no SMS: invalid phone, opted out"},
                    },
                }},
                "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
            },
        },
        "DossierDetail": {
            "type": "object",
            "properties": {
                "code": {"type": "string"}, "agency": {"type": "string"}, "status": {"type": "integer"},
                "status_history": {"type": "array", "items": {"type": "object"}},
                "notifications": {"type": "array", "items": {"type": "object", "properties": {
                    "kind": {"type": "string"}, "sms_status": {"type": ["string", "null"]},
                    "skipped": {"type": ["string", "null"]}, "sent_at": {"type": ["string", "null"]},
                    "delivered_at": {"type": ["string", "null"]}, "error": {"type": ["string", "null"]},
                }}},
                "postal_request": {"type": ["object", "null"]},
            },
        },
    }
