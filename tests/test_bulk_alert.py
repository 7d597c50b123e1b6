"""The bulk pickup alert (DeskActions.alert_many) as one batch, on the real database of the
real app: its statements do not grow with the list, its results and records are what one
``mark_ready`` per code would leave, and a clerk's act stands against a one-stop state dated
ahead of the clerk's clock. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest

from gateway.app import SERVICES, SQL
from models.audit import Actor
from models.clerks import Scope
from models.desk_actions import Verdict
from models.entities import AuditLog, Dossier, DossierNotification, DossierStatus, OutboundSms, SmsKind
from tests.test_sync_api import AGENCY, desk, dossier, keys  # noqa: F401 - fixtures

ACTOR = Actor(None, "lan", "api")


class Counting:
    """The caller's unit of work, counting the statements sent through it."""

    def __init__(self, tx) -> None:
        self.tx = tx
        self.dialect = tx.dialect
        self.statements = 0

    async def fetch(self, sql, params=()):
        self.statements += 1
        return await self.tx.fetch(sql, params)

    async def execute_many(self, sql, rows):
        self.statements += 1
        return await self.tx.execute_many(sql, rows)


async def _push(desk, numbers, **extra):  # noqa: F811 - the fixture
    status, body, _ = await desk.post("/dossiers", {"dossiers": [dossier(n, **extra) for n in numbers]})
    assert status == 200, body
    return [dossier(n)["code"] for n in numbers]


async def _alert(client, codes, now):
    services, sql = client.app[SERVICES], client.app[SQL]
    scope = await _scope(client)
    async with sql.transaction() as tx:
        counting = Counting(tx)
        results = await services.desk.alert_many(counting, scope, ACTOR, codes, now)
    return results, counting.statements


async def _scope(client) -> Scope:
    rows = await client.app[SQL].fetch("SELECT id FROM agency WHERE code=?", (AGENCY,))
    return Scope(False, frozenset({rows[0][0]}))


@pytest.mark.parametrize("size", [300])
async def test_the_statements_of_a_bulk_alert_do_not_grow_with_the_list(client, desk, clock, size):  # noqa: F811
    small = await _push(desk, range(1, 11))
    large = await _push(desk, range(11, 11 + size))
    results, few = await _alert(client, small, clock.now)
    assert [r.verdict for r in results] == [Verdict.SENT] * 10
    results, many = await _alert(client, large, clock.now)
    assert [r.verdict for r in results] == [Verdict.SENT] * size
    # One per chunk of 500 at most beyond the small list's: never one per code.
    assert many <= few + 4, (few, many)
    for result in results:
        assert result.notified is not None and result.notified.sms_id is not None
    ids = [r.notified.sms_id for r in results]
    sms = {s.id: s for s in await OutboundSms.filter(id__in=ids)}
    assert len(sms) == size and {s.kind for s in sms.values()} == {SmsKind.PICKUP}
    for result in results:
        stored = await Dossier.get(code=result.code)
        assert stored.status is DossierStatus.READY
        notes = await DossierNotification.filter(dossier_id=stored.id, kind=SmsKind.PICKUP)
        assert [n.outbound_sms_id for n in notes] == [result.notified.sms_id]
    audited = await AuditLog.filter(actor="lan").order_by("id").values_list("action", "target")
    assert audited.count(("alert_sent", large[0])) == 1 and audited.count(("status_changed", large[-1])) == 1
    assert len(audited) == 2 * (10 + size)


