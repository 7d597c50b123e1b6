"""The OTP service against the real database of the running app (SQLite, or PostgreSQL).

Codes are sent through the real outbox and dispatcher and read back from the console
transport's inbox, as a phone would read them; time moves with the test clock. Each call
runs in its own unit of work (``sql.transaction()``), as a hop or an API request does, so
concurrent calls (``asyncio.gather``) are concurrent transactions on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import re

import pytest

from gateway.app import OUTBOX, SERVICES, SQL
from models.entities import SmsKind
from models.fastsql import as_datetime
from models.otp import OtpLimited, OtpPurpose
from models.retention import Purger
from tests.test_sms import send_text, sent_to

PHONE = "+84987542228"
LOCAL = "0987542228"
OTHER = "+84912000111"
REGISTER = OtpPurpose.REGISTER


class Otp:
    """The app's OTP service, each call in a unit of work of its own at the clock's time."""

    def __init__(self, client, clock) -> None:
        self.client = client
        self.clock = clock
        self.sql = client.app[SQL]
        self.service = client.app[SERVICES].otp

    async def start(self, phone=PHONE, purpose=REGISTER, lang="vi", api_client_id=None):
        async with self.sql.transaction() as tx:
            started = await self.service.start(tx, phone, purpose, lang, self.clock.now, api_client_id=api_client_id)
        self.client.app[OUTBOX].wakeup.set()  # as the edges do once they committed
        return started

    async def check(self, code, phone=PHONE, purpose=REGISTER):
        async with self.sql.transaction() as tx:
            return await self.service.check(tx, phone, purpose, code, self.clock.now)

    async def check_by_id(self, public_id, code, api_client_id=None):
        async with self.sql.transaction() as tx:
            return await self.service.check_by_id(tx, public_id, code, self.clock.now, api_client_id=api_client_id)

    async def status(self, public_id, api_client_id=None):
        async with self.sql.transaction() as tx:
            return await self.service.status(tx, public_id, self.clock.now, api_client_id=api_client_id)

    async def pending(self, phone=PHONE, purpose=REGISTER):
        async with self.sql.transaction() as tx:
            return await self.service.pending(tx, phone, purpose, self.clock.now)

    async def cancel(self, public_id, api_client_id=None):
        async with self.sql.transaction() as tx:
            return await self.service.cancel(tx, public_id, api_client_id=api_client_id, now=self.clock.now)

    async def consume(self, phone=PHONE, purpose=REGISTER):
        async with self.sql.transaction() as tx:
            return await self.service.consume(tx, phone, purpose, self.clock.now)

    async def rows(self, table):
        return await self.sql.fetch(f"SELECT * FROM {table} ORDER BY id")

    async def counters(self):
        return {scope.split(":")[1]: count for scope, count in
                await self.sql.fetch("SELECT scope, count FROM rate_counter ORDER BY id")}


@pytest.fixture
def otp(client, clock):
    return Otp(client, clock)


def at_hour_start(clock, minutes=1):
    """Pin the clock a little past the start of an hour, so a test's minutes stay in one window."""
    clock.now = clock.now.replace(minute=0, second=0, microsecond=0) + dt.timedelta(minutes=minutes)


async def code_sent(client, msisdn=LOCAL, count=1):
    """The code of the ``count``-th SMS this phone received, read from the console inbox."""
    messages = await sent_to(client, msisdn, count)
    assert len(messages) == count, messages
    found = re.findall(r"(?<!\d)\d{6}(?!\d)", messages[count - 1]["text"])
    assert len(found) == 1, messages[count - 1]
    return found[0]


def wrong(code):
    return f"{(int(code) + 1) % 10**6:06d}"


