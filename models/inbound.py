"""Duplicate incoming texts, settled by the database.

A provider may deliver one text several times at once (retries after a slow answer,
several smsbox connections, two workers behind a balancer). A check followed by an insert
lets every copy through; one statement that claims the (phone, text) row does not.
"""

from __future__ import annotations

import datetime as dt
from models.fastsql import Tx

# Inserts the fingerprint, or takes over one older than the window; RETURNING yields a row
# only to the statement that did either. Under PostgreSQL a concurrent copy waits on the
# row lock and then sees the fresh seen_at, so its WHERE fails; SQLite has one writer.
_CLAIM = (
    "INSERT INTO inbound_fingerprint (phone_key, text_digest, seen_at) VALUES (?, ?, ?)"
    " ON CONFLICT (phone_key, text_digest) DO UPDATE SET seen_at = excluded.seen_at"
    " WHERE inbound_fingerprint.seen_at < ? RETURNING id"
)
# The provider's id is unique per transport (NULLs, for providers without ids, never clash).
_RECORD = (
    "INSERT INTO inbound_sms (transport, provider_id, phone_key, text_digest, keyword, received_at)"
    " VALUES (?,?,?,?,?,?) ON CONFLICT (transport, provider_id) DO NOTHING RETURNING id"
)


async def claim_fingerprint(tx: Tx, phone_key: str, digest: str, now: dt.datetime, window: dt.timedelta) -> bool:
    """True if this text from this phone opens an answer; False if it is a duplicate.

    Call it inside the transaction that records the message and writes its reply, so a
    rollback releases the claim with everything else.
    """
    return bool(await tx.fetch(_CLAIM, (phone_key, digest, now, now - window)))


async def record_inbound(
    tx: Tx, transport: str, provider_id: str | None, phone_key: str, digest: str, keyword: str, now: dt.datetime
) -> bool:
    """Keep the record of a message (no number, no text); False if its provider id was seen."""
    return bool(await tx.fetch(_RECORD, (transport, provider_id, phone_key, digest, keyword, now)))
