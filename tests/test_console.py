"""The clerks' web console (/console) through the real app over real HTTP: logins, roles,
agency scope on every route, CSRF, session fixation and expiry, security headers, the
pages' content, and no citizen phone in any log line."""

from __future__ import annotations

import datetime as dt
import re

import aiohttp
import pytest
from aiohttp.web_urldispatcher import PrefixedSubAppResource

from gateway.app import SERVICES, SQL, create_app
from gateway.console import ADMIN_ROUTES, COOKIE_NAME, PUBLIC_ROUTES
from gateway.console.texts import EN, VI
from models.audit import CLI
from models.seed import DEMO_PHONE, NEIGHBOUR, PHUONG_KY, seed

A, B = PHUONG_KY["code"], NEIGHBOUR["code"]
NEW_PASSWORD = "desk-password-2026"
_CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
def console_settings(settings):
    # The aiohttp test client talks plain HTTP: its cookie jar keeps no Secure cookie.
    # test_cookie_flags checks the flags with the default (secure) settings.
    return settings.replace(console={"secure_cookies": False})


@pytest.fixture
async def client(aiohttp_client, console_settings, clock):
    client = await aiohttp_client(create_app(console_settings, clock=clock))
    await seed(now=clock.now)
    return client


class Desk:
    """A browser at the console: its cookie jar, its CSRF token, its clerk."""

    def __init__(self, client) -> None:
        self.client = client
        self.services = client.app[SERVICES]
        self.sql = client.app[SQL]

    async def add_clerk(self, login: str, *, agencies=(A,), role: str = "clerk", now) -> str:
        _, password = await self.services.clerks.create(
            self.sql, login=login, name=login.title(), phone=None, role=role, agency_codes=list(agencies),
            actor=CLI, now=now)
        return password

    async def csrf(self, path: str = "/console/login") -> str:
        response = await self.client.get(path)
        found = _CSRF_RE.search(await response.text())
        assert found, f"no CSRF token on {path}"
        return found.group(1)

    async def post(self, path: str, data: dict | None = None, *, csrf: str | None = "auto", **kwargs):
        form = dict(data or {})
        if csrf == "auto":
            form["csrf"] = await self.csrf("/console/login")
        elif csrf is not None:
            form["csrf"] = csrf
        return await self.client.post(path, data=form, allow_redirects=False, **kwargs)

    async def login(self, login: str, password: str):
        return await self.post("/console/login", {"login": login, "password": password})

    async def sign_in(self, login: str, *, agencies=(A,), role: str = "clerk", now) -> None:
        """A new clerk who logs in with the one-time password and sets a new one."""
        one_time = await self.add_clerk(login, agencies=agencies, role=role, now=now)
        response = await self.login(login, one_time)
        assert response.status == 303 and response.headers["Location"] == "/console/password"
        changed = await self.post("/console/password", {"current": one_time, "new": NEW_PASSWORD,
                                                         "repeat": NEW_PASSWORD})
        assert changed.status == 303 and changed.headers["Location"] == "/console/", await changed.text()

    def cookie(self) -> str:
        found = [c.value for c in self.client.session.cookie_jar if c.key == COOKIE_NAME]
        assert found, "no console cookie"
        return found[0]

    async def with_cookie(self, path: str, cookie: str) -> aiohttp.ClientResponse:
        """A request carrying exactly this cookie value (a replay), outside the browser's jar."""
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
            async with http.get(self.client.make_url(path), headers={"Cookie": f"{COOKIE_NAME}={cookie}"},
                                allow_redirects=False) as response:
                await response.read()
                return response


@pytest.fixture
def desk(client) -> Desk:
    return Desk(client)


def console_routes(app) -> list[tuple[str, str, str]]:
    """Every route of the console sub-application: (method, path template, route name)."""
    sub = next(r for r in app.router.resources()
               if isinstance(r, PrefixedSubAppResource) and r.get_info()["prefix"] == "/console")
    routes = []
    for route in sub.get_info()["app"].router.routes():
        if route.method == "HEAD" or route.name in ("static", "not_found"):
            continue
        routes.append((route.method, route.resource.canonical, route.name))
    assert len(routes) >= 12
    return routes


async def _codes(sql, agency_code: str) -> list[str]:
    rows = await sql.fetch("SELECT d.code FROM dossier d JOIN agency a ON a.id=d.agency_id WHERE a.code=?"
                           " ORDER BY d.id", (agency_code,))
    return [row[0] for row in rows]


