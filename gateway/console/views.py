"""The console's pages. Each reads or changes data through the domain services (models.clerks,
models.desk, models.audit) on the parent app's runner; ``console_guard`` has already checked
the CSRF token, the login and the role by the time a handler runs.

The clerk's actions (mark ready and alert, mark collected, re-send, bulk alert) go through
``models.desk_actions.DeskActions``, as the API and the SMS commands do: each in one
transaction with its audit record (channel ``console``), then the dispatcher is woken."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re

from aiohttp import web
from aiohttp_session import get_session, new_session

from gateway.app import OUTBOX, SERVICES, SQL
from gateway.console import (
    CLERK, LANG, SESSION_ID, ZONE, error_page, flash, new_csrf_token, now_of, page, redirect, safe_next, url,
)
from gateway.console.texts import LANGUAGES
from gateway.logs import get_logger
from models import audit, desk, dossier_code
from models.audit import Actor
from models.clerks import MAX_PASSWORD_CHARS, ClerkError, LoginOutcome
from models.desk_actions import MAX_BULK, ActionResult, Verdict
from models.entities import DossierStatus

log = get_logger("gateway.console")

MAX_QUERY_CHARS = 256
MAX_CODE_CHARS = 100  # a pasted "code" longer than this is no code: reported unknown, cut
MAX_BULK_CHARS = MAX_BULK * (MAX_CODE_CHARS + 2)
_CODE_SEPARATORS = re.compile(r"[\s,;]+")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/login", login_page, name="login")
    app.router.add_post("/login", login_post, name="login_post")
    app.router.add_post("/logout", logout, name="logout")
    app.router.add_post("/lang", set_language, name="lang")
    app.router.add_get("/password", password_page, name="password")
    app.router.add_post("/password", password_post, name="password_post")
    app.router.add_get("/", home, name="home")
    app.router.add_get("/dossiers/{code}", dossier_page, name="dossier")
    app.router.add_get("/dossiers/{code}/ready", ready_preview, name="ready_preview")
    app.router.add_post("/dossiers/{code}/ready", ready_confirm, name="ready")
    app.router.add_post("/dossiers/{code}/collected", collected, name="collected")
    app.router.add_post("/dossiers/{code}/resend", resend, name="resend")
    app.router.add_get("/alerts/bulk", bulk_page, name="bulk")
    app.router.add_post("/alerts/bulk", bulk_post, name="bulk_post")
    app.router.add_get("/alerts/today", today_page, name="today")
    app.router.add_get("/postal", postal_page, name="postal")
    app.router.add_post("/postal/{code}/handled", postal_handled, name="postal_handled")
    app.router.add_get("/audit", audit_page, name="audit")
    app.router.add_get("/clerks", clerks_page, name="clerks")
    app.router.add_post("/clerks/{login}/disable", clerk_disable, name="clerk_disable")
    app.router.add_post("/clerks/{login}/enable", clerk_enable, name="clerk_enable")


def _field(form, name: str, limit: int) -> str:
    value = form.get(name, "")
    return value[:limit] if isinstance(value, str) else ""


async def not_found(request: web.Request) -> web.Response:
    return await error_page(request, 404)


# -- login, logout, language, password -------------------------------------------------------


async def login_page(request: web.Request) -> web.Response:
    return await page(request, "login.html", next=safe_next(request.query.get("next")) or "", error="", login="")


async def login_post(request: web.Request) -> web.Response:
    form = await request.post()
    login = _field(form, "login", 80)
    password = _field(form, "password", MAX_PASSWORD_CHARS + 1)
    session = await get_session(request)
    previous = session.get("sid") if isinstance(session.get("sid"), str) else None
    services = request.config_dict[SERVICES]
    result = await services.clerks.login(request.config_dict[SQL], login, password, now_of(request),
                                         channel="console", previous_session=previous)
    if result.outcome is LoginOutcome.OK:
        # Session fixation: a new cookie with a new session id and a new CSRF token.
        lang = request[LANG]
        session = await new_session(request)
        session["sid"] = result.session_id
        session["csrf"] = new_csrf_token()
        session["lang"] = lang
        log.info("console_login", clerk=result.clerk.login, outcome="ok")
        if result.clerk.must_change_password:
            return redirect(url(request, "password"))
        return redirect(safe_next(_field(form, "next", 300)) or url(request, "home"))
    log.info("console_login", outcome=result.outcome.value)  # never what was typed
    t_key = "login_locked" if result.outcome is LoginOutcome.LOCKED else "login_wrong"
    return await page(request, "login.html", status=200, next=safe_next(_field(form, "next", 300)) or "",
                      error=t_key, locked_until=result.locked_until,
                      login=login if result.outcome is LoginOutcome.LOCKED else "")


async def logout(request: web.Request) -> web.Response:
    session = await get_session(request)
    session_id = request.get(SESSION_ID)
    if session_id:
        async with request.config_dict[SQL].transaction() as tx:
            await request.config_dict[SERVICES].clerks.logout(tx, session_id, "console", now_of(request))
        log.info("console_logout", clerk=request[CLERK].login)
    session.invalidate()
    return redirect(url(request, "login"))


async def set_language(request: web.Request) -> web.Response:
    form = await request.post()
    lang = _field(form, "lang", 4)
    session = await get_session(request)
    if lang in LANGUAGES:
        session["lang"] = lang
    return redirect(safe_next(_field(form, "next", 300)) or url(request, "home"))


async def password_page(request: web.Request) -> web.Response:
    return await page(request, "password.html", error="")


async def password_post(request: web.Request) -> web.Response:
    form = await request.post()
    current = _field(form, "current", MAX_PASSWORD_CHARS + 1)
    new = _field(form, "new", MAX_PASSWORD_CHARS + 1)
    repeat = _field(form, "repeat", MAX_PASSWORD_CHARS + 1)
    clerk = request[CLERK]
    if new != repeat:
        return await page(request, "password.html", status=200, error="password_mismatch")
    try:
        await request.config_dict[SERVICES].clerks.change_password(
            request.config_dict[SQL], clerk, current, new, now_of(request), channel="console",
            keep_session=request[SESSION_ID],
        )
    except ClerkError as exc:
        return await page(request, "password.html", status=200, error=f"password_{exc.reason}")
    log.info("console_password_changed", clerk=clerk.login)
    flash(await get_session(request), "password_changed")
    return redirect(url(request, "home"))


# -- dossiers --------------------------------------------------------------------------------


async def home(request: web.Request) -> web.Response:
    clerk = request[CLERK]
    query = request.query.get("q", "").strip()[:MAX_QUERY_CHARS]
    found: list[desk.DeskDossier] = []
    message = ""
    if query:
        if dossier_code.parse(query) is None and dossier_code.parse_tail(query) is None:
            message = "search_invalid"
        else:
            found = await desk.find(request.config_dict[SQL], clerk.scope, query)
            if len(found) == 1:
                return redirect(url(request, "dossier", code=found[0].code))
            message = "search_several" if found else "search_none"
    return await page(request, "home.html", query=query, found=found, message=message)


async def dossier_page(request: web.Request) -> web.Response:
    clerk = request[CLERK]
    sql = request.config_dict[SQL]
    found = await desk.dossier(sql, clerk.scope, request.match_info["code"])
    if found is None:  # unknown, or another agency's: the same answer
        raise web.HTTPNotFound()
    return await page(
        request, "dossier.html", dossier=found, now=now_of(request),
        history=await desk.history(sql, found.id), messages=await desk.messages(sql, found.id),
    )


# -- the clerk's actions ----------------------------------------------------------------------


async def _own_dossier(request: web.Request) -> desk.DeskDossier:
    """The dossier of the URL, if the clerk's scope holds it; else 404, as an unknown one."""
    found = await desk.dossier(request.config_dict[SQL], request[CLERK].scope, request.match_info["code"])
    if found is None:
        raise web.HTTPNotFound()
    return found