async def test_a_code_is_six_digits_says_what_it_is_for_and_rests_only_as_a_keyed_hash(otp, client, settings):
    started = await otp.start()
    code = await code_sent(client)
    [message] = await sent_to(client, LOCAL)
    assert re.fullmatch(r"[0-9]{6}", code)
    assert "dang ky tai khoan DVC" in message["text"] and "KHONG chia se" in message["text"]
    assert "5 phut" in message["text"]

    [row] = await otp.rows("otp_challenge")
    public_id, code_hash = (await otp.sql.fetch("SELECT public_id, code_hash FROM otp_challenge"))[0]
    assert public_id == started.public_id and len(public_id) >= 20
    # Keyed with a key of its own, derived from the secret key (not the ID key, which the
    # one-stop system may share).
    from gateway.services import derived_key

    key = derived_key(settings.security.secret_key, "otp-codes").encode()
    assert code_hash == hmac.new(key, f"otp:{public_id}:{code}".encode(), hashlib.sha256).hexdigest()
    assert code_hash != hashlib.sha256(code.encode()).hexdigest()  # keyed: no table of a million hashes
    assert all(str(value) != code for value in row)
    # The outbox held the text only until the dispatcher sent it.
    [(kind, text, status)] = await otp.sql.fetch("SELECT kind, text, status FROM outbound_sms")
    assert (kind, text, status) == (SmsKind.OTP.value, "", "sent")
    for table in ("otp_challenge", "outbound_sms", "rate_counter"):
        assert not any(f"OTP {code}" in str(value) for r in await otp.rows(table) for value in r), table


async def test_start_refuses_to_run_outside_a_unit_of_work(otp, clock):
    with pytest.raises(RuntimeError, match="unit of work"):
        await otp.service.start(otp.sql, PHONE, REGISTER, "vi", clock.now)
    assert await otp.rows("otp_challenge") == []


async def test_codes_are_zero_padded_six_digits_from_the_csprng(otp, client, monkeypatch):
    import secrets

    drawn = []

    def randbelow(n):
        drawn.append(n)
        return 42

    monkeypatch.setattr(secrets, "randbelow", randbelow)
    started = await otp.start()
    assert drawn == [10**6]
    assert await code_sent(client) == "000042"
    assert (await otp.check_by_id(started.public_id, "000042")).status == "approved"


async def test_the_sms_is_urgent_essential_and_lives_as_long_as_the_code(otp, client, clock, settings):
    # 23:30 in Ho Chi Minh City (quiet hours), from a phone that sent HUY.
    clock.now = clock.now.replace(hour=16, minute=30, second=0, microsecond=0)
    assert await send_text(client, "HUY") == "accepted"
    await sent_to(client, LOCAL, 1)
    started = await otp.start()
    code = await code_sent(client, count=2)
    assert (await otp.check(code)).status == "approved"
    [(urgent, due, expires)] = await otp.sql.fetch(
        "SELECT urgent, next_attempt_at, expires_at FROM outbound_sms WHERE kind='otp'")
    assert bool(urgent) and as_datetime(due) == clock.now
    assert as_datetime(expires) == started.expires_at == clock.now + dt.timedelta(seconds=settings.otp.code_ttl_seconds)


async def test_the_right_code_approves_once_and_then_nothing_is_left_to_check(otp, client):
    started = await otp.start()
    code = await code_sent(client)
    pending = await otp.pending()
    assert pending.public_id == started.public_id and pending.tries_left == 5
    assert pending.expires_at == started.expires_at and pending.resend_after == started.resend_after
    assert (await otp.check(code)).status == "approved"
    assert (await otp.check(code)).status == "none"  # a replay approves nothing
    assert (await otp.check_by_id(started.public_id, code)).status == "none"
    assert (await otp.status(started.public_id)).status == "approved"
    assert await otp.pending() is None


async def test_a_code_expires_with_the_clock(otp, client, clock):
    started = await otp.start()
    code = await code_sent(client)
    clock.advance(299)
    assert (await otp.pending()) is not None
    assert (await otp.status(started.public_id)).status == "pending"
    clock.advance(1)
    assert await otp.pending() is None
    assert (await otp.check(code)).status == "expired"
    assert (await otp.status(started.public_id)).status == "expired"

    again = await otp.start()  # an expired code is no obstacle to a new one
    assert (await otp.status(again.public_id)).status == "pending"


async def test_status_marks_an_expired_code_expired(otp, client, clock):
    started = await otp.start()
    await code_sent(client)
    clock.advance(301)
    assert (await otp.status(started.public_id)).status == "expired"
    [(status, decided_at)] = await otp.sql.fetch("SELECT status, decided_at FROM otp_challenge")
    assert status == "expired" and as_datetime(decided_at) == clock.now