def _fill(path: str, code: str, login: str) -> str:
    return path.replace("{code}", code).replace("{login}", login)


def _anonymous_refusal(response) -> bool:
    if response.status in (401, 403):
        return True
    return response.status in (302, 303) and response.headers["Location"].startswith("/console/login")


# -- anonymous, roles, scope ------------------------------------------------------------------


async def test_anonymous_is_refused_on_every_console_route(desk, clock):
    await desk.add_clerk("mai", now=clock.now)
    code = (await _codes(desk.sql, A))[0]
    checked = 0
    for method, path, name in console_routes(desk.client.app):
        if name in PUBLIC_ROUTES:
            continue
        url = _fill(path, code, "mai")
        if method == "GET":
            response = await desk.client.get(url, allow_redirects=False)
        else:  # with a valid CSRF token: the login, not the token, must stop it
            response = await desk.post(url)
        assert _anonymous_refusal(response), (method, url, response.status)
        checked += 1
    assert checked >= 9
    assert (await desk.services.clerks.by_login(desk.sql, "mai")).active  # nothing was changed


async def test_anonymous_get_goes_to_login_and_comes_back(desk, clock):
    await desk.add_clerk("mai", now=clock.now)
    response = await desk.client.get("/console/audit", allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/console/login?next=/console/audit"
    one_time = await desk.csrf("/console/login?next=/console/audit")
    back = await desk.post("/console/login", {"login": "mai", "password": "x" * 12, "next": "/console/audit"},
                           csrf=one_time)
    assert back.status == 200 and VI["login_wrong"] in await back.text()
    # An outside "next" is never followed.
    for outside in ("https://evil.example/", "//evil.example/", "/console/../api", "/elsewhere"):
        page = await desk.client.get("/console/login", params={"next": outside})
        assert outside not in await page.text()


async def test_admin_pages_refuse_a_clerk(desk, clock):
    await desk.add_clerk("other", now=clock.now)
    await desk.sign_in("mai", now=clock.now)
    admin_routes = [(m, p, n) for m, p, n in console_routes(desk.client.app) if n in ADMIN_ROUTES]
    assert {n for _, _, n in admin_routes} == set(ADMIN_ROUTES)
    for method, path, name in admin_routes:
        url = _fill(path, "x", "other")
        response = await (desk.client.get(url, allow_redirects=False) if method == "GET" else desk.post(url))
        assert response.status == 403, (method, url)
        assert response.content_type == "text/html"
    assert (await desk.services.clerks.by_login(desk.sql, "other")).active


async def test_admin_disables_and_enables_a_clerk(desk, clock):
    await desk.add_clerk("mai", now=clock.now)
    await desk.sign_in("boss", role="admin", agencies=(), now=clock.now)
    page = await desk.client.get("/console/clerks")
    assert page.status == 200 and "mai" in await page.text()
    disabled = await desk.post("/console/clerks/mai/disable")
    assert disabled.status == 303
    assert not (await desk.services.clerks.by_login(desk.sql, "mai")).active
    assert "mai" in await (await desk.client.get("/console/clerks")).text()
    assert (await desk.post("/console/clerks/mai/enable")).status == 303
    assert (await desk.services.clerks.by_login(desk.sql, "mai")).active
    assert (await desk.post("/console/clerks/nobody/disable")).status == 404
    rows = await desk.sql.fetch("SELECT actor, channel, action, target FROM audit_log WHERE action LIKE 'clerk_%abled'"
                                " ORDER BY id")
    assert rows == [("boss", "console", "clerk_disabled", "mai"), ("boss", "console", "clerk_enabled", "mai")]
    # An admin cannot lock themselves out.
    assert (await desk.post("/console/clerks/boss/disable")).status == 303
    assert (await desk.services.clerks.by_login(desk.sql, "boss")).active


async def test_another_agencys_dossier_is_404_on_every_route(desk, clock):
    await desk.sign_in("mai", agencies=(A,), now=clock.now)
    ours, theirs = (await _codes(desk.sql, A))[0], (await _codes(desk.sql, B))[0]
    dossier_routes = [(m, p) for m, p, _ in console_routes(desk.client.app) if "{code}" in p]
    assert dossier_routes
    for method, path in dossier_routes:
        for code, expected in ((theirs, 404), ("000.99.99.H99-260101-0001", 404), (ours, 200)):
            url = _fill(path, code, "mai")
            if method == "GET":
                response = await desk.client.get(url, allow_redirects=False)
            else:
                response = await desk.post(url)
            if expected == 404:
                assert response.status == 404, (method, url)
                assert response.content_type == "text/html"
                assert code not in await response.text()
            else:
                assert response.status in (200, 303), (method, url)
    # The search does not find it either, and says what it says of an unknown code.
    found = await desk.client.get("/console/", params={"q": theirs}, allow_redirects=False)
    body = await found.text()
    assert found.status == 200 and VI["search_none"] in body and f"/console/dossiers/{theirs}" not in body


async def test_an_admin_sees_every_agency(desk, clock):
    await desk.sign_in("boss", role="admin", agencies=(), now=clock.now)
    theirs = (await _codes(desk.sql, B))[0]
    page = await desk.client.get(f"/console/dossiers/{theirs}")
    assert page.status == 200 and theirs in await page.text()


# -- search and the dossier page --------------------------------------------------------------


async def test_search_by_code_and_by_tail(desk, clock):
    await desk.sign_in("mai", now=clock.now)
    codes = await _codes(desk.sql, A)
    first = codes[0]
    messy = "  " + first.lower().replace("-", " - ") + " "
    by_code = await desk.client.get("/console/", params={"q": messy}, allow_redirects=False)
    assert by_code.status == 303 and by_code.headers["Location"] == f"/console/dossiers/{first}"
    tail = "".join(first.split("-")[1:])
    by_tail = await desk.client.get("/console/", params={"q": tail}, allow_redirects=False)
    # The neighbour has the same tail: the clerk of A is sent straight to A's dossier.
    assert by_tail.status == 303 and by_tail.headers["Location"] == f"/console/dossiers/{first}"
    # Dossiers 2 and 5 of the demo share a tail within A: the clerk chooses.
    shared = (await desk.sql.fetch("SELECT tail FROM dossier GROUP BY tail, agency_id HAVING COUNT(*) > 1"))[0][0]
    several = await desk.client.get("/console/", params={"q": shared})
    body = await several.text()
    assert several.status == 200 and VI["search_several"] in body and body.count("/console/dossiers/") == 2
    invalid = await desk.client.get("/console/", params={"q": "hello"})
    assert VI["search_invalid"] in await invalid.text()


async def _outbound(sql, dossier_id: int, kind: str, status: str, now: dt.datetime, *, error: str = "",
                    sent: bool = False, delivered: bool = False) -> None:
    rows = await sql.fetch(
        "INSERT INTO outbound_sms (to_phone, text, encoding, parts, kind, urgent, status, attempts, next_attempt_at,"
        " expires_at, transport, last_error, created_at, sent_at, delivered_at)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) RETURNING id",
        (DEMO_PHONE, "Ho so ... da co ket qua", "gsm7", 1, kind, False, status, 1, now, now + dt.timedelta(days=1),
         "console", error, now, now if sent else None, now if delivered else None),
    )
    await sql.fetch(
        "INSERT INTO dossier_notification (dossier_id, kind, status, outbound_sms_id, skipped, created_at)"
        " VALUES (?,?,?,?,?,?)", (dossier_id, kind, 9, rows[0][0], "", now))


async def test_dossier_page_shows_data_history_and_every_sms(desk, clock):
    await desk.sign_in("mai", now=clock.now)
    dossier_id, code = (await desk.sql.fetch(
        "SELECT id, code FROM dossier WHERE applicant_phone=? AND agency_id=(SELECT id FROM agency WHERE code=?)"
        " ORDER BY id LIMIT 1", (DEMO_PHONE, A)))[0]
    now = clock.now
    await _outbound(desk.sql, dossier_id, "pickup", "delivered", now, sent=True, delivered=True)
    await _outbound(desk.sql, dossier_id, "reminder", "failed", now, error="absent subscriber")
    await _outbound(desk.sql, dossier_id, "status", "queued", now)
    await desk.sql.fetch(
        "INSERT INTO dossier_notification (dossier_id, kind, status, outbound_sms_id, skipped, created_at)"
        " VALUES (?,?,?,?,?,?)", (dossier_id, "status", 4, None, "recipient opted out", now))
    await desk.sql.fetch(
        "INSERT INTO dossier_notification (dossier_id, kind, status, outbound_sms_id, skipped, created_at)"
        " VALUES (?,?,?,?,?,?)", (dossier_id, "pickup", 9, 987654, "", now))  # its outbox row was purged
    await desk.sql.fetch(
        "INSERT INTO dossier_status_change (dossier_id, old_status, new_status, note, changed_at, source)"
        " VALUES (?,?,?,?,?,?)", (dossier_id, 4, 9, "ket qua san sang", now, "sync"))
    page = await desk.client.get(f"/console/dossiers/{code}")
    body = await page.text()
    assert page.status == 200
    assert code in body and "0987***228" in body
    for clear in ("0987542228", "+84987542228", "987542228"):
        assert clear not in body
    for state in ("state_delivered", "state_failed", "state_queued", "state_skipped", "state_purged"):
        assert VI[state] in body, state
    assert "absent subscriber" in body and "recipient opted out" in body
    assert "ket qua san sang" in body and "Đang xử lý → Đã xử lý xong" in body
    english = await desk.post("/console/lang", {"lang": "en", "next": f"/console/dossiers/{code}"})
    assert english.headers["Location"] == f"/console/dossiers/{code}"
    body = await (await desk.client.get(f"/console/dossiers/{code}")).text()
    assert EN["state_delivered"] in body and EN["sms_title"] in body and 'lang="en"' in body


async def test_audit_page_admin_sees_all_clerk_sees_own(desk, clock):
    await desk.add_clerk("other", now=clock.now)
    await desk.login("other", "wrong-password!")
    await desk.sign_in("mai", now=clock.now)
    body = await (await desk.client.get("/console/audit")).text()
    assert "password_changed" in body and ">mai<" in body and ">other<" not in body
    await desk.post("/console/logout")
    await desk.sign_in("boss", role="admin", agencies=(), now=clock.now)
    body = await (await desk.client.get("/console/audit")).text()
    assert ">other<" in body and ">mai<" in body and "clerk_created" in body and "logout" in body


# -- login, password, sessions ----------------------------------------------------------------


async def test_first_login_forces_a_password_change(desk, clock):
    one_time = await desk.add_clerk("mai", now=clock.now)
    response = await desk.login("mai", one_time)
    assert response.status == 303 and response.headers["Location"] == "/console/password"
    for path in ("/console/", "/console/audit", f"/console/dossiers/{(await _codes(desk.sql, A))[0]}"):
        forced = await desk.client.get(path, allow_redirects=False)
        assert forced.status == 303 and forced.headers["Location"] == "/console/password", path
    page = await desk.client.get("/console/password")
    assert VI["password_forced"] in await page.text()
    csrf = await desk.csrf("/console/password")
    mismatch = await desk.post("/console/password", {"current": one_time, "new": NEW_PASSWORD, "repeat": "other"},
                               csrf=csrf)
    assert VI["password_mismatch"] in await mismatch.text()
    short = await desk.post("/console/password", {"current": one_time, "new": "short", "repeat": "short"}, csrf=csrf)
    assert VI["password_too_short"] in await short.text()
    done = await desk.post("/console/password", {"current": one_time, "new": NEW_PASSWORD, "repeat": NEW_PASSWORD},
                           csrf=csrf)
    assert done.status == 303 and done.headers["Location"] == "/console/"
    home = await desk.client.get("/console/")
    assert home.status == 200 and VI["password_changed"] in await home.text()


async def test_ten_wrong_passwords_lock_the_console_login(desk, clock):
    await desk.add_clerk("mai", now=clock.now)
    for _ in range(9):
        assert VI["login_wrong"] in await (await desk.login("mai", "not-the-password")).text()
    locked = await (await desk.login("mai", "not-the-password")).text()
    assert VI["login_locked"].split("{")[0] in locked


async def test_csrf_refused_without_or_with_a_wrong_token(desk, clock):
    one_time = await desk.add_clerk("mai", now=clock.now)
    await desk.csrf()
    for token in (None, "", "wrong-token"):
        refused = await desk.post("/console/login", {"login": "mai", "password": one_time}, csrf=token)
        assert refused.status == 403 and refused.content_type == "text/html"
        assert VI["error_403"] in await refused.text()
    assert not await desk.sql.fetch("SELECT 1 FROM clerk_session")
    # A form posted from another site is refused even with a token.
    token = await desk.csrf()
    cross = await desk.post("/console/login", {"login": "mai", "password": one_time}, csrf=token,
                            headers={"Origin": "https://evil.example"})
    assert cross.status == 403
    # Logged in: logout and the language switch need the token too.
    desk.client.session.cookie_jar.clear()
    await desk.sign_in("lan", now=clock.now)
    for path in ("/console/logout", "/console/lang"):
        assert (await desk.post(path, {"lang": "en"}, csrf=None)).status == 403
    assert (await desk.client.get("/console/", allow_redirects=False)).status == 200  # still logged in
    # A token of another browser's session is refused.
    async with aiohttp.ClientSession() as other_browser:
        async with other_browser.get(desk.client.make_url("/console/login")) as page:
            foreign = _CSRF_RE.search(await page.text()).group(1)
    assert (await desk.post("/console/logout", csrf=foreign)).status == 403


async def test_login_starts_a_new_session_id(desk, clock):
    """Session fixation: what the cookie held before login never becomes a logged-in session,
    and a second login replaces (ends) the session of the first."""
    await desk.sign_in("mai", now=clock.now)
    await desk.post("/console/logout")
    before = await desk.client.get("/console/login")
    assert before.status == 200
    anonymous_cookie = desk.cookie()
    await desk.login("mai", NEW_PASSWORD)
    first_cookie = desk.cookie()
    assert first_cookie != anonymous_cookie
    assert (await desk.with_cookie("/console/", anonymous_cookie)).status == 303
    assert (await desk.with_cookie("/console/", first_cookie)).status == 200
    [(first_hash,)] = await desk.sql.fetch("SELECT sid_hash FROM clerk_session WHERE ended=?", (False,))
    await desk.login("mai", NEW_PASSWORD)  # again, from the same browser
    second_cookie = desk.cookie()
    [(second_hash,)] = await desk.sql.fetch("SELECT sid_hash FROM clerk_session WHERE ended=?", (False,))
    assert second_hash != first_hash
    replay = await desk.with_cookie("/console/", first_cookie)
    assert replay.status == 303 and replay.headers["Location"].startswith("/console/login")
    assert (await desk.with_cookie("/console/", second_cookie)).status == 200


async def test_idle_sessions_expire(desk, clock):
    await desk.sign_in("mai", now=clock.now)
    clock.advance(29 * 60)
    assert (await desk.client.get("/console/", allow_redirects=False)).status == 200
    clock.advance(29 * 60)
    assert (await desk.client.get("/console/", allow_redirects=False)).status == 200  # each request keeps it alive
    clock.advance(30 * 60 + 1)
    expired = await desk.client.get("/console/", allow_redirects=False)
    assert expired.status == 303 and expired.headers["Location"].startswith("/console/login")
    assert await desk.sql.fetch("SELECT 1 FROM clerk_session WHERE ended=?", (False,)) == []


async def test_logout_ends_the_session_on_the_server(desk, clock):
    await desk.sign_in("mai", now=clock.now)
    cookie = desk.cookie()
    response = await desk.post("/console/logout")
    assert response.status == 303 and response.headers["Location"] == "/console/login"
    assert await desk.sql.fetch("SELECT 1 FROM clerk_session WHERE ended=?", (False,)) == []
    replay = await desk.with_cookie("/console/", cookie)  # the cookie a thief copied before logout
    assert replay.status == 303 and replay.headers["Location"].startswith("/console/login")
    assert await desk.sql.fetch("SELECT target FROM audit_log WHERE action='logout'") == [("mai",)]


async def test_a_disabled_clerks_session_ends(desk, clock):
    await desk.sign_in("mai", now=clock.now)
    async with desk.sql.transaction() as tx:
        await desk.services.clerks.set_active(tx, "mai", False, CLI, clock.now)
    assert (await desk.client.get("/console/", allow_redirects=False)).status == 303


# -- what every answer carries ----------------------------------------------------------------


async def test_security_headers_and_html_errors_on_console_only(desk, clock):
    await desk.sign_in("mai", now=clock.now)
    code = (await _codes(desk.sql, A))[0]
    for path in ("/console/login", "/console/", f"/console/dossiers/{code}", "/console/audit", "/console/nope",
                 "/console/static/console.css", "/console/dossiers/000.99.99.H99-260101-0001"):
        response = await desk.client.get(path, allow_redirects=False)
        csp = response.headers.get("Content-Security-Policy", "")
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, path
        assert "unsafe-inline" not in csp and "script-src 'self'" in csp
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] in ("same-origin", "no-referrer", "strict-origin")
        if response.content_type == "text/html":
            body = await response.text()
            assert response.headers["Cache-Control"] == "no-store"
            assert '<meta name="viewport"' in body
            assert "<script" not in body and "style=" not in body
            assert not re.search(r'(?:src|href|action)="(?:https?:)?//', body), path  # nothing from outside
    missing = await desk.client.get("/console/nope")
    assert missing.status == 404 and missing.content_type == "text/html" and VI["error_404"] in await missing.text()
    # The other sub-applications keep their JSON errors.
    api = await desk.client.get("/api/v1/nope")
    assert api.status == 404 and api.content_type == "application/json"
    sms = await desk.client.get("/sms/nope/inbound")
    assert sms.status == 404 and sms.content_type == "application/json"


