"""The aiohttp application: one factory used by ``run_app``, the CLI and the tests."""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
import itertools
import os
import time
import uuid
from typing import Any, AsyncIterator, Awaitable, Callable

import structlog
from aiohttp import web
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from gateway.logs import get_logger, safe_request_id
from gateway.metrics import Metrics
from gateway.outbox import utcnow
from gateway.phones import normalize_msisdn
from gateway.messages import BadRequest, UssdRequest
from gateway.webhook_input import Refused, check_ids, form_params, json_object, offered_token
from gateway.outbox import Dispatcher, Outbox
from gateway.providers import build_transport, inbound_adapter, ussd_adapter
from gateway.sms import SmsTransport
from gateway.services import build_services
from gateway.sms_service import SmsService
from gateway.sessions import SessionStore
from gateway.settings import DEV_SECRET_KEY, Settings
from gateway.ussd import HopOutcome, UssdService, log_hop
from models.db import open_database
from models.fastsql import open_runner
from models.directory import DatabaseDirectory

log = get_logger("gateway.app")

SETTINGS = web.AppKey("settings", Settings)
OUTBOX = web.AppKey("outbox", Outbox)
SMS = web.AppKey("sms", SmsService)
TRANSPORT = web.AppKey("transport", SmsTransport)
DIRECTORY = web.AppKey("directory", DatabaseDirectory)
USSD = web.AppKey("ussd", UssdService)
METRICS = web.AppKey("metrics", Metrics)
SQL = web.AppKey("sql", object)  # the app's SqlRunner: its units of work
SERVICES = web.AppKey("services", object)  # models.unit_of_work.Services


_REQUEST_IDS = itertools.count(1)
_PROCESS_TAG = f"{os.getpid():x}{uuid.uuid4().hex[:4]}"


def _next_request_id() -> str:
    """Unique across workers and restarts, and cheaper than a uuid4 per request."""
    return f"{_PROCESS_TAG}-{next(_REQUEST_IDS):x}"


