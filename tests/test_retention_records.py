"""Retention of what the sync API and the console leave behind: a dossier's notification
records, the one-stop system's event ids, console sessions and the audit log.

Everything is made through the real app over HTTP (the sync API, the console's login and
logout), time is moved with the test clock, and each purge is checked for exactly what went
and what stayed. A replay that arrives after its event id was purged changes nothing and
sends nothing.
"""

from __future__ import annotations

import pytest

from gateway.api import add_api_client
from gateway.app import SQL, create_app
from models.entities import AuditLog, ClerkSession, Dossier, DossierEvent, DossierNotification, OutboundSms
from models.retention import COUNT_KEYS, Purger
from models.seed import seed
from tests.test_console import Desk
from tests.test_otp_api import Api

DAY = 86400
AGENCY = "000.32.22.H23"
CODE = f"{AGENCY}-250101-0042"


@pytest.fixture
def quiet_settings(settings):
    """No dispatcher or purger of the app's own (the test drives the purger); plain-HTTP cookies."""
    return settings.replace(sms={"run_dispatcher": False}, retention={"run_purger": False},
                            notifications={"run_reminders": False}, console={"secure_cookies": False})


@pytest.fixture
async def client(aiohttp_client, quiet_settings, clock):
    client = await aiohttp_client(create_app(quiet_settings, clock=clock))
    await seed(now=clock.now)
    return client


async def purge(settings, client, clock) -> dict[str, int]:
    counts = await Purger(settings, client.app[SQL], clock).purge_once(clock.now)
    return {key: value for key, value in counts.items() if value}


async def test_notifications_events_sessions_and_audit_go_after_their_time(client, quiet_settings, clock):
    retention, console = quiet_settings.retention, quiet_settings.console
    assert (retention.outbound_sms_days, retention.dossier_event_days, retention.audit_log_days) == (90, 180, 365)
    assert (console.session_idle_minutes, retention.session_grace_seconds) == (30, 60)
    api = Api(client, await add_api_client(client.app[SQL], "desk", ["sync"], clock.now, [AGENCY]))
    record = {"code": CODE, "agency": AGENCY, "procedure": "1.001193", "applicant_name": "Tran Thi Binh",
              "applicant_phone": "0912345678", "received_at": "2025-01-01T08:00:00+07:00", "status": 2}
    status, body, _ = await api.post("/dossiers", {"dossiers": [record]})
    assert status == 200 and body["results"][0]["outcome"] == "created", body
    moved = {"event_id": "ev-1", "code": CODE, "status": 4, "occurred_at": clock.now.isoformat()}
    status, body, _ = await api.post("/dossiers/events", {"events": [moved]})
    assert status == 200 and body["results"][0]["outcome"] == "applied", body
    dossier = await Dossier.get(code=CODE)
    assert await DossierNotification.filter(dossier_id=dossier.id).count() == 2
    assert await DossierEvent.filter(dossier_id=dossier.id).count() == 1

    ended, idle = Desk(client), Desk(client)
    await ended.sign_in("mai", now=clock.now)
    logout = await ended.post("/console/logout", csrf=await ended.csrf("/console/"))
    assert logout.status == 303
    idle.client.session.cookie_jar.clear()
    await idle.sign_in("lan", now=clock.now)
    audit_rows = await AuditLog.all().count()
    assert audit_rows >= 4  # two accounts made, their logins, a logout
    assert await ClerkSession.filter(ended=True).count() == 1 and await ClerkSession.filter(ended=False).count() == 1

    # Inside every window: nothing goes.
    assert await purge(quiet_settings, client, clock) == {}
    clock.advance(61)  # the logged-out session is past its grace; the open one is not idle long enough
    assert await purge(quiet_settings, client, clock) == {"clerk_sessions": 1}
    assert await ClerkSession.filter(ended=False).count() == 1
    clock.advance(30 * 60)  # idle past the timeout and the grace
    assert await purge(quiet_settings, client, clock) == {"clerk_sessions": 1}
    assert await ClerkSession.all().count() == 0

    clock.advance(90 * DAY - 30 * 60 - 61)  # the notifications are 90 days old to the second: kept
    assert await purge(quiet_settings, client, clock) == {}
    clock.advance(1)
    # The first SMS, superseded (final) by the second inside the debounce, goes with its
    # record; the second still waits for a dispatcher: it and its record stay.
    assert await purge(quiet_settings, client, clock) == {"dossier_notifications": 1, "outbound_sms": 1}
    waiting = await DossierNotification.filter(dossier_id=dossier.id)
    assert len(waiting) == 1 and (await OutboundSms.get(id=waiting[0].outbound_sms_id)).status.value == "queued"
    assert await DossierEvent.filter(dossier_id=dossier.id).count() == 1

    clock.advance(90 * DAY)
    assert await purge(quiet_settings, client, clock) == {"dossier_events": 1}
    assert await DossierEvent.all().count() == 0
    # The one-stop system sends the old event again: it is recorded anew, and moves nothing.
    sms_before = await OutboundSms.all().count()
    status, body, _ = await api.post("/dossiers/events", {"events": [moved]})
    assert status == 200 and body["results"][0]["outcome"] in ("unchanged", "stale"), body
    assert (await Dossier.get(code=CODE)).status == 4
    assert await OutboundSms.all().count() == sms_before

    assert await AuditLog.all().count() == audit_rows
    clock.advance(185 * DAY + 1)
    counts = await purge(quiet_settings, client, clock)
    assert counts.keys() <= {"audit_log", "dossier_notifications", "dossier_events"} and counts["audit_log"] == audit_rows
    assert await AuditLog.all().count() == 0
    assert set(COUNT_KEYS) >= {"dossier_notifications", "dossier_events", "clerk_sessions", "audit_log"}
