"""/console: the clerks' web console, a sub-application with its own middlewares.

Server-rendered pages (aiohttp-jinja2, autoescape on; ``templates/``, one stylesheet in
``static/``), no script at all, nothing loaded from outside the gateway, Vietnamese by
default and English by a switch (``texts.py``). The middlewares, outermost first:

1. **Session** (aiohttp-session, ``EncryptedCookieStorage``: Fernet with a key derived
   from ``GATEWAY_SECRET_KEY``). The cookie is HttpOnly, SameSite=Strict, Secure when
   ``console.secure_cookies``, and scoped to ``/console``. It holds the CSRF token, the
   language, a flash message and, once logged in, the console session id; that id is
   checked on every request against ``clerk_session`` (only its SHA-256 is stored), so
   logout and idle expiry end a session on the server, whatever the cookie says. A login
   starts a new cookie and a new session id, and ends the one the cookie had (fixation).
2. **Guard** (``console_guard``): the CSRF token on every POST (refused with a 403 page
   without it, or with a wrong one, or from another origin); the login (anonymous callers
   go to the login page), the forced password change, the admin role for admin pages;
   HTML error pages for 403, 404, 405 and 500 (the webhooks and the API keep their
   JSON); the security headers on every answer (a strict Content-Security-Policy,
   ``X-Content-Type-Options``, ``Referrer-Policy``, no framing, no caching of pages).

A dossier of an agency the clerk does not work for answers 404, like an unknown one.
Phone numbers are shown masked (``0987***228``); none reaches a log line.
"""

from __future__ import annotations

import datetime as dt
import hmac
import secrets
import zoneinfo
from pathlib import Path
from typing import Awaitable, Callable
from urllib.parse import urlsplit

import aiohttp_jinja2
import jinja2
from aiohttp import web
from aiohttp_session import get_session, session_middleware
from aiohttp_session.cookie_storage import EncryptedCookieStorage

from gateway.app import SERVICES, SQL
from gateway.console.texts import DEFAULT_LANGUAGE, LANGUAGES, STATUS, VI, translator
from gateway.logs import get_logger
from gateway.services import derived_key
from gateway.settings import Settings
from models.clerks import ClerkView

log = get_logger("gateway.console")

HERE = Path(__file__).resolve().parent
TEMPLATES_DIR = HERE / "templates"
STATIC_DIR = HERE / "static"

PREFIX = "/console"
COOKIE_NAME = "gateway_console"

CLERK = web.RequestKey("console_clerk", ClerkView)
LANG = web.RequestKey("console_lang", str)
SESSION_ID = web.RequestKey("console_session_id", str)
CLOCK = web.AppKey("console_clock", object)  # Callable[[], datetime]: the app's clock
ZONE = web.AppKey("console_zone", zoneinfo.ZoneInfo)

# Route names: who may reach what.
PUBLIC_ROUTES = frozenset({"login", "login_post", "lang"})
UNFORCED_ROUTES = frozenset({"password", "password_post", "logout"})  # while a password change is due
ADMIN_ROUTES = frozenset({"clerks", "clerk_disable", "clerk_enable"})
_UNSESSIONED = frozenset({"static", "not_found"})

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; font-src 'self';"
    " connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


def cookie_key(settings: Settings) -> bytes:
    """The Fernet key of the session cookie: 32 bytes derived from the secret key."""
    return bytes.fromhex(derived_key(settings.security.secret_key, "console-session-cookie"))


def now_of(request: web.Request) -> dt.datetime:
    return request.config_dict[CLOCK]()


def redirect(location: str) -> web.Response:
    """303 See Other: after a POST the browser GETs the new page."""
    return web.Response(status=303, headers={"Location": location})


def url(request: web.Request, name: str, query: dict[str, str] | None = None, **parts: str) -> str:
    target = request.app.router[name].url_for(**parts)
    return str(target.with_query(query) if query else target)


def safe_next(raw: str | None) -> str | None:
    """A place to return to after login: a path of the console only, never another site."""
    if not raw or len(raw) > 300 or not raw.startswith(PREFIX + "/"):
        return None
    if "//" in raw or "\\" in raw or "/." in raw or any(ord(ch) < 0x21 for ch in raw):
        return None
    parts = urlsplit(raw)
    return raw if not parts.scheme and not parts.netloc else None


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


async def page(request: web.Request, template: str, status: int = 200, **context: object) -> web.Response:
    """A page with what every template uses: words, language, clerk, CSRF token, URLs."""
    session = await get_session(request)
    if "csrf" not in session:
        session["csrf"] = new_csrf_token()
    lang = request.get(LANG, DEFAULT_LANGUAGE)
    flash_key = session.pop("flash", None)
    flash_values = session.pop("flash_values", None) or {}
    t = translator(lang)
    zone = request.config_dict[ZONE]
    here = request.path if request.path.startswith(PREFIX + "/") else PREFIX + "/"
    common = {
        "t": t,
        "lang": lang,
        "clerk": request.get(CLERK),
        "csrf": session["csrf"],
        "here": here,
        "flash": t(flash_key, **flash_values) if isinstance(flash_key, str) and flash_key in VI else "",
        "url": lambda name, query=None, **parts: url(request, name, query, **parts),
        "when": lambda moment: _when(moment, zone),
        "status_name": lambda status: STATUS.get(lang, STATUS["vi"])[status],
        "money": lambda amount: _money(amount, lang),
        "masked": masked_phone,
    }
    return aiohttp_jinja2.render_template(template, request, {**common, **context}, status=status)


