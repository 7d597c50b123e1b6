"""Two gateway workers on one database, as the README deploys them: copies of one request
spread over both get one answer, settled by the database (unique keys, atomic claims).

Each worker is a real ``python -m gateway run`` process with the webhook token set and
migrations run once beforehand (``migrate_on_start = false``), on the suite's database:
a SQLite file here, the PostgreSQL server in CI's second run.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys

import aiohttp
import pytest

from gateway.outbox import DISPATCHER_LEASE, Dispatcher, Outbox
from gateway.sms import SendOutcome, SendResult, SmsTransport
from models.db import open_database
from models.entities import InboundSms, OutboundSms, SmsKind, UssdSession
from models.fastsql import open_runner
from models.leases import Leases
from tests.servers import ROOT, GatewayProcess, log_tail, write_settings
from tests.waiting import eventually

TOKEN = "workers-token"


@pytest.fixture
async def two_workers(tmp_path, database_url):
    env = {"GATEWAY_SECRET_KEY": "test-secret", "GATEWAY_WEBHOOK_TOKEN": TOKEN, "GATEWAY_DATABASE_URL": database_url}
    settings = write_settings(tmp_path / "settings.toml", {
        "database": {"migrate_on_start": False},
        "logging": {"format": "json"},
        "sms": {"run_dispatcher": False},
    })
    for command in ("migrate", "seed"):
        done = subprocess.run([sys.executable, "-m", "gateway", "--settings", str(settings), command],
                              cwd=ROOT, env={**GatewayProcess(settings, tmp_path / "x")._env, **env},
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    workers = [GatewayProcess(settings, tmp_path / f"worker{n}.log", env) for n in (1, 2)]
    try:
        for worker in workers:
            await worker.start()
        async with open_database(database_url):
            yield workers
    finally:
        for worker in workers:
            worker.stop()


async def _spread(workers, requests):
    """Send every request at once, alternating between the workers."""
    async with aiohttp.ClientSession(headers={"X-Gateway-Token": TOKEN}) as http:
        async def send(n, method, path, **kwargs):
            async with http.request(method, workers[n % 2].base_url + path, **kwargs) as response:
                return response.status, await response.text()

        return await asyncio.gather(*(send(n, *request[:2], **request[2]) for n, request in enumerate(requests)))


@pytest.mark.parametrize("distinct_ids", [True, False])
async def test_copies_of_one_text_over_two_workers_get_exactly_one_reply(two_workers, distinct_ids):
    requests = []
    for n in range(20):
        payload = {"from": "0987542228", "to": "8088", "text": "TG"}
        if distinct_ids:
            payload["id"] = f"copy-{n}"
        requests.append(("POST", "/sms/json/inbound", {"json": payload}))
    answers = await _spread(two_workers, requests)
    assert all(status == 200 for status, _ in answers), [a for a in answers if a[0] != 200][:3]
    statuses = sorted('"accepted"' in body for _, body in answers)
    assert statuses.count(True) == 1, (answers, [log_tail(w.log_path) for w in two_workers])
    assert await InboundSms.all().count() == 1
    assert await OutboundSms.all().count() == 1


async def test_copies_of_one_first_hop_over_two_workers_all_get_the_stored_answer(two_workers):
    form = {"sessionId": "spread", "serviceCode": "*384#", "phoneNumber": "0987542228", "text": ""}
    answers = await _spread(two_workers, [("POST", "/ussd/at", {"data": form})] * 20)
    assert {status for status, _ in answers} == {200}
    bodies = {body for _, body in answers}
    assert len(bodies) == 1, bodies
    assert bodies.pop().startswith("CON ")
    session = await UssdSession.get(external_id="spread")
    assert session.hops == 1 and not session.ended


# -- one dispatcher among workers: the lease "dispatcher" ---------------------------------

class Recording(SmsTransport):
    """A transport that accepts everything and keeps what it was given."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sent: list[str] = []

    async def send(self, message):
        self.sent.append(message.text)
        return SendResult(SendOutcome.SENT, f"{self.name}-{message.id}")


