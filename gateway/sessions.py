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
import json
from dataclasses import dataclass
from typing import Any

from models.fastsql import SqlRunner, Tx, as_datetime

_COLUMNS = "id, state, hops, last_request, last_reply, ended, updated_at, phone_key"


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
        state=json.loads(state) if isinstance(state, (str, bytes)) else state,
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
            (channel, external_id, phone_key, json.dumps(state), last_request, last_reply, ended, now, now),
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
            (json.dumps(state), record.hops + 1, last_request, last_reply, ended, now, record.id, record.hops),
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
            (phone_key, json.dumps(state), last_request, last_reply, ended, now, now, record.id, record.hops),
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
