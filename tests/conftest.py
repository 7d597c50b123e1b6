"""Shared fixtures: real settings, a real database (SQLite file, or PostgreSQL when
GATEWAY_TEST_DATABASE_URL names a server), the real app behind real HTTP, demo data."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from typing import Callable

import pytest

from gateway.app import create_app
from gateway.settings import Settings, from_mapping
from models.seed import seed

PG_URL = os.environ.get("GATEWAY_TEST_DATABASE_URL", "")
# Which database the run must be on ("sqlite" or "postgres"): set by `make test-sqlite` and
# `make test-postgres`, so that a PostgreSQL run that lost its URL cannot pass as SQLite.
EXPECT_DATABASE = os.environ.get("GATEWAY_TEST_EXPECT_DATABASE", "").strip().lower()


def selected_database(url: str = PG_URL) -> str:
    """The database the fixtures below use for ``GATEWAY_TEST_DATABASE_URL`` = ``url``."""
    if not url:
        return "sqlite"
    scheme = url.partition("://")[0].lower()
    return "postgres" if scheme in ("postgres", "postgresql", "asyncpg", "psycopg") else scheme


def _url_without_credentials(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    return scheme + sep + rest.rpartition("@")[2] if sep else url


def _database_line() -> str:
    where = (f"{_url_without_credentials(PG_URL)} (GATEWAY_TEST_DATABASE_URL)" if PG_URL
             else "a file per test in its tmp_path (GATEWAY_TEST_DATABASE_URL unset)")
    expected = f", expected: {EXPECT_DATABASE}" if EXPECT_DATABASE else ""
    return f"database: {selected_database()} on {where}{expected}"


def pytest_report_header(config) -> list[str]:
    return [_database_line()]


def pytest_terminal_summary(terminalreporter) -> None:
    terminalreporter.write_line(_database_line())  # also under -q, which hides the header


def pytest_configure(config) -> None:
    if EXPECT_DATABASE and EXPECT_DATABASE != selected_database():
        hint = " (did the PostgreSQL server start? make test-postgres runs bash .ci/postgres.sh start)" \
            if EXPECT_DATABASE == "postgres" else ""
        raise pytest.UsageError(
            f"GATEWAY_TEST_EXPECT_DATABASE={EXPECT_DATABASE} but the suite would run on "
            f"{selected_database()} (GATEWAY_TEST_DATABASE_URL={_url_without_credentials(PG_URL) or 'unset'}){hint}"
        )


async def _fresh_postgres_schema(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1))
    try:
        await conn.execute("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public;")
    finally:
        await conn.close()


@pytest.fixture
async def database_url(tmp_path) -> str:
    if PG_URL:
        await _fresh_postgres_schema(PG_URL)
        return PG_URL
    return f"sqlite://{tmp_path}/gateway.sqlite3"


@pytest.fixture
def settings(database_url) -> Settings:
    return from_mapping(
        {"database": {"url": database_url}, "logging": {"format": "json"}},
        environ={"GATEWAY_SECRET_KEY": "test-secret"},
    )


class Clock:
    """A clock tests can move; starts at the real now so seeded dates make sense."""

    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.timezone.utc)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def make_client(aiohttp_client, clock):
    """Start the real app (migrations run at start) on a real socket, seeded with the demo."""

    async def make(settings: Settings, *, seeded: bool = True):
        client = await aiohttp_client(create_app(settings, clock=clock))
        if seeded:
            await seed(now=clock.now)
        return client

    return make


@pytest.fixture
async def client(make_client, settings):
    return await make_client(settings)


class Phone:
    """Dials through POST /ussd/at exactly as an aggregator does (cumulative text)."""

    def __init__(self, client, msisdn: str = "0987542228", code: str = "*384#") -> None:
        self.client = client
        self.msisdn = msisdn
        self.code = code
        self.session_id = ""
        self.inputs: list[str] = []

    async def post(self, text: str, session_id: str | None = None, code: str | None = None) -> tuple[str, str]:
        form = {
            "sessionId": session_id or self.session_id,
            "serviceCode": code or self.code,
            "phoneNumber": self.msisdn,
            "networkCode": "45204",
            "text": text,
        }
        response = await self.client.post("/ussd/at", data=form)
        assert response.status == 200, await response.text()
        assert response.content_type == "text/plain"
        body = await response.text()
        kind, _, screen = body.partition(" ")
        assert kind in ("CON", "END"), body
        return kind, screen

    async def dial(self, code: str | None = None) -> tuple[str, str]:
        self.session_id = "test-" + uuid.uuid4().hex
        self.inputs = []
        if code:
            self.code = code
        return await self.post("")

    async def press(self, *keys: str) -> tuple[str, str]:
        result: tuple[str, str] = ("", "")
        for key in keys:
            self.inputs.append(key)
            result = await self.post("*".join(self.inputs))
        return result


@pytest.fixture
def phone(client) -> Callable[..., Phone]:
    def make(msisdn: str = "0987542228", code: str = "*384#") -> Phone:
        return Phone(client, msisdn, code)

    return make


@pytest.fixture
def log_stream():
    """Every log line of the test, as the gateway writes them outside a terminal (JSON)."""
    import io

    from gateway import logs

    stream = io.StringIO()
    logs.configure("info", "json", stream=stream)
    try:
        yield stream
    finally:
        logs.configure("info", "json")