async def test_cookie_flags(aiohttp_client, settings, clock):
    """Default settings: the session cookie is Secure, HttpOnly, SameSite=Strict, scoped to /console."""
    client = await aiohttp_client(create_app(settings, clock=clock))
    response = await client.get("/console/login")
    cookie = response.cookies[COOKIE_NAME]
    assert cookie["httponly"] and cookie["secure"]
    assert cookie["samesite"] == "Strict" and cookie["path"] == "/console"
    assert "Set-Cookie" not in (await client.get("/console/static/console.css")).headers


def test_every_text_a_template_uses_exists():
    from pathlib import Path

    import gateway.console as console

    from models.clerks import ROLES
    from models.desk_actions import Verdict
    from models.entities import FilingMode, SmsKind, SmsStatus
    from models.sms_text import Encoding

    used, families = set(), set()
    for template in Path(console.TEMPLATES_DIR).glob("*.html"):
        text = template.read_text()
        used |= set(re.findall(r"t\('([a-z0-9_]+)'[,)]", text))
        families |= set(re.findall(r"t\('([a-z0-9_]+_)' ~", text))
    assert used and not used - set(VI), sorted(used - set(VI))
    # Keys made from a value: every value has its words.
    assert families == {"kind_", "mode_", "role_", "state_", "verdict_", "encoding_"}
    made = ({f"kind_{k.value}" for k in SmsKind} | {f"mode_{m.value}" for m in FilingMode}
            | {f"role_{r}" for r in ROLES} | {f"state_{s.value}" for s in SmsStatus} | {"state_skipped", "state_purged"}
            | {f"verdict_{v.value}" for v in Verdict} | {f"encoding_{e.value}" for e in Encoding})
    assert not made - set(VI), sorted(made - set(VI))
    assert set(VI) == set(EN)


