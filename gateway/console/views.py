"""The console's pages. Each reads or changes data through the domain services (models.clerks,
models.desk, models.audit) on the parent app's runner; ``console_guard`` has already checked
the CSRF token, the login and the role by the time a handler runs."""

from __future__ import annotations

from aiohttp import web
from aiohttp_session import get_session, new_session

from gateway.app import SERVICES, SQL
from gateway.console import (
    CLERK, LANG, SESSION_ID, error_page, flash, new_csrf_token, now_of, page, redirect, safe_next, url,
)
from gateway.console.texts import LANGUAGES
from gateway.logs import get_logger
from models import audit, desk, dossier_code
from models.audit import Actor
from models.clerks import MAX_PASSWORD_CHARS, ClerkError, LoginOutcome

log = get_logger("gateway.console")

MAX_QUERY_CHARS = 256


def add_routes(app: web.Application) -> None:
    app.router.add_get("/login", login_page, name="login")
    app.router.add_post("/login", login_post, name="login_post")
    app.router.add_post("/logout", logout, name="logout")
    app.router.add_post("/lang", set_language, name="lang")
    app.router.add_get("/password", password_page, name="password")
    app.router.add_post("/password", password_post, name="password_post")
    app.router.add_get("/", home, name="home")
    app.router.add_get("/dossiers/{code}", dossier_page, name="dossier")
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
