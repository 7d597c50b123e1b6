"""/api/v1: the authenticated HTTP API, a sub-application with its own middleware.

It carries the OTP verification API the provincial portal calls, shaped like the
verification APIs portals already use (Twilio Verify and the services that copy it):

    POST /api/v1/otp              {"phone", "purpose", "lang"?} -> 201 {"id", "status": "pending", ...}
    POST /api/v1/otp/{id}/check   {"code": "123456"}            -> 200 {"id", "status", "tries_left"}
    GET  /api/v1/otp/{id}                                       -> 200 {"id", "status", "tries_left"}
    POST /api/v1/otp/{id}/cancel                                -> 200 {"id", "status": "canceled"}
    GET  /api/v1/openapi.json     the OpenAPI 3.1 description (no key needed)

- **Keys**: one per client (``python -m gateway add-api-client --name portal --scopes
  otp``), sent as ``Authorization: Bearer <key>`` or ``X-Api-Key: <key>``. Only the key's
  SHA-256 is stored: a key is 256 random bits, so a fast hash is safe, and the lookup is by
  hash. No or an unknown key: 401; a disabled client, or one without the route's scope: 403.
- **Errors** are JSON ``{"error", "status"}``, with ``field`` when one field is at fault,
  for every 4xx and 5xx, 404 and 405 included. A limit of the OTP service answers 429
  with ``Retry-After`` (seconds), ``reason`` and ``retry_after``.
- **One unit of work per request**, on the parent app's runner and services (read through
  ``request.config_dict``). A client sees only its own verifications: another client's id
  is a 404, like an unknown one.
- **Logs**: one ``api_request`` line per request (route, status, client name, outcome);
  never the key, the phone or the code.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from aiohttp import web

from gateway.app import OUTBOX, SERVICES, SETTINGS, SQL
from gateway.logs import get_logger
from gateway.phones import normalize_msisdn
from gateway.webhook_input import Refused, json_object
from menus.texts import LANGUAGES
from models.otp import OtpLimited, OtpPurpose

# What the portal may ask codes for. The gateway's own journeys (registration, PIN reset,
# deletion) issue theirs themselves: a portal call must not send a citizen a code worded
# for one of them, nor spend the phone's hourly allowance on it.
PORTAL_PURPOSES = (OtpPurpose.PORTAL,)

log = get_logger("gateway.api")

PREFIX = "/api/v1"
# What a client may be allowed to do, by scope name (api_client.scopes, space separated).
SCOPES = {
    "otp": "start, check, read and cancel OTP verifications",
    "sync": "create and update its agencies' dossiers, push their status changes, read them",
}
KEY_MARK = "gw_"  # keys start with it, so a leaked one is easy to recognise in a scan
MAX_KEY_CHARS = 200
MAX_FIELD_CHARS = 64

_CODE_RE = re.compile(r"[0-9]{6}")
_ID_RE = re.compile(r"[A-Za-z0-9_-]{16,40}")  # what secrets.token_urlsafe(16) makes
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")


@dataclass(frozen=True, slots=True)
class ApiCaller:
    """The client a request came from, once its key was accepted."""

    id: int
    name: str
    scopes: frozenset[str]


CALLER = web.RequestKey("api_caller", ApiCaller)
OUTCOME = web.RequestKey("api_outcome", dict)  # what the request's log line says it did
CLOCK = web.AppKey("api_clock", object)  # Callable[[], datetime]: the app's clock (tests move it)


class ApiError(Exception):
    """A request answered with a JSON error."""

    def __init__(self, status: int, message: str, field: str | None = None, *,
                 headers: dict[str, str] | None = None, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.field = field
        self.headers = headers or {}
        self.extra = extra or {}

    def response(self) -> web.Response:
        return _error(self.status, str(self), self.field, headers=self.headers, **self.extra)


def _error(status: int, message: str, field: str | None = None, *, headers: dict[str, str] | None = None,
           **extra: Any) -> web.Response:
    body: dict[str, Any] = {"error": message, "status": status}
    if field:
        body["field"] = field
    body.update(extra)
    return web.json_response(body, status=status, headers=headers)


# -- API keys -----------------------------------------------------------------------------------


def new_api_key() -> str:
    return KEY_MARK + secrets.token_urlsafe(32)


def api_key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


_CLIENT_BY_KEY = "SELECT id, name, scopes, active FROM api_client WHERE key_hash = ?"
_ADD_CLIENT = (
    "INSERT INTO api_client (name, key_prefix, key_hash, scopes, active, created_at) VALUES (?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (name) DO NOTHING RETURNING id"
)
_DISABLE_CLIENT = "UPDATE api_client SET active = ? WHERE name = ? RETURNING id"


class ApiClientError(ValueError):
    """A client that cannot be added or changed as asked; the message says why."""


async def add_api_client(sql: Any, name: str, scopes: list[str], now: dt.datetime,
                         agencies: list[str] | None = None) -> str:
    """Store a new client and return its key: the only time the key exists in clear.
    A ``sync`` client is bound to the agencies (by code) whose dossiers it may touch."""
    if not _NAME_RE.fullmatch(name):
        raise ApiClientError("a client name is 1-80 letters, digits, '.', '_' or '-', starting with a letter or digit")
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise ApiClientError(f"scopes must be among: {', '.join(SCOPES)} (got {', '.join(unknown) or 'none'})")
    agencies = sorted(set(agencies or []))
    if "sync" in scopes and not agencies:
        raise ApiClientError("a sync client needs at least one --agency CODE: the agencies whose dossiers it may touch")
    key = new_api_key()
    async with sql.transaction() as tx:
        agency_ids = []
        for code in agencies:
            found = await tx.fetch("SELECT id FROM agency WHERE code = ?", (code,))
            if not found:
                raise ApiClientError(f"no agency with code {code!r}")
            agency_ids.append(found[0][0])
        rows = await tx.fetch(_ADD_CLIENT, (name, key[:10], api_key_hash(key), " ".join(sorted(set(scopes))), True, now))
        if not rows:
            raise ApiClientError(f"an API client named {name!r} exists already")
        for agency_id in agency_ids:
            await tx.fetch("INSERT INTO api_client_agency (api_client_id, agency_id) VALUES (?, ?)", (rows[0][0], agency_id))
    return key


async def disable_api_client(sql: Any, name: str) -> bool:
    """Refuse the client's key from now on (403). False if there is no such client."""
    return bool(await sql.fetch(_DISABLE_CLIENT, (False, name)))


