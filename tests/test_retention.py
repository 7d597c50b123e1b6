"""Retention: the purger deletes what is no longer needed, in bounded batches, under a lease.

Records are made through the real paths (USSD dialled through the app, SMS through the
inbound webhook, messages through the outbox and the dispatcher), time is moved with the
test clock, and every test asserts exactly what went and what stayed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import threading

import pytest
from structlog.testing import capture_logs

from gateway.app import OUTBOX
from gateway.outbox import Dispatcher
from gateway.sms import SendOutcome, SendResult, SmsTransport
from models.entities import InboundFingerprint, InboundSms, OutboundSms, SmsKind, SmsStatus, UssdSession
from models.fastsql import SqliteRunner, open_runner
from models.leases import Leases
from models.retention import COUNT_KEYS, LEASE_NAME, Purger
from models.seed import DEMO_PHONE
from tests.conftest import Phone
from tests.waiting import eventually as wait_for
from tests.servers import run_cli

DAY = 86400


@pytest.fixture
def quiet_settings(settings):
    """No dispatcher and no purger of the app's own: the tests drive them."""
    return settings.replace(sms={"run_dispatcher": False}, retention={"run_purger": False})


@pytest.fixture
async def app_client(make_client, quiet_settings):
    return await make_client(quiet_settings)


@pytest.fixture
async def sql(app_client, quiet_settings):
    runner = open_runner(quiet_settings.database.url)
    yield runner
    await runner.close()