async def test_a_bulk_list_mixes_every_case_and_answers_in_its_order(client, desk, clock):  # noqa: F811
    fresh, ready, collected, other = await _push(desk, [1, 2, 3, 4])
    services, sql = client.app[SERVICES], client.app[SQL]
    scope = await _scope(client)
    async with sql.transaction() as tx:
        await services.desk.mark_ready(tx, scope, ACTOR, ready, clock.now)
        await services.desk.mark_collected(tx, scope, ACTOR, collected, clock.now)
    await sql.fetch("UPDATE dossier SET agency_id=(SELECT id FROM agency WHERE code=?) WHERE code=?",
                    ("000.33.22.H23", other))
    before = await OutboundSms.all().count()
    tail = fresh.rsplit("-", 2)
    codes = [collected, fresh, "nonsense", other, ready, tail[1] + tail[2], fresh]
    results, _ = await _alert(client, codes, clock.now)
    assert [(r.query, r.verdict) for r in results] == [
        (collected, Verdict.ALREADY_COLLECTED), (fresh, Verdict.SENT), ("nonsense", Verdict.UNKNOWN),
        (other, Verdict.OTHER_AGENCY), (ready, Verdict.SENT), (tail[1] + tail[2], Verdict.SENT)]
    # The fresh one and its tail: one alert; the ready one: its alert again.
    assert results[1].notified.sms_id == results[5].notified.sms_id
    assert await OutboundSms.all().count() == before + 2
    assert (await Dossier.get(code=other)).status is DossierStatus.RECEIVED


async def test_a_clerks_act_stands_against_a_state_dated_ahead_of_the_clock(client, desk, clock):  # noqa: F811
    one, two = await _push(desk, [1, 2])
    ahead = clock.now + dt.timedelta(hours=2)  # the one-stop system's clock runs fast
    status, body, _ = await desk.post("/dossiers/events", {"events": [
        {"event_id": f"e{n}", "code": code, "status": 4, "occurred_at": ahead.isoformat()}
        for n, code in enumerate((one, two))]})
    assert status == 200 and {r["outcome"] for r in body["results"]} == {"applied"}, body
    services, sql = client.app[SERVICES], client.app[SQL]
    async with sql.transaction() as tx:
        single = await services.desk.mark_ready(tx, await _scope(client), ACTOR, one, clock.now)
    bulk, _ = await _alert(client, [two], clock.now)
    for result in (single, bulk[0]):
        assert result.verdict is Verdict.SENT and result.notified.sms_id is not None
        assert (await Dossier.get(code=result.code)).status is DossierStatus.READY
    # The one-stop system later replays its old events under new ids (the old ids purged):
    # older than the clerk's act, they move nothing and send nothing.
    sms_before = await OutboundSms.all().count()
    status, body, _ = await desk.post("/dossiers/events", {"events": [
        {"event_id": f"again-{n}", "code": code, "status": 4, "occurred_at": ahead.isoformat()}
        for n, code in enumerate((one, two))]})
    assert status == 200 and {r["outcome"] for r in body["results"]} == {"stale"}, body
    assert {(await Dossier.get(code=c)).status for c in (one, two)} == {DossierStatus.READY}
    assert await OutboundSms.all().count() == sms_before


async def test_a_dossier_collected_since_the_clerk_looked_is_not_moved_back(client, desk, clock):  # noqa: F811
    """The bulk alert reads its codes before it locks them: one collected in between (read
    again under the lock) stays collected, and its applicant gets no pickup SMS."""
    (code,) = await _push(desk, [1])
    services, sql = client.app[SERVICES], client.app[SQL]
    async with sql.transaction() as tx:
        assert (await services.desk.mark_collected(tx, await _scope(client), ACTOR, code, clock.now)).verdict is Verdict.DONE
    stored = await Dossier.get(code=code)
    sms_before = await OutboundSms.all().count()
    async with sql.transaction() as tx:
        from models.dossiers import Outcome, StatusEvent

        (result,) = await services.dossiers.change_statuses(
            tx, [(stored.id, StatusEvent(code, DossierStatus.READY, clock.now))], clock.now, source="clerk:lan")
    assert result.outcome is Outcome.STALE
    assert (await Dossier.get(code=code)).status is DossierStatus.DELIVERED
    assert await OutboundSms.all().count() == sms_before
