"""What a clerk does to dossiers, the same on every channel (console, API, SMS commands):
mark a result ready and alert the applicant, mark it collected, send the last alert again,
alert a list of codes at once.

Each action runs in the caller's unit of work: the status change, its SMS in the outbox,
its notification record and one audit record commit together. A dossier outside the
clerk's scope is reported as ``other_agency`` where the clerk named it exactly (a bulk
list, an SMS command) and is never changed; a keypad tail is looked up within the
clerk's agencies only.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, replace
from typing import Any, Sequence

from models import audit, dossier_code
from models.audit import Actor
from models.clerks import Scope
from models.dossiers import DossierService, Notified, Outcome, StatusEvent
from models.entities import DossierStatus
from models.fastsql import Tx

MAX_BULK = 1000


class Verdict(str, enum.Enum):
    SENT = "sent"  # the change was made and the applicant's SMS queued (or skipped: see notified)
    DONE = "done"  # the change was made (collected: the thank-you SMS goes too)
    UNKNOWN = "unknown"  # no such code, or not a code at all
    AMBIGUOUS = "ambiguous"  # a tail several of the clerk's dossiers share
    OTHER_AGENCY = "other_agency"
    ALREADY_COLLECTED = "already_collected"
    NOT_READY = "not_ready"  # collected or re-sent before it was ready


@dataclass(frozen=True, slots=True)
class ActionResult:
    query: str  # what the clerk named
    verdict: Verdict
    code: str = ""
    dossier_id: int | None = None
    notified: Notified | None = None


@dataclass(frozen=True, slots=True)
class _Target:
    id: int
    code: str
    agency_id: int
    status: DossierStatus


class DeskActions:
    def __init__(self, dossiers: DossierService, outbox: Any) -> None:
        self._dossiers = dossiers
        self._outbox = outbox

    async def _resolve(self, tx: Tx, scope: Scope, query: str) -> _Target | ActionResult:
        code = dossier_code.parse(query)
        if code is not None:
            rows = await tx.fetch("SELECT id, code, agency_id, status FROM dossier WHERE code=?", (code.text,))
            if not rows:
                return ActionResult(query, Verdict.UNKNOWN)
            target = _Target(rows[0][0], rows[0][1], rows[0][2], DossierStatus(rows[0][3]))
            if not scope.allows(target.agency_id):
                return ActionResult(query, Verdict.OTHER_AGENCY, target.code)
            return target
        tail = dossier_code.parse_tail(query)
        if tail is None:
            return ActionResult(query[:64], Verdict.UNKNOWN)
        allowed, params = scope.where("agency_id")
        rows = await tx.fetch(
            f"SELECT id, code, agency_id, status FROM dossier WHERE tail=? AND {allowed} ORDER BY code LIMIT 2",
            (tail, *params))
        if not rows:
            return ActionResult(query, Verdict.UNKNOWN)
        if len(rows) > 1:
            return ActionResult(query, Verdict.AMBIGUOUS)
        return _Target(rows[0][0], rows[0][1], rows[0][2], DossierStatus(rows[0][3]))

    async def _change(self, tx: Tx, actor: Actor, target: _Target, status: DossierStatus, now: dt.datetime,
                      action: str) -> Notified | None | Verdict:
        """The change and its audit record; ALREADY_COLLECTED if it was collected meanwhile.
        A one-stop change dated ahead of this clock does not make the clerk's act stale:
        the dossier service takes it as just after that state."""
        result = await self._dossiers.change_status(
            tx, target.id, StatusEvent(target.code, status, now), now, source=f"clerk:{actor.name}"[:40])
        if result is not None and result.outcome is Outcome.STALE:
            return Verdict.ALREADY_COLLECTED
        await audit.record(tx, actor, action, now, target=target.code,
                           detail=f"status {int(target.status)} -> {int(status)}")
        return result.notified if result is not None else None

    async def mark_ready(self, tx: Tx, scope: Scope, actor: Actor, query: str, now: dt.datetime) -> ActionResult:
        """Status 9 and the pickup alert (the alert again if it was ready already)."""
        target = await self._resolve(tx, scope, query)
        if isinstance(target, ActionResult):
            return target
        if target.status is DossierStatus.DELIVERED:
            return ActionResult(query, Verdict.ALREADY_COLLECTED, target.code, target.id)
        if target.status is DossierStatus.READY:
            return await self._resend(tx, actor, target, query, now)
        notified = await self._change(tx, actor, target, DossierStatus.READY, now, "status_changed")
        if notified is Verdict.ALREADY_COLLECTED:
            return ActionResult(query, Verdict.ALREADY_COLLECTED, target.code, target.id)
        await audit.record(tx, actor, "alert_sent", now, target=target.code, detail=_told(notified))
        return ActionResult(query, Verdict.SENT, target.code, target.id, notified)

    async def mark_collected(self, tx: Tx, scope: Scope, actor: Actor, query: str, now: dt.datetime) -> ActionResult:
        target = await self._resolve(tx, scope, query)
        if isinstance(target, ActionResult):
            return target
        if target.status is DossierStatus.DELIVERED:
            return ActionResult(query, Verdict.ALREADY_COLLECTED, target.code, target.id)
        notified = await self._change(tx, actor, target, DossierStatus.DELIVERED, now, "status_changed")
        return ActionResult(query, Verdict.DONE, target.code, target.id, notified)  # twice: UNCHANGED

    async def resend(self, tx: Tx, scope: Scope, actor: Actor, query: str, now: dt.datetime) -> ActionResult:
        """The dossier's current alert again (GUI LAI)."""
        target = await self._resolve(tx, scope, query)
        if isinstance(target, ActionResult):
            return target
        return await self._resend(tx, actor, target, query, now)

    async def _resend(self, tx: Tx, actor: Actor, target: _Target, query: str, now: dt.datetime) -> ActionResult:
        notified = await self._dossiers.resend(tx, target.id, now, source=f"clerk:{actor.name}"[:40])
        await audit.record(tx, actor, "alert_resent", now, target=target.code, detail=_told(notified))
        return ActionResult(query, Verdict.SENT, target.code, target.id, notified)

    async def postal_handled(self, tx: Tx, scope: Scope, actor: Actor, query: str, now: dt.datetime) -> ActionResult:
        """The applicant's request for the result by post (BUUDIEN) is dealt with: it leaves
        the waiting list. UNKNOWN when no request waits for the dossier."""
        target = await self._resolve(tx, scope, query)
        if isinstance(target, ActionResult):
            return target
        rows = await tx.fetch(
            "UPDATE postal_request SET status=?, handled_at=? WHERE dossier_id=? AND status=? RETURNING id",
            ("handled", now, target.id, "waiting"))
        if not rows:  # none, or a click that came second: settled by the UPDATE
            return ActionResult(query, Verdict.UNKNOWN, target.code, target.id)
        await audit.record(tx, actor, "postal_handled", now, target=target.code)
        return ActionResult(query, Verdict.DONE, target.code, target.id)

    async def alert_many(self, tx: Tx, scope: Scope, actor: Actor, queries: Sequence[str],
                         now: dt.datetime) -> list[ActionResult]:
        """A pickup alert for each code (marking it ready first), one result per code, in one
        transaction. A code named twice is alerted once. What ``mark_ready`` does for one,
        written as one batch: the codes looked up together, the status changes, their SMS and
        the audit records each written with one statement (or a few) for the whole list."""
        queries = list(dict.fromkeys(queries[:MAX_BULK]))
        targets = await self._resolve_many(tx, scope, queries)
        results: list[ActionResult | None] = [None] * len(queries)
        moving: list[tuple[int, _Target]] = []
        first: dict[int, int] = {}  # dossier id -> index of its first query
        again: list[tuple[int, int]] = []  # a code and its tail: one dossier, alerted once
        for index, (query, target) in enumerate(zip(queries, targets)):
            if isinstance(target, ActionResult):
                results[index] = target
            elif target.id in first:
                again.append((index, first[target.id]))
            elif target.status is DossierStatus.DELIVERED:
                results[index] = ActionResult(query, Verdict.ALREADY_COLLECTED, target.code, target.id)
            elif target.status is DossierStatus.READY:
                results[index] = await self._resend(tx, actor, target, query, now)
            else:
                moving.append((index, target))
            if not isinstance(target, ActionResult):
                first.setdefault(target.id, index)
        source = f"clerk:{actor.name}"[:40]
        changed = await self._dossiers.change_statuses(
            tx, [(t.id, StatusEvent(t.code, DossierStatus.READY, now)) for _, t in moving], now, source=source)
        records = []
        for (index, target), result in zip(moving, changed):
            if result is not None and result.outcome is Outcome.STALE:  # collected meanwhile
                results[index] = ActionResult(queries[index], Verdict.ALREADY_COLLECTED, target.code, target.id)
                continue
            notified = result.notified if result is not None else None
            records += [("status_changed", target.code, f"status {int(target.status)} -> {int(DossierStatus.READY)}"),
                        ("alert_sent", target.code, _told(notified))]
            results[index] = ActionResult(queries[index], Verdict.SENT, target.code, target.id, notified)
        await audit.record_many(tx, actor, now, records)
        for index, earlier in again:
            results[index] = replace(results[earlier], query=queries[index])
        return [result for result in results if result is not None]

    async def _resolve_many(self, tx: Tx, scope: Scope, queries: Sequence[str]) -> list[_Target | ActionResult]:
        """``_resolve`` for a list: the full codes read with one statement per chunk; a keypad
        tail (rare in a pasted list) on its own."""
        codes = {query: code.text for query in queries if (code := dossier_code.parse(query)) is not None}
        found: dict[str, _Target] = {}
        unique = sorted(set(codes.values()))
        for start in range(0, len(unique), 500):
            chunk = unique[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for row in await tx.fetch(f"SELECT id, code, agency_id, status FROM dossier WHERE code IN ({marks})", chunk):
                found[row[1]] = _Target(row[0], row[1], row[2], DossierStatus(row[3]))
        resolved: list[_Target | ActionResult] = []
        for query in queries:
            if query not in codes:
                resolved.append(await self._resolve(tx, scope, query))
                continue
            target = found.get(codes[query])
            if target is None:
                resolved.append(ActionResult(query, Verdict.UNKNOWN))
            elif not scope.allows(target.agency_id):
                resolved.append(ActionResult(query, Verdict.OTHER_AGENCY, target.code))
            else:
                resolved.append(target)
        return resolved

    async def preview_ready(self, tx: Tx, scope: Scope, query: str, lang: str | None = None) -> tuple[ActionResult, Any]:
        """The exact pickup SMS marking the dossier ready would send (as prepared for the
        air: text, encoding, parts), without sending anything; in ``lang`` if given, else in
        the applicant's language."""
        target = await self._resolve(tx, scope, query)
        if isinstance(target, ActionResult):
            return target, None
        if lang is None:  # the applicant's own language, as the alert will be written in
            lang = await self._dossiers.applicant_lang(tx, target.id)
        text = await self._dossiers.preview(tx, target.id, DossierStatus.READY, lang)
        return ActionResult(query, Verdict.SENT, target.code, target.id), self._outbox.prepared(text, lang)


def _told(notified: Notified | None) -> str:
    if notified is None:
        return "no SMS"
    if notified.sms_id is None:
        return f"no SMS: {notified.skipped}"
    return f"sms {notified.sms_id}, {notified.parts} part(s)"
