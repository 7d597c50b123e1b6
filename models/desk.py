"""What a clerk reads about dossiers at the desk: found by code or keypad tail within the
clerk's scope, with the status history and every SMS about the dossier; the postal-delivery
requests waiting; the pickup alerts of a day and what became of their SMS.

Every read takes the clerk's ``Scope`` and filters by it in SQL: a dossier of an agency
the clerk does not work for is never read, so a page cannot tell it from an unknown one.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from models import dossier_code
from models.clerks import Scope
from models.entities import DossierStatus, FilingMode
from models.fastsql import SqlRunner, Tx, as_datetime

MAX_FOUND = 20


@dataclass(frozen=True, slots=True)
class DeskDossier:
    id: int
    code: str
    agency_id: int
    agency_code: str
    agency_name: str
    procedure_name: str
    procedure_name_en: str
    applicant_name: str
    applicant_phone: str  # E.164: pages show it masked
    status: DossierStatus
    status_note: str
    received_at: dt.datetime
    due_at: dt.datetime | None
    fee_due: int
    pickup_place: str
    mode: FilingMode

    def overdue(self, now: dt.datetime) -> bool:
        return self.status.is_open and self.due_at is not None and self.due_at < now


@dataclass(frozen=True, slots=True)
class StatusChange:
    old_status: DossierStatus | None
    new_status: DossierStatus
    note: str
    changed_at: dt.datetime
    source: str


@dataclass(frozen=True, slots=True)
class DossierSms:
    """One SMS the gateway meant to send about the dossier, and what became of it."""

    kind: str
    told_status: DossierStatus
    created_at: dt.datetime
    skipped: str  # why none was sent, when none was
    sms_id: int | None
    sms_status: str | None  # queued | sending | sent | delivered | failed | expired; None: purged
    sent_at: dt.datetime | None
    delivered_at: dt.datetime | None
    last_error: str
    parts: int | None

    @property
    def state(self) -> str:
        """skipped | purged | the outbox status."""
        if self.sms_id is None:
            return "skipped"
        return self.sms_status or "purged"


# Every column named apart: a PostgreSQL row comes back as a dict keyed by column name.
_SELECT = (
    "SELECT d.id, d.code, d.agency_id, a.code AS agency_code, a.name AS agency_name, p.name AS procedure_name,"
    " p.name_en AS procedure_name_en, d.applicant_name, d.applicant_phone, d.status, d.status_note, d.received_at,"
    " d.due_at, d.fee_due, d.pickup_place, d.mode"
    " FROM dossier d JOIN agency a ON a.id=d.agency_id JOIN \"procedure\" p ON p.id=d.procedure_id"
)


def _dossier(row: tuple) -> DeskDossier:
    return DeskDossier(
        id=row[0], code=row[1], agency_id=row[2], agency_code=row[3], agency_name=row[4], procedure_name=row[5],
        procedure_name_en=row[6], applicant_name=row[7], applicant_phone=row[8], status=DossierStatus(row[9]),
        status_note=row[10], received_at=as_datetime(row[11]), due_at=as_datetime(row[12]), fee_due=row[13],
        pickup_place=row[14], mode=FilingMode(row[15]),
    )


async def find(tx: Tx | SqlRunner, scope: Scope, query: str) -> list[DeskDossier]:
    """The dossiers a clerk's search means: one by its full code (any case and spacing), or
    every one whose keypad tail (``YYMMDDNNNN``) it is, within the clerk's scope."""
    allowed, scope_params = scope.where("d.agency_id")
    code = dossier_code.parse(query)
    if code is not None:
        rows = await tx.fetch(f"{_SELECT} WHERE d.code=? AND {allowed}", (code.text, *scope_params))
        return [_dossier(row) for row in rows]
    tail = dossier_code.parse_tail(query)
    if tail is None:
        return []
    rows = await tx.fetch(
        f"{_SELECT} WHERE d.tail=? AND {allowed} ORDER BY d.code LIMIT ?", (tail, *scope_params, MAX_FOUND)
    )
    return [_dossier(row) for row in rows]


async def dossier(tx: Tx | SqlRunner, scope: Scope, code: str) -> DeskDossier | None:
    """The dossier with this exact code, if the clerk's scope holds it."""
    parsed = dossier_code.parse(code)
    if parsed is None:
        return None
    allowed, scope_params = scope.where("d.agency_id")
    rows = await tx.fetch(f"{_SELECT} WHERE d.code=? AND {allowed}", (parsed.text, *scope_params))
    return _dossier(rows[0]) if rows else None


