"""Migrations build the schema the models declare: every unique key and index is there.

Uniqueness carries the gateway's guarantees (a retried first hop, a duplicate SMS, one
lease holder), and a migration that rebuilds a SQLite table can silently drop it: an
``AlterField`` on SQLite once lost ``ussd_session``'s unique key. So the migrated schema
is compared with the one Tortoise generates straight from the models, on both databases.
"""

from __future__ import annotations

from tortoise import Tortoise
from tortoise.context import TortoiseContext

from models.db import migrate, tortoise_config
from tests.conftest import PG_URL, _fresh_postgres_schema

_SQLITE_INDEXES = """
SELECT m.name, il.name, il."unique", group_concat(ii.name, ',')
FROM sqlite_master m, pragma_index_list(m.name) il, pragma_index_info(il.name) ii
WHERE m.type = 'table' AND m.name NOT LIKE 'tortoise_%' AND m.name NOT LIKE 'sqlite_%'
GROUP BY m.name, il.name, il."unique"
"""
_PG_INDEXES = """
SELECT t.relname, i.relname, ix.indisunique,
       string_agg(a.attname, ',' ORDER BY array_position(ix.indkey, a.attnum))
FROM pg_index ix
JOIN pg_class t ON t.oid = ix.indrelid JOIN pg_class i ON i.oid = ix.indexrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = ANY(ix.indkey)
WHERE n.nspname = 'public' AND t.relname NOT LIKE 'tortoise_%'
GROUP BY t.relname, i.relname, ix.indisunique
"""


async def _indexes(url: str) -> set[tuple[str, bool, str]]:
    """(table, unique, columns) of every index, names aside (they differ by how made)."""
    async with TortoiseContext() as ctx:
        await ctx.init(config=tortoise_config(url))
        from tortoise import connections

        connection = connections.get("default")
        sql = _PG_INDEXES if url.startswith("postgres") else _SQLITE_INDEXES
        _, rows = await connection.execute_query(sql)
    return {(row[0], bool(row[2]), row[3]) for row in rows}


async def test_migrated_schema_has_every_unique_key_and_index_of_the_models(tmp_path):
    if PG_URL:
        await _fresh_postgres_schema(PG_URL)
        migrated_url = generated_url = PG_URL
    else:
        migrated_url = f"sqlite://{tmp_path}/migrated.sqlite3"
        generated_url = f"sqlite://{tmp_path}/generated.sqlite3"
    await migrate(migrated_url)
    migrated = await _indexes(migrated_url)

    if PG_URL:
        await _fresh_postgres_schema(PG_URL)
    await Tortoise.init(config=tortoise_config(generated_url), _enable_global_fallback=True)
    try:
        await Tortoise.generate_schemas()
    finally:
        await Tortoise.close_connections()
    generated = await _indexes(generated_url)

    assert ("ussd_session", True, "channel,external_id") in generated  # the query sees uniques
    missing = generated - migrated
    assert not missing, f"migrations lost: {sorted(missing)}"
