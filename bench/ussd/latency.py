"""USSD latency under a steady load: ``python -m bench.ussd.latency [--seconds 20] [--max N]``.

An open-loop load, the figure a citizen feels: hops are sent on a fixed schedule (a hop
every 1/rate seconds, whatever the server is doing) and each hop's latency is measured from
its *scheduled* send time, not from when the client got round to sending it, so a stall
counts against every hop it delays (no coordinated omission, as wrk2 does it).

The gateway runs as in ``python -m bench.ussd`` (SQLite, demo data, hop logging on). Its
maximum is measured first with wrk (closed loop, 50 connections, same journeys), unless
``--max`` gives it; then the open-loop load runs at half and three quarters of it. The same
absolute rates are also sent to the bare aiohttp endpoint: the client's own floor (this
client is Python on the same 2 cores). Hops of one session go out in order (a session's
next hop is scheduled only once its previous answer came); each scheduled hop takes an idle
session, or opens a new one. Results: bench/results/ussd-latency.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from urllib.parse import quote

from bench.ussd.__main__ import ROOT, HERE, ensure_wrk, free_port, run_wrk, stop_servers, wait_ready
from bench.ussd.inproc import BENCH_OTP_SETTINGS, journeys


class Connection:
    """One keep-alive HTTP/1.1 connection: a request out, a Content-Length answer back."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def post(self, head: bytes, body: bytes) -> int:
        self.writer.write(head + str(len(body)).encode() + b"\r\n\r\n" + body)
        header = await self.reader.readuntil(b"\r\n\r\n")
        status = int(header[9:12])
        length = 0
        for line in header.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        if length:
            await self.reader.readexactly(length)
        return status


