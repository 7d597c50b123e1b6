"""Which database server the running app really talks to.

A PostgreSQL run that lost its URL would otherwise pass as a second SQLite run. The real
app is started (``client``), and its live connections are asked which server they are on:
the ORM's (``tortoise.connections``) and the plain-SQL runner the USSD hop and the outbox
dispatcher use. The answer must be ``GATEWAY_TEST_EXPECT_DATABASE`` when that is set, and
the database the URL names in any case (same database name and port, or the same file).
"""

from __future__ import annotations

import os
import sqlite3
from urllib.parse import urlsplit

from tortoise import connections

from gateway.app import DIRECTORY
from models.entities import UssdSession
from tests.conftest import EXPECT_DATABASE, selected_database


async def ask_server(fetch) -> dict[str, str]:
    """What the server says it is: {"kind": "postgres"|"sqlite", ...}. ``fetch(sql)`` -> rows
    of tuples. Both questions are asked; exactly one kind of server answers its own."""
    answers: dict[str, tuple] = {}
    for kind, sql in (
        ("postgres", "SELECT version(), current_database(), inet_server_port()"),
        ("sqlite", "SELECT sqlite_version()"),
    ):
        try:
            rows = await fetch(sql)
        except Exception:  # noqa: BLE001 - the other kind of server refuses the function
            continue
        answers[kind] = tuple(rows[0])
    assert len(answers) == 1, f"both or neither server functions answered: {answers}"
    [(kind, row)] = answers.items()
    if kind == "postgres":
        version, database, port = row
        assert version.startswith("PostgreSQL "), version
        return {"kind": kind, "version": version, "database": database, "port": str(port)}
    return {"kind": kind, "version": row[0]}


async def test_the_running_app_is_on_the_database_this_run_names(client, settings):
    url = settings.database.url
    orm = connections.get("default")

    async def orm_fetch(sql: str) -> list[tuple]:
        return [tuple(row.values()) for row in await orm.execute_query_dict(sql)]

    runner = client.app[DIRECTORY]._sql  # the plain-SQL path of the hop and the dispatcher
    seen_by_orm = await ask_server(orm_fetch)
    seen_by_runner = await ask_server(runner.fetch)
    print(f"\nthe app is on {seen_by_orm}")

    assert seen_by_orm == seen_by_runner
    expected = EXPECT_DATABASE or selected_database()
    assert seen_by_orm["kind"] == expected, (
        f"GATEWAY_TEST_EXPECT_DATABASE={EXPECT_DATABASE or 'unset'}, "
        f"GATEWAY_TEST_DATABASE_URL={'set' if os.environ.get('GATEWAY_TEST_DATABASE_URL') else 'unset'}: "
        f"the app talks to {seen_by_orm}"
    )
    assert seen_by_orm["kind"] == selected_database(url if url.startswith("postgres") else "")

    if seen_by_orm["kind"] == "postgres":
        named = urlsplit(url)
        assert seen_by_orm["database"] == named.path.lstrip("/")
        assert seen_by_orm["port"] == str(named.port or 5432)
    else:
        [(_, _, file)] = [row for row in await runner.fetch("PRAGMA database_list") if row[1] == "main"]
        assert os.path.samefile(file, url.removeprefix("sqlite://").partition("?")[0])


async def test_a_hop_through_http_lands_in_the_database_the_url_names(client, settings, phone):
    """Not only the connection: what one USSD hop writes is in that very database, read back
    over a connection of the test's own (asyncpg to the URL, or sqlite3 on the file)."""
    caller = phone()
    kind, _screen = await caller.dial()
    assert kind == "CON"
    url = settings.database.url
    if selected_database(url if url.startswith("postgres") else "") == "postgres":
        import asyncpg

        conn = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1))
        try:
            rows = await conn.fetch("SELECT hops FROM ussd_session WHERE external_id = $1", caller.session_id)
        finally:
            await conn.close()
    else:
        db = sqlite3.connect(url.removeprefix("sqlite://").partition("?")[0])
        try:
            rows = db.execute("SELECT hops FROM ussd_session WHERE external_id = ?", (caller.session_id,)).fetchall()
        finally:
            db.close()
    assert len(rows) == 1, rows
    assert await UssdSession.filter(external_id=caller.session_id).count() == 1
