"""The console end to end in a real browser: Debian's headless Chromium driven by Selenium
through Debian's chromium-driver (nothing downloaded at run time), against the real gateway
(``python -m gateway run``) on loopback, with the demo commune and a clerk added by the CLI.

The journey, at a phone's screen size: log in with the one-time password, the forced
password change, find a dossier by its code and by its keypad tail, the dossier page,
another agency's dossier refused (404), a form whose CSRF token was removed refused (403),
the English switch, logout. Each page is saved as a screenshot under the test's tmp_path,
and the browser's console must show no error (other than the refused pages' own status).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

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
    settings = write_settings(tmp_path / "settings.toml", {"logging": {"format": "json"}})
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
    await process.start()
    try:
        yield {"url": process.base_url, "password": one_time, "ours": ours[0], "theirs": theirs,
               "log": tmp_path / "gateway.log"}
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


def _journey(base_url: str, one_time: str, ours: tuple[str, str, str], theirs: str, shots: Path) -> None:
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
                                shots)
    except AssertionError:
        print(f"screenshots in {shots}; gateway log:\n{log_tail(gateway['log'])}")
        raise
    assert len(list(shots.glob("*.png"))) == 13
    # The gateway's log (JSON lines): the clerk's actions, and never a citizen's phone in clear.
    lines = [json.loads(line) for line in gateway["log"].read_text().splitlines() if line.startswith("{")]
    assert any(line.get("event") == "console_login" and line.get("outcome") == "ok" for line in lines)
    text = gateway["log"].read_text()
    phone = gateway["ours"][2]
    for clear in (phone, phone.removeprefix("+84"), "0" + phone.removeprefix("+84")):
        assert clear not in text
