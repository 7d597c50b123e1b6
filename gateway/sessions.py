"""USSD session store: the dialogue state of every live session, shared by all workers.

Sessions are the hottest path of the gateway (a read and a write on every hop), so the
store runs fixed SQL through ``models.fastsql`` instead of the ORM. The ``ussd_session``
table itself is owned by ``models.entities.UssdSession`` and its migrations.
Writes are optimistic on the hop counter, so two workers racing on one session (an eager
aggregator retry) cannot both move it on. A hop's write goes through the hop's unit of
work (``tx``), so the session and the hop's effects commit together or not at all.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

import orjson

from models.fastsql import SqlRunner, Tx, as_datetime


def _json(state: dict[str, Any]) -> str:
    """The state as stored: compact JSON (no spaces), by orjson; what it refuses (a lone
    surrogate, an int past 64 bits) by the stdlib encoder, as compact."""
    try:
        return orjson.dumps(state).decode()
    except TypeError:
        return json.dumps(state, separators=(",", ":"))

def _state(stored: str | bytes) -> dict[str, Any]:
    """The stored state back: by orjson, or the stdlib for what only it wrote (see ``_json``)."""
    try:
        return orjson.loads(stored)
    except orjson.JSONDecodeError:
        return json.loads(stored)


_COLUMNS = "id, state, hops, last_request, last_reply, ended, updated_at, phone_key"


class RequestTrail:
    """What a session keeps of the requests it answered, without keeping what was typed.

    A cumulative text holds every input of the dialogue, OTP codes and PINs included, so it
    never rests in the session row: the row's ``last_request`` holds keyed hashes of the
    last few requests (cumulative texts, or hop ids) and how many inputs the last one had.
    That is enough to tell a retry (the newest hash), a late copy of an earlier hop (an
    older hash), and which inputs a new request adds (the hash of its first n inputs).
    Stored as ``"<n>:<h1>,<h2>,...,<newest>"``.
    """

    KEEP = 8

    def __init__(self, secret: str) -> None:
        # The keyed state once: each digest copies it rather than keying a new HMAC.
        self._keyed = hmac.new(secret.encode(), digestmod=hashlib.sha256)
        # A hop asks for the same request's digest several times (retry? then the new trail).
        self._last: tuple[str, str] = ("", "")

    def digest(self, value: str) -> str:
        last = self._last
        if last[0] == value and last[1]:
            return last[1]
        mac = self._keyed.copy()
        mac.update(value.encode("utf-8", "surrogatepass"))
        digest = mac.hexdigest()[:16]
        self._last = (value, digest)
        return digest

    @staticmethod
    def _parse(stored: str) -> tuple[int, list[str]]:
        count, sep, hashes = stored.partition(":")
        if not sep or not count.lstrip("-").isdigit():
            return -1, []
        return int(count), hashes.split(",") if hashes else []

    def extended(self, stored: str, request: str, inputs: int) -> str:
        """The trail after answering ``request`` (``inputs`` of them; -1 for a hop id)."""
        _, hashes = self._parse(stored)
        return f"{inputs}:" + ",".join([*hashes, self.digest(request)][-self.KEEP:])

    def started(self, request: str, inputs: int) -> str:
        return f"{inputs}:{self.digest(request)}"

    def is_last(self, stored: str, request: str) -> bool:
        _, hashes = self._parse(stored)
        return bool(hashes) and hmac.compare_digest(hashes[-1], self.digest(request))

    def is_earlier(self, stored: str, request: str) -> bool:
        _, hashes = self._parse(stored)
        return self.digest(request) in hashes[:-1]

    def newest_inputs(self, stored: str, cumulative: str) -> list[str]:
        """The inputs a cumulative ``text`` adds to what the session already saw."""
        if not cumulative:
            return []
        segments = cumulative.split("*")
        count, hashes = self._parse(stored)
        if count == 0 and hashes:
            return segments
        if hashes and 0 < count < len(segments) and self.digest("*".join(segments[:count])) == hashes[-1]:
            return segments[count:]
        # The aggregator's history diverged from ours (it dropped or rewrote a hop):
        # the last segment is still what the caller just typed.
        return [segments[-1]]


def input_count(cumulative: str) -> int:
    return 0 if not cumulative else cumulative.count("*") + 1


@dataclass(frozen=True, slots=True)
class SessionRecord:
    id: int
    state: dict[str, Any]
    hops: int
    last_request: str
    last_reply: str
    ended: bool
    updated_at: dt.datetime
    phone_key: str


def _record(row: tuple[Any, ...]) -> SessionRecord:
    state = row[1]
    return SessionRecord(
        id=row[0],
        state=_state(state) if isinstance(state, (str, bytes)) else state,
        hops=row[2],
        last_request=row[3],
        last_reply=row[4],
        ended=bool(row[5]),
        updated_at=as_datetime(row[6]),
        phone_key=row[7],
    )


class SessionStore:
    def __init__(self, sql: SqlRunner) -> None:
        self._sql = sql

    async def get(self, channel: str, external_id: str) -> SessionRecord | None:
        rows = await self._sql.fetch(
            f"SELECT {_COLUMNS} FROM ussd_session WHERE channel=? AND external_id=?", (channel, external_id)
        )
        return _record(rows[0]) if rows else None

    async def create(
        self, tx: Tx, channel: str, external_id: str, phone_key: str, state: dict[str, Any],
        last_request: str, last_reply: str, ended: bool, now: dt.datetime,
    ) -> bool:
        """Store a session's first hop; False if one with this id exists (a raced first hop)."""
        rows = await tx.fetch(
            "INSERT INTO ussd_session (channel, external_id, phone_key, state, hops, last_request,"
            " last_reply, ended, created_at, updated_at) VALUES (?,?,?,?,1,?,?,?,?,?)"
            " ON CONFLICT (channel, external_id) DO NOTHING RETURNING id",
            (channel, external_id, phone_key, _json(state), last_request, last_reply, ended, now, now),
        )
        return bool(rows)

    async def advance(
        self, tx: Tx, record: SessionRecord, state: dict[str, Any], last_request: str, last_reply: str,
        ended: bool, now: dt.datetime,
    ) -> bool:
        """Store the next hop; False if another hop got there first."""
        rows = await tx.fetch(
            "UPDATE ussd_session SET state=?, hops=?, last_request=?, last_reply=?, ended=?, updated_at=?"
            " WHERE id=? AND hops=? RETURNING id",
            (_json(state), record.hops + 1, last_request, last_reply, ended, now, record.id, record.hops),
        )
        return bool(rows)

    async def restart(
        self, tx: Tx, record: SessionRecord, phone_key: str, state: dict[str, Any], last_request: str,
        last_reply: str, ended: bool, now: dt.datetime,
    ) -> bool:
        """A provider reused a session id for a new dialogue: this is its first hop."""
        rows = await tx.fetch(
            "UPDATE ussd_session SET phone_key=?, state=?, hops=1, last_request=?, last_reply=?, ended=?,"
            " created_at=?, updated_at=? WHERE id=? AND hops=? RETURNING id",
            (phone_key, _json(state), last_request, last_reply, ended, now, now, record.id, record.hops),
        )
        return bool(rows)

    async def end(self, session_id: int, now: dt.datetime | None = None, tx: Tx | None = None) -> None:
        runner = tx or self._sql
        if now is None:
            await runner.fetch("UPDATE ussd_session SET ended=? WHERE id=?", (True, session_id))
        else:
            await runner.fetch("UPDATE ussd_session SET ended=?, updated_at=? WHERE id=?", (True, now, session_id))

    async def latest_open(
        self, phone_key: str, since: dt.datetime, exclude: tuple[str, str]
    ) -> SessionRecord | None:
        """This phone's most recent unfinished session active since ``since``, other than
        ``exclude`` (channel, external id)."""
        rows = await self._sql.fetch(
            f"SELECT {_COLUMNS} FROM ussd_session WHERE phone_key=? AND ended=? AND updated_at>=?"
            " AND NOT (channel=? AND external_id=?) ORDER BY updated_at DESC LIMIT 1",
            (phone_key, False, since, *exclude),
        )
        return _record(rows[0]) if rows else None
