"""Clerks: accounts and roles, passwords, logins with lockout, console sessions, scope.

A clerk works for one or more agencies (``clerk_agency``) and sees and acts on their
dossiers only; an admin sees every agency and manages accounts. What is kept:

- **Passwords** as scrypt with a random salt (``scrypt$n$r$p$salt$hash``, the PIN's
  format and cost), computed in a thread, never on the event loop, and never inside a
  transaction (a SQLite transaction holds the one writer lock). An account is created with
  a one-time password, shown once, and ``must_change_password`` until its first change.
- **Lockout**: ``max_failed_logins`` wrong passwords in a row lock the account for
  ``lock_minutes``. The count is raised by the UPDATE itself (``failed_logins + 1``,
  guarded by "not locked"), so concurrent attempts on several workers all count and none
  slips through a lock. A lock that ran out starts the count again; a right password
  clears it. An attempt while locked hashes nothing and changes nothing.
- **Console sessions** (``clerk_session``): the cookie carries a random session id, only
  its SHA-256 is stored. A session is over after ``session_idle_minutes`` without a
  request, at logout, when the account is disabled, and (the others) at a password change.
- **Audit**: every action here writes its ``audit_log`` record in the same transaction.

The phone (the clerk's work phone, for SMS commands) is stored in E.164 with its keyed
hash, the lookup key for an incoming SMS. Phone parsing and keying are injected: they
live at the edge (``gateway.phones``).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import enum
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from typing import Callable, Iterable, Protocol, Sequence

from models import audit
from models.audit import Actor
from models.fastsql import SqlRunner, Tx, as_datetime

ROLES = ("clerk", "admin")
LOGIN_RE = re.compile(r"[a-z][a-z0-9._-]{1,39}")
MIN_PASSWORD_CHARS = 10
MAX_PASSWORD_CHARS = 200  # bounds the work a login costs
# One-time passwords: no look-alike characters (l/1, o/0), read aloud or copied by hand.
_OTP_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"


class ConsoleSettings(Protocol):
    session_idle_minutes: int
    max_failed_logins: int
    lock_minutes: int


class ClerkError(ValueError):
    """An account change or password refused; ``reason`` is a stable code for the pages."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ClerkView:
    id: int
    login: str
    name: str
    phone: str | None
    role: str
    active: bool
    must_change_password: bool
    failed_logins: int
    locked_until: dt.datetime | None
    created_at: dt.datetime
    last_login_at: dt.datetime | None
    agency_ids: tuple[int, ...]
    agency_codes: tuple[str, ...]
    password_hash: str = field(default="", repr=False)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def locked_at(self, now: dt.datetime) -> dt.datetime | None:
        until = self.locked_until
        return until if until is not None and until > now else None

    @property
    def scope(self) -> "Scope":
        """Which agencies' dossiers this clerk may see and change (admin: all)."""
        return Scope(self.is_admin, frozenset(self.agency_ids))

    @property
    def actor_name(self) -> str:
        return self.login


@dataclass(frozen=True, slots=True)
class Scope:
    """The agencies a clerk may see: every one (admin), or a set of agency ids."""

    all_agencies: bool
    agency_ids: frozenset[int]

    def allows(self, agency_id: int) -> bool:
        return self.all_agencies or agency_id in self.agency_ids

    def where(self, column: str) -> tuple[str, tuple[int, ...]]:
        """A SQL condition on ``column`` (an agency id) and its parameters."""
        if self.all_agencies:
            return "1=1", ()
        if not self.agency_ids:
            return "1=0", ()
        ids = tuple(sorted(self.agency_ids))
        return f"{column} IN ({','.join('?' * len(ids))})", ids


class LoginOutcome(str, enum.Enum):
    OK = "ok"
    WRONG = "wrong"  # unknown login, wrong password or disabled account: one answer for all
    LOCKED = "locked"


@dataclass(frozen=True, slots=True)
class LoginResult:
    outcome: LoginOutcome
    clerk: ClerkView | None = None
    session_id: str | None = None  # the new console session (only for OK): goes in the cookie
    locked_until: dt.datetime | None = None


_CLERK_COLUMNS = (
    "id, login, name, phone, role, active, must_change_password, failed_logins, locked_until,"
    " created_at, last_login_at, password_hash"
)


def session_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8", "surrogateescape")).hexdigest()


def new_one_time_password() -> str:
    """12 characters in three groups (about 59 bits): ``k7mq-4xzp-29tr``."""
    chars = "".join(secrets.choice(_OTP_ALPHABET) for _ in range(12))
    return "-".join(chars[i:i + 4] for i in range(0, 12, 4))