async def test_five_wrong_codes_fail_it_and_the_right_one_after_is_refused(otp, client):
    started = await otp.start()
    code = await code_sent(client)
    verdicts = [await otp.check(wrong(code)) for _ in range(5)]
    assert [(v.status, v.tries_left) for v in verdicts] == [
        ("pending", 4), ("pending", 3), ("pending", 2), ("pending", 1), ("failed", 0)]
    assert (await otp.check(code)).status == "failed"
    assert (await otp.check_by_id(started.public_id, code)).status == "failed"
    assert (await otp.status(started.public_id)).status == "failed"
    [(checks,)] = await otp.sql.fetch("SELECT checks FROM otp_challenge")
    assert checks == 5


async def test_the_fifth_check_may_still_be_the_right_code(otp, client):
    await otp.start()
    code = await code_sent(client)
    for _ in range(4):
        assert (await otp.check(wrong(code))).status == "pending"
    assert (await otp.check(code)).status == "approved"


async def test_a_resend_sooner_than_60_s_is_refused_and_writes_nothing(otp, client, clock):
    first = await otp.start()
    code = await code_sent(client)
    before = [await otp.rows(t) for t in ("otp_challenge", "rate_counter", "outbound_sms")]
    clock.advance(20)
    with pytest.raises(OtpLimited) as refused:
        await otp.start()
    assert (refused.value.reason, refused.value.retry_after) == ("resend", 40)
    assert [await otp.rows(t) for t in ("otp_challenge", "rate_counter", "outbound_sms")] == before

    # A caller that catches the refusal and commits the rest of its unit of work keeps the old code.
    async with otp.sql.transaction() as tx:
        with pytest.raises(OtpLimited):
            await otp.service.start(tx, PHONE, REGISTER, "vi", clock.now)
        await tx.fetch("INSERT INTO phone_preference (phone_key, notifications_off, updated_at) VALUES (?,?,?)",
                       ("caller-wrote-this", False, clock.now))
    assert [await otp.rows(t) for t in ("otp_challenge", "rate_counter", "outbound_sms")] == before
    assert (await otp.status(first.public_id)).status == "pending"
    assert (await otp.check(code)).status == "approved"


async def test_a_resend_after_60_s_invalidates_the_old_code(otp, client, clock):
    first = await otp.start()
    old_code = await code_sent(client)
    clock.advance(60)
    second = await otp.start()
    new_code = await code_sent(client, count=2)
    assert second.public_id != first.public_id
    assert (await otp.status(first.public_id)).status == "canceled"
    assert (await otp.check_by_id(first.public_id, old_code)).status == "canceled"
    if old_code != new_code:
        # Typed to the phone's newest code, the old one is just a wrong code.
        assert (await otp.check(old_code)).status == "pending"
    assert (await otp.check(new_code)).status == "approved"


async def test_a_replaced_code_still_waiting_in_the_outbox_never_goes_out(otp, client, clock):
    from models.entities import OutboundSms, SmsKind, SmsStatus

    await otp.start()
    await code_sent(client)
    # The next code's SMS fails at the provider for now and waits for a retry...
    clock.advance(60)
    await otp.start()
    [waiting] = await OutboundSms.filter(kind=SmsKind.OTP).order_by("-id").limit(1)
    await OutboundSms.filter(id=waiting.id).update(status=SmsStatus.QUEUED, next_attempt_at=clock.now + dt.timedelta(hours=1))
    # ...when the citizen asks for another: the waiting one, with a code that no longer works, is dropped.
    clock.advance(60)
    await otp.start()
    dropped = await OutboundSms.get(id=waiting.id)
    assert (dropped.status, dropped.text) == (SmsStatus.EXPIRED, "")
    assert await OutboundSms.filter(kind=SmsKind.OTP, status=SmsStatus.QUEUED).exclude(id=waiting.id).count() <= 1


