"""The outbox's delivery guarantee under a real crash: SIGKILL of a dispatcher mid-batch,
with a second dispatcher running beside it.

Two dispatchers share the suite's database (SQLite file in tmp_path, or the PostgreSQL
server of GATEWAY_TEST_DATABASE_URL): the real gateway (``python -m gateway run``,
dispatcher inside) and a lone ``python -m gateway dispatch``, transport "http". They send
5,000 enqueued messages to a stand-in aggregator in its own process (``bench/sms/sink.py``:
answers like the real one, holds each answer 20 ms so that messages are in flight, and
records what it received). The gateway is killed with SIGKILL once the sink has about a
third and while the gateway holds a claimed batch (rows 'sending' with its worker id),
then started again. ``gateway/outbox.py`` promises at least once: nothing lost, and only
what the dead dispatcher had in flight (at most ``dispatch_batch`` messages) sent twice.

At the kill the other dispatcher is frozen (SIGSTOP) while the database and then the sink
are read, so the picture is one moment. Checked there:

- the kill landed mid-batch: rows claimed by the killed process existed, some of them
  already received by the sink (in flight), so the bounds below cannot pass vacuously;
- every row marked sent was received by the sink (a row is never marked before it is
  sent), every message received but not marked was claimed, and nothing was sent twice.

After the restart: every one of the 5,000 numbers reached the sink, every row is sent,
duplicates exist and are only messages the killed process had in flight, each at most
twice, at most ``dispatch_batch`` of them; the surviving dispatcher really sent messages.
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

from gateway.outbox import Outbox
from gateway.settings import load
from models.db import open_database
from models.fastsql import orm_runner
from models.entities import SmsKind
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[1]
TOTAL = 5000
BATCH = 100
CONCURRENCY = 20
# The gateway is killed once the sink has received this many (about a third), while it is
# sending a batch: a claim takes up to BATCH rows, and the dispatcher marks them sent
# CONCURRENCY at a time as they are accepted. So with between these many claims left, a
# round of the batch has been marked, the next round is at the sink and one more is to go.
KILL_AT = int(0.3 * TOTAL)
KILL_WHEN_CLAIMED = range(2 * CONCURRENCY, BATCH - CONCURRENCY + 1)
API_KEY = "crash-test-key"
NUMBER = re.compile(r"Tin thu (\d{5})\b")


def number_of(text: str) -> int:
    match = NUMBER.match(text)
    assert match, f"unexpected message text {text!r}"
    return int(match.group(1))


def log_tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGCONT)  # a frozen process would never act on SIGTERM
        process.send_signal(sig)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


class Outboxes:
    """The outbox table read straight from the database, on a connection of the test's own
    (the dispatchers may be dead or frozen)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.postgres = not url.startswith("sqlite://")
        self._pg = None
        self._sqlite: sqlite3.Connection | None = None

    async def open(self) -> "Outboxes":
        if self.postgres:
            import asyncpg

            self._pg = await asyncpg.connect(self.url.replace("postgres://", "postgresql://", 1))
        else:
            path = self.url.removeprefix("sqlite://").partition("?")[0]
            self._sqlite = sqlite3.connect(path, timeout=10, isolation_level=None)
        return self

    async def close(self) -> None:
        if self._pg is not None:
            await self._pg.close()
        if self._sqlite is not None:
            self._sqlite.close()

    async def _fetch(self, sql: str, *params) -> list[tuple]:
        if self._pg is not None:
            numbered = iter(range(1, 10))
            sql = re.sub(r"\?", lambda _: f"${next(numbered)}", sql)
            return [tuple(row) for row in await self._pg.fetch(sql, *params)]
        assert self._sqlite is not None
        return self._sqlite.execute(sql, params).fetchall()

    async def claimed_by(self, worker_prefix: str) -> int:
        [(count,)] = await self._fetch(
            "SELECT count(*) FROM outbound_sms WHERE status = 'sending' AND claimed_by LIKE ?", worker_prefix + "%")
        return count

    async def pending(self) -> int:
        [(count,)] = await self._fetch("SELECT count(*) FROM outbound_sms WHERE status IN ('queued', 'sending')")
        return count

    async def state(self) -> tuple[dict[str, set[int]], dict[str, set[int]]]:
        """(message numbers by status, numbers of 'sending' rows by the worker holding them)."""
        by_status: dict[str, set[int]] = {}
        by_worker: dict[str, set[int]] = {}
        for status, claimed_by, text in await self._fetch("SELECT status, claimed_by, text FROM outbound_sms"):
            by_status.setdefault(status, set()).add(number_of(text))
            if status == "sending":
                by_worker.setdefault(claimed_by, set()).add(number_of(text))
        return by_status, by_worker