async def test_english_on_request_vietnamese_by_default(desk):
    assert 'lang="vi"' in await (await desk.client.get("/console/login")).text()
    switched = await desk.post("/console/lang", {"lang": "en", "next": "/console/login"})
    assert switched.status == 303 and switched.headers["Location"] == "/console/login"
    body = await (await desk.client.get("/console/login")).text()
    assert 'lang="en"' in body and EN["login_title"] in body


async def test_no_citizen_phone_in_any_console_log_line(desk, clock, log_stream):
    await desk.sign_in("mai", now=clock.now)
    code = (await desk.sql.fetch("SELECT code FROM dossier WHERE applicant_phone=? ORDER BY id", (DEMO_PHONE,)))[0][0]
    await desk.client.get("/console/", params={"q": "".join(code.split("-")[1:])})
    await desk.client.get(f"/console/dossiers/{code}")
    await desk.client.get("/console/", params={"q": "0987542228"})  # a phone typed into the search
    await desk.post("/console/logout")
    await desk.login("0987542228", "0987542228-x")  # a phone typed as the login
    await desk.login("mai", "+84987542228")
    await desk.post("/console/login", {"login": "0987542228"}, csrf="bad")  # refused: logged as a warning
    lines = log_stream.getvalue().splitlines()
    assert any('"console_login"' in line for line in lines) and any('"console_refused"' in line for line in lines)
    for line in lines:
        for clear in ("0987542228", "987542228", "+84987542228"):
            assert clear not in line, line
    audit_text = " ".join(" ".join(map(str, row)) for row in await desk.sql.fetch("SELECT * FROM audit_log"))
    assert "987542228" not in audit_text