async def test_five_codes_per_phone_per_hour_the_sixth_waits_for_the_next_hour(otp, client, clock):
    at_hour_start(clock)
    for n in range(5):
        await otp.start()
        await code_sent(client, count=n + 1)
        clock.advance(61)
    with pytest.raises(OtpLimited) as refused:
        await otp.start()
    assert refused.value.reason == "phone"
    assert refused.value.retry_after == 3600 - 60 - 5 * 61
    assert (await otp.counters())["phone"] == 5
    await otp.start(OTHER)  # another phone is not held back
    clock.advance(refused.value.retry_after)
    await otp.start()  # the next hour


async def test_the_global_cap_per_minute_holds_and_a_refusal_counts_nothing(make_client, settings, clock):
    client = await make_client(settings.replace(otp={"global_per_minute": 3}))
    otp = Otp(client, clock)
    clock.now = clock.now.replace(second=1, microsecond=0)
    for n in range(3):
        await otp.start(f"+8491200010{n}")
    with pytest.raises(OtpLimited) as refused:
        await otp.start("+84912000109")
    assert (refused.value.reason, refused.value.retry_after) == ("global", 59)
    scopes = [scope for scope, _ in await otp.sql.fetch("SELECT scope, count FROM rate_counter")]
    assert len(scopes) == 4  # three phones and the global count: the refused phone raised nothing
    clock.advance(59)
    await otp.start("+84912000109")


async def test_a_refusal_caught_in_a_committed_unit_of_work_leaves_the_old_code_and_counts_nothing(
        make_client, settings, clock):
    # One code an hour: the second start retires the first (its resend time passed), then the
    # phone's limit refuses; the caller commits its unit of work all the same (a USSD hop would).
    client = await make_client(settings.replace(otp={"per_phone_per_hour": 1, "global_per_minute": 1}))
    otp = Otp(client, clock)
    at_hour_start(clock)
    first = await otp.start()
    code = await code_sent(client)
    clock.advance(61)
    await otp.start(OTHER)  # the new minute's one code
    await code_sent(client, "0912000111")  # sent: the dispatcher changes nothing from here on
    before = [await otp.rows(t) for t in ("otp_challenge", "rate_counter", "outbound_sms")]
    for phone, reason in ((PHONE, "phone"), ("+84912000222", "global")):
        async with otp.sql.transaction() as tx:
            with pytest.raises(OtpLimited) as refused:
                await otp.service.start(tx, phone, REGISTER, "vi", clock.now)
            assert refused.value.reason == reason
        assert [await otp.rows(t) for t in ("otp_challenge", "rate_counter", "outbound_sms")] == before
    assert (await otp.status(first.public_id)).status == "pending"
    assert (await otp.check(code)).status == "approved"


async def test_two_checks_of_the_right_code_at_once_approve_exactly_once(otp, client):
    started = await otp.start()
    code = await code_sent(client)
    verdicts = await asyncio.gather(*(otp.check_by_id(started.public_id, code) for _ in range(6)))
    assert sorted(v.status for v in verdicts) == ["approved"] + ["none"] * 5
    [(status, checks)] = await otp.sql.fetch("SELECT status, checks FROM otp_challenge")
    assert status == "approved" and checks == 1


async def test_checks_by_phone_at_once_approve_exactly_once(otp, client):
    await otp.start()
    code = await code_sent(client)
    verdicts = await asyncio.gather(*(otp.check(code) for _ in range(6)))
    assert sorted(v.status for v in verdicts) == ["approved"] + ["none"] * 5


async def test_wrong_codes_at_once_all_count_and_never_pass_the_limit(otp, client):
    started = await otp.start()
    code = await code_sent(client)
    verdicts = await asyncio.gather(*(otp.check_by_id(started.public_id, wrong(code)) for _ in range(8)))
    assert sorted(v.status for v in verdicts) == ["failed"] * 4 + ["pending"] * 4
    assert (await otp.check_by_id(started.public_id, code)).status == "failed"
    [(checks,)] = await otp.sql.fetch("SELECT checks FROM otp_challenge")
    assert checks == 5


