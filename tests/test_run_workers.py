"""``python -m gateway run --workers N``: one parent that holds the port, N workers behind it.

The real command in a subprocess on a loopback port, on the suite's PostgreSQL server (the
test is skipped on SQLite, where the command must refuse, which is checked here too). The
parent's JSON log lines name its workers' pids (``worker_started``); each worker's request
ids start with its pid in hex (``gateway.app._next_request_id``), so the ``ussd_hop`` lines
show which worker served a hop. Checked:

- hops sent on fresh connections are served, and by both workers (SO_REUSEPORT spreads
  connections by their source port: 40 connections all landing on one of two sockets would
  take odds of 2 in 2^40);
- exactly one worker holds the dispatcher lease (the lease table, and only one
  ``lease_taken`` line), and the purger and reminders leases are held by workers too;
- SIGKILL to the worker holding the dispatcher lease: the parent reports it and starts a
  new worker, another process takes the lease once it runs out, and the SMS queued while
  nobody held it are sent;
- SIGTERM to the parent stops every worker, which release their leases, and it exits 0.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid

import aiohttp
import pytest

from gateway.outbox import DISPATCHER_LEASE, Outbox
from gateway.settings import from_mapping
from models.db import open_database
from models.entities import SmsKind
from models.fastsql import orm_runner
from models.leases import Leases
from tests.conftest import selected_database
from tests.servers import ROOT, free_port, log_tail, run_cli, write_settings
from tests.waiting import eventually

LEASE_SECONDS = 3  # the dispatcher's lease: a takeover after a SIGKILL within seconds


def _log_lines(path) -> list[dict]:
    lines = []
    for raw in path.read_text(errors="replace").splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if isinstance(line, dict):
            lines.append(line)
    return lines


def _events(path, event: str) -> list[dict]:
    return [line for line in _log_lines(path) if line.get("event") == event]


def _holder_pid(holder: str) -> int:
    return int(holder.split(":")[-2])  # models.leases.process_holder_id: host:pid:random


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_sqlite_refuses_several_workers(tmp_path):
    settings = write_settings(tmp_path / "settings.toml", {"database": {"url": f"sqlite://{tmp_path}/g.sqlite3"}})
    code, out, err = await run_cli(settings, "run", "--port", str(free_port()), "--workers", "2", timeout=60)
    assert code == 2, (out, err)
    assert "several workers need PostgreSQL" in err, err
    assert not (tmp_path / "g.sqlite3").exists()  # refused before touching the database


@pytest.mark.skipif(selected_database() != "postgres", reason="several workers need PostgreSQL")
async def test_two_workers_share_the_port_one_dispatcher_takes_over_after_a_sigkill(tmp_path, database_url):
    log_path = tmp_path / "workers.log"
    settings_path = write_settings(tmp_path / "settings.toml", {
        "logging": {"format": "json"},
        "sms": {"dispatcher_lease_seconds": LEASE_SECONDS, "idle_poll_seconds": 0.1},
    })
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "GATEWAY_SECRET_KEY": "test-secret",
           "GATEWAY_DATABASE_URL": database_url}
    env.pop("GATEWAY_SETTINGS", None)
    seeded = subprocess.run([sys.executable, "-m", "gateway", "--settings", str(settings_path), "seed"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert seeded.returncode == 0, seeded.stderr
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    log_file = log_path.open("ab")
    parent = subprocess.Popen(
        [sys.executable, "-m", "gateway", "--settings", str(settings_path), "run",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
        cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT,
    )
    started: list[int] = []
    try:
        def serving():
            assert parent.poll() is None, f"parent exited: {log_tail(log_path)}"
            return len(_events(log_path, "worker_serving")) >= 2

        await eventually(serving, timeout=60, what=f"two workers serving\n{log_tail(log_path)}")
        started = [line["pid"] for line in _events(log_path, "worker_started")]
        assert len(started) == 2 and parent.pid not in started

        # Hops, each on a connection of its own: every one answered, by both workers.
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as http:
            async def first_hop(n: int) -> str:
                form = {"sessionId": f"w-{n}-{uuid.uuid4().hex[:6]}", "serviceCode": "*384#",
                        "phoneNumber": "0987542228", "text": ""}
                async with http.post(f"{base_url}/ussd/at", data=form) as response:
                    assert response.status == 200
                    return await response.text()

            answers = [await first_hop(n) for n in range(40)]
        assert all(answer.startswith("CON ") for answer in answers), answers[:3]
        hops = await eventually(lambda: (h := _events(log_path, "ussd_hop")) and len(h) >= 40 and h,
                                what="40 ussd_hop lines")
        served_by = {int(hop["request_id"].split("-")[0][:-4], 16) for hop in hops}
        assert served_by == set(started), (served_by, started)

        async with open_database(database_url):
            leases = Leases(orm_runner())

            async def holder(name: str):
                state = await leases.current(name)
                return state.holder if state is not None else None

            # One dispatcher: the lease's one row names a worker, and only it took the lease.
            dispatcher = await eventually(lambda: holder(DISPATCHER_LEASE), what="a dispatcher lease")
            holder_pid = _holder_pid(dispatcher)
            assert holder_pid in started
            taken = [line for line in _events(log_path, "lease_taken") if line["lease"] == DISPATCHER_LEASE]
            assert [line["holder"] for line in taken] == [dispatcher]
            for name in ("purger", "reminders"):
                job = await eventually(lambda: holder(name), what=f"the {name} lease")
                assert _holder_pid(job) in started, (name, job)

            # The holder dies without a word; SMS are queued while nobody sends.
            os.kill(holder_pid, signal.SIGKILL)
            settings = from_mapping({"database": {"url": database_url}}, environ={"GATEWAY_SECRET_KEY": "test-secret"})
            outbox = Outbox(settings, sql=orm_runner())
            texts = [f"after the kill {n}" for n in range(5)]
            for text in texts:
                assert await outbox.enqueue("+84987542228", text, SmsKind.REPLY, urgent=True) is not None

            def died():
                return [line for line in _events(log_path, "worker_died") if line["pid"] == holder_pid]

            death = (await eventually(died, what="the parent to report the killed worker"))[0]
            assert death["exit_code"] == -signal.SIGKILL and death["restart"] is True

            async def taken_over():
                now_holder = await holder(DISPATCHER_LEASE)
                return now_holder if now_holder and _holder_pid(now_holder) != holder_pid else None

            successor = await eventually(taken_over, timeout=30, what=f"another dispatcher\n{log_tail(log_path)}")
            started = [line["pid"] for line in _events(log_path, "worker_started")]
            assert len(started) == 3, started  # the killed worker's slot was started again
            assert _holder_pid(successor) in started and _alive(_holder_pid(successor))

            async def all_sent():
                rows = await orm_runner().fetch(
                    "SELECT status, transport FROM outbound_sms WHERE text LIKE 'after the kill %'")
                return len(rows) == len(texts) and all(row == ("sent", "console") for row in rows)

            await eventually(all_sent, timeout=30, what=f"the queued SMS sent\n{log_tail(log_path)}")

            # SIGTERM to the parent: every worker stops, and gives its leases back.
            await eventually(lambda: len(_events(log_path, "worker_serving")) >= 3, timeout=60,
                             what="the new worker serving")
            live = [pid for pid in started if pid != holder_pid]
            parent.send_signal(signal.SIGTERM)
            code = await asyncio.get_running_loop().run_in_executor(None, lambda: parent.wait(timeout=60))
            assert code == 0, log_tail(log_path)
            assert not any(_alive(pid) for pid in live), live
            stopped = {line["pid"] for line in _events(log_path, "worker_stopped")}
            assert stopped == set(live)
            assert await holder(DISPATCHER_LEASE) is None
            for name in ("purger", "reminders"):  # unless the killed worker had it: it runs out
                left = await holder(name)
                assert left is None or _holder_pid(left) == holder_pid, (name, left)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        for pid in started:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        log_file.close()
