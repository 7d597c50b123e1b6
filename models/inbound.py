"""Duplicate incoming texts, settled by the database.

A provider may deliver one text several times at once (retries after a slow answer,
several smsbox connections, two workers behind a balancer). A check followed by an insert
lets every copy through; one statement that claims the (phone, text) row does not.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from models.fastsql import sqlite_timestamp

# Inserts the fingerprint, or takes over one older than the window; RETURNING yields a row
# only to the statement that did either. Under PostgreSQL a concurrent copy waits on the
# row lock and then sees the fresh seen_at, so its WHERE fails; SQLite has one writer.
_CLAIM = (
    "INSERT INTO inbound_fingerprint (phone_key, text_digest, seen_at) VALUES ({p1}, {p2}, {p3})"
    " ON CONFLICT (phone_key, text_digest) DO UPDATE SET seen_at = excluded.seen_at"
    " WHERE inbound_fingerprint.seen_at < {p4} RETURNING id"
)
_SQL = {
    "sqlite": _CLAIM.format(p1="?", p2="?", p3="?", p4="?"),
    "postgres": _CLAIM.format(p1="$1", p2="$2", p3="$3", p4="$4"),
}


async def claim_fingerprint(
    connection: Any, phone_key: str, digest: str, now: dt.datetime, window: dt.timedelta
) -> bool:
    """True if this text from this phone opens an answer; False if it is a duplicate.

    Call it inside the transaction that records the message and writes its reply, so a
    rollback releases the claim with everything else.
    """
    dialect = connection.capabilities.dialect
    cutoff = now - window
    params: list[Any] = [phone_key, digest, now, cutoff]
    if dialect == "sqlite":
        params = [phone_key, digest, sqlite_timestamp(now), sqlite_timestamp(cutoff)]
    rows = await connection.execute_query_dict(_SQL[dialect], params)
    return bool(rows)