async def open_loop(port: int, rate: float, seconds: float, plan: list[list[str]], tag: str) -> dict:
    loop = asyncio.get_running_loop()
    head = (f"POST /ussd/at HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: ").encode()
    idle_connections: deque[Connection] = deque()
    for _ in range(64):
        idle_connections.append(Connection(*await asyncio.open_connection("127.0.0.1", port)))
    idle_sessions: deque[list] = deque()  # [session id, journey, hop index]
    counter = {"sessions": 0}
    latencies: list[float] = []
    errors = 0
    late_sends = 0
    pending: set[asyncio.Task] = set()

    def next_session() -> list:
        if idle_sessions:
            return idle_sessions.popleft()
        counter["sessions"] += 1
        number = counter["sessions"]
        return [f"lat-{tag}-{number}", plan[number % len(plan)], 0, f"%2B8497{number % 10_000_000:07d}"]

    async def one(scheduled: float, session: list) -> None:
        nonlocal errors
        connection = idle_connections.popleft() if idle_connections else Connection(
            *await asyncio.open_connection("127.0.0.1", port))
        text = session[1][session[2]]
        body = (f"sessionId={session[0]}&serviceCode=%2A384%23&phoneNumber={session[3]}"
                f"&networkCode=45204&text={quote(text, safe='')}").encode()
        try:
            status = await connection.post(head, body)
        except (OSError, asyncio.IncompleteReadError):
            errors += 1
            return
        latencies.append(loop.time() - scheduled)
        if status != 200:
            errors += 1
        idle_connections.append(connection)
        session[2] += 1
        if session[2] < len(session[1]):
            idle_sessions.append(session)

    total = int(rate * seconds)
    interval = 1.0 / rate
    start = loop.time() + 0.05
    for k in range(total):
        scheduled = start + k * interval
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -0.001:
            late_sends += 1
        task = asyncio.create_task(one(scheduled, next_session()))
        pending.add(task)
        task.add_done_callback(pending.discard)
    if pending:
        await asyncio.wait(pending, timeout=30)
    elapsed = loop.time() - start
    for connection in idle_connections:
        connection.writer.close()
    latencies.sort()
    n = len(latencies)

    def pct(p: float) -> float:
        return round(latencies[min(n - 1, int(p * n))] * 1000, 3) if n else float("nan")

    return {
        "rate_per_s": round(rate, 1),
        "sent": total,
        "answered": n,
        "achieved_per_s": round(n / elapsed, 1),
        "errors": errors,
        "sends_late_over_1ms": late_sends,
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "p99_9_ms": pct(0.999),
        "max_ms": round(latencies[-1] * 1000, 3) if n else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--max", type=float, help="the gateway's maximum hops/s (else measured with wrk)")
    parser.add_argument("--fractions", default="0.5,0.75")
    options = parser.parse_args()
    fractions = [float(f) for f in options.fractions.split(",")]
    python = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        database = Path(tmp) / "bench.sqlite3"
        settings = Path(tmp) / "settings.toml"
        gateway_port, bare_port = free_port(), free_port()
        settings.write_text(f'[server]\nport = {gateway_port}\n[database]\nurl = "sqlite://{database}"\n'
                            '[logging]\nformat = "json"\n' + BENCH_OTP_SETTINGS)
        env = {**os.environ, "GATEWAY_SETTINGS": str(settings), "GATEWAY_SECRET_KEY": "bench"}
        subprocess.run([python, "-m", "gateway", "seed"], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
        with sqlite3.connect(database) as db:
            codes = [r[0] for r in db.execute("SELECT code FROM dossier WHERE code LIKE '000.32.22.H23-%' ORDER BY id")]
        tails = [c[-11:].replace("-", "") for c in codes[12:20]]
        plan = journeys(codes[:12], tails)
        log_sink = open(Path(tmp) / "gateway.log", "w")
        servers = [
            subprocess.Popen([python, "-m", "gateway", "run"], cwd=ROOT, env=env, stdout=log_sink, stderr=log_sink),
            subprocess.Popen([python, str(HERE / "bare.py"), str(bare_port)], cwd=ROOT),
        ]
        results: dict = {"seconds": options.seconds}
        try:
            wait_ready(gateway_port, "/healthz")
            wait_ready(bare_port, "/ussd/at", method="POST")
            if options.max:
                maximum = options.max
            else:
                wrk = ensure_wrk()
                args = codes[:12] + [f"tail:{t}" for t in tails]
                run_wrk(wrk, gateway_port, 2, 50, args)
                closed = run_wrk(wrk, gateway_port, 10, 50, args)
                results["closed_loop_wrk_50_connections"] = closed
                maximum = closed["hops_per_s"]
            results["max_hops_per_s"] = maximum
            asyncio.run(open_loop(gateway_port, 200, 2, plan, "warm"))  # connections, caches
            for fraction in fractions:
                rate = maximum * fraction
                time.sleep(1)
                results[f"gateway_at_{fraction}"] = asyncio.run(
                    open_loop(gateway_port, rate, options.seconds, plan, f"g{fraction}"))
                time.sleep(1)
                results[f"bare_at_{fraction}"] = asyncio.run(
                    open_loop(bare_port, rate, options.seconds, plan, f"b{fraction}"))
        finally:
            stop_servers(servers)
            log_sink.close()
            if os.environ.get("BENCH_KEEP_LOG"):
                import shutil
                shutil.copy(Path(tmp) / "gateway.log", os.environ["BENCH_KEEP_LOG"])
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "ussd-latency.json").write_text(json.dumps(results, indent=2))
    print(f"gateway maximum (closed loop, wrk, 50 connections): {results['max_hops_per_s']} hops/s")
    print(f"{'open loop':18} {'rate/s':>8} {'done/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9} {'max ms':>8} {'err':>4}")
    for fraction in fractions:
        for who in ("gateway", "bare"):
            r = results[f"{who}_at_{fraction}"]
            print(f"{who + ' at ' + str(fraction):18} {r['rate_per_s']:>8} {r['achieved_per_s']:>8} {r['p50_ms']:>8} "
                  f"{r['p99_ms']:>8} {r['p99_9_ms']:>9} {r['max_ms']:>8} {r['errors']:>4}")
    print("latency from each hop's scheduled send time (no coordinated omission); target p99 < 10 ms at 0.5")


if __name__ == "__main__":
    main()