def flash(session, key: str, **values: str) -> None:
    session["flash"] = key
    if values:
        session["flash_values"] = values


def _when(moment: dt.datetime | None, zone: zoneinfo.ZoneInfo) -> str:
    if moment is None:
        return "-"
    return moment.astimezone(zone).strftime("%d/%m/%Y %H:%M")


def _money(amount: int, lang: str) -> str:
    grouped = f"{amount:,}"
    return grouped.replace(",", ".") + " đ" if lang == "vi" else grouped + " VND"


def masked_phone(e164: str | None) -> str:
    """``+84987542228`` -> ``0987***228``: enough for a clerk to check with the applicant."""
    if not e164:
        return "-"
    national = "0" + e164[3:] if e164.startswith("+84") else e164
    if len(national) < 8:
        return "*" * len(national)
    return national[:4] + "***" + national[-3:]


async def error_page(request: web.Request, status: int) -> web.Response:
    key = f"error_{status}" if status in (403, 404, 405, 500) else "error_other"
    try:
        # The language switch returns home: an error page never echoes the path it was asked.
        return await page(request, "error.html", status=status, error_status=status, error_key=key,
                          here=PREFIX + "/")
    except Exception:  # noqa: BLE001 - the page itself failed: a plain one, still HTML
        log.exception("console_error_page_failed", status=status)
        return web.Response(status=status, content_type="text/html",
                            text=f"<!doctype html><title>{status}</title><p>{status}</p>")


def _secure(response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if response.content_type == "text/html":
        response.headers["Cache-Control"] = "no-store"


@web.middleware
async def console_guard(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
    try:
        response = await _guarded(request, handler)
    except web.HTTPException as exc:
        if exc.status >= 400:
            response = await error_page(request, exc.status)
        else:
            response = web.Response(status=exc.status, headers={"Location": exc.headers.get("Location", PREFIX + "/")})
    except Exception:  # noqa: BLE001 - a bug: logged with its trace, answered with an HTML page
        log.exception("console_failed", path=request.path[:80])
        response = await error_page(request, 500)
    _secure(response)
    return response


async def _guarded(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
    route = request.match_info.route.name or ""
    if route in _UNSESSIONED:
        return await handler(request)
    session = await get_session(request)
    lang = session.get("lang")
    request[LANG] = lang if lang in LANGUAGES else DEFAULT_LANGUAGE
    if "csrf" not in session:
        session["csrf"] = new_csrf_token()
    if request.method not in ("GET", "HEAD"):
        await _check_csrf(request, session, route)
    if route in PUBLIC_ROUTES:
        return await handler(request)
    clerk = await _session_clerk(request, session)
    if clerk is None:
        target = request.path_qs if request.method == "GET" else None
        return redirect(url(request, "login", {"next": target} if safe_next(target) else None))
    request[CLERK] = clerk
    if clerk.must_change_password and route not in UNFORCED_ROUTES:
        return redirect(url(request, "password"))
    if route in ADMIN_ROUTES and not clerk.is_admin:
        log.warning("console_refused", route=route, reason="admin only", clerk=clerk.login)
        raise web.HTTPForbidden()
    return await handler(request)


async def _check_csrf(request: web.Request, session, route: str) -> None:
    origin = request.headers.get("Origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.host:
        log.warning("console_refused", route=route, reason="cross-origin form")
        raise web.HTTPForbidden()
    form = await request.post()
    offered = form.get("csrf")
    expected = session.get("csrf")
    if not isinstance(offered, str) or not expected or not hmac.compare_digest(offered.encode(), expected.encode()):
        log.warning("console_refused", route=route, reason="missing or wrong CSRF token" if offered else "no CSRF token")
        raise web.HTTPForbidden()


async def _session_clerk(request: web.Request, session) -> ClerkView | None:
    session_id = session.get("sid")
    if not isinstance(session_id, str) or not session_id:
        return None
    services = request.config_dict[SERVICES]
    async with request.config_dict[SQL].transaction() as tx:
        clerk = await services.clerks.session_clerk(tx, session_id, now_of(request))
    if clerk is None:
        session.pop("sid", None)  # ended, idle or disabled: the cookie forgets it too
        return None
    request[SESSION_ID] = session_id
    return clerk


def create_console_app(settings: Settings, clock: Callable[[], dt.datetime]) -> web.Application:
    from gateway.console import views

    storage = EncryptedCookieStorage(
        cookie_key(settings), cookie_name=COOKIE_NAME, path=PREFIX, httponly=True, samesite="Strict",
        secure=settings.console.secure_cookies,
    )
    app = web.Application(middlewares=[session_middleware(storage), console_guard])
    app[CLOCK] = clock
    app[ZONE] = zoneinfo.ZoneInfo(settings.locale.timezone)
    aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(TEMPLATES_DIR), autoescape=True,
                         undefined=jinja2.StrictUndefined)
    views.add_routes(app)
    app.router.add_static("/static", STATIC_DIR, name="static")
    # Last: anything else under /console gets the console's own 404 page, not the JSON one.
    app.router.add_route("*", "/{tail:.*}", views.not_found, name="not_found")
    return app