@web.middleware
async def request_context(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
    """Bind a request id for every log line of this request; turn HTTP errors into JSON."""
    structlog.contextvars.clear_contextvars()
    # A caller's own id is kept only when short and plain (it is logged on every line).
    request_id = safe_request_id(request.headers.get("X-Request-Id")) or _next_request_id()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status >= 400 and exc.content_type != "application/json":
            return json_error(exc.status, exc.reason)
        raise
    except Exception:  # noqa: BLE001 - a bug: logged with its trace, answered in JSON all the same
        log.exception("request_failed", path=request.path[:80])
        return json_error(500, "internal error")


def json_error(status: int, message: str, field: str | None = None) -> web.Response:
    body = {"error": message, "status": status}
    if field:
        body["field"] = field
    return web.json_response(body, status=status)


async def _answer_ussd(request: web.Request, parsed: UssdRequest) -> HopOutcome:
    started = time.perf_counter()
    app = request.app
    metrics = app[METRICS]
    try:
        outcome = await app[USSD].handle(parsed)
    except Exception:  # noqa: BLE001 - the contract wants an END, whatever broke
        log.exception("ussd_hop_failed", channel=parsed.channel, session=parsed.session_id[-12:])
        metrics.ussd_errors.labels(parsed.channel).inc()
        outcome = HopOutcome(app[USSD].apology(), "error", 0)
    log_hop(parsed, outcome, started)
    metrics.ussd_hops.labels(parsed.channel, outcome.screen, str(outcome.reply.end).lower(), str(outcome.retry).lower()).inc()
    metrics.ussd_latency.observe(time.perf_counter() - started)
    return outcome


def _refusal(request: web.Request, status: int, message: str, field: str | None = None) -> web.Response:
    """A webhook call refused with a 4xx: logged (route and reason, never a value), answered in JSON."""
    resource = request.match_info.route.resource
    log.warning("webhook_refused", route=resource.canonical if resource else "-", status=status,
                reason=message[:120], field=field)
    return json_error(status, message, field)


def _token_refused(request: web.Request) -> web.Response | None:
    """Provider webhooks carry the shared token when one is configured."""
    token = request.app[SETTINGS].security.webhook_token
    if not token:
        return None
    offered = offered_token(request)
    if hmac.compare_digest(offered, token.encode()):
        return None
    return _refusal(request, 401, "missing or wrong webhook token" if offered else "webhook token missing", "token")


async def ussd_webhook(request: web.Request) -> web.Response:
    adapter = ussd_adapter(request.match_info["contract"])
    if adapter is None:
        return _refusal(request, 404, f"no USSD contract {request.match_info['contract'][:40]!r}")
    refused = _token_refused(request)
    if refused is not None:
        return refused
    try:
        if adapter.USSD_BODY == "json":
            body = await json_object(request, _USSD_FIELD_CHARS)
        else:
            body = await form_params(request, _USSD_FIELD_CHARS)
        parsed = adapter.parse_ussd(body)
    except Refused as exc:
        return _refusal(request, exc.status, str(exc), exc.field)
    except BadRequest as exc:
        return _refusal(request, 400, str(exc))
    outcome = await _answer_ussd(request, parsed)
    content_type, text_body = adapter.render_ussd(outcome.reply)
    return web.Response(text=text_body, content_type=content_type)


# A USSD field may be long on the wire: the hop refuses an oversized text within the
# contract (END with an apology), so only the body limit bounds it here.
_USSD_FIELD_CHARS = 1 << 20


async def _sms_params(request: web.Request, adapter: Any) -> dict[str, Any]:
    """Query string, form or JSON body: providers use all three. An adapter that reads the
    query string's raw bytes itself (Kannel: the text's charset is a field beside it) does."""
    limit = request.app[SETTINGS].sms.max_inbound_chars
    if request.method == "POST" and request.content_type == "application/json":
        if not getattr(adapter, "SMS_JSON", False):
            raise Refused(415, "this webhook takes a form or query string, not JSON", "Content-Type")
        return await json_object(request, limit)
    from_raw = getattr(adapter, "params_from_raw_query", None)
    query = from_raw(request.rel_url.raw_query_string) if from_raw else None
    return await form_params(request, limit, query)


async def _parse_sms_webhook(request: web.Request, what: str):
    """The adapter named in the path parses the webhook: (adapter, parsed) or an error response."""
    refused = _token_refused(request)
    if refused is not None:
        return None, refused
    adapter = inbound_adapter(request.match_info["transport"])
    if adapter is None:
        return None, _refusal(request, 404, f"no SMS adapter {request.match_info['transport'][:40]!r}")
    try:
        parsed = getattr(adapter, what)(await _sms_params(request, adapter))
        check_ids(parsed)
    except Refused as exc:
        return None, _refusal(request, exc.status, str(exc), exc.field)
    except BadRequest as exc:
        return None, _refusal(request, 400, str(exc))
    return adapter, parsed


async def sms_inbound(request: web.Request) -> web.Response:
    adapter, parsed = await _parse_sms_webhook(request, "parse_inbound")
    if adapter is None:
        return parsed
    accepted = await request.app[SMS].incoming(parsed)
    if adapter.INBOUND_ACK_EMPTY:
        # A gateway that would send our answer body to the phone gets an empty one:
        # replies go through the outbox like every SMS.
        return web.Response(text="", content_type="text/plain")
    return web.json_response({"status": "accepted" if accepted else "duplicate"})


async def sms_dlr(request: web.Request) -> web.Response:
    adapter, parsed = await _parse_sms_webhook(request, "parse_dlr")
    if adapter is None:
        return parsed
    matched = await request.app[SMS].report(parsed, request.match_info["transport"])
    return web.json_response({"status": "recorded" if matched else "unknown message"})


async def local_inbox(request: web.Request) -> web.Response:
    """What a local transport (console) delivered to one phone: the phone simulator's inbox.
    Loopback callers only: the texts include OTPs."""
    if request.remote not in ("127.0.0.1", "::1"):
        return json_error(403, "only from this machine")
    phone = normalize_msisdn(request.query.get("msisdn"))
    if phone is None:
        return json_error(400, "msisdn is not a valid Vietnamese mobile number")
    inbox = request.app[TRANSPORT].inbox(phone)
    if inbox is None:
        return json_error(404, "the SMS transport in use keeps no local inbox")
    messages = [
        {"sent_at": m.sent_at.isoformat(timespec="seconds"), "text": m.text, "encoding": m.encoding, "parts": m.parts}
        for m in inbox
    ]
    return web.json_response({"messages": messages})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def metrics_view(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


# Kannel's get-url carries the whole text in the request line: the longest UCS-2 SMS (255
# parts of 67) is 6 bytes a character once URL-encoded, about 100 KiB; aiohttp's default
# (8,190) refuses a 2-part one. Longer lines are answered 400 by aiohttp's parser itself,
# before the app (not in JSON).
MAX_REQUEST_LINE = 128 * 1024
PROTOCOL_LIMITS = {"max_line_size": MAX_REQUEST_LINE, "max_field_size": MAX_REQUEST_LINE}


def create_app(settings: Settings, *, clock: Callable[[], dt.datetime] | None = None) -> web.Application:
    """The gateway. ``clock`` (aware UTC datetimes) is for tests that move time."""
    app = web.Application(middlewares=[request_context], handler_args=PROTOCOL_LIMITS)
    app[SETTINGS] = settings
    app[METRICS] = Metrics()

    async def database(app: web.Application) -> AsyncIterator[None]:
        if settings.security.secret_key == DEV_SECRET_KEY:
            log.warning("dev_secret_key", hint=f"set {settings.security.secret_key_env} in production")
        if not settings.security.webhook_token:
            log.warning("webhooks_unauthenticated", hint=f"set {settings.security.webhook_token_env} in production")
        async with open_database(settings.database.url, run_migrations=settings.database.migrate_on_start):
            sql = open_runner(settings.database.url)
            directory = DatabaseDirectory(settings.ussd.catalogue_cache_seconds, sql)
            app[DIRECTORY] = directory
            sessions = SessionStore(sql)
            outbox = Outbox(settings, clock or utcnow, sql)
            services = build_services(settings, outbox, directory)
            app[SQL], app[SERVICES] = sql, services
            app[USSD] = UssdService(settings, directory, sessions, sql, services, clock or utcnow)
            sms = SmsService(settings, directory, sql, services, clock or utcnow)
            app[OUTBOX], app[SMS] = outbox, sms
            transport = build_transport(settings, sms.sink_for(settings.sms.transport))
            app[TRANSPORT] = transport
            await transport.start()
            stop = asyncio.Event()
            dispatcher_task = None
            if settings.sms.run_dispatcher:
                # One sender among workers: it dispatches only while it holds the lease "dispatcher".
                dispatcher = Dispatcher(settings, transport, sql, clock or utcnow, wakeup=outbox.wakeup,
                                        metrics=app[METRICS], lease=True)
                dispatcher_task = asyncio.create_task(dispatcher.run(stop), name="sms-dispatcher")
            purger_task = None
            if settings.retention.run_purger:
                from models.retention import Purger

                purger_task = asyncio.create_task(Purger(settings, sql, clock or utcnow).run(stop), name="purger")
            reminder_task = None
            if settings.notifications.run_reminders:
                from models.reminders import ReminderJob

                reminders = ReminderJob(settings, sql, services.dossiers, clock or utcnow, on_sms_queued=outbox.wakeup.set)
                reminder_task = asyncio.create_task(reminders.run(stop), name="reminders")
            try:
                yield
            finally:
                stop.set()
                for task in (dispatcher_task, purger_task, reminder_task):
                    if task is not None:
                        await task
                await transport.close()
                await sql.close()

    app.cleanup_ctx.append(database)
    app.router.add_get("/healthz", healthz)
    # Imported here: gateway.api reads this module's AppKeys (SQL, SERVICES, ...).
    from gateway.api import create_api_app

    app.add_subapp("/api/v1", create_api_app(clock or utcnow))
    from gateway.console import create_console_app

    app.add_subapp("/console", create_console_app(settings, clock or utcnow))
    app.router.add_get("/metrics", metrics_view)
    app.router.add_post("/ussd/{contract}", ussd_webhook)
    app.router.add_get("/sms/console/sent", local_inbox)
    for method in ("GET", "POST"):
        app.router.add_route(method, "/sms/{transport}/inbound", sms_inbound)
        app.router.add_route(method, "/sms/{transport}/dlr", sms_dlr)
    return app
