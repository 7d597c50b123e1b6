"""Database setup: the Tortoise config for a URL, opening it for the app, and migrations.

Schema changes go through Tortoise's own migrations (``models/migrations``), which are
written as dialect-neutral operations, so the same files run on SQLite and PostgreSQL.
Make a new one after changing a model with ``make migrations``.
"""

from __future__ import annotations

import os
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator

from tortoise import Tortoise
from tortoise.context import TortoiseContext
from tortoise.migrations.api import migrate as migrate_api

APP_LABEL = "models"


def tortoise_config(url: str) -> dict:
    """The Tortoise config for one database URL (sqlite://path or postgres://...)."""
    connection: str | dict = url
    if url.startswith("sqlite://"):
        path, _, query = url.removeprefix("sqlite://").partition("?")
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # WAL with synchronous=NORMAL: a commit survives a crash of the process (not of the
        # machine's power) without an fsync per commit, which would cap a worker at a few
        # hundred writes a second. A URL that sets its own pragmas keeps them.
        if "synchronous" not in query:
            url = f"{url}{'&' if query else '?'}synchronous=NORMAL"
        connection = url
    return {
        "connections": {"default": connection},
        "apps": {
            APP_LABEL: {
                "models": ["models.entities"],
                "migrations": "models.migrations",
                "default_connection": "default",
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


async def migrate(url: str) -> None:
    """Apply every pending migration to the database at ``url``."""
    config = tortoise_config(url)
    async with TortoiseContext() as ctx:
        await ctx.init(config=config)
        await migrate_api(config=config)


@asynccontextmanager
async def open_database(url: str, *, run_migrations: bool = False) -> AsyncIterator[None]:
    """Connect the ORM for the life of the block (the app's cleanup context uses this)."""
    if run_migrations:
        await migrate(url)
    ctx = await Tortoise.init(config=tortoise_config(url), _enable_global_fallback=True)
    try:
        yield
    finally:
        await ctx.close_connections()


# For the `tortoise` CLI (makemigrations): python -m tortoise -c models.db.TORTOISE_ORM ...
TORTOISE_ORM = tortoise_config(os.environ.get("GATEWAY_DATABASE_URL", "sqlite://var/makemigrations.sqlite3"))