async def history(tx: Tx | SqlRunner, dossier_id: int) -> list[StatusChange]:
    rows = await tx.fetch(
        "SELECT old_status, new_status, note, changed_at, source FROM dossier_status_change"
        " WHERE dossier_id=? ORDER BY changed_at, id",
        (dossier_id,),
    )
    return [
        StatusChange(DossierStatus(r[0]) if r[0] is not None else None, DossierStatus(r[1]), r[2], as_datetime(r[3]),
                     r[4])
        for r in rows
    ]


async def messages(tx: Tx | SqlRunner, dossier_id: int) -> list[DossierSms]:
    """Every SMS about the dossier, newest first: queued, sent, delivered, failed with the
    reason, or the reason none was sent. The outbox row may be gone (retention): purged."""
    rows = await tx.fetch(
        "SELECT n.kind, n.status AS told_status, n.created_at, n.skipped, n.outbound_sms_id, o.status AS sms_status,"
        " o.sent_at, o.delivered_at, o.last_error, o.parts"
        " FROM dossier_notification n LEFT JOIN outbound_sms o ON o.id=n.outbound_sms_id"
        " WHERE n.dossier_id=? ORDER BY n.created_at DESC, n.id DESC",
        (dossier_id,),
    )
    return [
        DossierSms(kind=r[0], told_status=DossierStatus(r[1]), created_at=as_datetime(r[2]), skipped=r[3] or "",
                   sms_id=r[4], sms_status=r[5], sent_at=as_datetime(r[6]), delivered_at=as_datetime(r[7]),
                   last_error=r[8] or "", parts=r[9])
        for r in rows
    ]


@dataclass(frozen=True, slots=True)
class PostalRequest:
    """An applicant's ask (BUUDIEN <code>) for the result by post, waiting for a clerk."""

    id: int
    channel: str  # sms | ussd
    requested_at: dt.datetime
    dossier: DeskDossier


async def postal_waiting(tx: Tx | SqlRunner, scope: Scope, limit: int = 500) -> list[PostalRequest]:
    """The postal-delivery requests still waiting, oldest first, within the clerk's scope."""
    allowed, scope_params = scope.where("d.agency_id")
    select = _SELECT.replace("SELECT ", "SELECT r.id AS request_id, r.channel, r.requested_at, ", 1)
    rows = await tx.fetch(
        f"{select} JOIN postal_request r ON r.dossier_id=d.id WHERE r.status=? AND {allowed}"
        " ORDER BY r.requested_at, r.id LIMIT ?",
        ("waiting", *scope_params, limit),
    )
    return [PostalRequest(r[0], r[1], as_datetime(r[2]), _dossier(tuple(r[3:]))) for r in rows]


@dataclass(frozen=True, slots=True)
class PickupAlert:
    """One pickup alert (status 9) written in a period, and what became of its SMS."""

    code: str
    applicant_name: str
    applicant_phone: str  # E.164: pages show it masked
    agency_code: str
    sms: DossierSms


async def pickup_alerts(tx: Tx | SqlRunner, scope: Scope, since: dt.datetime, until: dt.datetime,
                        limit: int = 1000) -> list[PickupAlert]:
    """The pickup alerts written in ``[since, until)`` for the clerk's agencies, newest first."""
    allowed, scope_params = scope.where("d.agency_id")
    rows = await tx.fetch(
        "SELECT n.kind, n.status AS told_status, n.created_at, n.skipped, n.outbound_sms_id, o.status AS sms_status,"
        " o.sent_at, o.delivered_at, o.last_error, o.parts, d.code, d.applicant_name, d.applicant_phone,"
        " a.code AS agency_code"
        " FROM dossier_notification n JOIN dossier d ON d.id=n.dossier_id JOIN agency a ON a.id=d.agency_id"
        " LEFT JOIN outbound_sms o ON o.id=n.outbound_sms_id"
        f" WHERE n.kind=? AND n.status=? AND n.created_at>=? AND n.created_at<? AND {allowed}"
        " ORDER BY n.created_at DESC, n.id DESC LIMIT ?",
        ("pickup", int(DossierStatus.READY), since, until, *scope_params, limit),
    )
    return [
        PickupAlert(code=r[10], applicant_name=r[11], applicant_phone=r[12], agency_code=r[13], sms=DossierSms(
            kind=r[0], told_status=DossierStatus(r[1]), created_at=as_datetime(r[2]), skipped=r[3] or "",
            sms_id=r[4], sms_status=r[5], sent_at=as_datetime(r[6]), delivered_at=as_datetime(r[7]),
            last_error=r[8] or "", parts=r[9]))
        for r in rows
    ]
