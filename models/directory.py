"""The database side of the menus' read port (``menus.views.Directory``).

Agencies and procedures change rarely and are read on almost every hop, so each worker
keeps them for ``catalogue_cache_seconds``; dossiers are always read fresh.
"""

from __future__ import annotations

import time
from typing import Callable

from menus.views import AgencyView, DossierView, Localized, ProcedureView
from models.entities import Agency, Dossier, Procedure


def agency_view(agency: Agency) -> AgencyView:
    return AgencyView(
        id=agency.id,
        code=agency.code,
        name=agency.name,
        address=agency.address,
        desk_hours=Localized(agency.desk_hours, agency.desk_hours_en),
        hotline=agency.hotline,
    )


def procedure_view(procedure: Procedure) -> ProcedureView:
    return ProcedureView(
        id=procedure.id,
        name=Localized(procedure.name, procedure.name_en),
        processing_time=Localized(procedure.processing_time, procedure.processing_time_en),
        fee=Localized(procedure.fee, procedure.fee_en),
        documents=Localized(procedure.documents, procedure.documents_en),
    )


class DatabaseDirectory:
    def __init__(self, cache_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._loaded_at: float | None = None
        self._agencies: dict[int, AgencyView] = {}
        self._by_service_code: dict[str, AgencyView] = {}
        self._procedures: dict[int, list[ProcedureView]] = {}

    async def _catalogue(self) -> None:
        now = self._clock()
        if self._loaded_at is not None and now - self._loaded_at < self._cache_seconds:
            return
        agencies = {a.id: agency_view(a) for a in await Agency.all()}
        codes = {a.service_code: agencies[a.id] for a in await Agency.exclude(service_code=None)}
        procedures: dict[int, list[ProcedureView]] = {agency_id: [] for agency_id in agencies}
        for procedure in await Procedure.all().order_by("position", "id"):
            procedures.setdefault(procedure.agency_id, []).append(procedure_view(procedure))
        self._agencies, self._by_service_code, self._procedures = agencies, codes, procedures
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

    async def procedures(self, agency_id: int) -> list[ProcedureView]:
        await self._catalogue()
        return self._procedures.get(agency_id, [])

    async def procedure(self, agency_id: int, procedure_id: int) -> ProcedureView | None:
        for procedure in await self.procedures(agency_id):
            if procedure.id == procedure_id:
                return procedure
        return None

    async def _views(self, query) -> list[DossierView]:
        await self._catalogue()
        rows = await query.select_related("procedure")
        if any(row.agency_id not in self._agencies for row in rows):
            self.forget()  # an agency added since the cache was filled
            await self._catalogue()
        return [self._dossier_view(row) for row in rows]

    def _dossier_view(self, row: Dossier) -> DossierView:
        procedure = row.procedure
        return DossierView(
            id=row.id,
            code=row.code,
            agency=self._agencies[row.agency_id],
            procedure_name=Localized(procedure.name, procedure.name_en),
            applicant_name=row.applicant_name,
            applicant_phone=row.applicant_phone,
            status=row.status,
            status_note=row.status_note,
            received_at=row.received_at,
            due_at=row.due_at,
            fee_due=row.fee_due,
            pickup_place=row.pickup_place,
            mode=row.mode,
        )

    async def dossier(self, dossier_id: int) -> DossierView | None:
        found = await self._views(Dossier.filter(id=dossier_id))
        return found[0] if found else None

    async def dossier_by_code(self, code: str) -> DossierView | None:
        found = await self._views(Dossier.filter(code=code))
        return found[0] if found else None

    async def dossiers_by_tail(self, agency_id: int, tail: str) -> list[DossierView]:
        return await self._views(Dossier.filter(agency_id=agency_id, tail=tail).order_by("code"))