def _actor(request: web.Request) -> Actor:
    clerk = request[CLERK]
    return Actor(clerk.id, clerk.login, "console")


def _text_digest(text: str) -> str:
    """What the confirm form carries of the previewed text: the send goes only if it is still
    the text the clerk saw."""
    return hashlib.sha256(text.encode()).hexdigest()[:32]


async def _pickup_preview(request: web.Request, tx, found: desk.DeskDossier):
    """The exact pickup SMS marking the dossier ready would send: in the applicant's own
    language when they chose one, prepared for the air (encoding, parts) by the outbox."""
    _, prepared = await request.config_dict[SERVICES].desk.preview_ready(tx, request[CLERK].scope, found.code)
    return prepared


async def _render_preview(request: web.Request, found: desk.DeskDossier, prepared, notice: str = "") -> web.Response:
    return await page(request, "ready_preview.html", dossier=found, sms=prepared,
                      digest=_text_digest(prepared.text) if prepared is not None else "", notice=notice)


async def ready_preview(request: web.Request) -> web.Response:
    found = await _own_dossier(request)
    prepared = None
    if found.status is not DossierStatus.DELIVERED:
        async with request.config_dict[SQL].transaction() as tx:
            prepared = await _pickup_preview(request, tx, found)
    return await _render_preview(request, found, prepared)