async def _queue(outbox: Outbox, texts) -> None:
    for text in texts:
        assert await outbox.enqueue("+84987542228", text, SmsKind.OTP, urgent=True) is not None


async def _sent(sql, expected: int) -> bool:
    return (await sql.fetch("SELECT count(*) FROM outbound_sms WHERE status='sent'"))[0][0] == expected


async def test_two_leased_dispatchers_on_one_database_only_the_holder_sends_and_the_other_takes_over(
        settings, database_url, clock, monkeypatch):
    settings = settings.replace(sms={"dispatcher_lease_seconds": 3, "idle_poll_seconds": 0.05})
    async with open_database(database_url, run_migrations=True):
        sql_a, sql_b, sql = open_runner(database_url), open_runner(database_url), open_runner(database_url)
        outbox = Outbox(settings, clock, sql)
        first, second = Recording("first"), Recording("second")
        a = Dispatcher(settings, first, sql_a, clock, worker_id="host:1:a", lease=True)
        b = Dispatcher(settings, second, sql_b, clock, worker_id="host:2:b", lease=True)
        stop_a, stop_b = asyncio.Event(), asyncio.Event()
        task_a = asyncio.create_task(a.run(stop_a))
        task_b = None
        try:
            await eventually(a.lease.held.is_set, what="the first dispatcher to take the lease")
            task_b = asyncio.create_task(b.run(stop_b))
            assert await b.lease.step() is False  # taken: the second one waits beside it
            await _queue(outbox, [f"one {n}" for n in range(30)])
            await eventually(lambda: len(first.sent) == 30, what="the holder to send all 30")
            await eventually(lambda: _sent(sql, 30), what="the 30 marked sent")
            assert second.sent == [] and not b.lease.held.is_set()
            assert (await Leases(sql).current(DISPATCHER_LEASE)).holder == "host:1:a"

            # The holder dies: it stops without giving the lease back. Until the lease runs
            # out (by the clock both read), the other one still does not send.
            async def no_release(name, holder):
                return False

            monkeypatch.setattr(a.lease._leases, "release", no_release)
            stop_a.set()
            await task_a
            await _queue(outbox, [f"two {n}" for n in range(10)])
            assert await b.lease.step() is False
            assert second.sent == []
            clock.advance(4)  # past the dead holder's lease
            await eventually(b.lease.held.is_set, what="the second dispatcher to take the lease over")
            await eventually(lambda: len(second.sent) == 10, what="the new holder to send the 10 queued")
            assert sorted(second.sent) == sorted(f"two {n}" for n in range(10))
            assert len(first.sent) == 30
            assert (await Leases(sql).current(DISPATCHER_LEASE)).holder == "host:2:b"
        finally:
            stop_a.set()
            stop_b.set()
            for task in (task_a, task_b):
                if task is not None:
                    await task
        # A clean stop gives the lease back at once.
        assert await Leases(sql).current(DISPATCHER_LEASE) is None
        for runner in (sql_a, sql_b, sql):
            await runner.close()


async def test_an_unleased_dispatcher_sends_whoever_holds_the_lease(settings, database_url, clock):
    """``python -m gateway dispatch`` (no lease) keeps working beside a server's dispatcher."""
    settings = settings.replace(sms={"idle_poll_seconds": 0.05})
    async with open_database(database_url, run_migrations=True):
        sql = open_runner(database_url)
        assert await Leases(sql).acquire(DISPATCHER_LEASE, "host:9:other", clock(), 60)
        lone = Recording("lone")
        await _queue(Outbox(settings, clock, sql), ["x", "y"])
        stop = asyncio.Event()
        task = asyncio.create_task(Dispatcher(settings, lone, sql, clock).run(stop))
        try:
            await eventually(lambda: len(lone.sent) == 2, what="the lone dispatcher to send")
        finally:
            stop.set()
            await task
        assert (await Leases(sql).current(DISPATCHER_LEASE)).holder == "host:9:other"
        await sql.close()
