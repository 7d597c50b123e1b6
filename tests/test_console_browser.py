"""The console end to end in a real browser: Debian's headless Chromium driven by Selenium
through Debian's chromium-driver (nothing downloaded at run time), against the real gateway
(``python -m gateway run``) on loopback, with the demo commune and a clerk added by the CLI.

The journey, at a phone's screen size: log in with the one-time password, the forced
password change, find a dossier by its code and by its keypad tail, the dossier page,
mark it ready with the pickup SMS previewed, then confirmed and sent by the gateway's own
dispatcher (console transport) as today's alerts page shows, a bulk alert with a result
per code, the postal requests waiting, another agency's dossier refused (404), a form
whose CSRF token was removed refused (403), the English switch, logout. Each page is saved as a screenshot under the test's tmp_path,
and the browser's console must show no error (other than the refused pages' own status).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

import datetime as dt

from models.db import open_database
from models.fastsql import orm_runner
from models.seed import NEIGHBOUR, PHUONG_KY
from tests.servers import ROOT, GatewayProcess, log_tail, write_settings

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
NEW_PASSWORD = "browser-desk-2026"
PHONE_SIZE = (412, 915)


def _require_browser() -> None:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: install Debian's chromium and chromium-driver "
                    "(bash .ci/system-deps.sh, which make test runs, does it as root)", pytrace=False)


def _cli(settings: Path, env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "gateway", "--settings", str(settings), *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
async def gateway(tmp_path, database_url):
    _require_browser()
    env = {"GATEWAY_SECRET_KEY": "browser-test-secret", "GATEWAY_DATABASE_URL": database_url}
    # Default console settings: the cookie is Secure (Chromium treats http://127.0.0.1 as secure).
    # No quiet hours and no debounce: the pickup alert goes as soon as the clerk confirms.
    settings = write_settings(tmp_path / "settings.toml", {
        "logging": {"format": "json"}, "sms": {"quiet_start": "00:00", "quiet_end": "00:00"},
        "notifications": {"debounce_seconds": 0}})
    process = GatewayProcess(settings, tmp_path / "gateway.log", env)
    cli_env = process._env
    _cli(settings, cli_env, "seed")
    added = _cli(settings, cli_env, "add-clerk", "--agency", PHUONG_KY["code"], "--name", "Nguyen Thi Mai",
                 "--phone", "0912345678", "--login", "mai")
    one_time = added.strip().splitlines()[-1]
    assert re.fullmatch(r"[a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4}", one_time), added
    async with open_database(database_url):
        sql = orm_runner()
        theirs, tail = (await sql.fetch(
            "SELECT d.code, d.tail FROM dossier d JOIN agency a ON a.id=d.agency_id WHERE a.code=?",
            (NEIGHBOUR["code"],)))[0]
        # The demo's dossier of ours with the neighbour's tail: the tail must resolve to ours.
        ours = (await sql.fetch(
            "SELECT d.code, d.tail, d.applicant_phone FROM dossier d JOIN agency a ON a.id=d.agency_id"
            " WHERE a.code=? AND d.tail=?", (PHUONG_KY["code"], tail)))
        assert len(ours) == 1, ours
        # Another of ours for the bulk alert, and postal requests waiting: one ours, one theirs.
        of_ours = ("SELECT d.id, d.code FROM dossier d JOIN agency a ON a.id=d.agency_id WHERE a.code=? AND d.status=?"
                   " ORDER BY d.id LIMIT 1")
        _, bulk_code = (await sql.fetch(of_ours, (PHUONG_KY["code"], 4)))[0]
        postal_id, postal_code = (await sql.fetch(of_ours, (PHUONG_KY["code"], 9)))[0]
        theirs_id = (await sql.fetch("SELECT id FROM dossier WHERE code=?", (theirs,)))[0][0]
        now = dt.datetime.now(dt.timezone.utc)
        for dossier_id in (postal_id, theirs_id):
            await sql.fetch("INSERT INTO postal_request (dossier_id, channel, status, requested_at) VALUES (?,?,?,?)",
                            (dossier_id, "sms", "waiting", now))
    await process.start()
    try:
        yield {"url": process.base_url, "password": one_time, "ours": ours[0], "theirs": theirs,
               "log": tmp_path / "gateway.log", "bulk": bulk_code, "postal": postal_code}
    finally:
        process.stop()


def _driver(log_dir: Path):
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never fetch a browser or driver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--no-first-run", "--disable-extensions", "--disable-background-networking",
                     f"--window-size={PHONE_SIZE[0]},{PHONE_SIZE[1]}", f"--user-data-dir={log_dir / 'profile'}"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=CHROMEDRIVER, log_output=str(log_dir / "chromedriver.log"))
    return webdriver.Chrome(service=service, options=options)


class Journey:
    def __init__(self, driver, base_url: str, shots: Path) -> None:
        self.driver = driver
        self.base = base_url
        self.shots = shots
        self.count = 0

    def open(self, path: str) -> None:
        self.driver.get(self.base + path)

    def find(self, css: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def has(self, css: str) -> bool:
        from selenium.webdriver.common.by import By

        return bool(self.driver.find_elements(By.CSS_SELECTOR, css))

    def path(self) -> str:
        return self.driver.current_url.removeprefix(self.base)

    def body(self) -> str:
        return self.find("body").text

    def page(self, name: str, *, refused_status: int | None = None) -> None:
        """Screenshot the page, and check the console: no error, but the refused page's own status."""
        self.count += 1
        shot = self.shots / f"{self.count:02d}-{name}.png"
        assert self.driver.save_screenshot(str(shot)) and shot.stat().st_size > 1000, shot
        errors = []
        for entry in self.driver.get_log("browser"):
            if entry["level"] not in ("SEVERE", "ERROR"):
                continue
            expected = refused_status is not None and f"status of {refused_status}" in entry["message"]
            if not expected:
                errors.append(entry["message"])
        assert not errors, f"browser console errors on {name}: {errors}"
        # Usable on a phone: nothing wider than the screen (tables scroll inside their box).
        overflow = self.driver.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 1, f"{name} is {overflow}px wider than the phone's screen"

    def submit(self, form_css: str, **fields: str) -> None:
        for name, value in fields.items():
            element = self.find(f"{form_css} [name='{name}']")
            element.clear()
            element.send_keys(value)
        self.click(f"{form_css} button[type='submit']")

    def click(self, css: str) -> None:
        """Click what submits a form, and wait for the page it leads to (every POST answers with one)."""
        from selenium.webdriver.support import expected_conditions
        from selenium.webdriver.support.ui import WebDriverWait

        old_page = self.find("html")
        self.find(css).click()
        wait = WebDriverWait(self.driver, 20)
        wait.until(expected_conditions.staleness_of(old_page))
        wait.until(lambda driver: driver.execute_script("return document.readyState") == "complete")


