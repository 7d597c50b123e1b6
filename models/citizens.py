"""Registered citizens: identity kept as keyed hashes, PINs as slow salted hashes.

What is kept of a citizen (``citizen`` table) is what the service needs and no more: the
phone as a keyed hash (every request brings the number itself), the ID number as an
HMAC-SHA256 with the ID key (``GATEWAY_ID_KEY``: the one-stop system's
``dossier.applicant_id_hash`` uses the same function, so dossiers match their applicant
without the number) plus its last three digits for display, the name as typed, and the
PIN as scrypt with a random salt.

Every method that changes data takes the unit of work's transaction (``tx``) and runs
plain SQL on it: a hop's registration, PIN count or deletion commits with its session
or not at all. PIN hashing costs ~50 ms and runs in a thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Callable

from models.fastsql import Tx, as_datetime

# A registration started by SMS (DK ...) waits this long for DONG Y and the code.
SMS_REGISTRATION_SECONDS = 1800

_CITIZEN_COLUMNS = "id, id_hash, id_last3, name, lang, pin_hash, pin_failures, pin_locked_until, registered_at"


@dataclass(frozen=True, slots=True)
class CitizenView:
    id: int
    id_hash: str
    id_last3: str
    name: str
    lang: str
    pin_hash: str | None
    pin_failures: int
    pin_locked_until: dt.datetime | None
    registered_at: dt.datetime

    @property
    def has_pin(self) -> bool:
        return bool(self.pin_hash)

    def locked_at(self, now: dt.datetime) -> dt.datetime | None:
        """Until when wrong PINs keep the account locked, if they still do."""
        until = self.pin_locked_until
        return until if until is not None and until > now else None


@dataclass(frozen=True, slots=True)
class PinVerdict:
    ok: bool
    tries_left: int
    locked_until: dt.datetime | None = None  # set when this attempt (or an earlier one) locked it


@dataclass(frozen=True, slots=True)
class SmsRegistrationView:
    """A registration started by SMS, waiting for consent (``stage`` consent) or the code (otp)."""

    id_hash: str
    id_last3: str
    name: str
    lang: str
    stage: str
    expires_at: dt.datetime


def _citizen(row: tuple) -> CitizenView:
    return CitizenView(
        id=row[0], id_hash=row[1], id_last3=row[2], name=row[3], lang=row[4], pin_hash=row[5],
        pin_failures=row[6], pin_locked_until=as_datetime(row[7]), registered_at=as_datetime(row[8]),
    )


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


class CitizenService:
    def __init__(
        self,
        settings,  # gateway.settings.PinSettings (read by attribute)
        id_key: str,
        phone_key: Callable[[str], str],
        entry_key: str | None = None,
    ) -> None:
        self._settings = settings
        self._id_key = id_key  # shared with the one-stop system's ID hashes: for those only
        self._entry_key = entry_key or id_key
        self._phone_key = phone_key

    # -- keyed hashes --------------------------------------------------------------------

    def id_hash(self, id_number: str) -> str:
        """The keyed hash of an ID number (digits only): what is stored and matched."""
        return hmac.new(self._id_key.encode(), id_number.encode(), hashlib.sha256).hexdigest()

    def entry_digest(self, nonce: str, value: str) -> str:
        """A keyed hash of something typed mid-dialogue (the first PIN entry, the forms of a
        date of birth), salted per dialogue: what a session may keep instead of the value."""
        return hmac.new(self._entry_key.encode(), f"{nonce}:{value}".encode(), hashlib.sha256).hexdigest()[:32]

    @staticmethod
    def new_nonce() -> str:
        return secrets.token_hex(8)

    # -- PIN hashes ----------------------------------------------------------------------

    async def hash_pin(self, pin: str) -> str:
        """``scrypt$n$r$p$salt$hash`` (base64), computed off the event loop."""
        n, r, p = self._settings.scrypt_n, self._settings.scrypt_r, self._settings.scrypt_p
        salt = secrets.token_bytes(16)
        digest = await asyncio.to_thread(_scrypt, pin, salt, n, r, p)
        return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"

    async def verify_pin(self, pin: str, stored: str | None) -> bool:
        if not stored:
            return False
        try:
            scheme, n, r, p, salt, expected = stored.split("$")
            if scheme != "scrypt":
                return False
            salt_bytes, expected_bytes = base64.b64decode(salt), base64.b64decode(expected)
            n_, r_, p_ = int(n), int(r), int(p)
        except ValueError:
            return False
        digest = await asyncio.to_thread(_scrypt, pin, salt_bytes, n_, r_, p_, len(expected_bytes))
        return hmac.compare_digest(digest, expected_bytes)

    # -- citizens ------------------------------------------------------------------------

    async def by_phone(self, tx: Tx, phone: str) -> CitizenView | None:
        rows = await tx.fetch(f"SELECT {_CITIZEN_COLUMNS} FROM citizen WHERE phone_key=?", (self._phone_key(phone),))
        return _citizen(rows[0]) if rows else None

    async def register(
        self, tx: Tx, phone: str, id_hash: str, id_last3: str, name: str, lang: str, now: dt.datetime,
        pin_hash: str | None = None,
    ) -> CitizenView | None:
        """The new citizen, or None if this phone is already registered (also when a
        concurrent registration of the same phone committed first: the phone is unique)."""
        rows = await tx.fetch(
            "INSERT INTO citizen (phone_key, id_hash, id_last3, name, lang, pin_hash, pin_failures,"
            " pin_locked_until, registered_at, updated_at) VALUES (?,?,?,?,?,?,0,NULL,?,?)"
            f" ON CONFLICT (phone_key) DO NOTHING RETURNING {_CITIZEN_COLUMNS}",
            (self._phone_key(phone), id_hash, id_last3, name[:60], lang, pin_hash, now, now),
        )
        return _citizen(rows[0]) if rows else None

    async def set_pin(self, tx: Tx, citizen_id: int, pin_hash: str, now: dt.datetime, *, first: bool = False) -> bool:
        """A new PIN; wrong attempts and any lock are forgotten. ``first``: only if none is
        set yet (a first PIN needs no code), decided by the statement itself so that two
        sessions racing to set one cannot both skip the code. False if nothing changed."""
        guard = " AND pin_hash IS NULL" if first else ""
        return bool(await tx.fetch(
            "UPDATE citizen SET pin_hash=?, pin_failures=0, pin_locked_until=NULL, updated_at=? WHERE id=?"
            + guard + " RETURNING id",
            (pin_hash, now, citizen_id),
        ))

    async def pin_attempt(self, tx: Tx, citizen: CitizenView, ok: bool, now: dt.datetime) -> PinVerdict:
        """Count one PIN attempt in one atomic statement: a right PIN clears the count; the
        ``max_failures``-th wrong one in a row locks for ``lock_seconds``. A lock that ran out
        starts the count again. An attempt while locked changes nothing and is refused."""
        limit = self._settings.max_failures
        if ok:
            rows = await tx.fetch(
                "UPDATE citizen SET pin_failures=0, pin_locked_until=NULL, updated_at=?"
                " WHERE id=? AND (pin_locked_until IS NULL OR pin_locked_until<=?) RETURNING id",
                (now, citizen.id, now),
            )
            if rows:
                return PinVerdict(True, limit)
            return await self._locked_verdict(tx, citizen.id)
        # Two statements in the one transaction: the first holds the row, so a concurrent
        # attempt waits and then finds it locked (a CASE with a bare timestamp parameter
        # would not type on PostgreSQL).
        rows = await tx.fetch(
            "UPDATE citizen SET pin_failures=CASE WHEN pin_locked_until IS NOT NULL AND pin_locked_until<=?"
            " THEN 1 ELSE pin_failures+1 END, pin_locked_until=NULL, updated_at=?"
            " WHERE id=? AND (pin_locked_until IS NULL OR pin_locked_until<=?) RETURNING pin_failures",
            (now, now, citizen.id, now),
        )
        if not rows:
            return await self._locked_verdict(tx, citizen.id)
        count = rows[0][0]
        if count < limit:
            return PinVerdict(False, limit - count)
        until = now + dt.timedelta(seconds=self._settings.lock_seconds)
        await tx.fetch("UPDATE citizen SET pin_locked_until=? WHERE id=?", (until, citizen.id))
        return PinVerdict(False, 0, until)

    async def _locked_verdict(self, tx: Tx, citizen_id: int) -> PinVerdict:
        rows = await tx.fetch("SELECT pin_locked_until FROM citizen WHERE id=?", (citizen_id,))
        return PinVerdict(False, 0, as_datetime(rows[0][0]) if rows else None)

    async def check_pin(self, tx: Tx, citizen: CitizenView, pin: str, now: dt.datetime) -> PinVerdict:
        """Verify a typed PIN and count the attempt; a locked account is refused without
        hashing anything."""
        until = citizen.locked_at(now)
        if until is not None:
            return PinVerdict(False, 0, until)
        return await self.pin_attempt(tx, citizen, await self.verify_pin(pin, citizen.pin_hash), now)

    # -- registration by SMS -------------------------------------------------------------

    async def start_sms_registration(
        self, tx: Tx, phone: str, id_hash: str, id_last3: str, name: str, lang: str, now: dt.datetime,
    ) -> SmsRegistrationView:
        """Keep what DK brought until DONG Y and the code (a new DK starts over)."""
        expires = now + dt.timedelta(seconds=SMS_REGISTRATION_SECONDS)
        await tx.fetch(
            "INSERT INTO sms_registration (phone_key, id_hash, id_last3, name, lang, stage, created_at, expires_at)"
            " VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (phone_key) DO UPDATE SET id_hash=excluded.id_hash,"
            " id_last3=excluded.id_last3, name=excluded.name, lang=excluded.lang, stage=excluded.stage,"
            " created_at=excluded.created_at, expires_at=excluded.expires_at",
            (self._phone_key(phone), id_hash, id_last3, name[:60], lang, "consent", now, expires),
        )
        return SmsRegistrationView(id_hash, id_last3, name[:60], lang, "consent", expires)

    async def sms_registration(self, tx: Tx, phone: str, now: dt.datetime) -> SmsRegistrationView | None:
        """This phone's registration by SMS, unless it ran out (an expired one is dropped)."""
        key = self._phone_key(phone)
        rows = await tx.fetch(
            "SELECT id_hash, id_last3, name, lang, stage, expires_at FROM sms_registration WHERE phone_key=?", (key,)
        )
        if not rows:
            return None
        found = SmsRegistrationView(*rows[0][:5], as_datetime(rows[0][5]))
        if found.expires_at <= now:
            await tx.fetch("DELETE FROM sms_registration WHERE phone_key=?", (key,))
            return None
        return found

    async def set_sms_registration_stage(self, tx: Tx, phone: str, stage: str) -> None:
        await tx.fetch("UPDATE sms_registration SET stage=? WHERE phone_key=?", (stage, self._phone_key(phone)))

    async def finish_sms_registration(self, tx: Tx, phone: str) -> None:
        await tx.fetch("DELETE FROM sms_registration WHERE phone_key=?", (self._phone_key(phone),))

    # -- deleting one's data -------------------------------------------------------------

    async def has_data(self, tx: Tx, phone: str) -> bool:
        """Anything personal kept for this phone: a citizen, a registration by SMS, a preference."""
        key = self._phone_key(phone)
        rows = await tx.fetch(
            "SELECT 1 FROM citizen WHERE phone_key=? UNION ALL SELECT 1 FROM sms_registration WHERE phone_key=?"
            " UNION ALL SELECT 1 FROM phone_preference WHERE phone_key=?",
            (key, key, key),
        )
        return bool(rows)

    async def delete(self, tx: Tx, phone: str, channel: str, now: dt.datetime) -> tuple[str, ...]:
        """Remove this phone's personal data: the citizen (ID hash, name, PIN), its
        preferences, a registration by SMS; keep an audit row that says when and how,
        never who. Dossiers are left alone: their applicant phone and ID hash belong to
        the one-stop system that filed them. Returns what went."""
        key = self._phone_key(phone)
        removed: list[str] = []
        citizen = await tx.fetch("DELETE FROM citizen WHERE phone_key=? RETURNING pin_hash", (key,))
        if citizen:
            removed.append("citizen")
            if citizen[0][0]:
                removed.append("pin")
        if await tx.fetch("DELETE FROM phone_preference WHERE phone_key=? RETURNING id", (key,)):
            removed.append("preferences")
        if await tx.fetch("DELETE FROM sms_registration WHERE phone_key=? RETURNING id", (key,)):
            removed.append("sms_registration")
        # What was sent to the phone may quote the name and ID digits (the confirmation, the
        # consent reply): the texts of sent messages go too; the delivery records stay.
        if await tx.fetch(
            "UPDATE outbound_sms SET text='' WHERE to_phone=? AND text<>''"
            " AND status IN ('sent', 'delivered', 'failed', 'expired') RETURNING id", (phone,)
        ):
            removed.append("sms_texts")
        await tx.fetch(
            "INSERT INTO deletion_audit (deleted_at, channel, removed) VALUES (?,?,?)",
            (now, channel, ",".join(removed) or "nothing"),
        )
        return tuple(removed)


def _scrypt(pin: str, salt: bytes, n: int, r: int, p: int, length: int = 32) -> bytes:
    # scrypt needs 128 * n * r bytes per lane; maxmem leaves room for it and a little more.
    return hashlib.scrypt(pin.encode(), salt=salt, n=n, r=r, p=p, maxmem=129 * n * r * p + (1 << 20), dklen=length)
