"""Run the dossier sync benchmark: ``python -m bench.sync [--dossiers 10000] [--batch 1000]``.

Everything on 127.0.0.1, SQLite in a temp dir (``--database postgres``: a PostgreSQL
server given by ``GATEWAY_TEST_DATABASE_URL``, see below):

1. the real gateway (``python -m gateway run``, the demo seed, logging as in production,
   the dispatcher, purger and reminder loops off so that only the sync path is measured)
   and an API client with scope ``sync`` bound to the demo agency 000.32.22.H23
   (``gateway add-api-client``);
2. the gateway, over real HTTP, one request at a time: ``--dossiers`` new dossiers through
   ``POST /api/v1/dossiers`` in batches of ``--batch``, then one status change per dossier
   through ``POST /api/v1/dossiers/events`` (even dossiers to 4, odd ones to 9, the pickup
   alert), each batch one transaction. Every dossier and every event must come back
   ``created`` / ``applied`` with an SMS, and the database must then hold exactly one
   ``outbound_sms`` and one ``dossier_notification`` row per dossier and per event more
   than before: a run that wrote nothing cannot report a rate;
3. the baseline, in the same run, on a copy of the same seeded database through the same
   driver (the stdlib sqlite3, WAL, synchronous=NORMAL; asyncpg on PostgreSQL), in
   transactions of ``--batch``: a bare insert of the dossier rows and one ``outbound_sms``
   row per dossier (``executemany``, parameters built before the clock starts), then for
   the events a status update and one ``outbound_sms`` row per event. Measured before and
   after the gateway; the better of the two is kept.

Reports dossiers/s and events/s, the SMS rows written, the bare rates and the ratio
gateway/bare for each phase. Writes bench/results/sync.json. The machine is noisy:
compare the ratios within one run.

``--database postgres`` needs a server URL in ``GATEWAY_TEST_DATABASE_URL`` (e.g. from
``.ci/postgres.sh start``): it creates two scratch databases beside the one named there
and drops them at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.servers import log_tail, write_settings  # noqa: E402

AGENCY = "000.32.22.H23"  # Phuong Ky, the demo seed's commune
PROCEDURE = "1.001193"  # Dang ky khai sinh
SECRET = "bench-secret"
FIRST_DAY = dt.date(2027, 1, 1)  # past the seed's dossiers: every code is new
PER_DAY = 1000  # codes per received date (the national format's sequence is 4 digits)
VN = dt.timezone(dt.timedelta(hours=7))
# A status SMS as the gateway writes it (one GSM-7 part): the bare baseline's text.
BARE_TEXT = ("UBND phuong Phuong Ky: ho so {code} (Dang ky khai sinh) da duoc tiep nhan, hen tra "
             "ket qua 04/01/2027. Tra cuu: *384#")
BARE_DOSSIER = (
    "INSERT INTO dossier (code, tail, agency_id, procedure_id, applicant_name, applicant_phone, applicant_id_hash,"
    " status, status_note, received_at, due_at, fee_due, pickup_place, mode, updated_at, state_at, reminders_sent)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,0)"
)
BARE_SMS = (
    "INSERT INTO outbound_sms (to_phone, text, encoding, parts, kind, urgent, status, attempts,"
    " next_attempt_at, expires_at, transport, last_error, created_at)"
    " VALUES (?,?,?,?,?,?,?,0,?,?,'','',?)"
)
# The pushed dossiers the bare events moved (their codes sort between the first and any later one).
MOVED = "SELECT count(*) FROM dossier WHERE status IN (4, 9) AND code >= ? AND code < ?"
BARE_STATUS = "UPDATE dossier SET status=?, status_note=?, state_at=?, updated_at=? WHERE code=?"


# --- what is pushed ---------------------------------------------------------------------


def code_of(n: int) -> str:
    day = FIRST_DAY + dt.timedelta(days=n // PER_DAY)
    return f"{AGENCY}-{day:%y%m%d}-{n % PER_DAY + 1:04d}"


def phone_of(n: int) -> str:
    return f"0912{n:06d}"  # a valid VN mobile, one per dossier


def dossier_item(n: int) -> dict:
    day = FIRST_DAY + dt.timedelta(days=n // PER_DAY)
    return {
        "code": code_of(n), "agency": AGENCY, "procedure": PROCEDURE, "applicant_name": f"Nguyen Van {n}",
        "applicant_phone": phone_of(n), "received_at": f"{day.isoformat()}T08:00:00+07:00",
        "due_at": (day + dt.timedelta(days=3)).isoformat(), "status": 2,
    }


def event_status(n: int) -> int:
    return 4 if n % 2 == 0 else 9  # processing, or the result ready (the longer pickup alert)


def event_item(n: int) -> dict:
    day = FIRST_DAY + dt.timedelta(days=n // PER_DAY + 1)
    return {"event_id": f"bench-{n}", "code": code_of(n), "status": event_status(n),
            "occurred_at": f"{day.isoformat()}T09:00:00+07:00"}


def batches(start: int, count: int, size: int) -> list[range]:
    return [range(i, min(i + size, start + count)) for i in range(start, start + count, size)]


# --- the gateway over HTTP ----------------------------------------------------------------


async def push(base_url: str, key: str, path: str, list_name: str, bodies: list[bytes], expected_outcome: str,
               gateway_pid: int) -> dict:
    """POST every body in turn; each item must come back ``expected_outcome`` with an SMS."""
    import aiohttp

    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    items = sms = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:
        cpu = cpu_seconds(gateway_pid)
        started = time.perf_counter()
        for body in bodies:
            async with http.post(f"{base_url}/api/v1{path}", data=body, headers=headers) as response:
                answer = await response.json()
                if response.status != 200:
                    raise SystemExit(f"{path}: {response.status} {json.dumps(answer)[:400]}")
            for result in answer["results"]:
                if result["outcome"] != expected_outcome:
                    raise SystemExit(f"{path}: expected {expected_outcome}, got {result}")
                if "sms" not in result:
                    raise SystemExit(f"{path}: no SMS for {result}")
                sms += 1
            items += len(answer["results"])
        seconds = time.perf_counter() - started
        cpu = cpu_seconds(gateway_pid) - cpu
    return {list_name: items, "sms_in_answers": sms, "seconds": round(seconds, 3),
            "per_s": round(items / seconds, 1), "gateway_cpu_percent": round(100 * cpu / seconds, 1),
            "cpu_us_per_item": round(1e6 * cpu / items, 1)}


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process (Linux /proc), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def body_of(list_name: str, items: list[dict]) -> bytes:
    return json.dumps({list_name: items}).encode()


# --- the databases ------------------------------------------------------------------------


class SqliteBackend:
    name = "sqlite"

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.gateway_db = tmp / "gateway.sqlite3"
        self.template = tmp / "seeded.sqlite3"
        self._copies = 0

    def gateway_url(self) -> str:
        return f"sqlite://{self.gateway_db}"

    def snapshot(self) -> None:
        """The seeded database, WAL folded in: what every bare run starts from."""
        with sqlite3.connect(self.gateway_db) as source, sqlite3.connect(self.template) as target:
            source.backup(target)
        source.close()
        target.close()

    def ids(self) -> tuple[int, int]:
        db = sqlite3.connect(f"file:{self.template}?mode=ro", uri=True)
        try:
            return agency_and_procedure(lambda sql, p: db.execute(sql, p).fetchall())
        finally:
            db.close()

    async def counts(self) -> dict[str, int]:
        db = sqlite3.connect(f"file:{self.gateway_db}?mode=ro", uri=True)
        try:
            return table_counts(lambda sql: db.execute(sql).fetchall())
        finally:
            db.close()

    async def bare(self, dossier_batches: list[list[tuple]], sms_batches: list[list[tuple]],
                   status_batches: list[list[tuple]], event_sms_batches: list[list[tuple]]) -> dict:
        self._copies += 1
        path = self.tmp / f"bare-{self._copies}.sqlite3"
        shutil.copyfile(self.template, path)
        db = sqlite3.connect(path, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        try:
            before = table_counts(lambda sql: db.execute(sql).fetchall())

            cpu: list[float] = []

            def phase(first: list[list[tuple]], first_sql: str, second: list[list[tuple]]) -> float:
                started, cpu_started = time.perf_counter(), time.process_time()
                for rows, sms in zip(first, second):
                    db.execute("BEGIN IMMEDIATE")
                    db.executemany(first_sql, rows)
                    db.executemany(BARE_SMS, sms)
                    db.execute("COMMIT")
                cpu.append(time.process_time() - cpu_started)
                return time.perf_counter() - started

            dossier_seconds = phase(dossier_batches, BARE_DOSSIER, sms_batches)
            event_seconds = phase(status_batches, BARE_STATUS, event_sms_batches)
            after = table_counts(lambda sql: db.execute(sql).fetchall())
            moved = db.execute(MOVED, (code_of(0), code_of(10**6))).fetchone()[0]
        finally:
            db.close()
        return bare_result(dossier_batches, status_batches, dossier_seconds, event_seconds, before, after, moved, cpu)

    def bare_values(self, values: list) -> list:
        from models.fastsql import sqlite_timestamp

        return [sqlite_timestamp(v) if isinstance(v, dt.datetime) else v for v in values]

    def cleanup(self) -> None:
        return None


class PostgresBackend:
    """Two scratch databases on the server of ``GATEWAY_TEST_DATABASE_URL``: the gateway's,
    and a template for the bare runs (seeded by the gateway's own seed command)."""

    name = "postgres"

    def __init__(self, tmp: Path, url: str) -> None:
        self.tmp = tmp
        self.server_url = url
        stamp = f"{os.getpid()}_{int(time.time())}"
        self.gateway_name = f"bench_sync_{stamp}"
        self.template_name = f"bench_sync_tpl_{stamp}"
        self._made: list[str] = []
        self._copies = 0

    def _with_database(self, database: str) -> str:
        scheme, rest = self.server_url.split("://", 1)
        authority, _, tail = rest.partition("/")
        query = tail.partition("?")[2]
        return f"{scheme}://{authority}/{database}" + (f"?{query}" if query else "")

    def gateway_url(self) -> str:
        return self._with_database(self.gateway_name)

    async def _admin(self, *statements: str) -> None:
        import asyncpg

        conn = await asyncpg.connect(self.server_url.replace("postgres://", "postgresql://", 1))
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    def prepare(self) -> None:
        asyncio.run(self._admin(f'CREATE DATABASE "{self.gateway_name}"'))
        self._made.append(self.gateway_name)

    def snapshot(self) -> None:
        asyncio.run(self._admin(f'CREATE DATABASE "{self.template_name}" TEMPLATE "{self.gateway_name}"'))
        self._made.append(self.template_name)

    async def _connect(self, database: str):
        import asyncpg

        return await asyncpg.connect(self._with_database(database).replace("postgres://", "postgresql://", 1))

    def ids(self) -> tuple[int, int]:
        async def run() -> tuple[int, int]:
            conn = await self._connect(self.template_name)
            try:
                agency = await conn.fetchval("SELECT id FROM agency WHERE code = $1", AGENCY)
                procedure = await conn.fetchval('SELECT id FROM "procedure" WHERE agency_id = $1 AND code = $2',
                                                agency, PROCEDURE)
                return agency, procedure
            finally:
                await conn.close()

        return asyncio.run(run())

    async def counts(self) -> dict[str, int]:
        conn = await self._connect(self.gateway_name)
        try:
            return {table: await conn.fetchval(f"SELECT count(*) FROM {table}")
                    for table in ("dossier", "outbound_sms", "dossier_notification")}
        finally:
            await conn.close()

    async def bare(self, dossier_batches, sms_batches, status_batches, event_sms_batches) -> dict:
        self._copies += 1
        name = f"{self.template_name}_b{self._copies}"
        await self._admin(f'CREATE DATABASE "{name}" TEMPLATE "{self.template_name}"')
        self._made.append(name)
        conn = await self._connect(name)
        number = lambda sql: _numbered(sql)  # noqa: E731

        async def counts() -> dict[str, int]:
            return {t: await conn.fetchval(f"SELECT count(*) FROM {t}")
                    for t in ("dossier", "outbound_sms", "dossier_notification")}

        try:
            before = await counts()

            async def phase(first, first_sql, second) -> float:
                started = time.perf_counter()
                for rows, sms in zip(first, second):
                    async with conn.transaction():
                        await conn.executemany(number(first_sql), rows)
                        await conn.executemany(number(BARE_SMS), sms)
                return time.perf_counter() - started

            dossier_seconds = await phase(dossier_batches, BARE_DOSSIER, sms_batches)
            event_seconds = await phase(status_batches, BARE_STATUS, event_sms_batches)
            after = await counts()
            moved = await conn.fetchval(_numbered(MOVED), code_of(0), code_of(10**6))
        finally:
            await conn.close()
        return bare_result(dossier_batches, status_batches, dossier_seconds, event_seconds, before, after, moved)

    def bare_values(self, values: list) -> list:
        return values

    def cleanup(self) -> None:
        if self._made:
            asyncio.run(self._admin(*(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)' for name in reversed(self._made))))


def _numbered(sql: str) -> str:
    counter = iter(range(1, 10_000))
    return re.sub(r"\?", lambda _: f"${next(counter)}", sql)


def agency_and_procedure(query) -> tuple[int, int]:
    agency = query("SELECT id FROM agency WHERE code = ?", (AGENCY,))[0][0]
    procedure = query('SELECT id FROM "procedure" WHERE agency_id = ? AND code = ?', (agency, PROCEDURE))[0][0]
    return agency, procedure


def table_counts(query) -> dict[str, int]:
    return {table: query(f"SELECT count(*) FROM {table}")[0][0]
            for table in ("dossier", "outbound_sms", "dossier_notification")}


def bare_result(dossier_batches, status_batches, dossier_seconds, event_seconds, before, after, moved,
                cpu: list[float] | None = None) -> dict:
    dossiers = sum(len(b) for b in dossier_batches)
    events = sum(len(b) for b in status_batches)
    if after["dossier"] - before["dossier"] != dossiers or after["outbound_sms"] - before["outbound_sms"] != dossiers + events \
            or moved != events:
        raise SystemExit(f"the bare insert wrote the wrong rows: {before} -> {after}, {moved} moved")
    result = {
        "dossiers": {"rows": dossiers, "seconds": round(dossier_seconds, 3), "per_s": round(dossiers / dossier_seconds, 1)},
        "events": {"rows": events, "seconds": round(event_seconds, 3), "per_s": round(events / event_seconds, 1)},
    }
    if cpu:  # this process's CPU time (the bare insert runs in it): steadier than wall time on a busy machine
        result["dossiers"]["cpu_us_per_item"] = round(1e6 * cpu[0] / dossiers, 1)
        result["events"]["cpu_us_per_item"] = round(1e6 * cpu[1] / events, 1)
    return result


def bare_rows(backend, agency_id: int, procedure_id: int, start: int, count: int, size: int) -> tuple[list, ...]:
    """The rows the gateway writes for the same items, as parameter lists per batch."""
    now = dt.datetime.now(dt.timezone.utc)
    expires = now + dt.timedelta(days=1)
    v = backend.bare_values
    dossier_batches, sms_batches, status_batches, event_sms_batches = [], [], [], []
    for numbers in batches(start, count, size):
        dossiers, sms, statuses, event_sms = [], [], [], []
        for n in numbers:
            item = dossier_item(n)
            code = item["code"]
            received = dt.datetime.fromisoformat(item["received_at"])
            due = dt.datetime.combine(dt.date.fromisoformat(item["due_at"]), dt.time(), VN)
            phone = "+84" + phone_of(n)[1:]
            dossiers.append(v([code, code[-11:].replace("-", ""), agency_id, procedure_id, item["applicant_name"], phone,
                               None, 2, "", received, due, 0, "", "mot_phan", now, received]))
            sms.append(v([phone, BARE_TEXT.format(code=code), "gsm7", 1, "status", False, "queued", now, expires, now]))
            occurred = dt.datetime.fromisoformat(event_item(n)["occurred_at"])
            statuses.append(v([event_status(n), "", occurred, now, code]))
            event_sms.append(v([phone, BARE_TEXT.format(code=code), "gsm7", 1, "status", False, "queued", now, expires,
                                now]))
        dossier_batches.append(dossiers)
        sms_batches.append(sms)
        status_batches.append(statuses)
        event_sms_batches.append(event_sms)
    return dossier_batches, sms_batches, status_batches, event_sms_batches


# --- main ---------------------------------------------------------------------------------


def gateway_settings(backend, tmp: Path) -> Path:
    return write_settings(tmp / "settings.toml", {
        "database": {"url": backend.gateway_url(), "migrate_on_start": True},
        "logging": {"format": "json", "level": "info"},
        # Only the sync path: the outbox, purge and reminder loops have benchmarks (or none) of their own.
        "sms": {"run_dispatcher": False},
        "retention": {"run_purger": False},
        "notifications": {"run_reminders": False},
    })


def gateway_env() -> dict[str, str]:
    env = {**os.environ, "GATEWAY_SECRET_KEY": SECRET, "PYTHONUNBUFFERED": "1"}
    env.pop("GATEWAY_DATABASE_URL", None)
    return env


def setup(backend, settings: Path) -> str:
    """The demo seed and the API client; returns its key."""

    def cli(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "gateway", "--settings", str(settings), *args], cwd=ROOT,
                              env=gateway_env(), capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"gateway {args[0]}: {done.stderr[-2000:]}")
        return done.stdout

    cli("seed")
    key = cli("add-api-client", "--name", "bench-sync", "--scopes", "sync", "--agency", AGENCY).strip().splitlines()[-1]
    backend.snapshot()
    return key


async def start_gateway(settings: Path, log_path: Path, profile: Path | None) -> tuple[subprocess.Popen, str]:
    import aiohttp

    port = free_port()
    command = [sys.executable, *(["-m", "cProfile", "-o", str(profile)] if profile else []), "-m", "gateway",
               "--settings", str(settings), "run", "--host", "127.0.0.1", "--port", str(port)]
    log = log_path.open("ab")
    process = subprocess.Popen(command, cwd=ROOT, env=gateway_env(), stdout=log, stderr=subprocess.STDOUT)
    log.close()
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession() as http:
        while True:
            if process.poll() is not None:
                raise SystemExit(f"the gateway exited: {log_tail(log_path)}")
            try:
                async with http.get(f"{base_url}/healthz") as response:
                    if response.status == 200:
                        return process, base_url
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                process.kill()
                raise SystemExit(f"the gateway did not answer /healthz: {log_tail(log_path)}")
            await asyncio.sleep(0.1)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()  # aiohttp exits cleanly on SIGTERM (so cProfile writes its file)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def run_gateway(backend, settings: Path, key: str, tmp: Path, options: argparse.Namespace) -> tuple[dict, dict]:
    warm, n = options.warmup, options.dossiers
    dossier_bodies = [body_of("dossiers", [dossier_item(i) for i in b]) for b in batches(warm, n, options.batch)]
    event_bodies = [body_of("events", [event_item(i) for i in b]) for b in batches(warm, n, options.batch)]
    warm_dossiers = [body_of("dossiers", [dossier_item(i) for i in b]) for b in batches(0, warm, options.batch)]
    warm_events = [body_of("events", [event_item(i) for i in b]) for b in batches(0, warm, options.batch)]

    log_path = tmp / "gateway.log"
    process, base_url = await start_gateway(settings, log_path, tmp / "gateway.prof" if options.profile else None)
    try:
        pid = process.pid
        if warm:  # code paths hot, the catalogue cached
            await push(base_url, key, "/dossiers", "dossiers", warm_dossiers, "created", pid)
            await push(base_url, key, "/dossiers/events", "events", warm_events, "applied", pid)
        before = await backend.counts()
        dossiers = await push(base_url, key, "/dossiers", "dossiers", dossier_bodies, "created", pid)
        middle = await backend.counts()
        events = await push(base_url, key, "/dossiers/events", "events", event_bodies, "applied", pid)
        after = await backend.counts()
    except BaseException:
        print(log_tail(log_path), file=sys.stderr)
        raise
    finally:
        stop(process)
    errors = sum(1 for line in open(log_path, errors="replace") if '"level": "error"' in line or "Traceback" in line)
    if errors:
        raise SystemExit(f"the gateway logged {errors} errors: {log_tail(log_path)}")
    for phase, (a, b), measured in (("dossiers", (before, middle), dossiers), ("events", (middle, after), events)):
        written = {t: b[t] - a[t] for t in b}
        expected = {"dossier": n if phase == "dossiers" else 0, "outbound_sms": n, "dossier_notification": n}
        if written != expected:
            raise SystemExit(f"{phase}: the gateway wrote {written}, expected {expected}")
        measured["rows_written"] = written
    return dossiers, events


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def open_backend(database: str, parser: argparse.ArgumentParser, tmp: Path):
    """A scratch SQLite file in ``tmp``, or scratch databases on the server of
    $GATEWAY_TEST_DATABASE_URL (dropped by ``cleanup``)."""
    if database != "postgres":
        return SqliteBackend(tmp)
    url = os.environ.get("GATEWAY_TEST_DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        parser.error("--database postgres needs GATEWAY_TEST_DATABASE_URL=postgres://... (.ci/postgres.sh start)")
    backend = PostgresBackend(tmp, url)
    backend.prepare()
    return backend


def main() -> None:
    parser = argparse.ArgumentParser(description="Dossier sync throughput: the gateway's API against a bare insert")
    parser.add_argument("--dossiers", type=int, default=10000, help="dossiers, and then as many events (default 10000)")
    parser.add_argument("--batch", type=int, default=1000, help="items per request and per bare transaction (max 1000)")
    parser.add_argument("--warmup", type=int, default=200, help="dossiers and events pushed first, not measured")
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite",
                        help="postgres: the server of $GATEWAY_TEST_DATABASE_URL (scratch databases, dropped after)")
    parser.add_argument("--profile", action="store_true",
                        help="run the gateway under cProfile (written to bench/results/sync-gateway.prof)")
    options = parser.parse_args()
    if not 1 <= options.batch <= 1000:
        parser.error("--batch is 1 to 1000 (the API's limit)")
    started = time.monotonic()

    with tempfile.TemporaryDirectory(prefix="bench-sync-") as tmp_name:
        tmp = Path(tmp_name)
        backend = open_backend(options.database, parser, tmp)
        try:
            settings = gateway_settings(backend, tmp)
            key = setup(backend, settings)
            agency_id, procedure_id = backend.ids()
            rows = bare_rows(backend, agency_id, procedure_id, options.warmup, options.dossiers, options.batch)
            # Bare, gateway, bare again: the better bare run is the baseline.
            bare_runs = [asyncio.run(backend.bare(*rows))]
            print(f"bare: {bare_runs[0]['dossiers']['per_s']} dossiers/s, {bare_runs[0]['events']['per_s']} events/s",
                  flush=True)
            dossiers, events = asyncio.run(run_gateway(backend, settings, key, tmp, options))
            print(f"gateway: {dossiers['per_s']} dossiers/s, {events['per_s']} events/s", flush=True)
            bare_runs.append(asyncio.run(backend.bare(*rows)))
            print(f"bare: {bare_runs[1]['dossiers']['per_s']} dossiers/s, {bare_runs[1]['events']['per_s']} events/s",
                  flush=True)
        finally:
            backend.cleanup()
        if options.profile and (tmp / "gateway.prof").exists():
            out = ROOT / "bench" / "results"
            out.mkdir(exist_ok=True)
            shutil.copyfile(tmp / "gateway.prof", out / "sync-gateway.prof")

    bare = {phase: max((run[phase] for run in bare_runs), key=lambda r: r["per_s"]) for phase in ("dossiers", "events")}
    result = {
        "database": options.database,
        "dossiers": options.dossiers,
        "batch": options.batch,
        "machine_cores": os.cpu_count(),
        "gateway": {"dossiers": dossiers, "events": events},
        "bare": bare,
        "bare_runs": bare_runs,
        "ratio": {
            "dossiers": round(dossiers["per_s"] / bare["dossiers"]["per_s"], 3),
            "events": round(events["per_s"] / bare["events"]["per_s"], 3),
        },
        # CPU time per item, bare / gateway (the bare's best run): the same ratio, less
        # sensitive to other load on the machine. SQLite only (asyncpg's work is the server's).
        "cpu_ratio": {phase: round(min(r[phase].get("cpu_us_per_item", 0) for r in bare_runs) / measured["cpu_us_per_item"], 3)
                      for phase, measured in (("dossiers", dossiers), ("events", events))}
        if options.database == "sqlite" else None,
        "aim": 0.5,
        "total_seconds": round(time.monotonic() - started, 1),
    }
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / f"sync{'-postgres' if options.database == 'postgres' else ''}.json").write_text(
        json.dumps(result, indent=2) + "\n")

    print()
    print(f"{options.database}, {options.dossiers} dossiers then {options.dossiers} events, batches of {options.batch}, "
          f"{os.cpu_count()} cores")
    print(f"{'':10} {'gateway/s':>10} {'bare/s':>9} {'ratio':>6} {'SMS rows':>9} {'notif rows':>11} {'gw cpu%':>8} "
          f"{'gw cpu us':>10} {'bare cpu us':>12} {'cpu ratio':>10}")
    for phase, measured in (("dossiers", dossiers), ("events", events)):
        written = measured["rows_written"]
        bare_cpu = min(r[phase].get("cpu_us_per_item", 0) for r in bare_runs) or "-"
        cpu_ratio = f"{result['cpu_ratio'][phase]:.2f}" if result["cpu_ratio"] else "-"
        print(f"{phase:10} {measured['per_s']:>10} {bare[phase]['per_s']:>9} {result['ratio'][phase]:>6.2f} "
              f"{written['outbound_sms']:>9} {written['dossier_notification']:>11} {measured['gateway_cpu_percent']:>8} "
              f"{measured['cpu_us_per_item']:>10} {bare_cpu:>12} {cpu_ratio:>10}")
    print(f"ratio = gateway / bare insert of the same rows (dossier + outbound_sms; status update + outbound_sms) "
          f"through the same driver, same batches; aim >= 0.5. {result['total_seconds']}s in all.")


if __name__ == "__main__":
    main()
