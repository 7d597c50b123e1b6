"""The hop's own cost, without HTTP: ``python -m bench.ussd.inproc [--hops 20000] [--profile]``.

Seeds a scratch SQLite database, builds the real app (its start-up included) and plays the
same journeys as ``sessions.lua`` straight into the webhook's parse + ``UssdService.handle``
+ the canonical log line, logging JSON to /dev/null. Prints microseconds per hop, and per
screen shown (which hops cost the most in all); with ``--profile`` a cProfile of the hops.
A tool for finding costs, not a figure for the README (that is ``python -m bench.ussd``,
over HTTP against a bare endpoint).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def journeys(codes: list[str], tails: list[str]) -> list[list[str]]:
    out = [["", "1", f"1*{c}", f"1*{c}*9", f"1*{c}*9*00", f"1*{c}*9*00*0"] for c in codes]
    out += [["", "1", f"1*{t}", f"1*{t}*00", f"1*{t}*00*0"] for t in tails]
    out.append(["", "4", "4*9", "4*9*1", "4*9*1*9", "4*9*1*9*0", "4*9*1*9*0*8", "4*9*1*9*0*8*00", "4*9*1*9*0*8*00*0"])
    out.append(["", "5", "5*00", "5*00*6", "5*00*6*9", "5*00*6*9*00", "5*00*6*9*00*0"])
    reg = f"2*1*{REGISTER_ID}*{REGISTER_NAME}*{REGISTER_BIRTH}"
    out.append(["", "2", "2*1", f"2*1*{REGISTER_ID}", f"2*1*{REGISTER_ID}*{REGISTER_NAME}", reg, f"{reg}*000000",
                f"{reg}*000000*00", f"{reg}*000000*00*0"])
    return out


# The registration journey (as in sessions.lua): up to the code it sends, a wrong code, out.
REGISTER_ID, REGISTER_NAME, REGISTER_BIRTH = "030090001234", "Nguyen Van An", "15031990"
# Every registration journey gets its code: the OTP flood guard (300 a minute by default,
# an operator setting) is raised for the benches, which start more than that.
BENCH_OTP_SETTINGS = "[otp]\nglobal_per_minute = 1000000\n"


async def app_in_process(log_level: str):
    """The gateway app on the settings of the environment, started without a socket (its
    start-up runs: migrations, caches), logging to /dev/null. Returns (app, runner)."""
    from aiohttp import web

    from gateway import logs
    from gateway.app import create_app
    from gateway.settings import load

    logs.configure(log_level, "json", open(os.devnull, "w"))
    app = create_app(load())
    runner = web.AppRunner(app)
    await runner.setup()
    return app, runner


async def run(database: Path, hops: int, profile: bool) -> None:
    from gateway.app import USSD, log_hop
    from gateway.providers import ussd_adapter

    app, runner = await app_in_process("info")
    with sqlite3.connect(database) as db:
        codes = [r[0] for r in db.execute("SELECT code FROM dossier WHERE code LIKE '000.32.22.H23-%' ORDER BY id")]
    plan = journeys(codes[:12], [c[-11:].replace("-", "") for c in codes[12:20]])
    adapter = ussd_adapter("at")
    service = app[USSD]
    by_screen: dict[str, list[float]] = {}  # screen -> [hops, seconds]

    async def play(count: int, tag: str) -> None:
        done, session = 0, 0
        while done < count:
            for journey in plan:
                session += 1
                for text in journey:
                    form = {"sessionId": f"{tag}-{session}", "serviceCode": "*384#",
                            "phoneNumber": f"+8498{session % 10_000_000:07d}", "networkCode": "45204", "text": text}
                    started = time.perf_counter()
                    parsed = adapter.parse_ussd(form)
                    outcome = await service.handle(parsed)
                    log_hop(parsed, outcome, started)
                    spent = by_screen.setdefault(outcome.screen, [0, 0.0])
                    spent[0] += 1
                    spent[1] += time.perf_counter() - started
                    done += 1
                    await asyncio.sleep(0)  # the loop turns between requests, as in a server

    await play(2000, "warm")
    by_screen.clear()
    profiler = cProfile.Profile() if profile else None
    started, cpu = time.perf_counter(), time.process_time()
    if profiler:
        profiler.enable()
    await play(hops, "run")
    if profiler:
        profiler.disable()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(f"{hops} hops in {elapsed:.2f} s: {elapsed / hops * 1e6:.1f} us/hop wall, {cpu / hops * 1e6:.1f} us/hop CPU"
          f" ({hops / elapsed:.0f} hops/s)")
    total = sum(seconds for _, seconds in by_screen.values())
    print("screen                 hops  us/hop  share of the time")
    for screen, (count, seconds) in sorted(by_screen.items(), key=lambda kv: -kv[1][1]):
        print(f"{screen:20} {count:>6} {seconds / count * 1e6:>7.0f}  {seconds / total:>6.1%}")
    await runner.cleanup()
    if profiler:
        stats = pstats.Stats(profiler)
        stats.sort_stats("cumulative").print_stats(45)
        stats.sort_stats("tottime").print_stats(30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hops", type=int, default=20000)
    parser.add_argument("--profile", action="store_true")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        database = Path(tmp) / "inproc.sqlite3"
        settings = Path(tmp) / "settings.toml"
        settings.write_text(f'[database]\nurl = "sqlite://{database}"\n[logging]\nformat = "json"\n'
                            '[sms]\nrun_dispatcher = false\n' + BENCH_OTP_SETTINGS)
        os.environ.update(GATEWAY_SETTINGS=str(settings), GATEWAY_SECRET_KEY="bench")
        subprocess.run([sys.executable, "-m", "gateway", "seed"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        asyncio.run(run(database, options.hops, options.profile))


if __name__ == "__main__":
    main()