def _offered_key(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get("X-Api-Key", "").strip()


_WWW_AUTHENTICATE = {"WWW-Authenticate": 'Bearer realm="api"'}


async def _authenticate(request: web.Request) -> ApiCaller | None:
    """The caller of a route that needs a scope; None for a public route or no route at all
    (404 and 405 say so whoever asks: the routes are public, in the OpenAPI description)."""
    if request.match_info.http_exception is not None:
        return None
    scope = getattr(request.match_info.handler, "api_scope", None)
    if scope is None:
        return None
    offered = _offered_key(request)
    if not offered:
        raise ApiError(401, "API key missing: send Authorization: Bearer <key> or X-Api-Key", headers=_WWW_AUTHENTICATE)
    rows = [] if len(offered) > MAX_KEY_CHARS else await request.config_dict[SQL].fetch(
        _CLIENT_BY_KEY, (api_key_hash(offered),))
    if not rows:
        raise ApiError(401, "API key not recognised", headers=_WWW_AUTHENTICATE)
    client_id, name, scopes, active = rows[0]
    caller = ApiCaller(client_id, name, frozenset(scopes.split()))
    request[OUTCOME]["client"] = name
    if not active:
        raise ApiError(403, "this API client is disabled")
    if scope not in caller.scopes:
        raise ApiError(403, f"this API client lacks the scope {scope!r}")
    request[CALLER] = caller
    return caller


def requires(scope: str) -> Callable[[Callable[..., Awaitable[web.StreamResponse]]], Callable[..., Awaitable[web.StreamResponse]]]:
    """A route that needs a key with ``scope``."""
    assert scope in SCOPES, scope

    def mark(handler):
        handler.api_scope = scope
        return handler

    return mark


# -- the middleware: errors as JSON, the key, one log line ------------------------------------


@web.middleware
async def api_middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
    started = time.perf_counter()
    resource = request.match_info.route.resource
    route = resource.canonical if resource else "-"
    outcome: dict[str, Any] = {"client": "-"}
    request[OUTCOME] = outcome
    try:
        await _authenticate(request)
        response = await handler(request)
    except ApiError as exc:
        response = exc.response()
    except Refused as exc:
        response = _error(exc.status, str(exc), exc.field)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        response = _error(exc.status, exc.reason, headers=headers)
    except Exception:  # noqa: BLE001 - the caller gets JSON, the log gets the trace
        log.exception("api_failed", route=route, client=outcome["client"])
        response = _error(500, "internal error")
    log.info("api_request", method=request.method, route=route, status=response.status,
             duration_ms=round((time.perf_counter() - started) * 1000, 2), **outcome)
    return response


# -- request bodies -----------------------------------------------------------------------------


async def _body(request: web.Request, allowed: set[str]) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise ApiError(415, "send the body as JSON (Content-Type: application/json)", "Content-Type")
    body = await json_object(request, MAX_FIELD_CHARS)
    for name in body:
        if name not in allowed:
            raise ApiError(400, f"unknown field {name[:64]!r}; known: {', '.join(sorted(allowed))}", name[:64])
    return body


def _text(body: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise ApiError(400, f"{name} is required", name)
        return None
    if not isinstance(value, str):
        raise ApiError(400, f"{name} must be a string", name)
    return value


def _public_id(request: web.Request) -> str:
    public_id = request.match_info["id"]
    if not _ID_RE.fullmatch(public_id):
        raise _not_found()
    request[OUTCOME]["otp_id"] = public_id[:6]
    return public_id


def _not_found() -> ApiError:
    return ApiError(404, "no such verification for this client")


def _now(request: web.Request) -> dt.datetime:
    return request.app[CLOCK]()


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


_LIMITS = {
    "resend": "a code was sent to this phone moments ago; a new one after Retry-After seconds",
    "phone": "this phone has had as many codes as allowed this hour",
    "global": "the gateway is sending as many codes as it may right now",
}


# -- the routes ---------------------------------------------------------------------------------


@requires("otp")
async def start_verification(request: web.Request) -> web.Response:
    body = await _body(request, {"phone", "purpose", "lang"})
    phone = normalize_msisdn(_text(body, "phone", required=True))
    if phone is None:
        raise ApiError(400, "phone is not a valid Vietnamese mobile number", "phone")
    try:
        purpose = OtpPurpose(_text(body, "purpose", required=True))
        if purpose not in PORTAL_PURPOSES:
            raise ValueError(purpose)
    except ValueError:
        raise ApiError(400, f"purpose must be one of {', '.join(p.value for p in PORTAL_PURPOSES)}", "purpose") from None
    lang = _text(body, "lang") or request.config_dict[SETTINGS].ussd.default_language
    if lang not in LANGUAGES:
        raise ApiError(400, f"lang must be one of {', '.join(LANGUAGES)}", "lang")
    caller = request[CALLER]
    request[OUTCOME]["purpose"] = purpose.value
    try:
        async with request.config_dict[SQL].transaction() as tx:
            started = await request.config_dict[SERVICES].otp.start(
                tx, phone, purpose, lang, _now(request), api_client_id=caller.id)
    except OtpLimited as limited:  # start wrote nothing; the transaction rolled back anyway
        request[OUTCOME]["limit"] = limited.reason
        raise ApiError(429, _LIMITS[limited.reason], headers={"Retry-After": str(limited.retry_after)},
                       extra={"reason": limited.reason, "retry_after": limited.retry_after}) from None
    request.config_dict[OUTBOX].wakeup.set()  # committed: the dispatcher may send it now
    request[OUTCOME].update(otp_id=started.public_id[:6], otp_status="pending")
    location = str(request.app.router["otp"].url_for(id=started.public_id))
    return web.json_response({
        "id": started.public_id,
        "status": "pending",
        "purpose": purpose.value,
        "expires_at": _iso(started.expires_at),
        "resend_after": _iso(started.resend_after),
    }, status=201, headers={"Location": location})


@requires("otp")
async def check_verification(request: web.Request) -> web.Response:
    public_id = _public_id(request)
    body = await _body(request, {"code"})
    code = _text(body, "code", required=True)
    if not _CODE_RE.fullmatch(code):
        raise ApiError(400, "code must be the 6 digits of the SMS", "code")
    async with request.config_dict[SQL].transaction() as tx:
        verdict = await request.config_dict[SERVICES].otp.check_by_id(
            tx, public_id, code, _now(request), api_client_id=request[CALLER].id)
    if verdict.status == "none":  # unknown, another client's, or approved already (once only)
        raise _not_found()
    request[OUTCOME]["otp_status"] = verdict.status
    return web.json_response({"id": public_id, "status": verdict.status, "tries_left": verdict.tries_left})


@requires("otp")
async def get_verification(request: web.Request) -> web.Response:
    public_id = _public_id(request)
    async with request.config_dict[SQL].transaction() as tx:
        verdict = await request.config_dict[SERVICES].otp.status(
            tx, public_id, _now(request), api_client_id=request[CALLER].id)
    if verdict.status == "none":
        raise _not_found()
    request[OUTCOME]["otp_status"] = verdict.status
    return web.json_response({"id": public_id, "status": verdict.status, "tries_left": verdict.tries_left})


@requires("otp")
async def cancel_verification(request: web.Request) -> web.Response:
    public_id = _public_id(request)
    caller = request[CALLER]
    otp = request.config_dict[SERVICES].otp
    now = _now(request)
    async with request.config_dict[SQL].transaction() as tx:
        canceled = await otp.cancel(tx, public_id, api_client_id=caller.id, now=now)
        verdict = None if canceled else await otp.status(tx, public_id, now, api_client_id=caller.id)
    if verdict is not None:
        if verdict.status == "none":
            raise _not_found()
        raise ApiError(409, f"the verification is {verdict.status} already: only a pending one can be canceled",
                       extra={"verification_status": verdict.status})
    request[OUTCOME]["otp_status"] = "canceled"
    return web.json_response({"id": public_id, "status": "canceled", "tries_left": 0})


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(OPENAPI)


def create_api_app(clock: Callable[[], dt.datetime]) -> web.Application:
    """The /api/v1 sub-application (mounted by ``gateway.app.create_app``)."""
    api = web.Application(middlewares=[api_middleware])
    api[CLOCK] = clock
    api.router.add_get("/openapi.json", openapi_json, name="openapi")
    api.router.add_post("/otp", start_verification, name="otp_start")
    api.router.add_get("/otp/{id}", get_verification, name="otp")
    api.router.add_post("/otp/{id}/check", check_verification, name="otp_check")
    api.router.add_post("/otp/{id}/cancel", cancel_verification, name="otp_cancel")
    from gateway import api_sync

    api_sync.add_routes(api)
    OPENAPI["paths"].update(api_sync.openapi_paths())
    OPENAPI["components"]["schemas"].update(api_sync.openapi_schemas())
    from gateway import api_clerk

    api_clerk.add_routes(api)
    OPENAPI["paths"].update(api_clerk.openapi_paths())
    schemes, schemas = api_clerk.openapi_components()
    OPENAPI["components"]["securitySchemes"].update(schemes)
    OPENAPI["components"]["schemas"].update(schemas)
    return api


# -- the OpenAPI description --------------------------------------------------------------------


def _json_body(schema: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}


def _answer(description: str, schema: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }
    if headers:
        answer["headers"] = headers
    return answer


def _refs(*names: str) -> dict[str, Any]:
    codes = {"BadRequest": "400", "Unauthorized": "401", "Forbidden": "403", "NotFound": "404",
             "Conflict": "409", "UnsupportedMediaType": "415", "TooManyRequests": "429"}
    return {codes[name]: {"$ref": f"#/components/responses/{name}"} for name in names}


_STATUSES = ["pending", "approved", "expired", "canceled", "failed"]
_ID_PARAMETER = [{"$ref": "#/components/parameters/VerificationId"}]

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "Commune gateway API",
        "version": "1.0.0",
        "description": (
            "Dossier sync for one-stop systems (scope sync): create and update dossiers, push status "
            "changes, read a dossier with the SMS sent about it. "
            "One-time codes by SMS for the provincial portal (scope otp): start a verification for a phone and a "
            "purpose, then check the code the citizen typed. A code is 6 digits, valid for a few minutes, "
            "allows a few checks; a new one for the same phone and purpose no sooner than a minute after "
            "the last (the old one stops working); a phone gets a few codes an hour. A verification is "
            "visible only to the client that started it."
        ),
    },
    "servers": [{"url": PREFIX}],
    "security": [{"bearerAuth": []}, {"apiKey": []}],
    "paths": {
        "/otp": {
            "post": {
                "operationId": "startVerification",
                "summary": "Send a code by SMS to a phone",
                "requestBody": _json_body("StartVerification"),
                "responses": {
                    "201": {
                        **_answer("Code queued for the SMS; the verification is pending", "Verification"),
                        "headers": {"Location": {"description": "The verification's URL", "schema": {"type": "string"}}},
                    },
                    **_refs("BadRequest", "Unauthorized", "Forbidden", "UnsupportedMediaType", "TooManyRequests"),
                },
            },
        },
        "/otp/{id}": {
            "parameters": _ID_PARAMETER,
            "get": {
                "operationId": "getVerification",
                "summary": "Where a verification stands (an approval stays readable here)",
                "responses": {
                    "200": _answer("The verification", "VerificationStatus"),
                    **_refs("Unauthorized", "Forbidden", "NotFound"),
                },
            },
        },
        "/otp/{id}/check": {
            "parameters": _ID_PARAMETER,
            "post": {
                "operationId": "checkVerification",
                "summary": "Check the code the citizen typed",
                "description": (
                    "Every check counts, right or wrong. The answer is approved once, to the check that "
                    "approved; the verification is then no longer checkable (404) but GET still shows it."
                ),
                "requestBody": _json_body("CheckVerification"),
                "responses": {
                    "200": _answer("What the check decided", "VerificationStatus"),
                    **_refs("BadRequest", "Unauthorized", "Forbidden", "NotFound", "UnsupportedMediaType"),
                },
            },
        },
        "/otp/{id}/cancel": {
            "parameters": _ID_PARAMETER,
            "post": {
                "operationId": "cancelVerification",
                "summary": "Stop a pending code",
                "responses": {
                    "200": _answer("Canceled", "VerificationStatus"),
                    **_refs("Unauthorized", "Forbidden", "NotFound", "Conflict"),
                },
            },
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This description",
                "security": [],
                "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}},
            },
        },
    },
    "components": {
        "securitySchemes": {
            "bearerAuth": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <key>"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
        },
        "parameters": {
            "VerificationId": {
                "name": "id", "in": "path", "required": True,
                "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{16,40}$"},
            },
        },
        "schemas": {
            "StartVerification": {
                "type": "object",
                "required": ["phone", "purpose"],
                "additionalProperties": False,
                "properties": {
                    "phone": {"type": "string", "maxLength": 32, "description": "A Vietnamese mobile number in any usual spelling",
                              "examples": ["0987542228", "+84987542228"]},
                    "purpose": {"type": "string", "enum": [p.value for p in PORTAL_PURPOSES],
                                "description": "What the code is for: the SMS says so"},
                    "lang": {"type": "string", "enum": list(LANGUAGES), "description": "Language of the SMS"},
                },
            },
            "CheckVerification": {
                "type": "object",
                "required": ["code"],
                "additionalProperties": False,
                "properties": {"code": {"type": "string", "pattern": "^[0-9]{6}$"}},
            },
            "Verification": {
                "type": "object",
                "required": ["id", "status", "purpose", "expires_at", "resend_after"],
                "properties": {
                    "id": {"type": "string"},
                    "status": {"const": "pending"},
                    "purpose": {"type": "string", "enum": [p.value for p in PORTAL_PURPOSES]},
                    "expires_at": {"type": "string", "format": "date-time"},
                    "resend_after": {"type": "string", "format": "date-time",
                                     "description": "No new code for this phone and purpose before this"},
                },
            },
            "VerificationStatus": {
                "type": "object",
                "required": ["id", "status", "tries_left"],
                "properties": {
                    "id": {"type": "string"},
                    "status": {"type": "string", "enum": _STATUSES,
                               "description": "failed: too many wrong codes; canceled: canceled, or replaced by a newer code"},
                    "tries_left": {"type": "integer", "minimum": 0, "description": "Checks left while pending, else 0"},
                },
            },
            "Error": {
                "type": "object",
                "required": ["error", "status"],
                "properties": {
                    "error": {"type": "string"},
                    "status": {"type": "integer", "description": "The HTTP status"},
                    "field": {"type": "string", "description": "The field at fault, when one is"},
                },
            },
            "Limited": {
                "allOf": [
                    {"$ref": "#/components/schemas/Error"},
                    {
                        "type": "object",
                        "required": ["reason", "retry_after"],
                        "properties": {
                            "reason": {"type": "string", "enum": ["resend", "phone", "global"]},
                            "retry_after": {"type": "integer", "minimum": 1, "description": "Seconds, as in Retry-After"},
                        },
                    },
                ],
            },
        },
        "responses": {
            "BadRequest": _answer("A field is missing or wrong (named in field)", "Error"),
            "Unauthorized": {
                **_answer("No API key, or one not recognised", "Error"),
                "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
            },
            "Forbidden": _answer("The client is disabled or lacks the route's scope", "Error"),
            "NotFound": _answer("No such verification for this client (or no longer checkable)", "Error"),
            "Conflict": _answer("The verification is no longer pending", "Error"),
            "UnsupportedMediaType": _answer("The body is not JSON", "Error"),
            "TooManyRequests": _answer("A limit was hit: try again after Retry-After seconds", "Limited", headers={
                "Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer", "minimum": 1}},
            }),
        },
    },
}
