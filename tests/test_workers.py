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

from models.db import open_database
from models.entities import InboundSms, OutboundSms, UssdSession
from tests.servers import ROOT, GatewayProcess, log_tail, write_settings

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
