"""The database side of the menus' read port (``menus.views.Directory``).

Agencies and procedures change rarely and are read on almost every hop, so each worker
keeps them for ``catalogue_cache_seconds``; dossiers are always read fresh.
"""

from __future__ import annotations

import time
from typing import Callable

from menus.views import AgencyView, DossierView, Localized, ProcedureView
from models.entities import Agency, DossierStatus, FilingMode, Procedure
from models.fastsql import SqlRunner, as_datetime

# "My dossiers" lists at most this many, newest first (older ones: by code, or at the desk).
MY_DOSSIERS_LIMIT = 50

# Dossiers are read on most lookup hops: one fixed statement, no ORM.
_DOSSIER_SELECT = (
    'SELECT d.id, d.code, d.agency_id, d.applicant_name, d.applicant_phone, d.status, d.status_note,'
    ' d.received_at, d.due_at, d.fee_due, d.pickup_place, d.mode, p.name, p.name_en, d.applicant_id_hash'
    ' FROM dossier d JOIN "procedure" p ON p.id = d.procedure_id '
)


def agency_view(agency: Agency) -> AgencyView:
    return AgencyView(
        id=agency.id,
        code=agency.code,
        name=agency.name,
        address=agency.address,
        desk_hours=Localized(agency.desk_hours, agency.desk_hours_en),
        hotline=agency.hotline,
        service_code=agency.service_code or "",
        sms_number=agency.sms_number or "",
    )


def procedure_view(procedure: Procedure) -> ProcedureView:
    return ProcedureView(
        id=procedure.id,
        name=Localized(procedure.name, procedure.name_en),
        processing_time=Localized(procedure.processing_time, procedure.processing_time_en),
        fee=Localized(procedure.fee, procedure.fee_en),
        documents=Localized(procedure.documents, procedure.documents_en),
        code=procedure.code,
    )


class DatabaseDirectory:
    def __init__(self, cache_seconds: float, sql: SqlRunner, clock: Callable[[], float] = time.monotonic) -> None:
        self._sql = sql
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._loaded_at: float | None = None
        self._agencies: dict[int, AgencyView] = {}
        self._by_service_code: dict[str, AgencyView] = {}
        self._by_sms_number: dict[str, AgencyView] = {}
        self._procedures: dict[int, list[ProcedureView]] = {}

    async def _catalogue(self) -> None:
        now = self._clock()
        if self._loaded_at is not None and now - self._loaded_at < self._cache_seconds:
            return
        rows = await Agency.all()
        agencies = {a.id: agency_view(a) for a in rows}
        codes = {a.service_code: agencies[a.id] for a in rows if a.service_code}
        sms_numbers = {a.sms_number: agencies[a.id] for a in rows if a.sms_number}
        procedures: dict[int, list[ProcedureView]] = {agency_id: [] for agency_id in agencies}
        for procedure in await Procedure.all().order_by("position", "id"):
            procedures.setdefault(procedure.agency_id, []).append(procedure_view(procedure))
        self._agencies, self._by_service_code, self._procedures = agencies, codes, procedures
        self._by_sms_number = sms_numbers
        self._loaded_at = now

    def forget(self) -> None:
        """Drop the cache (after an import or a seed)."""
        self._loaded_at = None

    async def agency_for_service_code(self, service_code: str) -> AgencyView | None:
        await self._catalogue()
        found = self._by_service_code.get(service_code)
        if found is None and len(self._agencies) == 1:
            # A one-commune deployment answers on whatever code the aggregator routes to it.
            found = next(iter(self._agencies.values()))
        return found

    async def service_codes(self) -> list[str]:
        """Every USSD code an agency answers on."""
        await self._catalogue()
        return list(self._by_service_code)

    async def agency_for_sms_number(self, number: str) -> AgencyView | None:
        await self._catalogue()
        found = self._by_sms_number.get(number.lstrip("+"))
        if found is None and len(self._agencies) == 1:
            found = next(iter(self._agencies.values()))
        return found

    async def agency(self, agency_id: int) -> AgencyView | None:
        await self._catalogue()
        return self._agencies.get(agency_id)

    async def agency_by_code(self, code: str) -> AgencyView | None:
        await self._catalogue()
        return next((a for a in self._agencies.values() if a.code == code), None)

    async def procedures(self, agency_id: int) -> list[ProcedureView]:
        await self._catalogue()
        return self._procedures.get(agency_id, [])

    async def procedure_by_code(self, agency_id: int, code: str) -> ProcedureView | None:
        for procedure in await self.procedures(agency_id):
            if procedure.code == code:
                return procedure
        return None

    async def procedure(self, agency_id: int, procedure_id: int) -> ProcedureView | None:
        for procedure in await self.procedures(agency_id):
            if procedure.id == procedure_id:
                return procedure
        return None

    async def _views(self, where: str, params: tuple) -> list[DossierView]:
        await self._catalogue()
        rows = await self._sql.fetch(_DOSSIER_SELECT + where, params)
        if any(row[2] not in self._agencies for row in rows):
            self.forget()  # an agency added since the cache was filled
            await self._catalogue()
        return [self._dossier_view(row) for row in rows]

    def _dossier_view(self, row: tuple) -> DossierView:
        return DossierView(
            id=row[0],
            code=row[1],
            agency=self._agencies[row[2]],
            applicant_name=row[3],
            applicant_phone=row[4],
            status=DossierStatus(row[5]),
            status_note=row[6],
            received_at=as_datetime(row[7]),
            due_at=as_datetime(row[8]),
            fee_due=row[9],
            pickup_place=row[10],
            mode=FilingMode(row[11]),
            procedure_name=Localized(row[12], row[13]),
            applicant_id_hash=row[14],
        )

    async def dossier(self, dossier_id: int) -> DossierView | None:
        found = await self._views('WHERE d.id=?', (dossier_id,))
        return found[0] if found else None

    async def dossier_by_code(self, code: str) -> DossierView | None:
        found = await self._views('WHERE d.code=?', (code,))
        return found[0] if found else None

    async def dossiers_by_tail(self, agency_id: int, tail: str) -> list[DossierView]:
        return await self._views('WHERE d.agency_id=? AND d.tail=? ORDER BY d.code', (agency_id, tail))

    async def dossiers_of(self, phone: str, id_hash: str | None) -> list[DossierView]:
        """The caller's dossiers: filed with this phone, or under the caller's ID number.

        Registration cannot prove that an ID number is the caller's own (its digits only
        carry the birth year), so an ID match counts only once the one-stop system itself
        has linked that ID number to this phone on some dossier: knowing someone's ID
        number must not open their dossiers.
        """
        # Both columns are indexed; at most MY_DOSSIERS_LIMIT, the newest (a screen list pages them).
        return await self._views(
            'WHERE d.applicant_phone=? OR (d.applicant_id_hash IS NOT NULL AND d.applicant_id_hash=?'
            ' AND EXISTS (SELECT 1 FROM dossier l WHERE l.applicant_id_hash=? AND l.applicant_phone=?))'
            ' ORDER BY d.received_at DESC, d.id DESC LIMIT ?',
            (phone, id_hash or "", id_hash or "", phone, MY_DOSSIERS_LIMIT))