async def test_sigkill_mid_batch_beside_a_second_dispatcher_loses_nothing_and_duplicates_only_its_batch(
    tmp_path, database_url
):
    sink_port, gateway_port = free_port(), free_port()
    sink_base = f"http://127.0.0.1:{sink_port}"
    settings_path = tmp_path / "settings.toml"
    settings_path.write_text(
        f'[server]\nport = {gateway_port}\n'
        # Migrated once below: two processes must not both migrate at start.
        f'[database]\nurl = "{database_url}"\nmigrate_on_start = false\n'
        '[logging]\nformat = "json"\n'
        '[sms]\ntransport = "http"\nsender = "PHUONGKY"\nparts_per_second = 100000\n'
        f"dispatch_batch = {BATCH}\ndispatch_concurrency = {CONCURRENCY}\nclaim_lease_seconds = 2\n"
        "idle_poll_seconds = 0.1\n"
        f'[http_sms]\nurl = "{sink_base}/version1/messaging"\nusername = "xaphuongky"\ntimeout_seconds = 10.0\n'
    )
    environ = {"GATEWAY_SECRET_KEY": "crash-test", "GATEWAY_HTTP_SMS_API_KEY": API_KEY}
    settings = load(settings_path, environ=environ)

    # 5,000 messages already in the outbox, each carrying its own number.
    async with open_database(settings.database.url, run_migrations=True):
        outbox = Outbox(settings)
        async with orm_runner().transaction() as tx:
            for n in range(TOTAL):
                row = await outbox.enqueue(f"+8491{n:07d}", f"Tin thu {n:05d}: ho so cua ong/ba da co ket qua.",
                                           SmsKind.STATUS, urgent=True, tx=tx)
                assert row is not None

    env = {**os.environ, "GATEWAY_SETTINGS": str(settings_path), **environ}
    env.pop("GATEWAY_DATABASE_URL", None)  # the settings file names the database
    files = [open(tmp_path / "sink.log", "w")]
    sink = subprocess.Popen(
        [sys.executable, "-m", "bench.sms.sink", "--port", str(sink_port), "--api-key", API_KEY, "--delay", "0.02"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=files[0],
    )
    processes: list[subprocess.Popen] = []

    def start(command: str, log: Path) -> subprocess.Popen:
        files.append(open(log, "w"))
        process = subprocess.Popen([sys.executable, "-m", "gateway", command], cwd=ROOT, env=env,
                                   stdout=files[-1], stderr=subprocess.STDOUT)
        processes.append(process)
        return process

    logs = {"gateway": tmp_path / "gateway-1.log", "dispatcher": tmp_path / "dispatcher.log",
            "restarted": tmp_path / "gateway-2.log"}
    db = await Outboxes(database_url).open()
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

            # Run 1: two dispatchers; SIGKILL the gateway while it holds a batch.
            gateway = start("run", logs["gateway"])
            other = start("dispatch", logs["dispatcher"])
            killed_worker = f"{socket.gethostname()}:{gateway.pid}:"  # Dispatcher's worker id: host:pid:random
            deadline = time.monotonic() + 60
            received = claimed = 0
            while True:
                assert gateway.poll() is None, f"gateway exited early:\n{log_tail(logs['gateway'])}"
                assert other.poll() is None, f"dispatcher exited early:\n{log_tail(logs['dispatcher'])}"
                assert time.monotonic() < deadline, (
                    f"no moment to kill in 60 s: sink received {received}, the gateway holds {claimed} claims\n"
                    f"{log_tail(logs['gateway'])}")
                await asyncio.sleep(0.005)
                received = (await sink_json("/stats"))["received"]
                if received < KILL_AT or (claimed := await db.claimed_by(killed_worker)) not in KILL_WHEN_CLAIMED:
                    continue
                # A candidate moment: freeze the gateway and check it really holds a batch part
                # of which is already at the provider (a slow machine may have moved on since).
                os.kill(gateway.pid, signal.SIGSTOP)
                _, claims_now = await db.state()
                held = set().union(*(rows for worker, rows in claims_now.items() if worker.startswith(killed_worker)))
                at_sink = {number_of(t) for t in (await sink_json("/received"))["counts"]}
                if len(held) in KILL_WHEN_CLAIMED and held & at_sink:
                    break
                os.kill(gateway.pid, signal.SIGCONT)
            os.kill(gateway.pid, signal.SIGKILL)
            os.kill(other.pid, signal.SIGSTOP)  # one picture: nothing moves while it is taken
            try:
                gateway.wait(timeout=15)
                assert gateway.returncode == -signal.SIGKILL
                # The database first, then the sink: a row is marked only after the sink has it.
                state, claims = await db.state()
                at_kill = Counter({number_of(t): c for t, c in (await sink_json("/received"))["counts"].items()})
            finally:
                os.kill(other.pid, signal.SIGCONT)

            sent = state.get("sent", set())
            claimed_rows = state.get("sending", set())
            killed_claims = set().union(*(rows for worker, rows in claims.items() if worker.startswith(killed_worker)))
            killed_in_flight = killed_claims & set(at_kill)
            print(f"\nkilled at {sum(at_kill.values())} received by the sink; rows: "
                  + ", ".join(f"{status} {len(numbers)}" for status, numbers in sorted(state.items()))
                  + f"; claimed by the killed gateway {len(killed_claims)}, of them at the sink {len(killed_in_flight)}")
            assert 0 < len(at_kill) < TOTAL, "the kill did not land mid-dispatch"
            assert killed_claims, f"the kill did not land mid-batch: no row claimed by {killed_worker}* ({claims.keys()})"
            assert killed_in_flight, "the killed gateway had nothing at the provider: the bounds below would be vacuous"
            assert len(killed_claims) <= BATCH
            assert max(at_kill.values()) == 1, "duplicates before any crash"
            assert sent <= set(at_kill), f"marked sent but never received: {sorted(sent - set(at_kill))[:10]}"
            in_flight = set(at_kill) - sent
            assert in_flight <= claimed_rows, f"received, not marked, not claimed: {sorted(in_flight - claimed_rows)[:10]}"

            # Run 2: the gateway is started again; the claims of the dead one are taken over
            # (by either dispatcher) when their lease runs out.
            restarted = start("run", logs["restarted"])
            deadline = time.monotonic() + 60
            while (left := await db.pending()) > 0:
                assert restarted.poll() is None, f"restarted gateway exited:\n{log_tail(logs['restarted'])}"
                assert other.poll() is None, f"dispatcher exited:\n{log_tail(logs['dispatcher'])}"
                assert time.monotonic() < deadline, f"{left} messages still pending after 60 s\n{log_tail(logs['restarted'])}"
                await asyncio.sleep(0.1)
            stop(restarted)
            stop(other)
            final = Counter({number_of(t): c for t, c in (await sink_json("/received"))["counts"].items()})
            stats = await sink_json("/stats")
        state, _ = await db.state()
    finally:
        for process in processes:
            stop(process, signal.SIGKILL)
        stop(sink)
        for file in files:
            file.close()
        await db.close()

    duplicated = {n for n, times in final.items() if times > 1}
    print(f"duplicates: {len(duplicated)} (the killed gateway's claims {len(killed_claims)}, at the sink "
          f"{len(killed_in_flight)}); sink received {stats['received']} for {TOTAL} messages")
    assert stats["rejected"] == 0
    assert set(final) == set(range(TOTAL)), f"lost: {sorted(set(range(TOTAL)) - set(final))[:20]}"
    assert set(state) == {"sent"} and len(state["sent"]) == TOTAL, {k: len(v) for k, v in state.items()}
    assert sum(final.values()) == TOTAL + len(duplicated) and max(final.values()) <= 2
    assert duplicated, "nothing was sent twice: the killed gateway's in-flight batch was not sent again"
    assert duplicated <= killed_in_flight, (
        f"sent twice but not in flight in the killed gateway: {sorted(duplicated - killed_in_flight)[:10]}")
    assert len(duplicated) <= BATCH
    assert "sms_send" in logs["dispatcher"].read_text(errors="replace"), "the second dispatcher never sent"
