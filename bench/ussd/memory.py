"""Bytes per live USSD session: ``python -m bench.ussd.memory [--sessions 100000] [--database-url postgres://...]``.

Seeds a scratch database (SQLite unless ``--database-url`` names a scratch PostgreSQL
database), builds the real app, and walks a few hundred real dialogues through
``UssdService`` to the middle of a journey (lookups, catalogue, registration), so their
rows hold what live sessions hold. It then writes ``--sessions`` live sessions through the
session store's own write path (``SessionStore.create``, a thousand to a transaction), each
a copy of one of those rows under its own session id and caller, and reports what they
cost: database bytes per session (SQLite: file growth after a checkpoint, and the table
and each index from ``dbstat``; PostgreSQL: ``pg_total_relation_size``, table and indexes)
and the gateway process's RSS growth per session. Results go to bench/results/ussd-memory.json.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


# Journeys stopped mid-way: the states a live session is in.
PARTIAL_JOURNEYS = [
    [""],
    ["", "1"],
    ["", "1", "1*{code}"],
    ["", "1", "1*{tail}"],
    ["", "4", "4*9"],
    ["", "4", "4*9*1"],
    ["", "5"],
    ["", "2", "2*1"],
    ["", "2", "2*1*030195001234"],
]


async def sizes_sqlite(sql) -> dict[str, int]:
    await sql.fetch("PRAGMA wal_checkpoint(TRUNCATE)")
    page_size = (await sql.fetch("PRAGMA page_size"))[0][0]
    pages = (await sql.fetch("PRAGMA page_count"))[0][0]
    parts = await sql.fetch(
        "SELECT name, SUM(pgsize) FROM dbstat WHERE name = 'ussd_session' OR name IN"
        " (SELECT name FROM sqlite_master WHERE tbl_name = 'ussd_session' AND type = 'index') GROUP BY name")
    return {"database": page_size * pages, **{f"part:{name}": size for name, size in parts}}


async def sizes_postgres(sql) -> dict[str, int]:
    total = (await sql.fetch("SELECT pg_total_relation_size('ussd_session')"))[0][0]
    table = (await sql.fetch("SELECT pg_relation_size('ussd_session')"))[0][0]
    parts = await sql.fetch(
        "SELECT indexrelname, pg_relation_size(indexrelid) FROM pg_stat_user_indexes WHERE relname = 'ussd_session'")
    return {"database": total, "part:ussd_session": table, **{f"part:{name}": size for name, size in parts}}


async def run(url: str, sessions: int, batch: int) -> dict:
    from bench.ussd.inproc import app_in_process
    from gateway.app import SQL, USSD
    from gateway.phones import phone_key
    from gateway.providers import ussd_adapter
    from gateway.settings import load

    settings = load()
    app, runner = await app_in_process("warning")
    try:
        service, sql = app[USSD], app[SQL]
        store = service._sessions
        postgres = sql.dialect == "postgres"
        await sql.fetch("DELETE FROM ussd_session")
        codes = [row[0] for row in await sql.fetch(
            "SELECT code FROM dossier WHERE code LIKE '000.32.22.H23-%' ORDER BY id LIMIT 20")]
        adapter = ussd_adapter("at")
        sample = 0
        for round_ in range(25):
            for journey in PARTIAL_JOURNEYS:
                code = codes[(sample * 7) % len(codes)]
                tail = code[-11:].replace("-", "")
                sample += 1
                for text in journey:
                    form = {"sessionId": f"sample-{sample}", "serviceCode": "*384#",
                            "phoneNumber": f"+84970{sample:06d}", "text": text.format(code=code, tail=tail)}
                    await service.handle(adapter.parse_ussd(form))
        templates = await sql.fetch(
            "SELECT state, last_request, last_reply, hops FROM ussd_session WHERE ended = ? ORDER BY id", (False,))
        templates = [(json.loads(s) if isinstance(s, str) else s, lr, reply) for s, lr, reply, _ in templates]
        screens: dict[str, int] = {}
        for state, _, _ in templates:
            screen = state["stack"][-1]["s"]
            screens[screen] = screens.get(screen, 0) + 1
        await sql.fetch("DELETE FROM ussd_session")
        measure = sizes_postgres if postgres else sizes_sqlite
        gc.collect()
        before, rss_before = await measure(sql), rss_bytes()
        secret = settings.security.secret_key
        now = dt.datetime.now(dt.timezone.utc)
        started = time.perf_counter()
        for start in range(0, sessions, batch):
            async with sql.transaction() as tx:
                for i in range(start, min(start + batch, sessions)):
                    state, last_request, last_reply = templates[i % len(templates)]
                    await store.create(tx, "at", f"ATUid_{i:08d}{i * 7919 % 100000:05d}", phone_key(f"+8498{i:07d}", secret),
                                       state, last_request, last_reply, False, now)
        elapsed = time.perf_counter() - started
        gc.collect()
        after, rss_after = await measure(sql), rss_bytes()
        live = (await sql.fetch("SELECT COUNT(*) FROM ussd_session WHERE ended = ?", (False,)))[0][0]
        state_chars = "LENGTH(CAST(state AS TEXT))" if postgres else "LENGTH(state)"
        lengths = (await sql.fetch(
            f"SELECT AVG({state_chars}) AS a1, AVG(LENGTH(last_request)) AS a2, AVG(LENGTH(last_reply)) AS a3,"
            " AVG(LENGTH(phone_key)) AS a4, AVG(LENGTH(external_id)) AS a5 FROM ussd_session"))[0]
    finally:
        await runner.cleanup()
    per = {key.removeprefix("part:"): round((after.get(key, 0) - before.get(key, 0)) / sessions, 1)
           for key in after if key.startswith("part:")}
    return {
        "database": "postgres" if postgres else "sqlite",
        "sessions": sessions,
        "live_sessions_counted": live,
        "template_rows": len(templates),
        "template_screens": screens,
        "write_seconds": round(elapsed, 2),
        "db_bytes_per_session": round((after["database"] - before["database"]) / sessions, 1),
        "db_bytes_per_session_by_part": per,
        "rss_bytes_per_session": round((rss_after - rss_before) / sessions, 1),
        "average_column_chars": dict(zip(("state", "last_request", "last_reply", "phone_key", "external_id"),
                                         [round(float(x), 1) for x in lengths])),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--database-url", help="a scratch PostgreSQL database (else a scratch SQLite file)")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = options.database_url or f"sqlite://{Path(tmp) / 'memory.sqlite3'}"
        settings = Path(tmp) / "settings.toml"
        settings.write_text('[logging]\nformat = "json"\n[sms]\nrun_dispatcher = false\n'
                            '[retention]\nrun_purger = false\n[notifications]\nrun_reminders = false\n')
        os.environ.update(GATEWAY_SETTINGS=str(settings), GATEWAY_SECRET_KEY="bench", GATEWAY_DATABASE_URL=url)
        subprocess.run([sys.executable, "-m", "gateway", "seed"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        result = asyncio.run(run(url, options.sessions, options.batch))
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    name = "ussd-memory-postgres.json" if result["database"] == "postgres" else "ussd-memory.json"
    (out_dir / name).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    print(f"{result['database']}: {result['db_bytes_per_session']} B of database and "
          f"{result['rss_bytes_per_session']} B of RSS per live session ({result['sessions']} sessions; target < 1024 B)")


if __name__ == "__main__":
    main()
