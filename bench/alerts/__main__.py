"""Bulk pickup alert: one request for 1,000 codes against one request (and one transaction)
per code, through the real gateway and the clerk API, in the same run.

    python -m bench.alerts [--codes 1000] [--database postgres]

The gateway runs as ``gateway run`` (demo seed, JSON logs; dispatcher, purger and reminders
off, so only the alert path is measured). 2 x N dossiers are pushed through the sync API
(status 2). Then, for the first N, one ``POST /api/v1/clerk/dossiers/{code}/ready`` each,
one after the other (each its own transaction: status change, SMS, notification record, two
audit records); for the other N, one ``POST /api/v1/clerk/alerts`` with all N codes (one
transaction). Every answer must be ``sent`` with an SMS and the database must hold exactly
N more pickup SMS after each phase, or the run fails. Aim (issue 11): the bulk alert at
least 10 times the per-message rate. Results in bench/results/alerts[-postgres].json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.sync.__main__ import (
    AGENCY, ROOT, batches, body_of, cpu_seconds, dossier_item, gateway_env,
    gateway_settings, log_tail, open_backend, push, setup, start_gateway, stop,
)


def clerk_token(settings: Path) -> str:
    def cli(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "gateway", "--settings", str(settings), *args], cwd=ROOT,
                              env=gateway_env(), capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"gateway {args[0]}: {done.stderr[-2000:]}")
        return done.stdout

    cli("add-clerk", "--login", "bench", "--name", "Bench Clerk", "--phone", "0912999999", "--agency", AGENCY)
    return cli("clerk-token", "bench").strip().splitlines()[-1]


async def pickup_sms(backend) -> int:
    return (await backend.counts())["outbound_sms"]


async def one_by_one(base_url: str, token: str, codes: list[str], pid: int) -> dict:
    import aiohttp

    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as http:
        cpu, started = cpu_seconds(pid), time.perf_counter()
        for code in codes:
            async with http.post(f"{base_url}/api/v1/clerk/dossiers/{code}/ready", headers=headers) as response:
                answer = await response.json()
            if response.status != 200 or answer.get("result") != "sent" or not answer.get("sms"):
                raise SystemExit(f"ready {code}: {response.status} {json.dumps(answer)[:300]}")
        seconds, cpu = time.perf_counter() - started, cpu_seconds(pid) - cpu
    return {"codes": len(codes), "seconds": round(seconds, 3), "per_s": round(len(codes) / seconds, 1),
            "cpu_us_per_code": round(1e6 * cpu / len(codes), 1)}


async def in_bulk(base_url: str, token: str, codes: list[str], pid: int) -> dict:
    import aiohttp

    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as http:
        cpu, started = cpu_seconds(pid), time.perf_counter()
        async with http.post(f"{base_url}/api/v1/clerk/alerts", data=json.dumps({"codes": codes}),
                             headers=headers) as response:
            answer = await response.json()
        seconds, cpu = time.perf_counter() - started, cpu_seconds(pid) - cpu
    if response.status != 200:
        raise SystemExit(f"alerts: {response.status} {json.dumps(answer)[:300]}")
    bad = [r for r in answer["results"] if r.get("result") != "sent" or not r.get("sms")]
    if len(answer["results"]) != len(codes) or bad:
        raise SystemExit(f"alerts: {len(answer['results'])} results for {len(codes)} codes, e.g. {bad[:2]}")
    return {"codes": len(codes), "seconds": round(seconds, 3), "per_s": round(len(codes) / seconds, 1),
            "cpu_us_per_code": round(1e6 * cpu / len(codes), 1)}


async def run(backend, settings: Path, key: str, token: str, tmp: Path, n: int) -> dict:
    log_path = tmp / "gateway.log"
    process, base_url = await start_gateway(settings, log_path, None)
    try:
        pid = process.pid
        bodies = [body_of("dossiers", [dossier_item(i) for i in b]) for b in batches(0, 2 * n, 1000)]
        await push(base_url, key, "/dossiers", "dossiers", bodies, "created", pid)
        codes = [dossier_item(i)["code"] for i in range(2 * n)]
        before = await pickup_sms(backend)
        single = await one_by_one(base_url, token, codes[:n], pid)
        middle = await pickup_sms(backend)
        bulk = await in_bulk(base_url, token, codes[n:], pid)
        after = await pickup_sms(backend)
    except BaseException:
        print(log_tail(log_path), file=sys.stderr)
        raise
    finally:
        stop(process)
    if (middle - before, after - middle) != (n, n):
        raise SystemExit(f"SMS written: {middle - before} one by one, {after - middle} in bulk; expected {n} each")
    return {"one_by_one": single, "bulk": bulk}


def main() -> None:
    parser = argparse.ArgumentParser(description="Bulk pickup alert against one request per code")
    parser.add_argument("--codes", type=int, default=1000, help="codes in each phase (max 1000, the API's limit)")
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    options = parser.parse_args()
    if not 1 <= options.codes <= 1000:
        parser.error("--codes is 1 to 1000")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-alerts-") as tmp_name:
        tmp = Path(tmp_name)
        backend = open_backend(options.database, parser, tmp)
        try:
            settings = gateway_settings(backend, tmp)
            key = setup(backend, settings)
            token = clerk_token(settings)
            measured = asyncio.run(run(backend, settings, key, token, tmp, options.codes))
        finally:
            backend.cleanup()
    ratio = round(measured["bulk"]["per_s"] / measured["one_by_one"]["per_s"], 1)
    result = {"database": options.database, "codes": options.codes, "machine_cores": os.cpu_count(), **measured,
              "ratio": ratio, "aim": 10, "total_seconds": round(time.monotonic() - started, 1)}
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"alerts{'-postgres' if options.database == 'postgres' else ''}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"{options.database}, {options.codes} codes each way, {os.cpu_count()} cores")
    for name in ("one_by_one", "bulk"):
        m = measured[name]
        print(f"  {name:11} {m['per_s']:>9} codes/s  {m['seconds']:>7} s  {m['cpu_us_per_code']:>8} us CPU/code")
    print(f"  bulk / one by one: {ratio}x (aim >= 10). {result['total_seconds']} s in all.")


if __name__ == "__main__":
    main()
