"""Run the SMS outbox benchmark: ``python -m bench.sms [--messages 20000]``.

Everything on 127.0.0.1, SQLite in a temp dir:

1. a stand-in aggregator (``bench/sms/sink.py``, its own process) answering like the "http"
   transport's provider (HTTP 201, ``statusCode`` 101, a ``messageId``) and recording what
   it received;
2. its bare capacity: an aiohttp client with ``dispatch_concurrency`` requests in flight
   posting the transport's form (same connector limits) straight at the sink; and the
   same load through ``HttpAggregatorTransport.send`` (no database) to show what the
   transport itself costs;
3. the enqueue rate: ``Outbox.enqueue`` one message per transaction, as the app does; and
   the bulk enqueue of an alert to 1,000 phones (a fresh database each time): 1,000
   transactions of ``OutboxWriter.enqueue`` against one transaction of
   ``OutboxWriter.opted_out_many`` + ``message()`` + ``write()`` (multi-row INSERTs);
4. the dispatch rate: the real dispatcher (``python -m gateway dispatch``, transport
   "http" pointed at the sink, ``parts_per_second`` out of the way), from the first to the
   last message marked sent (``sent_at`` in the database), for a few
   ``dispatch_batch`` x ``dispatch_concurrency`` settings, each on a copy of the same
   enqueued database; and that the sink got every message exactly once. Each dispatch run
   is paired with a bare-client run at its concurrency just before it (``--repeat`` rounds,
   interleaved): on a shared machine the load moves between runs minutes apart, so the
   paired ratio (median over the rounds) is the figure to read; "ratio" is the best
   dispatch run over the best bare run of the whole benchmark.

Prints a table and writes bench/results/sms.json. The machine is noisy: compare the
ratios within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import re
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

API_KEY = "bench-api-key"
SENDER = "PHUONGKY"
NUMBER = re.compile(r"Tin thu (\d+)")
# A dossier alert as the gateway would write it (accented; the outbox makes it GSM-7, 1 part).
TEXT = "Tin thu {n:05d}: Hồ sơ 000.32.22.H23-261030-{tail:04d} đã có kết quả. Mời ông/bà đến UBND phường nhận."
DEFAULT_CONFIGS = "100x20,25x20,500x50"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_json(url: str, method: str = "GET", timeout: float = 10) -> dict:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def wait_ready(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            http_json(url, timeout=2)
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not come up within {timeout}s")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process (Linux /proc), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def message(n: int) -> tuple[str, str]:
    return f"+8491{n:07d}", TEXT.format(n=n, tail=n % 10000)


def settings_text(database: Path, sink_url: str, batch: int = 100, concurrency: int = 20) -> str:
    return (
        f'[database]\nurl = "sqlite://{database}"\nmigrate_on_start = false\n'
        '[logging]\nformat = "json"\nlevel = "info"\n'
        f'[sms]\ntransport = "http"\nsender = "{SENDER}"\nparts_per_second = 1000000\n'
        f"dispatch_batch = {batch}\ndispatch_concurrency = {concurrency}\nidle_poll_seconds = 0.2\n"
        f'[http_sms]\nurl = "{sink_url}"\nusername = "xaphuongky"\ntimeout_seconds = 10.0\n'
    )


def load_settings(path: Path):
    from gateway.settings import load

    return load(path, environ={"GATEWAY_HTTP_SMS_API_KEY": API_KEY, "GATEWAY_SECRET_KEY": "bench"})


# --- (a) the sink's bare capacity -------------------------------------------------------


async def drive(send, concurrency: int, max_requests: int, max_seconds: float) -> dict:
    """``concurrency`` workers calling ``send(n)`` until ``max_requests`` or ``max_seconds``."""
    counter = iter(range(max_requests))
    deadline = time.monotonic() + max_seconds
    done, errors = 0, 0

    async def worker() -> None:
        nonlocal done, errors
        for n in counter:
            if time.monotonic() > deadline:
                return
            if await send(n):
                done += 1
            else:
                errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    return {"requests": done, "errors": errors, "seconds": round(seconds, 3), "per_s": round(done / seconds, 1)}


async def bare_capacity(url: str, concurrency: int, max_requests: int, max_seconds: float) -> dict:
    import aiohttp

    # The transport's own session: one host, 50 connections, kept alive.
    connector = aiohttp.TCPConnector(limit=50, limit_per_host=50, keepalive_timeout=30)
    headers = {"apiKey": API_KEY, "Accept": "application/json"}
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def send(n: int) -> bool:
            to, text = message(900_000 + n)
            form = {"username": "xaphuongky", "to": to, "message": text, "from": SENDER}
            async with session.post(url, data=form, headers=headers, timeout=timeout) as response:
                body = await response.text()
                return response.status == 201 and json.loads(body)["SMSMessageData"]["Recipients"][0]["statusCode"] == 101

        await drive(send, concurrency, 200, 5)  # warm-up: connections open, code paths hot
        return await drive(send, concurrency, max_requests, max_seconds)


async def transport_capacity(settings, concurrency: int, max_requests: int, max_seconds: float) -> dict:
    from gateway.providers.http_aggregator import HttpAggregatorTransport
    from gateway.sms import OutgoingSms, SendOutcome
    from models.sms_text import Encoding

    transport = HttpAggregatorTransport(settings.http_sms)
    await transport.start()
    try:

        async def send(n: int) -> bool:
            to, text = message(800_000 + n)
            result = await transport.send(OutgoingSms(n, to, text, Encoding.GSM7, 1, SENDER))
            return result.outcome is SendOutcome.SENT

        await drive(send, concurrency, 200, 5)
        return await drive(send, concurrency, max_requests, max_seconds)
    finally:
        await transport.close()


def measure_sink(sink: subprocess.Popen, sink_url: str, settings, concurrencies: list[int],
                 options: argparse.Namespace) -> tuple[dict[int, dict], dict[int, dict]]:
    bare, through_transport = {}, {}
    for concurrency in concurrencies:
        for name, measure, args in (
            ("bare client", bare_capacity, (sink_url,)),
            ("through the transport", transport_capacity, (settings,)),
        ):
            cpu = cpu_seconds(sink.pid)
            result = asyncio.run(measure(*args, concurrency, options.messages, options.bare_seconds))
            result["sink_cpu_percent"] = round(100 * (cpu_seconds(sink.pid) - cpu) / result["seconds"], 1)
            (bare if measure is bare_capacity else through_transport)[concurrency] = result
            print(f"sink, {concurrency} in flight, {name}: {result['per_s']}/s "
                  f"(sink CPU {result['sink_cpu_percent']}%)", flush=True)
    return bare, through_transport


# --- (b) enqueue ------------------------------------------------------------------------


async def enqueue_all(settings, count: int, max_seconds: float) -> dict:
    from gateway.outbox import Outbox
    from models.db import open_database
    from models.entities import SmsKind
    from models.fastsql import open_runner

    async with open_database(settings.database.url, run_migrations=True):
        sql = open_runner(settings.database.url)  # the app's own runner: its unit of work
        outbox = Outbox(settings, sql=sql)
        deadline = time.monotonic() + max_seconds
        started = time.perf_counter()
        written = 0
        for n in range(count):
            if time.monotonic() > deadline:
                break
            to, text = message(n)
            # One transaction per message, as the app writes one with the change that caused it.
            # A status alert: non-essential (so the opt-out check runs); urgent so that quiet
            # hours do not hold it back whatever the hour of the run.
            async with sql.transaction() as tx:
                row = await outbox.enqueue(to, text, SmsKind.STATUS, urgent=True, tx=tx)
            assert row is not None and row.parts == 1, row
            written += 1
        seconds = time.perf_counter() - started
        await sql.close()
    return {"messages": written, "seconds": round(seconds, 3), "per_s": round(written / seconds, 1)}


async def bulk_enqueue(settings, tmp: Path, count: int = 1000, rounds: int = 3) -> dict:
    """An alert to ``count`` phones: one transaction per message (``OutboxWriter.enqueue``)
    against one transaction for all (``opted_out_many`` + ``message()`` + ``write()``), each
    on a fresh database, the best of ``rounds``."""
    import dataclasses

    from gateway.outbox import outbox_writer
    from models.db import open_database
    from models.entities import SmsKind
    from models.fastsql import open_runner

    writer = outbox_writer(settings)
    phones_texts = [message(n) for n in range(count)]
    best: dict[str, float] = {}
    for attempt in range(rounds):
        for mode in ("one_tx_each", "one_tx_for_all"):
            database = tmp / f"bulk-{mode}-{attempt}.sqlite3"
            url = f"sqlite://{database}"
            local = dataclasses.replace(settings, database=dataclasses.replace(settings.database, url=url))
            async with open_database(local.database.url, run_migrations=True):
                sql = open_runner(url)
                now = dt.datetime.now(dt.timezone.utc)
                started = time.perf_counter()
                if mode == "one_tx_each":
                    for to, text in phones_texts:
                        async with sql.transaction() as tx:
                            assert await writer.enqueue(tx, to, text, SmsKind.PICKUP, now, urgent=True) is not None
                else:
                    async with sql.transaction() as tx:
                        off = await writer.opted_out_many(tx, [to for to, _ in phones_texts])
                        batch = [writer.message(to, text, SmsKind.PICKUP, now, urgent=True, opted_out=to in off)
                                 for to, text in phones_texts]
                        ids = await writer.write(tx, [m for m in batch if m is not None])
                        assert len(ids) == count
                seconds = time.perf_counter() - started
                rows = (await sql.fetch("SELECT count(*) FROM outbound_sms"))[0][0]
                assert rows == count, rows
                await sql.close()
            per_s = count / seconds
            best[mode] = max(best.get(mode, 0.0), per_s)
    return {
        "messages": count,
        "one_tx_each_per_s": round(best["one_tx_each"], 1),
        "one_tx_for_all_per_s": round(best["one_tx_for_all"], 1),
        "speedup": round(best["one_tx_for_all"] / best["one_tx_each"], 1),
    }


# --- (c) dispatch -----------------------------------------------------------------------


def dispatch_run(template: Path, tmp: Path, sink: subprocess.Popen, sink_url: str, batch: int,
                 concurrency: int, expected: int, max_seconds: float, attempt: int = 1) -> dict:
    """One dispatcher process on a fresh copy of the enqueued database, until it is drained."""
    name = f"b{batch}c{concurrency}-{attempt}"  # a fresh file each time (no stale -wal beside it)
    database = tmp / f"{name}.sqlite3"
    shutil.copyfile(template, database)
    settings = tmp / f"{name}.toml"
    settings.write_text(settings_text(database, sink_url, batch, concurrency))
    sink_base = sink_url.rsplit("/version1", 1)[0]
    http_json(sink_base + "/reset", "POST")
    env = {**os.environ, "GATEWAY_SETTINGS": str(settings), "GATEWAY_SECRET_KEY": "bench",
           "GATEWAY_HTTP_SMS_API_KEY": API_KEY}
    env.pop("GATEWAY_DATABASE_URL", None)
    log_path = tmp / f"{name}.log"
    with open(log_path, "w") as log_file:
        process = subprocess.Popen([sys.executable, "-m", "gateway", "dispatch"], cwd=ROOT, env=env,
                                   stdout=log_file, stderr=log_file)
        db = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)
        cpu_percent = sink_cpu_percent = None
        try:
            deadline = time.monotonic() + max_seconds
            pending, mark = expected, None
            while time.monotonic() < deadline and process.poll() is None:
                time.sleep(0.1)
                pending = db.execute(
                    "SELECT count(*) FROM outbound_sms WHERE status IN ('queued','sending')").fetchone()[0]
                if mark is None and pending < expected:  # sending began: CPU from here on
                    mark = (time.monotonic(), cpu_seconds(process.pid), cpu_seconds(sink.pid))
                if pending == 0:
                    break
            if process.poll() is None and mark is not None:
                wall = time.monotonic() - mark[0]
                if wall > 0.3:
                    cpu_percent = round(100 * (cpu_seconds(process.pid) - mark[1]) / wall, 1)
                    sink_cpu_percent = round(100 * (cpu_seconds(sink.pid) - mark[2]) / wall, 1)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        statuses = dict(db.execute("SELECT status, count(*) FROM outbound_sms GROUP BY status").fetchall())
        first, last, sent = db.execute(
            "SELECT min(sent_at), max(sent_at), count(*) FROM outbound_sms WHERE status='sent'").fetchone()
        db.close()
    if pending:
        print(f"  {name}: {pending} messages still pending after {max_seconds}s (see the rates below)",
              file=sys.stderr)
    seconds = (dt.datetime.fromisoformat(last) - dt.datetime.fromisoformat(first)).total_seconds() if sent > 1 else 0.0
    counts = http_json(sink_base + "/received")["counts"]
    stats = http_json(sink_base + "/stats")
    numbers: dict[int, int] = {}
    for text, times in counts.items():
        match = NUMBER.match(text)
        number = int(match.group(1)) if match else -1
        numbers[number] = numbers.get(number, 0) + times
    missing = sum(1 for n in range(expected) if n not in numbers)
    errors = sum(1 for line in open(log_path) if '"level": "error"' in line or "Traceback" in line)
    return {
        "dispatch_batch": batch,
        "dispatch_concurrency": concurrency,
        "sent": sent,
        "statuses": statuses,
        "seconds": round(seconds, 3),
        "per_s": round((sent - 1) / seconds, 1) if seconds > 0 else 0.0,
        "dispatcher_cpu_percent": cpu_percent,
        "sink_cpu_percent": sink_cpu_percent,
        "sink_received": stats["received"],
        "sink_duplicates": stats["received"] - len(numbers),
        "sink_rejected": stats["rejected"],
        "missing_at_sink": missing,
        "unexpected_at_sink": sum(1 for n in numbers if not 0 <= n < expected),
        "log_errors": errors,
    }


# --- main -------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description="SMS outbox throughput on SQLite")
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--configs", default=DEFAULT_CONFIGS,
                        help=f"dispatch_batch x dispatch_concurrency to try (default {DEFAULT_CONFIGS}); "
                             "the first is the settings.toml default")
    parser.add_argument("--repeat", type=int, default=3,
                        help="dispatch runs per setting, each paired with a bare run (the best is kept, "
                             "and the median of the paired ratios)")
    parser.add_argument("--bare-seconds", type=float, default=2.5, help="length of each sink capacity run")
    options = parser.parse_args()
    configs = [tuple(int(v) for v in item.split("x")) for item in options.configs.split(",")]
    started = time.monotonic()

    with tempfile.TemporaryDirectory(prefix="bench-sms-") as tmp_name:
        tmp = Path(tmp_name)
        sink_port = free_port()
        sink_url = f"http://127.0.0.1:{sink_port}/version1/messaging"
        sink = subprocess.Popen([sys.executable, "-m", "bench.sms.sink", "--port", str(sink_port),
                                 "--api-key", API_KEY], cwd=ROOT)
        try:
            wait_ready(f"http://127.0.0.1:{sink_port}/stats")
            template = tmp / "enqueued.sqlite3"
            settings_path = tmp / "enqueue.toml"
            settings_path.write_text(settings_text(template, sink_url))
            settings = load_settings(settings_path)

            concurrencies = sorted({c for _, c in configs})
            bare, through_transport = measure_sink(sink, sink_url, settings, concurrencies, options)

            enqueue = asyncio.run(enqueue_all(settings, options.messages, 60))
            print(f"enqueued {enqueue['messages']} in {enqueue['seconds']}s: {enqueue['per_s']}/s", flush=True)
            bulk = asyncio.run(bulk_enqueue(settings, tmp))
            print(f"bulk enqueue of {bulk['messages']}: {bulk['one_tx_each_per_s']}/s one transaction each, "
                  f"{bulk['one_tx_for_all_per_s']}/s in one ({bulk['speedup']}x)", flush=True)
            # A self-contained copy (WAL folded in) that every dispatch run starts from.
            snapshot = tmp / "template.sqlite3"
            with sqlite3.connect(template) as source, sqlite3.connect(snapshot) as target:
                source.backup(target)
            source.close()
            target.close()

            best_runs: dict[tuple[int, int], dict] = {}
            for attempt in range(1, options.repeat + 1):  # interleaved: a noisy moment hits one run only
                for batch, concurrency in configs:
                    paired = asyncio.run(bare_capacity(sink_url, concurrency, options.messages, options.bare_seconds))
                    if paired["per_s"] > bare[concurrency]["per_s"]:
                        bare[concurrency] = {**paired, "sink_cpu_percent": None}
                    run = dispatch_run(snapshot, tmp, sink, sink_url, batch, concurrency, enqueue["messages"], 45,
                                       attempt)
                    run["paired_ratios"] = [round(run["per_s"] / paired["per_s"], 3)]
                    print(f"dispatched b{batch}c{concurrency}: {run['per_s']}/s over {run['seconds']}s, "
                          f"duplicates {run['sink_duplicates']}, missing {run['missing_at_sink']}", flush=True)
                    print(f"  paired bare client {paired['per_s']}/s: ratio {run['paired_ratios'][0]}", flush=True)
                    kept = best_runs.get((batch, concurrency))
                    run["all_per_s"] = (kept["all_per_s"] if kept else []) + [run["per_s"]]
                    run["paired_ratios"] = (kept["paired_ratios"] if kept else []) + run["paired_ratios"]
                    if kept is None or run["per_s"] > kept["per_s"]:
                        best_runs[(batch, concurrency)] = run
                    else:
                        kept["all_per_s"] = run["all_per_s"]
                        kept["paired_ratios"] = run["paired_ratios"]
                        for key in ("sink_duplicates", "missing_at_sink", "sink_rejected", "unexpected_at_sink",
                                    "log_errors"):  # a fault in any run is kept
                            kept[key] = max(kept[key], run[key])
                        if run["sent"] != enqueue["messages"]:
                            kept["sent"] = run["sent"]
            runs = list(best_runs.values())
            # The sink again after the dispatch runs: the best of the two is its capacity.
            bare_again, transport_again = measure_sink(sink, sink_url, settings, concurrencies, options)
            for best, again in ((bare, bare_again), (through_transport, transport_again)):
                for c in concurrencies:
                    if again[c]["per_s"] > best[c]["per_s"]:
                        best[c] = again[c]
            for run in runs:
                c = run["dispatch_concurrency"]
                run["bare_per_s"] = bare[c]["per_s"]
                run["ratio_to_bare"] = round(run["per_s"] / bare[c]["per_s"], 3)
                run["ratio_to_transport"] = round(run["per_s"] / through_transport[c]["per_s"], 3)
                run["paired_ratio_median"] = round(statistics.median(run["paired_ratios"]), 3)
        finally:
            sink.terminate()
            sink.wait(timeout=10)

    result = {
        "messages": options.messages,
        "machine_cores": os.cpu_count(),
        "sink_bare": {str(c): r for c, r in bare.items()},
        "sink_through_transport": {str(c): r for c, r in through_transport.items()},
        "enqueue": enqueue,
        "bulk_enqueue": bulk,
        "dispatch": runs,
        "aim_per_s": 2000,
        "best_dispatch_per_s": max(r["per_s"] for r in runs),
        "total_seconds": round(time.monotonic() - started, 1),
    }
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "sms.json").write_text(json.dumps(result, indent=2) + "\n")

    print()
    print(f"{'':38} {'SMS/s':>8} {'ratio':>6} {'dups':>5} {'lost':>5} {'cpu% gw':>8} {'cpu% sink':>9} {'paired ratio':>13}")
    for c in sorted(bare):
        print(f"{f'sink, bare client, {c} in flight':38} {bare[c]['per_s']:>8} {1:>6.2f} {'':>5} {'':>5} {'':>8} "
              f"{bare[c]['sink_cpu_percent'] or '-':>9}")
        print(f"{f'sink, via the transport, {c} in flight':38} {through_transport[c]['per_s']:>8} "
              f"{through_transport[c]['per_s'] / bare[c]['per_s']:>6.2f} {'':>5} {'':>5} {'':>8} "
              f"{through_transport[c]['sink_cpu_percent']:>9}")
    print(f"{'enqueue, 1 transaction each':38} {enqueue['per_s']:>8}")
    print(f"{'bulk 1000, 1 transaction each':38} {bulk['one_tx_each_per_s']:>8}")
    print(f"{'bulk 1000, 1 transaction for all':38} {bulk['one_tx_for_all_per_s']:>8} {bulk['speedup']:>5}x")
    for run in runs:
        label = f"dispatch, batch {run['dispatch_batch']}, conc {run['dispatch_concurrency']}"
        print(f"{label:38} {run['per_s']:>8} {run['ratio_to_bare']:>6.2f} {run['sink_duplicates']:>5} "
              f"{run['missing_at_sink']:>5} {run['dispatcher_cpu_percent'] or '-':>8} {run['sink_cpu_percent'] or '-':>9} "
              f"{run['paired_ratio_median']:>13}")
    print(f"aim: 2000 dispatched SMS/s on SQLite; best here {result['best_dispatch_per_s']}/s. "
          f"ratio = best SMS/s / best bare client at the same concurrency; paired ratio = median over the "
          f"rounds of SMS/s / the bare run just before. {result['total_seconds']}s in all.")
    bad = [r for r in runs if r["missing_at_sink"] or r["sink_duplicates"] or r["sink_rejected"]
           or r["unexpected_at_sink"] or r["log_errors"] or r["sent"] != enqueue["messages"]]
    if bad:
        raise SystemExit("a run lost, duplicated or failed messages: see bench/results/sms.json")


if __name__ == "__main__":
    main()