def normalize_login(raw: str) -> str:
    return (raw or "").strip().lower()


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _scrypt(secret: str, salt: bytes, n: int, r: int, p: int, length: int = 32) -> bytes:
    return hashlib.scrypt(secret.encode("utf-8", "surrogateescape"), salt=salt, n=n, r=r, p=p,
                          maxmem=129 * n * r * p + (1 << 20), dklen=length)


class ClerkService:
    def __init__(
        self,
        settings: ConsoleSettings,
        phone_key: Callable[[str], str],
        normalize_phone: Callable[[str | None], str | None],
        *,
        scrypt_n: int = 16384,
        scrypt_r: int = 8,
        scrypt_p: int = 1,
    ) -> None:
        self._settings = settings
        self._phone_key = phone_key
        self._normalize_phone = normalize_phone
        self._cost = (scrypt_n, scrypt_r, scrypt_p)
        self._dummy_hash: str | None = None

    # -- passwords -------------------------------------------------------------------------

    async def hash_password(self, password: str) -> str:
        n, r, p = self._cost
        salt = secrets.token_bytes(16)
        digest = await asyncio.to_thread(_scrypt, password, salt, n, r, p)
        return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"

    async def verify_password(self, password: str, stored: str | None) -> bool:
        if not stored or len(password) > MAX_PASSWORD_CHARS:
            return False
        try:
            scheme, n, r, p, salt, expected = stored.split("$")
            if scheme != "scrypt":
                return False
            salt_bytes, expected_bytes = base64.b64decode(salt), base64.b64decode(expected)
            cost = int(n), int(r), int(p)
        except ValueError:
            return False
        digest = await asyncio.to_thread(_scrypt, password, salt_bytes, *cost, len(expected_bytes))
        return hmac.compare_digest(digest, expected_bytes)

    async def _spend_a_hash(self, password: str) -> None:
        """An unknown login costs what a known one does: its answer time tells nothing."""
        if self._dummy_hash is None:
            self._dummy_hash = await self.hash_password(secrets.token_urlsafe(16))
        await self.verify_password(password, self._dummy_hash)

    @staticmethod
    def check_new_password(login: str, password: str, current: str | None = None) -> None:
        if len(password) < MIN_PASSWORD_CHARS:
            raise ClerkError("too_short", f"a password has at least {MIN_PASSWORD_CHARS} characters")
        if len(password) > MAX_PASSWORD_CHARS:
            raise ClerkError("too_long", f"a password has at most {MAX_PASSWORD_CHARS} characters")
        if login and login.lower() in password.lower():
            raise ClerkError("has_login", "a password must not contain the login")
        if len(set(password)) < 4:
            raise ClerkError("too_simple", "a password needs at least 4 different characters")
        if current is not None and password == current:
            raise ClerkError("same", "the new password must differ from the current one")

    # -- reading ---------------------------------------------------------------------------

    async def by_login(self, tx: Tx | SqlRunner, login: str) -> ClerkView | None:
        rows = await tx.fetch(f"SELECT {_CLERK_COLUMNS} FROM clerk WHERE login=?", (normalize_login(login),))
        return (await self._with_agencies(tx, rows))[0] if rows else None

    async def by_id(self, tx: Tx | SqlRunner, clerk_id: int) -> ClerkView | None:
        rows = await tx.fetch(f"SELECT {_CLERK_COLUMNS} FROM clerk WHERE id=?", (clerk_id,))
        return (await self._with_agencies(tx, rows))[0] if rows else None

    async def by_phone(self, tx: Tx | SqlRunner, phone: str) -> ClerkView | None:
        """The active clerk whose work phone this is (for SMS commands), or None."""
        rows = await tx.fetch(f"SELECT {_CLERK_COLUMNS} FROM clerk WHERE phone_key=? AND active=?",
                              (self._phone_key(phone), True))
        return (await self._with_agencies(tx, rows))[0] if rows else None

    async def list(self, tx: Tx | SqlRunner) -> list[ClerkView]:
        rows = await tx.fetch(f"SELECT {_CLERK_COLUMNS} FROM clerk ORDER BY login")
        return await self._with_agencies(tx, rows)

    async def _with_agencies(self, tx: Tx | SqlRunner, rows: Sequence[tuple]) -> list[ClerkView]:
        if not rows:
            return []
        ids = [row[0] for row in rows]
        links = await tx.fetch(
            "SELECT ca.clerk_id, a.id, a.code FROM clerk_agency ca JOIN agency a ON a.id=ca.agency_id"
            f" WHERE ca.clerk_id IN ({','.join('?' * len(ids))}) ORDER BY a.code",
            ids,
        )
        agencies: dict[int, list[tuple[int, str]]] = {}
        for clerk_id, agency_id, code in links:
            agencies.setdefault(clerk_id, []).append((agency_id, code))
        views = []
        for row in rows:
            mine = agencies.get(row[0], [])
            views.append(ClerkView(
                id=row[0], login=row[1], name=row[2], phone=row[3], role=row[4], active=bool(row[5]),
                must_change_password=bool(row[6]), failed_logins=row[7], locked_until=as_datetime(row[8]),
                created_at=as_datetime(row[9]), last_login_at=as_datetime(row[10]),
                agency_ids=tuple(a for a, _ in mine), agency_codes=tuple(c for _, c in mine), password_hash=row[11],
            ))
        return views

    async def agency_ids(self, tx: Tx | SqlRunner, codes: Iterable[str]) -> dict[str, int]:
        """Agency ids by code; ``ClerkError`` naming any code that is no agency."""
        wanted = sorted({code.strip().upper() for code in codes if code.strip()})
        if not wanted:
            return {}
        rows = await tx.fetch(f"SELECT code, id FROM agency WHERE code IN ({','.join('?' * len(wanted))})", wanted)
        found = {code: agency_id for code, agency_id in rows}
        unknown = [code for code in wanted if code not in found]
        if unknown:
            raise ClerkError("unknown_agency", f"no agency with code {', '.join(unknown)}")
        return found

    # -- accounts --------------------------------------------------------------------------

    def _checked_account(self, login: str, name: str, phone: str | None, role: str,
                         agency_codes: Sequence[str]) -> tuple[str, str, str | None]:
        login = normalize_login(login)
        if not LOGIN_RE.fullmatch(login) or re.search(r"\d{9}", login):
            raise ClerkError("bad_login", "a login is 2-40 lower-case letters, digits, '.', '_' or '-',"
                                          " starting with a letter")
        name = " ".join((name or "").split())
        if not 1 <= len(name) <= 80:
            raise ClerkError("bad_name", "a name is 1-80 characters")
        if role not in ROLES:
            raise ClerkError("bad_role", f"role must be one of {', '.join(ROLES)}")
        if role == "clerk" and not [code for code in agency_codes if code.strip()]:
            raise ClerkError("no_agency", "a clerk needs at least one agency")
        e164 = None
        if phone:
            e164 = self._normalize_phone(phone)
            if e164 is None:
                raise ClerkError("bad_phone", "the phone is not a valid Vietnamese mobile number")
        return login, name, e164

    async def create(
        self, sql: SqlRunner, *, login: str, name: str, phone: str | None, role: str,
        agency_codes: Sequence[str], actor: Actor, now: dt.datetime,
    ) -> tuple[ClerkView, str]:
        """A new account and its one-time password (the only time it exists in clear)."""
        login, name, e164 = self._checked_account(login, name, phone, role, agency_codes)
        await self.agency_ids(sql, agency_codes)  # refuse unknown codes before spending a hash
        password = new_one_time_password()
        password_hash = await self.hash_password(password)
        async with sql.transaction() as tx:
            agencies = await self.agency_ids(tx, agency_codes)
            rows = await tx.fetch(
                "INSERT INTO clerk (login, name, phone, phone_key, role, password_hash, must_change_password,"
                " failed_logins, locked_until, active, created_at, last_login_at)"
                " VALUES (?,?,?,?,?,?,?,0,NULL,?,?,NULL) ON CONFLICT DO NOTHING RETURNING id",
                (login, name, e164, self._phone_key(e164) if e164 else None, role, password_hash, True, True, now),
            )
            if not rows:
                if await tx.fetch("SELECT 1 FROM clerk WHERE login=?", (login,)):
                    raise ClerkError("login_taken", f"a clerk with login {login!r} exists already")
                raise ClerkError("phone_taken", "that phone belongs to another clerk already")
            clerk_id = rows[0][0]
            await self._link_agencies(tx, clerk_id, agencies.values())
            await audit.record(tx, actor, "clerk_created", now, login,
                               f"role={role} agencies={' '.join(sorted(agencies)) or '-'}")
            clerk = await self.by_id(tx, clerk_id)
        assert clerk is not None
        return clerk, password

    async def _link_agencies(self, tx: Tx, clerk_id: int, agency_ids: Iterable[int]) -> None:
        for agency_id in sorted(set(agency_ids)):
            await tx.fetch("INSERT INTO clerk_agency (clerk_id, agency_id) VALUES (?,?) ON CONFLICT DO NOTHING",
                           (clerk_id, agency_id))

    async def set_active(self, tx: Tx, login: str, active: bool, actor: Actor, now: dt.datetime) -> ClerkView:
        """Disable (its sessions end at once) or enable an account."""
        login = normalize_login(login)
        if not active and actor.name == login and actor.clerk_id is not None:
            raise ClerkError("self", "a clerk cannot disable their own account")
        rows = await tx.fetch("UPDATE clerk SET active=? WHERE login=? RETURNING id", (active, login))
        if not rows:
            raise ClerkError("unknown_clerk", f"no clerk with login {login!r}")
        if not active:
            await self.end_sessions(tx, rows[0][0])
        await audit.record(tx, actor, "clerk_enabled" if active else "clerk_disabled", now, login)
        clerk = await self.by_id(tx, rows[0][0])
        assert clerk is not None
        return clerk

    async def set_agencies(self, tx: Tx, login: str, agency_codes: Sequence[str], actor: Actor,
                           now: dt.datetime) -> ClerkView:
        clerk = await self.by_login(tx, login)
        if clerk is None:
            raise ClerkError("unknown_clerk", f"no clerk with login {normalize_login(login)!r}")
        agencies = await self.agency_ids(tx, agency_codes)
        if not clerk.is_admin and not agencies:
            raise ClerkError("no_agency", "a clerk needs at least one agency")
        await tx.fetch("DELETE FROM clerk_agency WHERE clerk_id=?", (clerk.id,))
        await self._link_agencies(tx, clerk.id, agencies.values())
        await audit.record(tx, actor, "clerk_changed", now, clerk.login, f"agencies={' '.join(sorted(agencies)) or '-'}")
        changed = await self.by_id(tx, clerk.id)
        assert changed is not None
        return changed

    # -- logins and sessions ---------------------------------------------------------------

    async def login(self, sql: SqlRunner, login: str, password: str, now: dt.datetime, *,
                    channel: str = "console", previous_session: str | None = None) -> LoginResult:
        """Check a login and password and count the attempt; on success open a new console
        session (the caller's ``previous_session``, if any, ends: a new id at every login)."""
        clerk = await self.by_login(sql, login)
        if clerk is None or not clerk.active:
            await self._spend_a_hash(password)
            async with sql.transaction() as tx:
                who = Actor(clerk.id, clerk.login, channel) if clerk else Actor(None, "anonymous", channel)
                await audit.record(tx, who, "login_failed", now, clerk.login if clerk else "",
                                   "account disabled" if clerk else "unknown login")
            return LoginResult(LoginOutcome.WRONG)
        who = Actor(clerk.id, clerk.login, channel)
        until = clerk.locked_at(now)
        if until is not None:
            async with sql.transaction() as tx:
                await audit.record(tx, who, "login_failed", now, clerk.login, "account locked")
            return LoginResult(LoginOutcome.LOCKED, locked_until=until)
        right = await self.verify_password(password, clerk.password_hash)
        async with sql.transaction() as tx:
            if right:
                rows = await tx.fetch(
                    "UPDATE clerk SET failed_logins=0, locked_until=NULL, last_login_at=?"
                    " WHERE id=? AND active=? AND (locked_until IS NULL OR locked_until<=?) RETURNING id",
                    (now, clerk.id, True, now),
                )
                if rows:
                    if previous_session:
                        await self.end_session(tx, previous_session)
                    session_id = await self._start_session(tx, clerk.id, now)
                    await audit.record(tx, who, "login", now, clerk.login)
                    fresh = await self.by_id(tx, clerk.id)
                    return LoginResult(LoginOutcome.OK, fresh, session_id)
                # Locked (or disabled) by a concurrent attempt since it was read.
                return await self._refused(tx, who, clerk.id, now)
            # The count is raised by the statement; a lock that ran out starts it again.
            rows = await tx.fetch(
                "UPDATE clerk SET failed_logins=CASE WHEN locked_until IS NOT NULL AND locked_until<=?"
                " THEN 1 ELSE failed_logins+1 END, locked_until=NULL"
                " WHERE id=? AND (locked_until IS NULL OR locked_until<=?) RETURNING failed_logins",
                (now, clerk.id, now),
            )
            if not rows:
                return await self._refused(tx, who, clerk.id, now)
            count = rows[0][0]
            if count < self._settings.max_failed_logins:
                await audit.record(tx, who, "login_failed", now, clerk.login, f"wrong password ({count} in a row)")
                return LoginResult(LoginOutcome.WRONG)
            until = now + dt.timedelta(minutes=self._settings.lock_minutes)
            await tx.fetch("UPDATE clerk SET locked_until=? WHERE id=?", (until, clerk.id))
            await audit.record(tx, who, "login_failed", now, clerk.login,
                               f"wrong password ({count} in a row): locked for {self._settings.lock_minutes} min")
            return LoginResult(LoginOutcome.LOCKED, locked_until=until)

    async def _refused(self, tx: Tx, who: Actor, clerk_id: int, now: dt.datetime) -> LoginResult:
        rows = await tx.fetch("SELECT locked_until, active FROM clerk WHERE id=?", (clerk_id,))
        until = as_datetime(rows[0][0]) if rows else None
        locked = until is not None and until > now and rows and rows[0][1]
        await audit.record(tx, who, "login_failed", now, who.name, "account locked" if locked else "account disabled")
        return LoginResult(LoginOutcome.LOCKED, locked_until=until) if locked else LoginResult(LoginOutcome.WRONG)

    async def _start_session(self, tx: Tx, clerk_id: int, now: dt.datetime) -> str:
        session_id = secrets.token_urlsafe(32)
        await tx.fetch(
            "INSERT INTO clerk_session (clerk_id, sid_hash, created_at, last_seen_at, ended) VALUES (?,?,?,?,?)",
            (clerk_id, session_hash(session_id), now, now, False),
        )
        return session_id

    async def session_clerk(self, tx: Tx, session_id: str, now: dt.datetime) -> ClerkView | None:
        """The clerk of a live console session, which this request keeps alive; None when the
        session is unknown, ended, idle too long (then ended) or its account disabled."""
        if not session_id or len(session_id) > 100:
            return None
        digest = session_hash(session_id)
        idle_since = now - dt.timedelta(minutes=self._settings.session_idle_minutes)
        rows = await tx.fetch(
            "UPDATE clerk_session SET last_seen_at=? WHERE sid_hash=? AND ended=? AND last_seen_at>?"
            " RETURNING clerk_id",
            (now, digest, False, idle_since),
        )
        if not rows:
            await tx.fetch("UPDATE clerk_session SET ended=? WHERE sid_hash=? AND ended=?", (True, digest, False))
            return None
        clerk = await self.by_id(tx, rows[0][0])
        if clerk is None or not clerk.active:
            await self.end_session(tx, session_id)
            return None
        return clerk

    async def end_session(self, tx: Tx, session_id: str) -> int | None:
        """End one console session (logout); the clerk's id, or None if none was live."""
        rows = await tx.fetch("UPDATE clerk_session SET ended=? WHERE sid_hash=? AND ended=? RETURNING clerk_id",
                              (True, session_hash(session_id), False))
        return rows[0][0] if rows else None

    async def logout(self, tx: Tx, session_id: str, channel: str, now: dt.datetime) -> bool:
        clerk_id = await self.end_session(tx, session_id)
        if clerk_id is None:
            return False
        clerk = await self.by_id(tx, clerk_id)
        login = clerk.login if clerk else "-"
        await audit.record(tx, Actor(clerk_id, login, channel), "logout", now, login)
        return True

    async def end_sessions(self, tx: Tx, clerk_id: int, *, keep: str | None = None) -> None:
        """End every live session of a clerk, but ``keep`` (a session id) if given."""
        if keep:
            await tx.fetch("UPDATE clerk_session SET ended=? WHERE clerk_id=? AND ended=? AND sid_hash<>?",
                           (True, clerk_id, False, session_hash(keep)))
        else:
            await tx.fetch("UPDATE clerk_session SET ended=? WHERE clerk_id=? AND ended=?", (True, clerk_id, False))

    async def change_password(self, sql: SqlRunner, clerk: ClerkView, current: str, new: str, now: dt.datetime,
                              *, channel: str = "console", keep_session: str | None = None) -> None:
        """The clerk's own change (forced after a one-time password): the current password
        first. Every other session of the clerk ends."""
        self.check_new_password(clerk.login, new, current)
        if not await self.verify_password(current, clerk.password_hash):
            raise ClerkError("wrong_current", "the current password is wrong")
        new_hash = await self.hash_password(new)
        async with sql.transaction() as tx:
            rows = await tx.fetch(
                "UPDATE clerk SET password_hash=?, must_change_password=? WHERE id=? AND password_hash=? RETURNING id",
                (new_hash, False, clerk.id, clerk.password_hash),
            )
            if not rows:  # changed meanwhile (another tab): start again with the current one
                raise ClerkError("wrong_current", "the current password is wrong")
            await self.end_sessions(tx, clerk.id, keep=keep_session)
            await audit.record(tx, Actor(clerk.id, clerk.login, channel), "password_changed", now, clerk.login)