def _flash_result(session, result: ActionResult, done_key: str) -> None:
    """What the clerk reads on the dossier page after the redirect."""
    code = result.code or result.query
    notified = result.notified
    if result.verdict is Verdict.ALREADY_COLLECTED:
        flash(session, "refused_collected", code=code)
    elif result.verdict is Verdict.NOT_READY:
        flash(session, "refused_not_ready", code=code)
    elif done_key == "done_collected":
        flash(session, done_key, code=code)
    elif notified is None or notified.sms_id is None:
        flash(session, "done_no_sms", code=code, reason=(notified.skipped if notified else "") or "-")
    else:
        flash(session, done_key, code=code, parts=str(notified.parts))


def _log_action(request: web.Request, action: str, result: ActionResult) -> None:
    log.info("console_action", clerk=request[CLERK].login, action=action, code=result.code,
             result=result.verdict.value, sms_id=result.notified.sms_id if result.notified else None)


async def ready_confirm(request: web.Request) -> web.Response:
    """Mark ready and send, if the text is still the one the clerk previewed (the form
    carries its digest); else the preview again, and nothing sent."""
    found = await _own_dossier(request)
    form = await request.post()
    offered = _field(form, "preview", 64)
    services = request.config_dict[SERVICES]
    result = prepared = None
    async with request.config_dict[SQL].transaction() as tx:
        if found.status is DossierStatus.DELIVERED:
            result = ActionResult(found.code, Verdict.ALREADY_COLLECTED, found.code, found.id)
        else:
            prepared = await _pickup_preview(request, tx, found)
            if offered and hmac.compare_digest(offered.encode(), _text_digest(prepared.text).encode()):
                result = await services.desk.mark_ready(tx, request[CLERK].scope, _actor(request), found.code,
                                                        now_of(request))
    if result is None:
        return await _render_preview(request, found, prepared, notice="preview_changed" if offered else "")
    request.config_dict[OUTBOX].wakeup.set()
    _log_action(request, "ready", result)
    done_key = "done_resent" if found.status is DossierStatus.READY else "done_ready"
    _flash_result(await get_session(request), result, done_key)
    return redirect(url(request, "dossier", code=found.code))


async def _act_when_ready(request: web.Request, action: str, done_key: str) -> web.Response:
    """Mark collected or re-send: only for a dossier ready for pickup (the page shows these
    buttons then only); a stale page's click changes nothing. The status is read again in
    the action's transaction."""
    code = (await _own_dossier(request)).code
    async with request.config_dict[SQL].transaction() as tx:
        found = await desk.dossier(tx, request[CLERK].scope, code)
        if found is None:
            raise web.HTTPNotFound()
        if found.status is DossierStatus.DELIVERED:
            result = ActionResult(code, Verdict.ALREADY_COLLECTED, code, found.id)
        elif found.status is not DossierStatus.READY:
            result = ActionResult(code, Verdict.NOT_READY, code, found.id)
        else:
            method = getattr(request.config_dict[SERVICES].desk, action)
            result = await method(tx, request[CLERK].scope, _actor(request), code, now_of(request))
    if result.notified is not None:
        request.config_dict[OUTBOX].wakeup.set()
    _log_action(request, action, result)
    _flash_result(await get_session(request), result, done_key)
    return redirect(url(request, "dossier", code=code))


async def collected(request: web.Request) -> web.Response:
    return await _act_when_ready(request, "mark_collected", "done_collected")


async def resend(request: web.Request) -> web.Response:
    return await _act_when_ready(request, "resend", "done_resent")


def pasted_codes(text: str) -> list[str]:
    """The codes of a pasted list: split on spaces, commas, semicolons and new lines."""
    return [part[:MAX_CODE_CHARS] for part in _CODE_SEPARATORS.split(text) if part]


async def bulk_page(request: web.Request) -> web.Response:
    return await page(request, "bulk.html", codes="", results=None, error="", error_values={}, limit=MAX_BULK)


