"""Shared fixtures: real settings, a real database (SQLite file, or PostgreSQL when
GATEWAY_TEST_DATABASE_URL names a server), the real app behind real HTTP, demo data."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from typing import Any, Callable

import pytest

from gateway.app import create_app
from gateway.settings import Settings, from_mapping
from models.seed import seed

PG_URL = os.environ.get("GATEWAY_TEST_DATABASE_URL", "")


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
