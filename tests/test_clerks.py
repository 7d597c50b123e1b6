"""Clerk accounts (models.clerks) on the running app's database: creation, lockout, sessions,
disabling, scope, and the audit records every action writes."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from gateway.app import SERVICES, SQL
from models import audit, desk
from models.audit import CLI, Actor
from models.clerks import ClerkError, LoginOutcome, session_hash
from models.seed import NEIGHBOUR, PHUONG_KY

A, B = PHUONG_KY["code"], NEIGHBOUR["code"]


@pytest.fixture
def clerks(client):
    return client.app[SERVICES].clerks


@pytest.fixture
def sql(client):
    return client.app[SQL]


async def _audit_rows(sql, action: str) -> list[tuple]:
    return await sql.fetch("SELECT actor, channel, target, detail, clerk_id FROM audit_log WHERE action=? ORDER BY id",
                           (action,))


async def test_create_clerk_keeps_a_slow_hash_and_a_keyed_phone(clerks, sql, clock):
    clerk, password = await clerks.create(sql, login=" Mai ", name="Nguyen  Thi Mai", phone="0912 345 678",
                                          role="clerk", agency_codes=[A.lower()], actor=CLI, now=clock.now)
    assert clerk.login == "mai" and clerk.name == "Nguyen Thi Mai" and clerk.role == "clerk"
    assert clerk.phone == "+84912345678" and clerk.must_change_password and clerk.active
    assert clerk.agency_codes == (A,)
    assert len(password) == 14 and password.count("-") == 2
    stored = await sql.fetch("SELECT password_hash, phone_key FROM clerk WHERE login='mai'")
    assert stored[0][0].startswith("scrypt$") and password not in stored[0][0]
    assert stored[0][1] and "912345678" not in stored[0][1]
    assert await clerks.verify_password(password, stored[0][0])
    assert not await clerks.verify_password(password + "x", stored[0][0])
    assert (await clerks.by_phone(sql, "+84912345678")).login == "mai"
    assert await _audit_rows(sql, "clerk_created") == [("cli", "cli", "mai", f"role=clerk agencies={A}", None)]
    # The clerk's phone is in no audit record.
    assert not await sql.fetch("SELECT 1 FROM audit_log WHERE detail LIKE ? OR target LIKE ?", ("%345678%", "%345678%"))


@pytest.mark.parametrize(("changes", "reason"), [
    ({"agency_codes": ["000.99.99.H99"]}, "unknown_agency"),
    ({"agency_codes": []}, "no_agency"),
    ({"login": "0987542228"}, "bad_login"),
    ({"login": "a"}, "bad_login"),
    ({"login": "x" * 41}, "bad_login"),
    ({"name": "  "}, "bad_name"),
    ({"phone": "12345"}, "bad_phone"),
    ({"role": "root"}, "bad_role"),
])
async def test_create_refuses_what_is_not_an_account(clerks, sql, clock, changes, reason):
    fields = dict(login="lan", name="Ngo Thi Lan", phone="0912345670", role="clerk", agency_codes=[A])
    with pytest.raises(ClerkError) as refused:
        await clerks.create(sql, **{**fields, **changes}, actor=CLI, now=clock.now)
    assert refused.value.reason == reason
    assert not await sql.fetch("SELECT 1 FROM clerk")


async def test_create_refuses_a_taken_login_or_phone(clerks, sql, clock):
    await clerks.create(sql, login="lan", name="Lan", phone="0912345670", role="clerk", agency_codes=[A], actor=CLI,
                        now=clock.now)
    with pytest.raises(ClerkError) as taken:
        await clerks.create(sql, login="LAN", name="Other", phone="0912345671", role="clerk", agency_codes=[A],
                            actor=CLI, now=clock.now)
    assert taken.value.reason == "login_taken"
    with pytest.raises(ClerkError) as phone_taken:
        await clerks.create(sql, login="lan2", name="Other", phone="+84912345670", role="clerk", agency_codes=[A],
                            actor=CLI, now=clock.now)
    assert phone_taken.value.reason == "phone_taken"
    assert [c.login for c in await clerks.list(sql)] == ["lan"]


async def test_ten_wrong_passwords_lock_for_fifteen_minutes(clerks, sql, clock):
    _, password = await clerks.create(sql, login="mai", name="Mai", phone=None, role="clerk", agency_codes=[A],
                                      actor=CLI, now=clock.now)
    for attempt in range(1, 10):
        result = await clerks.login(sql, "mai", f"wrong-{attempt}", clock.now)
        assert result.outcome is LoginOutcome.WRONG and result.session_id is None
    tenth = await clerks.login(sql, "mai", "wrong-10", clock.now)
    assert tenth.outcome is LoginOutcome.LOCKED
    assert tenth.locked_until == clock.now + dt.timedelta(minutes=15)
    # Locked: even the right password is refused, and nothing is counted or hashed.
    clock.advance(14 * 60)
    assert (await clerks.login(sql, "mai", password, clock.now)).outcome is LoginOutcome.LOCKED
    assert (await clerks.by_login(sql, "mai")).failed_logins == 10
    clock.advance(60 + 1)
    ok = await clerks.login(sql, "mai", password, clock.now)
    assert ok.outcome is LoginOutcome.OK and ok.session_id
    assert (await clerks.by_login(sql, "mai")).failed_logins == 0
    failed = await _audit_rows(sql, "login_failed")
    assert len(failed) == 11 and "locked for 15 min" in failed[9][3] and failed[10][3] == "account locked"
    assert [row[2] for row in await _audit_rows(sql, "login")] == ["mai"]


async def test_a_lock_that_ran_out_starts_the_count_again(clerks, sql, clock):
    await clerks.create(sql, login="mai", name="Mai", phone=None, role="clerk", agency_codes=[A], actor=CLI,
                        now=clock.now)
    for attempt in range(10):
        await clerks.login(sql, "mai", "wrong", clock.now)
    clock.advance(15 * 60 + 1)
    assert (await clerks.login(sql, "mai", "wrong", clock.now)).outcome is LoginOutcome.WRONG
    assert (await clerks.by_login(sql, "mai")).failed_logins == 1


async def test_concurrent_wrong_passwords_all_count(clerks, sql, clock):
    """The count is raised by the UPDATE itself: attempts racing each other all count."""
    await clerks.create(sql, login="mai", name="Mai", phone=None, role="clerk", agency_codes=[A], actor=CLI,
                        now=clock.now)
    results = await asyncio.gather(*(clerks.login(sql, "mai", f"wrong{i}", clock.now) for i in range(12)))
    outcomes = [r.outcome for r in results]
    assert outcomes.count(LoginOutcome.LOCKED) == 3  # the 10th, and the two after it
    clerk = await clerks.by_login(sql, "mai")
    assert clerk.failed_logins == 10 and clerk.locked_at(clock.now)


async def test_unknown_and_disabled_logins_get_the_same_answer(clerks, sql, clock):
    _, password = await clerks.create(sql, login="mai", name="Mai", phone=None, role="clerk", agency_codes=[A],
                                      actor=CLI, now=clock.now)
    assert (await clerks.login(sql, "nobody", password, clock.now)).outcome is LoginOutcome.WRONG
    ok = await clerks.login(sql, "mai", password, clock.now)
    async with sql.transaction() as tx:
        disabled = await clerks.set_active(tx, "mai", False, CLI, clock.now)
    assert not disabled.active
    refused = await clerks.login(sql, "mai", password, clock.now)
    assert refused.outcome is LoginOutcome.WRONG
    async with sql.transaction() as tx:
        assert await clerks.session_clerk(tx, ok.session_id, clock.now) is None  # its session ended
        await clerks.set_active(tx, "mai", True, CLI, clock.now)
    assert (await clerks.login(sql, "mai", password, clock.now)).outcome is LoginOutcome.OK
    assert [r[3] for r in await _audit_rows(sql, "login_failed")] == ["unknown login", "account disabled"]
    assert [r[2] for r in await _audit_rows(sql, "clerk_disabled")] == ["mai"]
    assert [r[2] for r in await _audit_rows(sql, "clerk_enabled")] == ["mai"]
    # An unknown login's failure names no target: what was typed may be anything (a phone).
    assert (await _audit_rows(sql, "login_failed"))[0][2] == ""


async def test_a_clerk_cannot_disable_their_own_account(clerks, sql, clock):
    admin, _ = await clerks.create(sql, login="boss", name="Boss", phone=None, role="admin", agency_codes=[],
                                   actor=CLI, now=clock.now)
    async with sql.transaction() as tx:
        with pytest.raises(ClerkError) as refused:
            await clerks.set_active(tx, "boss", False, Actor(admin.id, "boss", "console"), clock.now)
    assert refused.value.reason == "self"
    assert (await clerks.by_login(sql, "boss")).active


async def test_sessions_end_when_idle_and_at_logout(clerks, sql, clock):
    _, password = await clerks.create(sql, login="mai", name="Mai", phone=None, role="clerk", agency_codes=[A],
                                      actor=CLI, now=clock.now)
    first = await clerks.login(sql, "mai", password, clock.now)
    stored = await sql.fetch("SELECT sid_hash FROM clerk_session")
    assert stored == [(session_hash(first.session_id),)]  # the id itself is never stored
    clock.advance(29 * 60)
    async with sql.transaction() as tx:
        assert (await clerks.session_clerk(tx, first.session_id, clock.now)).login == "mai"  # kept alive
    clock.advance(29 * 60)
    async with sql.transaction() as tx:
        assert (await clerks.session_clerk(tx, first.session_id, clock.now)) is not None
    clock.advance(30 * 60 + 1)
    async with sql.transaction() as tx:
        assert await clerks.session_clerk(tx, first.session_id, clock.now) is None  # idle too long
    assert await sql.fetch("SELECT ended FROM clerk_session") in ([(True,)], [(1,)])
    second = await clerks.login(sql, "mai", password, clock.now, previous_session=first.session_id)
    assert second.session_id != first.session_id
    async with sql.transaction() as tx:
        assert await clerks.logout(tx, second.session_id, "console", clock.now)
        assert await clerks.session_clerk(tx, second.session_id, clock.now) is None
    assert [r[2] for r in await _audit_rows(sql, "logout")] == ["mai"]


async def test_a_new_login_ends_the_session_it_replaces(clerks, sql, clock):
    _, password = await clerks.create(sql, login="mai", name="Mai", phone=None, role="clerk", agency_codes=[A],
                                      actor=CLI, now=clock.now)
    first = await clerks.login(sql, "mai", password, clock.now)
    second = await clerks.login(sql, "mai", password, clock.now, previous_session=first.session_id)
    async with sql.transaction() as tx:
        assert await clerks.session_clerk(tx, first.session_id, clock.now) is None
        assert (await clerks.session_clerk(tx, second.session_id, clock.now)).login == "mai"


async def test_change_password(clerks, sql, clock):
    _, password = await clerks.create(sql, login="mai", name="Mai", phone=None, role="clerk", agency_codes=[A],
                                      actor=CLI, now=clock.now)
    here = await clerks.login(sql, "mai", password, clock.now)
    elsewhere = await clerks.login(sql, "mai", password, clock.now)
    clerk = here.clerk
    for current, new, reason in [
        ("wrong-current", "a-good-new-password", "wrong_current"),
        (password, "short", "too_short"),
        (password, "mai-is-my-name-1", "has_login"),
        (password, "aaaaaaaaaaaa", "too_simple"),
        (password, password, "same"),
    ]:
        with pytest.raises(ClerkError) as refused:
            await clerks.change_password(sql, clerk, current, new, clock.now, keep_session=here.session_id)
        assert refused.value.reason == reason
    await clerks.change_password(sql, clerk, password, "a-good-new-password", clock.now, keep_session=here.session_id)
    changed = await clerks.by_login(sql, "mai")
    assert not changed.must_change_password
    async with sql.transaction() as tx:
        assert await clerks.session_clerk(tx, here.session_id, clock.now) is not None
        assert await clerks.session_clerk(tx, elsewhere.session_id, clock.now) is None
    assert (await clerks.login(sql, "mai", password, clock.now)).outcome is LoginOutcome.WRONG
    assert (await clerks.login(sql, "mai", "a-good-new-password", clock.now)).outcome is LoginOutcome.OK
    assert [r[2] for r in await _audit_rows(sql, "password_changed")] == ["mai"]


async def test_scope_clerk_sees_own_agencies_admin_sees_all(clerks, sql, clock):
    clerk, _ = await clerks.create(sql, login="mai", name="Mai", phone=None, role="clerk", agency_codes=[A],
                                   actor=CLI, now=clock.now)
    admin, _ = await clerks.create(sql, login="boss", name="Boss", phone=None, role="admin", agency_codes=[],
                                   actor=CLI, now=clock.now)
    agencies = dict(await sql.fetch("SELECT code, id FROM agency"))
    assert clerk.scope.allows(agencies[A]) and not clerk.scope.allows(agencies[B])
    assert admin.scope.allows(agencies[A]) and admin.scope.allows(agencies[B])
    theirs = (await sql.fetch("SELECT code, tail FROM dossier WHERE agency_id=?", (agencies[B],)))[0]
    ours = (await sql.fetch("SELECT code FROM dossier WHERE agency_id=? ORDER BY id", (agencies[A],)))[0][0]
    assert [d.code for d in await desk.find(sql, clerk.scope, ours)] == [ours]
    assert await desk.find(sql, clerk.scope, theirs[0]) == []
    assert await desk.dossier(sql, clerk.scope, theirs[0]) is None
    assert (await desk.dossier(sql, admin.scope, theirs[0])).code == theirs[0]
    # The neighbour's dossier shares its tail with one of ours: the clerk finds only ours.
    assert [d.agency_code for d in await desk.find(sql, clerk.scope, theirs[1])] == [A]
    assert sorted(d.agency_code for d in await desk.find(sql, admin.scope, theirs[1])) == [A, B]
    # A change of agencies changes the scope.
    async with sql.transaction() as tx:
        moved = await clerks.set_agencies(tx, "mai", [B], CLI, clock.now)
    assert moved.agency_codes == (B,) and moved.scope.allows(agencies[B]) and not moved.scope.allows(agencies[A])
    assert [r[3] for r in await _audit_rows(sql, "clerk_changed")] == [f"agencies={B}"]


@pytest.mark.parametrize(("text", "kept"), [
    ("000.32.22.H23-261030-0004", "000.32.22.H23-261030-0004"),
    ("G09.20-20260609-0092637", "G09.20-20260609-0092637"),
    ("mai", "mai"),
    ("call 0987542228", "call 09*******"),
    ("call +84 987 542 228", "call +8*******"),
    ("id 030199012345", "id 03*******"),
    ("000.32.22.H23-261030-0004 for 0987.542.228", "000.32.22.H23-261030-0004 for 09*******"),
])
def test_audit_text_never_keeps_a_phone_or_id_number(text, kept):
    assert audit.clean(text, 300) == kept


async def test_audit_record_in_the_callers_transaction(sql, clock):
    actor = Actor(None, "cli", "cli")
    with pytest.raises(RuntimeError):
        async with sql.transaction() as tx:
            await audit.record(tx, actor, "clerk_changed", clock.now, "mai", "phone 0987542228")
            raise RuntimeError("the change failed")
    assert await audit.entries(sql) == []
    async with sql.transaction() as tx:
        await audit.record(tx, actor, "clerk_changed", clock.now, "mai", "phone 0987542228")
    [entry] = await audit.entries(sql)
    assert (entry.actor, entry.channel, entry.target, entry.detail) == ("cli", "cli", "mai", "phone 09*******")
    with pytest.raises(ValueError):
        Actor(None, "x", "email")


async def test_cli_adds_lists_disables_and_enables_clerks(client, database_url, tmp_path):
    from tests.servers import run_cli, write_settings

    settings = write_settings(tmp_path / "settings.toml", {"database": {"url": database_url}})
    code, out, err = await run_cli(settings, "add-clerk", "--agency", A, "--agency", B, "--name", "Nguyen Thi Mai",
                                   "--phone", "0912345678", "--login", "mai")
    assert code == 0, err
    password = out.strip().splitlines()[-1]
    assert len(password) == 14 and "mai" in out
    code, _, err = await run_cli(settings, "add-clerk", "--agency", "000.99.99.H99", "--name", "X",
                                 "--phone", "0912345679", "--login", "lan")
    assert code == 1 and "no agency with code 000.99.99.H99" in err
    code, out, _ = await run_cli(settings, "list-clerks")
    assert code == 0 and out.startswith("mai\tclerk\t") and f"{A} {B}" in out and "active" in out
    assert "0912345678" not in out
    assert (await run_cli(settings, "disable-clerk", "mai"))[0] == 0
    assert "disabled" in (await run_cli(settings, "list-clerks"))[1]
    assert (await run_cli(settings, "enable-clerk", "mai"))[0] == 0
    code, _, err = await run_cli(settings, "disable-clerk", "nobody")
    assert code == 1 and "no clerk with login 'nobody'" in err
    clerks = client.app[SERVICES].clerks
    sql = client.app[SQL]
    assert (await clerks.login(sql, "mai", password, dt.datetime.now(dt.timezone.utc))).outcome is LoginOutcome.OK
    rows = await sql.fetch("SELECT actor, channel, action, target FROM audit_log WHERE channel='cli' ORDER BY id")
    assert rows == [("cli", "cli", "clerk_created", "mai"), ("cli", "cli", "clerk_disabled", "mai"),
                    ("cli", "cli", "clerk_enabled", "mai")]
