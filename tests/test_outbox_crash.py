"""The outbox's delivery guarantee under a real crash: SIGKILL of the gateway mid-dispatch.

The real gateway (``python -m gateway run``, dispatcher inside, transport "http", SQLite in
tmp_path) sends 5,000 enqueued messages to a stand-in aggregator in its own process
(``bench/sms/sink.py``: answers like the real one, holds each answer 20 ms so that messages
are in flight, and records what it received). The gateway is killed with SIGKILL when the
sink has received about a third of them, then started again. ``gateway/outbox.py``
promises at least once: nothing lost, and only what was in flight at the kill (at most
``dispatch_batch`` messages) sent twice. Checked here:

- at the kill: every row marked sent was received by the sink (a row is never marked
  before it is sent), and every message received but not marked was claimed (in flight);
- after the restart: every one of the 5,000 numbers reached the sink, every row is sent,
  duplicates are only messages that were in flight at the kill, each at most twice, and
  there are at most ``dispatch_batch`` of them.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import aiohttp
from tortoise.transactions import in_transaction

from gateway.outbox import Outbox
from gateway.settings import load
from models.db import open_database
from models.entities import SmsKind

ROOT = Path(__file__).resolve().parents[1]
TOTAL = 5000
BATCH = 100
# The gateway is killed when the sink has received this many: about a third, and half way
# into a batch, so that the kill lands while a batch is being sent, not between two.
KILL_AT = int(0.3 * TOTAL) + BATCH // 2
API_KEY = "crash-test-key"
NUMBER = re.compile(r"Tin thu (\d{5})\b")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def number_of(text: str) -> int:
    match = NUMBER.match(text)
    assert match, f"unexpected message text {text!r}"
    return int(match.group(1))


def log_tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"


def db_state(database: Path) -> dict[str, set[int]]:
    """Message numbers by status, read straight from the file (the gateway may be dead)."""
    db = sqlite3.connect(database, timeout=10)
    try:
        by_status: dict[str, set[int]] = {}
        for status, text in db.execute("SELECT status, text FROM outbound_sms"):
            by_status.setdefault(status, set()).add(number_of(text))
        return by_status
    finally:
        db.close()


def pending(database: Path) -> int:
    db = sqlite3.connect(database, timeout=10)
    try:
        return db.execute("SELECT count(*) FROM outbound_sms WHERE status IN ('queued', 'sending')").fetchone()[0]
    finally:
        db.close()


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


async def test_sigkill_mid_dispatch_loses_nothing_and_duplicates_only_what_was_in_flight(tmp_path):
    database = tmp_path / "crash.sqlite3"
    sink_port, gateway_port = free_port(), free_port()
    sink_base = f"http://127.0.0.1:{sink_port}"
    settings_path = tmp_path / "settings.toml"
    settings_path.write_text(
        f'[server]\nport = {gateway_port}\n'
        f'[database]\nurl = "sqlite://{database}"\n'
        '[logging]\nformat = "json"\n'
        '[sms]\ntransport = "http"\nsender = "PHUONGKY"\nparts_per_second = 100000\n'
        f"dispatch_batch = {BATCH}\ndispatch_concurrency = 20\nclaim_lease_seconds = 2\nidle_poll_seconds = 0.1\n"
        f'[http_sms]\nurl = "{sink_base}/version1/messaging"\nusername = "xaphuongky"\ntimeout_seconds = 10.0\n'
    )
    environ = {"GATEWAY_SECRET_KEY": "crash-test", "GATEWAY_HTTP_SMS_API_KEY": API_KEY}
    settings = load(settings_path, environ=environ)

    # 5,000 messages already in the outbox, each carrying its own number.
    async with open_database(settings.database.url, run_migrations=True):
        outbox = Outbox(settings)
        async with in_transaction() as connection:
            for n in range(TOTAL):
                row = await outbox.enqueue(f"+8491{n:07d}", f"Tin thu {n:05d}: ho so cua ong/ba da co ket qua.",
                                           SmsKind.STATUS, urgent=True, using_db=connection)
                assert row is not None

    env = {**os.environ, "GATEWAY_SETTINGS": str(settings_path), **environ}
    env.pop("GATEWAY_DATABASE_URL", None)  # this test is about SQLite, whatever the suite runs on
    files = [open(tmp_path / "sink.log", "w")]
    sink = subprocess.Popen(
        [sys.executable, "-m", "bench.sms.sink", "--port", str(sink_port), "--api-key", API_KEY, "--delay", "0.02"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=files[0],
    )
    logs = [tmp_path / "gateway-1.log", tmp_path / "gateway-2.log"]
    gateways: list[subprocess.Popen] = []

    def start_gateway(log: Path) -> subprocess.Popen:
        files.append(open(log, "w"))
        process = subprocess.Popen([sys.executable, "-m", "gateway", "run"], cwd=ROOT, env=env,
                                   stdout=files[-1], stderr=subprocess.STDOUT)
        gateways.append(process)
        return process

    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:

            async def sink_json(path: str) -> dict:
                async with http.get(sink_base + path) as response:
                    return await response.json()

            deadline = time.monotonic() + 20
            while True:
                try:
                    assert (await sink_json("/stats"))["received"] == 0
                    break
                except aiohttp.ClientConnectionError:
                    assert sink.poll() is None and time.monotonic() < deadline, log_tail(tmp_path / "sink.log")
                    await asyncio.sleep(0.05)

            # Run 1: dispatch, and SIGKILL once the sink has about a third.
            first = start_gateway(logs[0])
            deadline = time.monotonic() + 40
            received = 0
            while received < KILL_AT:
                assert first.poll() is None, f"gateway exited early:\n{log_tail(logs[0])}"
                assert time.monotonic() < deadline, f"dispatch too slow: {received} received\n{log_tail(logs[0])}"
                await asyncio.sleep(0.01)
                received = (await sink_json("/stats"))["received"]
            os.kill(first.pid, signal.SIGKILL)
            first.wait(timeout=15)
            assert first.returncode == -signal.SIGKILL

            at_kill = Counter({number_of(t): c for t, c in (await sink_json("/received"))["counts"].items()})
            state = db_state(database)
            sent, claimed = state.get("sent", set()), state.get("sending", set())
            print(f"\nkilled at {sum(at_kill.values())} received by the sink; rows: "
                  + ", ".join(f"{status} {len(numbers)}" for status, numbers in sorted(state.items())))
            assert 0 < len(at_kill) < TOTAL, "the kill did not land mid-dispatch"
            assert max(at_kill.values()) == 1, "duplicates before any crash"
            assert sent <= set(at_kill), f"marked sent but never received: {sorted(sent - set(at_kill))[:10]}"
            in_flight = set(at_kill) - sent
            assert in_flight <= claimed, f"received, not marked, not claimed: {sorted(in_flight - claimed)[:10]}"
            assert len(claimed) <= BATCH

            # Run 2: the restarted gateway takes over the dead claims when their lease runs out.
            second = start_gateway(logs[1])
            deadline = time.monotonic() + 60
            while (left := pending(database)) > 0:
                assert second.poll() is None, f"restarted gateway exited:\n{log_tail(logs[1])}"
                assert time.monotonic() < deadline, f"{left} messages still pending after 60 s\n{log_tail(logs[1])}"
                await asyncio.sleep(0.1)
            stop(second)
            final = Counter({number_of(t): c for t, c in (await sink_json("/received"))["counts"].items()})
            stats = await sink_json("/stats")
    finally:
        for process in gateways:
            stop(process, signal.SIGKILL)
        stop(sink)
        for file in files:
            file.close()

    state = db_state(database)
    duplicated = {n for n, times in final.items() if times > 1}
    print(f"duplicates: {len(duplicated)} (in flight at the kill: received not marked {len(in_flight)}, "
          f"claimed {len(claimed)}); sink received {stats['received']} for {TOTAL} messages")
    assert stats["rejected"] == 0
    assert set(final) == set(range(TOTAL)), f"lost: {sorted(set(range(TOTAL)) - set(final))[:20]}"
    assert set(state) == {"sent"} and len(state["sent"]) == TOTAL, {k: len(v) for k, v in state.items()}
    assert sum(final.values()) == TOTAL + len(duplicated) and max(final.values()) <= 2
    assert duplicated <= claimed, f"sent twice but not in flight at the kill: {sorted(duplicated - claimed)[:10]}"
    assert len(duplicated) <= BATCH