def _journey(base_url: str, one_time: str, ours: tuple[str, str, str], theirs: str, shots: Path,
             bulk_code: str, postal_code: str) -> None:
    driver = _driver(shots)
    try:
        browser = Journey(driver, base_url, shots)
        code, tail, phone = ours
        national = "0" + phone.removeprefix("+84")

        # Anonymous: the console sends the browser to its login page.
        browser.open("/console/")
        assert browser.path().startswith("/console/login"), browser.path()
        assert "Đăng nhập" in browser.body()
        browser.page("login")

        browser.submit("#login-form", login="mai", password="not-the-password")
        assert browser.has("#login-error")
        browser.page("login-wrong-password")

        browser.submit("#login-form", login="mai", password=one_time)
        assert browser.path() == "/console/password", browser.path()
        assert browser.has("#password-forced")
        browser.page("forced-password-change")

        browser.submit("#password-form", current=one_time, new=NEW_PASSWORD, repeat=NEW_PASSWORD)
        assert browser.path() == "/console/", browser.path()
        assert browser.has("#search-form") and "mai" in browser.body()
        browser.page("home")

        # By the full code, typed the way people type it.
        browser.submit("#search-form", q=code.lower().replace("-", " - "))
        assert browser.path() == f"/console/dossiers/{code}", browser.path()
        assert browser.find("#dossier-code").text == code
        assert browser.find("#applicant-phone").text == national[:4] + "***" + national[-3:]
        assert national not in driver.page_source and phone not in driver.page_source
        assert browser.has("#history")
        browser.page("dossier-by-code")

        # By the keypad tail (the neighbour agency has a dossier with the same tail).
        browser.open("/console/")
        browser.submit("#search-form", q=tail)
        assert browser.path() == f"/console/dossiers/{code}", browser.path()
        browser.page("dossier-by-tail")

        # Mark it ready: the exact pickup SMS first, then confirmed and sent.
        assert not browser.has("#action-collected") and not browser.has("#action-resend")
        browser.click("#action-ready")
        assert browser.path() == f"/console/dossiers/{code}/ready", browser.path()
        preview, parts = browser.find("#preview-text").text, int(browser.find("#preview-parts").text)
        assert (code in preview or tail in preview) and parts >= 1
        assert national not in driver.page_source and phone not in driver.page_source
        browser.page("ready-preview")
        browser.click("#ready-confirm")
        assert browser.path() == f"/console/dossiers/{code}", browser.path()
        assert browser.has(".flash") and code in browser.find(".flash").text
        assert "9 ·" in browser.find("#dossier-status").text
        assert browser.has("#action-collected") and browser.has("#action-resend") and not browser.has("#action-ready")
        browser.page("ready-sent")

        # Today's alerts: the gateway's dispatcher sends it (console transport) within seconds.
        deadline = time.monotonic() + 20
        while True:
            browser.open("/console/alerts/today")
            if browser.has("#today tr.sms-sent"):
                break
            assert time.monotonic() < deadline, browser.body()
            time.sleep(0.5)
        row = browser.find("#today tr.sms-sent")
        assert code in row.text and "Đã gửi" in row.text and str(parts) in row.text
        assert national not in driver.page_source
        browser.page("today-sent")
        browser.open(f"/console/dossiers/{code}")
        assert browser.has("#messages tr.sms-sent")

        # A bulk alert: a result per code, another agency's left alone.
        browser.click("#nav-bulk")
        assert browser.path() == "/console/alerts/bulk", browser.path()
        browser.submit("#bulk-form", codes=f"{bulk_code}\n{theirs}, 000.99.99.H99-260101-0001")
        results = [(tr.get_attribute("class"), tr.find_element("css selector", "td").text)
                   for tr in driver.find_elements("css selector", "#bulk-results tbody tr")]
        assert results == [("verdict-sent", bulk_code), ("verdict-other_agency", theirs),
                           ("verdict-unknown", "000.99.99.H99-260101-0001")], results
        browser.page("bulk-results")

        # The postal requests waiting: ours only.
        browser.click("#nav-postal")
        assert browser.path() == "/console/postal", browser.path()
        assert browser.has("#postal") and postal_code in browser.find("#postal").text
        assert theirs not in driver.page_source
        browser.page("postal")

        # Another agency's dossier: not found, whether searched or opened by its URL.
        browser.open("/console/")
        browser.submit("#search-form", q=theirs)
        assert browser.has("#search-message") and not browser.has("#search-results")
        browser.page("search-other-agency")
        browser.open(f"/console/dossiers/{theirs}")
        assert "404" in browser.find("h1").text and theirs not in driver.page_source
        browser.page("other-agency-404", refused_status=404)

        # A form whose hidden CSRF token was removed is refused, and changes nothing.
        browser.open("/console/")
        driver.execute_script("document.querySelector('#logout-form input[name=csrf]').remove()")
        browser.click("#logout")
        assert "403" in browser.find("h1").text
        browser.page("csrf-refused", refused_status=403)
        browser.open("/console/")
        assert browser.path() == "/console/" and browser.has("#logout")  # still logged in

        # English, on request.
        browser.click("#lang-en")
        assert browser.find("html").get_attribute("lang") == "en" and "Find a dossier" in browser.body()
        browser.page("home-english")

        browser.click("#logout")
        assert browser.path() == "/console/login", browser.path()
        browser.page("logged-out")
        browser.open(f"/console/dossiers/{code}")
        assert browser.path().startswith("/console/login"), browser.path()
        browser.page("after-logout")

        # The dossier page on a desk PC's screen too.
        driver.set_window_size(1280, 900)
        browser.submit("#login-form", login="mai", password=NEW_PASSWORD)
        assert browser.path() == f"/console/dossiers/{code}", browser.path()  # back where it was asked
        browser.page("dossier-desktop")
    finally:
        driver.quit()


async def test_console_in_a_real_browser(gateway, tmp_path):
    shots = tmp_path / "screenshots"
    shots.mkdir()
    try:
        await asyncio.to_thread(_journey, gateway["url"], gateway["password"], gateway["ours"], gateway["theirs"],
                                shots, gateway["bulk"], gateway["postal"])
    except AssertionError:
        print(f"screenshots in {shots}; gateway log:\n{log_tail(gateway['log'])}")
        raise
    assert len(list(shots.glob("*.png"))) == 18
    # The gateway's log (JSON lines): the clerk's actions, and never a citizen's phone in clear.
    lines = [json.loads(line) for line in gateway["log"].read_text().splitlines() if line.startswith("{")]
    assert any(line.get("event") == "console_login" and line.get("outcome") == "ok" for line in lines)
    assert any(line.get("event") == "console_action" and line.get("result") == "sent" for line in lines)
    assert any(line.get("event") == "console_bulk_alert" for line in lines)
    text = gateway["log"].read_text()
    phone = gateway["ours"][2]
    for clear in (phone, phone.removeprefix("+84"), "0" + phone.removeprefix("+84")):
        assert clear not in text