class Recording:
    """A SqlRunner that remembers how many rows each statement returned."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.dialect = inner.dialect
        self.calls: list[tuple[str, int]] = []

    async def fetch(self, sql, params=()):
        rows = await self.inner.fetch(sql, params)
        self.calls.append((sql, len(rows)))
        return rows

    async def execute_many(self, sql, rows):
        await self.inner.execute_many(sql, rows)

    async def close(self):
        return None

    def returned(self, table_prefix: str) -> list[int]:
        return [n for sql, n in self.calls if sql.startswith(table_prefix)]


class Scripted(SmsTransport):
    name = "scripted"

    def __init__(self, answers=()):
        self.answers = list(answers)
        self.calls = []

    async def send(self, message):
        self.calls.append(message)
        return self.answers.pop(0) if self.answers else SendResult(SendOutcome.SENT, f"p-{message.id}")


def dispatcher(settings, sql, clock, provider=None):
    return Dispatcher(settings, provider or Scripted(), sql, clock, worker_id="test-dispatcher")


async def send_text(client, sender, text="TG", provider_id=None):
    payload = {"from": sender, "to": "8088", "text": text}
    if provider_id:
        payload["id"] = provider_id
    response = await client.post("/sms/json/inbound", json=payload)
    assert response.status == 200, await response.text()
    return (await response.json())["status"]


async def session_ids() -> set[str]:
    return set(await UssdSession.all().values_list("external_id", flat=True))


# -- USSD sessions ------------------------------------------------------------------------------


async def test_sessions_go_after_ttl_resume_window_and_grace_and_not_before(app_client, quiet_settings, sql, clock):
    ussd, retention = quiet_settings.ussd, quiet_settings.retention
    assert (ussd.session_ttl_seconds, ussd.resume_window_seconds, retention.session_grace_seconds) == (180, 300, 60)
    keep = 360  # max(ttl, resume window) + grace

    old = Phone(app_client, "0912000001")
    await old.dial()
    await old.press("4")
    clock.advance(31)
    in_grace = Phone(app_client, "0912000002")
    await in_grace.dial()
    await in_grace.press("4")
    clock.advance(69)
    resumable = Phone(app_client, "0912000003")
    await resumable.dial()
    await resumable.press("4")
    _, left_at = await resumable.press("9")
    clock.advance(keep + 1 - 100)  # old is keep + 1 s old; in_grace 330 s; resumable 261 s
    live = Phone(app_client, "0912000004")
    await live.dial()
    await live.press("4")
    assert await session_ids() == {old.session_id, in_grace.session_id, resumable.session_id, live.session_id}

    counts = await Purger(quiet_settings, sql, clock).purge_once(clock.now)

    assert counts == {**dict.fromkeys(COUNT_KEYS, 0), "ussd_sessions": 1}
    assert await session_ids() == {in_grace.session_id, resumable.session_id, live.session_id}
    # The session past its TTL but inside the resume window is still offered, and continues.
    _, screen = await resumable.dial()
    assert screen.splitlines() == ["Ban dang dung giua chung.", "1 Tiep tuc", "2 Bat dau lai"]
    _, screen = await resumable.press("1")
    assert screen == left_at
    # The live dialogue goes on untouched.
    kind, _ = await live.press("1")
    assert kind == "CON"

    # Once the grace is over too, in_grace goes and nothing else.
    clock.advance(31)  # in_grace is now 361 s old
    counts = await Purger(quiet_settings, sql, clock).purge_once(clock.now)
    assert counts["ussd_sessions"] == 1
    assert in_grace.session_id not in await session_ids()
    assert live.session_id in await session_ids()


# -- inbound SMS and fingerprints ---------------------------------------------------------------


async def test_inbound_records_go_after_their_days(app_client, quiet_settings, sql, clock):
    assert quiet_settings.retention.inbound_sms_days == 30
    assert await send_text(app_client, "0987542228", provider_id="x1") == "accepted"
    clock.advance(29 * DAY)
    assert await send_text(app_client, "0912000111", provider_id="x2") == "accepted"
    clock.advance(1 * DAY - 1)
    purger = Purger(quiet_settings, sql, clock)

    counts = await purger.purge_once(clock.now)  # x1 is exactly 30 days less a second old
    assert counts["inbound_sms"] == 0
    assert sorted(await InboundSms.all().values_list("provider_id", flat=True)) == ["x1", "x2"]

    clock.advance(2)
    counts = await purger.purge_once(clock.now)
    assert counts["inbound_sms"] == 1
    assert await InboundSms.all().values_list("provider_id", flat=True) == ["x2"]
    # The replies are still queued (no dispatcher ran): queued messages are never purged.
    assert counts["outbound_sms"] == 0
    assert await OutboundSms.filter(status=SmsStatus.QUEUED, kind=SmsKind.REPLY).count() == 2


async def test_fingerprints_go_only_once_the_duplicate_window_is_over(app_client, quiet_settings, sql, clock):
    window = quiet_settings.sms.inbound_duplicate_seconds
    assert window == 120
    purger = Purger(quiet_settings, sql, clock)
    assert await send_text(app_client, "0987542228") == "accepted"
    assert await InboundFingerprint.all().count() == 1

    clock.advance(window - 1)
    assert (await purger.purge_once(clock.now))["inbound_fingerprints"] == 0
    assert await send_text(app_client, "0987542228") == "duplicate"  # still guarded

    clock.advance(2)
    assert (await purger.purge_once(clock.now))["inbound_fingerprints"] == 1
    assert await InboundFingerprint.all().count() == 0
    assert await send_text(app_client, "0987542228") == "accepted"
    assert await InboundSms.all().count() == 2


async def test_batches_are_bounded_and_still_take_everything(app_client, quiet_settings, clock):
    settings = quiet_settings.replace(retention={"batch_size": 2})
    for n in range(5):
        assert await send_text(app_client, f"091200011{n}", text=f"TT {n}", provider_id=f"b{n}") == "accepted"
    for n in range(3):
        caller = Phone(app_client, f"091200022{n}")
        await caller.dial()
    clock.advance(31 * DAY)
    assert await send_text(app_client, "0912000333", provider_id="recent") == "accepted"
    inner = open_runner(settings.database.url)
    recording = Recording(inner)
    try:
        counts = await Purger(settings, recording, clock).purge_once(clock.now)
    finally:
        await inner.close()

    assert counts["inbound_sms"] == 5 and counts["ussd_sessions"] == 3 and counts["inbound_fingerprints"] == 5
    # Never more than a batch per statement, repeated until a batch came back short.
    assert recording.returned("DELETE FROM inbound_sms") == [2, 2, 1]
    assert recording.returned("DELETE FROM inbound_fingerprint") == [2, 2, 1]
    assert recording.returned("DELETE FROM ussd_session") == [2, 1]
    assert all(n <= 2 for _, n in recording.calls)
    assert await InboundSms.all().values_list("provider_id", flat=True) == ["recent"]
    assert await UssdSession.all().count() == 0


# -- outbound SMS and OTP texts -----------------------------------------------------------------


async def test_final_outbound_messages_go_after_their_days_queued_and_sending_never(app_client, quiet_settings, sql, clock):
    assert quiet_settings.retention.outbound_sms_days == 90
    outbox = app_client.app[OUTBOX]
    sent = await outbox.enqueue(DEMO_PHONE, "Ho so da co ket qua", SmsKind.PICKUP, urgent=True)
    failed = await outbox.enqueue("+84912000111", "Thong bao", SmsKind.INFO, urgent=True)
    expired = await outbox.enqueue("+84912000222", "Nhac lich", SmsKind.REMINDER, urgent=True, ttl_seconds=1)
    clock.advance(2)
    provider = Scripted([SendResult(SendOutcome.SENT, "p-1"), SendResult(SendOutcome.FAILED, error="invalid number")])
    assert await dispatcher(quiet_settings, sql, clock, provider).dispatch_once() == 3
    queued = await outbox.enqueue("+84912000333", "Cho gio gui", SmsKind.INFO, urgent=True)
    sending = await outbox.enqueue("+84912000444", "Dang gui", SmsKind.INFO, urgent=True)
    # One waits (a retry far off), one is claimed by a dispatcher: both older than the cut-off below.
    await sql.fetch("UPDATE outbound_sms SET next_attempt_at=? WHERE id=?", (clock.now + dt.timedelta(days=365), queued.id))
    await sql.fetch(
        "UPDATE outbound_sms SET status='sending', claimed_by='dead', claimed_until=? WHERE id=?",
        (clock.now + dt.timedelta(days=365), sending.id),
    )
    statuses = dict(await OutboundSms.all().values_list("id", "status"))
    assert statuses == {
        sent.id: SmsStatus.SENT, failed.id: SmsStatus.FAILED, expired.id: SmsStatus.EXPIRED,
        queued.id: SmsStatus.QUEUED, sending.id: SmsStatus.SENDING,
    }
    purger = Purger(quiet_settings, sql, clock)
    clock.advance(90 * DAY - 10)
    recent = await outbox.enqueue(DEMO_PHONE, "Tin moi", SmsKind.INFO, urgent=True)
    assert await dispatcher(quiet_settings, sql, clock).dispatch_once() == 1
    assert (await OutboundSms.get(id=recent.id)).status is SmsStatus.SENT
    assert (await purger.purge_once(clock.now))["outbound_sms"] == 0  # nothing is 90 days old yet

    clock.advance(20)  # the first three are 90 days old, and so are queued and sending
    counts = await purger.purge_once(clock.now)
    assert counts["outbound_sms"] == 3
    assert set(await OutboundSms.all().values_list("id", flat=True)) == {queued.id, sending.id, recent.id}


async def test_otp_text_is_cleared_once_sent_or_final_and_kept_while_it_may_go(app_client, quiet_settings, sql, clock):
    outbox = app_client.app[OUTBOX]
    to_send = await outbox.enqueue(DEMO_PHONE, "Ma OTP cua ban la 482913", SmsKind.OTP, urgent=True, ttl_seconds=300)
    to_fail = await outbox.enqueue("+84912000111", "Ma OTP cua ban la 551100", SmsKind.OTP, urgent=True, ttl_seconds=300)
    reply = await outbox.enqueue("+84912000222", "Cam on ban", SmsKind.REPLY, urgent=True)
    provider = Scripted([SendResult(SendOutcome.SENT, "p-1"), SendResult(SendOutcome.FAILED, error="invalid number")])
    await dispatcher(quiet_settings, sql, clock, provider).dispatch_once()
    assert [m.text for m in provider.calls][:2] == ["Ma OTP cua ban la 482913", "Ma OTP cua ban la 551100"]

    # Cleared by the dispatcher as it marks them, before any purge.
    rows = {r.id: r for r in await OutboundSms.all()}
    assert (rows[to_send.id].status, rows[to_send.id].text) == (SmsStatus.SENT, "")
    assert (rows[to_fail.id].status, rows[to_fail.id].text) == (SmsStatus.FAILED, "")
    assert (rows[reply.id].status, rows[reply.id].text) == (SmsStatus.SENT, "Cam on ban")

    waiting = await outbox.enqueue(DEMO_PHONE, "Ma OTP cua ban la 777001", SmsKind.OTP, urgent=True, ttl_seconds=300)
    stale = await outbox.enqueue(DEMO_PHONE, "Ma OTP cua ban la 777002", SmsKind.OTP, urgent=True, ttl_seconds=300)
    clock.advance(301)
    # stale expires at dispatch; waiting is pushed back first (a retry), so it is still queued.
    await sql.fetch("UPDATE outbound_sms SET next_attempt_at=?, expires_at=? WHERE id=?",
                    (clock.now + dt.timedelta(seconds=60), clock.now + dt.timedelta(seconds=300), waiting.id))
    assert await dispatcher(quiet_settings, sql, clock).dispatch_once() == 1
    expired = await OutboundSms.get(id=stale.id)
    assert (expired.status, expired.text) == (SmsStatus.EXPIRED, "")

    # A row marked before the dispatcher cleared texts (an older version): the purger clears it.
    legacy = await outbox.enqueue(DEMO_PHONE, "Ma OTP cua ban la 909090", SmsKind.OTP, urgent=True)
    await sql.fetch("UPDATE outbound_sms SET status='delivered' WHERE id=?", (legacy.id,))
    counts = await Purger(quiet_settings, sql, clock).purge_once(clock.now)
    assert counts == {**dict.fromkeys(COUNT_KEYS, 0), "otp_texts_cleared": 1}
    texts = dict(await OutboundSms.all().values_list("id", "text"))
    assert texts[legacy.id] == ""
    assert texts[waiting.id] == "Ma OTP cua ban la 777001"  # still to be sent: kept
    assert texts[reply.id] == "Cam on ban"
    assert sum("OTP" in text for text in texts.values()) == 1


# -- the lease ----------------------------------------------------------------------------------


async def test_abandoned_sms_registrations_go_once_expired(app_client, quiet_settings, sql, clock):
    # Two texts "DK <id> <name> <date>" never confirmed with DONG Y: one has expired.
    for phone_key, expires in (("k-old", clock.now - dt.timedelta(seconds=1)), ("k-new", clock.now + dt.timedelta(minutes=5))):
        await sql.fetch(
            "INSERT INTO sms_registration (phone_key, id_hash, id_last3, name, lang, stage, created_at, expires_at)"
            " VALUES (?,?,?,?,?,?,?,?)", (phone_key, "h", "123", "Nguyen Van A", "vi", "consent", clock.now, expires))
    counts = await Purger(quiet_settings, sql, clock).purge_once(clock.now)
    assert counts == {**dict.fromkeys(COUNT_KEYS, 0), "sms_registrations": 1}
    assert [row[0] for row in await sql.fetch("SELECT phone_key FROM sms_registration")] == ["k-new"]


async def test_lease_is_held_by_one_renewed_by_it_and_taken_over_after_expiry(sql, clock):
    leases = Leases(sql)
    now = clock.now
    assert await leases.acquire("job", "a", now, 60)
    assert not await leases.acquire("job", "b", now, 60)
    assert await leases.acquire("job", "a", now + dt.timedelta(seconds=30), 60)  # renewed until now+90
    assert not await leases.acquire("job", "b", now + dt.timedelta(seconds=61), 60)
    current = await leases.current("job")
    assert current.holder == "a" and current.expires_at == now + dt.timedelta(seconds=90)
    assert await leases.acquire("other-job", "b", now, 60)  # names are independent

    assert await leases.acquire("job", "b", now + dt.timedelta(seconds=91), 60)  # a stopped renewing
    assert not await leases.acquire("job", "a", now + dt.timedelta(seconds=92), 60)
    assert not await leases.release("job", "a")  # not a's to give up
    assert (await leases.current("job")).holder == "b"
    assert await leases.release("job", "b")
    assert await leases.current("job") is None
    assert await leases.acquire("job", "a", now + dt.timedelta(seconds=93), 60)  # free again at once


async def test_concurrent_acquire_has_exactly_one_winner(quiet_settings, sql, clock):
    url = quiet_settings.database.url
    second = open_runner(url)
    try:
        runners = [sql, second]
        for name, stale in (("fresh", False), ("stale", True)):
            if stale:  # a dead holder's lease, run out: everyone races to take it over
                assert await Leases(sql).acquire(name, "dead", clock.now - dt.timedelta(seconds=120), 60)
            results = await asyncio.gather(
                *(Leases(runners[n % 2]).acquire(name, f"h{n}", clock.now, 60) for n in range(24))
            )
            assert sum(results) == 1, (name, results)
            winner = f"h{results.index(True)}"
            assert (await Leases(sql).current(name)).holder == winner
    finally:
        await second.close()
    if url.startswith("sqlite://"):
        await _race_from_threads_on_sqlite(url, clock)


async def _race_from_threads_on_sqlite(url: str, clock) -> None:
    """Separate connections in separate threads really race on SQLite (the event loop
    serialises statements of one process; on PostgreSQL the pool above already races)."""
    path = url.removeprefix("sqlite://").partition("?")[0]
    from concurrent.futures import ThreadPoolExecutor

    contenders = 8
    loop = asyncio.get_running_loop()
    executor = ThreadPoolExecutor(max_workers=contenders)
    setup = SqliteRunner(path)
    for round_ in range(20):
        name = f"race-{round_}"
        if round_ % 2:  # a dead holder's lease, run out, taken over
            assert await Leases(setup).acquire(name, "dead", clock.now - dt.timedelta(seconds=120), 60)
        barrier = threading.Barrier(contenders)

        def contend(n: int) -> bool:
            async def go() -> bool:
                runner = SqliteRunner(path)
                try:
                    barrier.wait(timeout=10)
                    return await Leases(runner).acquire(name, f"t{n}", clock.now, 60)
                finally:
                    await runner.close()

            return asyncio.run(go())

        results = await asyncio.gather(*(loop.run_in_executor(executor, contend, n) for n in range(contenders)))
        assert sum(results) == 1, (name, results)
    executor.shutdown()
    await setup.close()


async def test_only_the_lease_holder_purges(app_client, quiet_settings, sql, clock):
    caller = Phone(app_client, "0912000001")
    await caller.dial()
    clock.advance(361)
    first, second = Purger(quiet_settings, sql, clock), Purger(quiet_settings, sql, clock)
    assert first.holder != second.holder
    assert await first.take_lease()
    assert (await Leases(sql).current(LEASE_NAME)).holder == first.holder
    assert await second.run_once() is None  # refused while first holds it: nothing purged
    assert await UssdSession.all().count() == 1
    assert (await first.run_once())["ussd_sessions"] == 1  # the holder purges (and renews)

    await caller.dial()
    clock.advance(361)  # first stopped renewing 361 s ago; its lease was for 120
    assert (await second.run_once())["ussd_sessions"] == 1
    assert (await Leases(sql).current(LEASE_NAME)).holder == second.holder
    assert await first.run_once() is None


async def test_a_long_pass_renews_its_lease_and_stops_when_it_was_taken_over(app_client, quiet_settings, sql, clock):
    settings = quiet_settings.replace(retention={"batch_size": 1})
    lease_seconds = settings.retention.lease_seconds
    leases = Leases(sql)

    class Stalls(Recording):
        """Each batch of sessions takes a third of the lease (on the purger's monotonic clock);
        another process may take the lease over after some batch."""

        takeover_after: int | None = None

        async def fetch(self, statement, params=()):
            rows = await super().fetch(statement, params)
            if statement.startswith("DELETE FROM ussd_session"):
                purger._taken_at -= lease_seconds / 3
                if len(self.returned("DELETE FROM ussd_session")) == self.takeover_after:
                    later = clock.now + dt.timedelta(seconds=lease_seconds + 1)
                    assert await leases.acquire(LEASE_NAME, "took-over", later, 60)
            return rows

    runner = Stalls(sql)
    purger = Purger(settings, runner, clock)
    for n in range(3):
        await Phone(app_client, f"091200033{n}").dial()
    clock.advance(361)
    assert (await purger.run_once())["ussd_sessions"] == 3
    assert len(runner.returned("INSERT INTO lease")) == 4  # taken, then renewed after each full batch
    assert (await leases.current(LEASE_NAME)).holder == purger.holder

    for n in range(3):
        await Phone(app_client, f"091200044{n}").dial()
    clock.advance(361)
    runner.calls.clear()
    runner.takeover_after = 1
    with capture_logs() as captured:
        assert await purger.run_once() is None  # lost mid-pass: stopped after the first batch
    assert [e["event"] for e in captured] == ["purge_lease_lost"]
    assert await UssdSession.all().count() == 2
    assert (await leases.current(LEASE_NAME)).holder == "took-over"


# -- in the server ------------------------------------------------------------------------------


async def test_the_server_runs_the_purger_under_its_lease_and_releases_it(make_client, settings, clock):
    # interval below the settings' minimum of 1 s, so the test waits little (replace skips the check)
    fast = dataclasses.replace(
        settings.replace(sms={"run_dispatcher": False}),
        retention=dataclasses.replace(settings.retention, interval_seconds=0.05),
    )
    with capture_logs() as captured:
        client = await make_client(fast)
        sql = open_runner(settings.database.url)
        leases = Leases(sql)
        try:
            async def held() -> bool:
                return await leases.current(LEASE_NAME) is not None

            await wait_for(held, what="the server's purger to take its lease")
            holder = (await leases.current(LEASE_NAME)).holder
            assert not await leases.acquire(LEASE_NAME, "another-worker", clock.now, 60)

            caller = Phone(client, "0912000001")
            await caller.dial()
            assert await UssdSession.all().count() == 1
            clock.advance(361)

            async def purged() -> bool:
                return await UssdSession.all().count() == 0

            await wait_for(purged, what="the server's purger to delete the expired session")
            await client.close()
            assert await leases.current(LEASE_NAME) is None  # released at shutdown
        finally:
            await sql.close()
    purges = [e for e in captured if e["event"] == "purge"]
    assert purges and all(e["holder"] == holder for e in purges)
    assert any(e["ussd_sessions"] == 1 for e in purges)
    assert set(COUNT_KEYS) <= set(purges[0])
    assert [e["event"] for e in captured if e["event"].startswith("purger_")] == ["purger_started", "purger_stopped"]


async def test_a_failing_pass_is_logged_and_the_loop_goes_on(app_client, quiet_settings, sql, clock):
    class FailsOnce(Recording):
        failed = False

        async def fetch(self, statement, params=()):
            if statement.startswith("DELETE") and not self.failed:
                self.failed = True
                raise RuntimeError("database went away")
            return await super().fetch(statement, params)

    fast = dataclasses.replace(quiet_settings, retention=dataclasses.replace(quiet_settings.retention, interval_seconds=0.01))
    runner = FailsOnce(sql)
    purger = Purger(fast, runner, clock)
    stop = asyncio.Event()
    with capture_logs() as captured:
        task = asyncio.create_task(purger.run(stop))

        async def purged_after_failure() -> bool:
            return any(e["event"] == "purge" for e in captured)

        try:
            await wait_for(purged_after_failure, what="a purge after the failed one")
        finally:
            stop.set()
            await task
    events = [e["event"] for e in captured]
    assert events.index("purge_failed") < events.index("purge")
    failure = next(e for e in captured if e["event"] == "purge_failed")
    assert failure["log_level"] == "error" and failure.get("exc_info")


# -- the command line ---------------------------------------------------------------------------


async def test_purge_command_purges_everything_due_and_respects_the_lease(make_client, quiet_settings, clock, tmp_path):
    # Records made 100 days ago (the command uses the real clock).
    clock.now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=100)
    client = await make_client(quiet_settings)
    caller = Phone(client, "0912000001")
    await caller.dial()
    await caller.press("4")
    assert await send_text(client, "0912000111", provider_id="old-1") == "accepted"
    sql = open_runner(quiet_settings.database.url)
    try:
        otp = await client.app[OUTBOX].enqueue(DEMO_PHONE, "Ma OTP cua ban la 482913", SmsKind.OTP, urgent=True)
        await dispatcher(quiet_settings, sql, clock).dispatch_once()  # the OTP and the reply to old-1
        waiting = await client.app[OUTBOX].enqueue(DEMO_PHONE, "Cho gui", SmsKind.INFO, urgent=True)
        assert (await OutboundSms.get(id=otp.id)).text == ""  # cleared as it was sent
        # As an older dispatcher left it, for the purge to clear:
        await sql.fetch("UPDATE outbound_sms SET text='Ma OTP cua ban la 482913' WHERE id=?", (otp.id,))

        settings_file = tmp_path / "settings.toml"
        settings_file.write_text(
            f'[database]\nurl = "{quiet_settings.database.url}"\n[logging]\nformat = "json"\n'
        )
        leases = Leases(sql)
        assert await leases.acquire(LEASE_NAME, "other-host:1:abcdef", dt.datetime.now(dt.timezone.utc), 600)
        code, out, err = await run_cli(settings_file, "purge")
        assert code == 0, err
        assert "another process holds the purger lease" in out
        assert await UssdSession.all().count() == 1 and await InboundSms.all().count() == 1
        assert await OutboundSms.all().count() == 3
        assert (await leases.current(LEASE_NAME)).holder == "other-host:1:abcdef"

        assert await leases.release(LEASE_NAME, "other-host:1:abcdef")
        code, out, err = await run_cli(settings_file, "purge")
        assert code == 0, err
        assert out.strip() == (
            "purged: 1 ussd_sessions, 1 inbound_sms, 1 inbound_fingerprints, 1 otp_texts_cleared, 2 outbound_sms, 0 otp_challenges, 0 rate_counters, 0 sms_registrations,"
            " 0 dossier_notifications, 0 dossier_events, 0 clerk_sessions, 0 audit_log"
        ), out
        assert await UssdSession.all().count() == 0 and await InboundSms.all().count() == 0
        assert await InboundFingerprint.all().count() == 0
        assert await OutboundSms.all().values_list("id", flat=True) == [waiting.id]  # queued: kept
        assert await leases.current(LEASE_NAME) is None  # released

        code, out, err = await run_cli(settings_file, "purge")
        assert code == 0, err
        assert out.strip() == "purged: " + ", ".join(f"0 {k}" for k in COUNT_KEYS)
    finally:
        await sql.close()
