"""Health, metrics, logging hygiene, migrations and the demo data."""

from __future__ import annotations

import datetime as dt
import io
import json

from structlog.testing import capture_logs

from gateway import logs
from models.db import tortoise_config
from models.entities import Agency, Dossier, DossierStatus, FilingMode, Procedure


async def test_healthz(client):
    response = await client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}


async def test_metrics_count_hops(client, phone):
    caller = phone()
    await caller.dial()
    await caller.press("4")
    response = await client.get("/metrics")
    body = await response.text()
    assert response.status == 200
    assert 'gateway_ussd_hops_total{channel="at",end="false",retry="false",screen="procedures"} 1.0' in body
    assert "gateway_ussd_hop_seconds_count 2.0" in body


async def test_one_log_line_per_hop_without_the_phone_number(client, phone):
    caller = phone("0987542228")
    with capture_logs() as captured:
        await caller.dial()
        await caller.press("1")
    hops = [entry for entry in captured if entry["event"] == "ussd_hop"]
    assert [h["hop"] for h in hops] == [1, 2]
    assert [h["screen"] for h in hops] == ["main", "lookup_enter"]
    assert all(h["phone"] == "+8498*****28" for h in hops)
    assert all(isinstance(h["latency_ms"], float) for h in hops)


def test_redaction_masks_numbers_anywhere_in_a_line():
    stream = io.StringIO()
    logs.configure("info", "json", stream=stream)
    try:
        log = logs.get_logger("t")
        log.info("note", msisdn="+84987542228", otp="123456", detail="called back 0987542228 about id 030201001234")
        line = json.loads(stream.getvalue().strip().splitlines()[-1])
    finally:
        logs.configure("info", "json")
    text = json.dumps(line)
    assert "987542228" not in text
    assert "123456" not in text
    assert "030201001234" not in text
    assert line["msisdn"] == "+8498*****28" and line["otp"] == "***"


async def test_migrations_match_the_models(database_url):
    """A model change without a migration fails here (and on PostgreSQL in CI)."""
    from tortoise.context import TortoiseContext
    from tortoise.migrations.autodetector import MigrationAutodetector

    from models.db import migrate

    await migrate(database_url)
    config = tortoise_config(database_url)
    async with TortoiseContext() as ctx:
        await ctx.init(config=config)
        writers = await MigrationAutodetector(ctx.apps, config["apps"]).changes()
    assert writers == [], [w.name for w in writers]


async def test_demo_commune_has_what_the_issue_asks(client, clock):
    agency = await Agency.get(service_code="*384#")
    assert agency.hotline == "0987.542.228" and agency.address and agency.desk_hours
    procedures = await Procedure.filter(agency=agency)
    assert len(procedures) == 10
    assert all(p.processing_time and p.fee and p.documents for p in procedures)
    dossiers = await Dossier.filter(agency=agency)
    assert 28 <= len(dossiers) <= 32
    assert {d.status for d in dossiers} == set(DossierStatus)
    overdue = [d for d in dossiers if d.status.is_open and d.due_at and d.due_at < clock.now - dt.timedelta(days=1)]
    assert len(overdue) >= 3
    assert any(d.mode is FilingMode.FULL for d in dossiers)
    assert all(d.applicant_phone.startswith("+84") for d in dossiers)


async def until_sent(row_id: int, timeout: float = 5.0) -> None:
    """Wait for the app's dispatcher to mark an outbox row sent; fail loudly if it does not."""
    import asyncio
    import time

    from models.entities import OutboundSms, SmsStatus

    deadline = time.monotonic() + timeout
    while (row := await OutboundSms.get(id=row_id)).status is not SmsStatus.SENT:
        assert time.monotonic() < deadline, f"SMS {row_id} not sent after {timeout}s: {row.status} {row.last_error!r}"
        await asyncio.sleep(0.05)


async def test_no_phone_number_or_otp_in_any_log_line_of_a_real_flow(client, phone):
    """USSD hops, an SMS in, its reply, an OTP out: the rendered log holds none of them in clear."""
    from gateway.app import OUTBOX
    from models.entities import SmsKind

    stream = io.StringIO()
    logs.configure("debug", "json", stream=stream)
    try:
        caller = phone("0987542228")
        await caller.dial()
        await caller.press("1", "2611230001")
        await client.post("/sms/json/inbound", json={"from": "0912345678", "to": "8088", "text": "HS 2611230001"})
        otp = await client.app[OUTBOX].enqueue("+84987542228", "Ma OTP cua ban la 482913", SmsKind.OTP, urgent=True)
        await until_sent(otp.id)
    finally:
        logs.configure("info", "json")
    rendered = stream.getvalue()
    events = {json.loads(line)["event"] for line in rendered.splitlines() if line.startswith("{")}
    assert {"ussd_hop", "sms_in", "sms_send"} <= events, events
    for secret in ("987542228", "912345678", "482913"):
        assert secret not in rendered, secret


async def test_metrics_count_sms_sent_and_parts(client):
    from gateway.app import OUTBOX
    from models.entities import SmsKind

    row = await client.app[OUTBOX].enqueue("+84987542228", "x" * 200, SmsKind.INFO, urgent=True)
    await until_sent(row.id)
    body = await (await client.get("/metrics")).text()
    assert 'gateway_sms_send_attempts_total{outcome="sent",transport="console"} 1.0' in body
    assert 'gateway_sms_parts_sent_total{transport="console"} 2.0' in body