async def bulk_post(request: web.Request) -> web.Response:
    form = await request.post()
    raw = form.get("codes", "")
    raw = raw if isinstance(raw, str) else ""
    codes = pasted_codes(raw[:MAX_BULK_CHARS + 1])
    error, values = "", {}
    if not codes:
        error = "bulk_empty"
    elif len(codes) > MAX_BULK or len(raw) > MAX_BULK_CHARS:
        error, values = "bulk_too_many", {"count": str(len(codes)), "limit": str(MAX_BULK)}
    if error:  # nothing sent: the list comes back to be fixed
        return await page(request, "bulk.html", codes=raw[:MAX_BULK_CHARS], results=None, error=error,
                          error_values=values, limit=MAX_BULK)
    async with request.config_dict[SQL].transaction() as tx:
        results = await request.config_dict[SERVICES].desk.alert_many(
            tx, request[CLERK].scope, _actor(request), codes, now_of(request))
    request.config_dict[OUTBOX].wakeup.set()
    counts: dict[str, int] = {}
    for result in results:
        counts[result.verdict.value] = counts.get(result.verdict.value, 0) + 1
    log.info("console_bulk_alert", clerk=request[CLERK].login, codes=len(codes), **counts)
    # Rendered here, not after a redirect: a thousand results do not fit in a cookie. The
    # textarea comes back empty, so sending the page again sends nothing twice by mistake.
    return await page(request, "bulk.html", codes="", results=results, counts=counts, error="", error_values={},
                      limit=MAX_BULK)


async def postal_page(request: web.Request) -> web.Response:
    clerk = request[CLERK]
    requests = await desk.postal_waiting(request.config_dict[SQL], clerk.scope)
    return await page(request, "postal.html", requests=requests)


async def postal_handled(request: web.Request) -> web.Response:
    """A postal request dealt with (the result is on its way, or the applicant was called)."""
    code = (await _own_dossier(request)).code
    async with request.config_dict[SQL].transaction() as tx:
        result = await request.config_dict[SERVICES].desk.postal_handled(
            tx, request[CLERK].scope, _actor(request), code, now_of(request))
    _log_action(request, "postal_handled", result)
    flash(await get_session(request), "postal_done" if result.verdict is Verdict.DONE else "postal_not_waiting",
          code=code)
    return redirect(url(request, "postal"))


async def today_page(request: web.Request) -> web.Response:
    clerk = request[CLERK]
    zone = request.config_dict[ZONE]
    local_day = now_of(request).astimezone(zone).date()
    since = dt.datetime.combine(local_day, dt.time(0), tzinfo=zone).astimezone(dt.timezone.utc)
    until = dt.datetime.combine(local_day + dt.timedelta(days=1), dt.time(0), tzinfo=zone).astimezone(dt.timezone.utc)
    alerts = await desk.pickup_alerts(request.config_dict[SQL], clerk.scope, since, until)
    counts: dict[str, int] = {}
    for alert in alerts:
        counts[alert.sms.state] = counts.get(alert.sms.state, 0) + 1
    return await page(request, "today.html", alerts=alerts, counts=counts, day=local_day.strftime("%d/%m/%Y"))


# -- audit log and clerks --------------------------------------------------------------------


async def audit_page(request: web.Request) -> web.Response:
    clerk = request[CLERK]
    entries = await audit.entries(request.config_dict[SQL], clerk_id=None if clerk.is_admin else clerk.id)
    return await page(request, "audit.html", entries=entries)


async def clerks_page(request: web.Request) -> web.Response:
    clerks = await request.config_dict[SERVICES].clerks.list(request.config_dict[SQL])
    return await page(request, "clerks.html", clerks=clerks, now=now_of(request))


async def _set_active(request: web.Request, active: bool) -> web.Response:
    admin = request[CLERK]
    login = request.match_info["login"]
    session = await get_session(request)
    try:
        async with request.config_dict[SQL].transaction() as tx:
            changed = await request.config_dict[SERVICES].clerks.set_active(
                tx, login, active, Actor(admin.id, admin.login, "console"), now_of(request))
    except ClerkError as exc:
        if exc.reason == "unknown_clerk":
            raise web.HTTPNotFound() from None
        flash(session, "clerk_refused_self")
        return redirect(url(request, "clerks"))
    log.info("console_clerk_changed", clerk=admin.login, target=changed.login, active=active)
    flash(session, "clerk_done_enabled" if active else "clerk_done_disabled", login=changed.login)
    return redirect(url(request, "clerks"))


async def clerk_disable(request: web.Request) -> web.Response:
    return await _set_active(request, False)


async def clerk_enable(request: web.Request) -> web.Response:
    return await _set_active(request, True)