async def test_starts_at_once_for_one_phone_and_purpose_send_one_code(otp, client):
    results = await asyncio.gather(*(otp.start() for _ in range(8)), return_exceptions=True)
    started = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(started) == 1, results
    assert all(isinstance(r, OtpLimited) and r.reason == "resend" for r in refused), refused
    assert len(await otp.sql.fetch("SELECT id FROM otp_challenge WHERE status='pending'")) == 1
    assert (await otp.counters())["phone"] == 1
    assert len(await otp.sql.fetch("SELECT id FROM outbound_sms")) == 1


async def test_starts_at_once_for_one_phone_never_pass_its_hourly_limit(otp, client, clock):
    at_hour_start(clock)
    # Ten requesters (API clients) at once, so that only the phone's own limit stands between them.
    results = await asyncio.gather(*(otp.start(PHONE, OtpPurpose.PORTAL, api_client_id=n) for n in range(1, 11)),
                                   return_exceptions=True)
    started = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(started) == 5, results
    assert all(isinstance(r, OtpLimited) and r.reason == "phone" for r in refused), refused
    assert (await otp.counters())["phone"] == 5
    assert len(await otp.sql.fetch("SELECT id FROM otp_challenge")) == 5
    assert len(await otp.sql.fetch("SELECT id FROM outbound_sms")) == 5


async def test_an_approval_is_consumed_once_and_only_while_fresh(otp, client, clock):
    assert not await otp.consume()  # nothing approved
    await otp.start()
    code = await code_sent(client)
    assert not await otp.consume()  # pending is not approved
    assert (await otp.check(code)).status == "approved"
    assert await otp.consume()
    assert not await otp.consume()  # one approval, one registration

    clock.advance(61)
    await otp.start()
    code = await code_sent(client, count=2)
    assert (await otp.check(code)).status == "approved"
    clock.advance(300)
    assert not await otp.consume()  # approved too long ago


async def test_cancel_stops_a_pending_code(otp, client):
    started = await otp.start()
    code = await code_sent(client)
    assert await otp.cancel(started.public_id)
    assert not await otp.cancel(started.public_id)
    assert not await otp.cancel("no-such-challenge-id")
    assert (await otp.status(started.public_id)).status == "canceled"
    assert (await otp.check(code)).status == "canceled"
    assert await otp.pending() is None


async def test_a_requester_sees_only_its_own_challenges(otp, client):
    portal = await otp.start(PHONE, OtpPurpose.PORTAL, api_client_id=1)
    code = await code_sent(client)
    assert (await otp.check_by_id(portal.public_id, code, api_client_id=2)).status == "none"
    assert (await otp.status(portal.public_id, api_client_id=2)).status == "none"
    assert not await otp.cancel(portal.public_id, api_client_id=2)
    # The gateway's own journeys do not see the portal's codes either.
    assert (await otp.check(code, purpose=OtpPurpose.PORTAL)).status == "none"
    assert await otp.pending(purpose=OtpPurpose.PORTAL) is None
    # Nor does one requester's live code hold back another's (the phone's hourly count is shared).
    await otp.start(PHONE, OtpPurpose.PORTAL, api_client_id=2)
    await otp.start(PHONE, OtpPurpose.PORTAL)
    assert (await otp.counters())["phone"] == 3
    assert (await otp.check_by_id(portal.public_id, code, api_client_id=1)).status == "approved"


async def test_the_purger_deletes_old_challenges_and_counters(otp, client, settings, clock):
    old = await otp.start()
    await code_sent(client)
    clock.advance(settings.otp.code_ttl_seconds + settings.retention.otp_challenge_hours * 3600 + 1)
    recent = await otp.start(OTHER)
    counts = await Purger(settings, otp.sql, clock).purge_once(clock.now)
    assert counts["otp_challenges"] == 1 and counts["rate_counters"] == 2  # the old phone's and minute's
    assert [r[0] for r in await otp.sql.fetch("SELECT public_id FROM otp_challenge")] == [recent.public_id]
    assert (await otp.status(old.public_id)).status == "none"
    assert len(await otp.sql.fetch("SELECT id FROM rate_counter")) == 2
    assert (await Purger(settings, otp.sql, clock).purge_once(clock.now))["otp_challenges"] == 0
