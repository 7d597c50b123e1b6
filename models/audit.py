"""The audit log: who did what, when, from which channel (``audit_log``).

Every clerk action (a login, a failed one, an account change, a dossier change, an alert)
writes one record inside the transaction of the change itself, so a change and its record
commit together or not at all. A record names its target by a dossier code or a clerk
login, never by a citizen's phone or ID number; as a last line of defence any run of nine
or more digits in a target or detail (a phone, an ID number) is cut before it is stored.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Sequence

from models.fastsql import Tx, as_datetime

CHANNELS = ("console", "api", "sms", "cli")

# A phone however it is spelled ("+84 987 542 228", "0987.542.228") or an ID number:
# digits with at most one separator between them, nine or more in all.
_NUMBER_RE = re.compile(r"\+?\d(?:[\s.\-]?\d){8,}")
# Dossier codes (``000.32.22.H23-261030-0004``) hold such runs and are what targets are.
_DOSSIER_CODE_RE = re.compile(r"(?<![0-9A-Za-z.])[0-9A-Za-z]+(?:\.[0-9A-Za-z]+)*-\d{6}(?:\d{2})?-\d{4,8}(?![0-9])")
_TARGET_CHARS, _DETAIL_CHARS, _ACTOR_CHARS, _ACTION_CHARS = 80, 300, 40, 40


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: a clerk (``clerk_id`` and login), or the operator at the CLI (no id)."""

    clerk_id: int | None
    name: str  # the clerk's login, or "cli" / "system"
    channel: str  # console | api | sms | cli

    def __post_init__(self) -> None:
        if self.channel not in CHANNELS:
            raise ValueError(f"audit channel must be one of {CHANNELS}, got {self.channel!r}")


CLI = Actor(None, "cli", "cli")


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: dt.datetime
    clerk_id: int | None
    actor: str
    channel: str
    action: str
    target: str
    detail: str


def _cut_numbers(text: str) -> str:
    """Keep the first two digits of any long run of digits (enough to tell entries apart),
    outside dossier codes."""
    pieces, last = [], 0
    for code in _DOSSIER_CODE_RE.finditer(text):
        pieces += [_NUMBER_RE.sub(_cut, text[last:code.start()]), code.group(0)]
        last = code.end()
    pieces.append(_NUMBER_RE.sub(_cut, text[last:]))
    return "".join(pieces)


def _cut(match: re.Match[str]) -> str:
    return match.group(0)[:2] + "*" * 7


def clean(text: str, limit: int) -> str:
    return _cut_numbers(" ".join(str(text).split()))[:limit]


_INSERT = "INSERT INTO audit_log (at, clerk_id, actor, channel, action, target, detail) VALUES (?,?,?,?,?,?,?)"


def _values(actor: Actor, action: str, now: dt.datetime, target: str, detail: str) -> tuple:
    return (now, actor.clerk_id, clean(actor.name, _ACTOR_CHARS), actor.channel, action[:_ACTION_CHARS],
            clean(target, _TARGET_CHARS), clean(detail, _DETAIL_CHARS))


async def record(tx: Tx, actor: Actor, action: str, now: dt.datetime, target: str = "", detail: str = "") -> None:
    """One audit record, in the caller's transaction."""
    await tx.fetch(_INSERT, _values(actor, action, now, target, detail))


async def record_many(tx: Tx, actor: Actor, now: dt.datetime, records: Sequence[tuple[str, str, str]]) -> None:
    """Audit records (action, target, detail) of one actor's act on many things (a bulk
    alert), in the caller's transaction and in one statement."""
    if records:
        await tx.execute_many(_INSERT, [_values(actor, action, now, target, detail) for action, target, detail in records])


_COLUMNS = "id, at, clerk_id, actor, channel, action, target, detail"


async def entries(tx: Tx, *, clerk_id: int | None = None, limit: int = 200) -> list[AuditEntry]:
    """The newest records first: all of them, or those of one clerk (``clerk_id``)."""
    if clerk_id is None:
        rows = await tx.fetch(f"SELECT {_COLUMNS} FROM audit_log ORDER BY at DESC, id DESC LIMIT ?", (limit,))
    else:
        rows = await tx.fetch(
            f"SELECT {_COLUMNS} FROM audit_log WHERE clerk_id=? ORDER BY at DESC, id DESC LIMIT ?", (clerk_id, limit)
        )
    return [AuditEntry(r[0], as_datetime(r[1]), r[2], r[3], r[4], r[5], r[6], r[7]) for r in rows]
