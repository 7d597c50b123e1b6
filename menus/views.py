"""Plain read-only views of the data the menus show, and the port they read it through.

Menus never touch the ORM: they get these frozen views from a ``Directory`` (the
database one lives in ``models.directory``; tests may pass their own), so a menu step is
a function of its state, its input and what it read.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol

from models.entities import DossierStatus, FilingMode


@dataclass(frozen=True, slots=True)
class Localized:
    vi: str
    en: str

    def get(self, lang: str) -> str:
        return self.en if lang == "en" else self.vi


@dataclass(frozen=True, slots=True)
class AgencyView:
    id: int
    code: str
    name: str
    address: str
    desk_hours: Localized
    hotline: str
    service_code: str = ""  # the USSD code it answers on, e.g. "*384#"
    sms_number: str = ""  # the number citizens text keywords to, e.g. "8088"


@dataclass(frozen=True, slots=True)
class ProcedureView:
    id: int
    name: Localized
    processing_time: Localized
    fee: Localized
    documents: Localized
    code: str = ""  # the one-stop system's procedure code


@dataclass(frozen=True, slots=True)
class DossierView:
    id: int
    code: str
    agency: AgencyView
    procedure_name: Localized
    applicant_name: str
    applicant_phone: str  # E.164
    status: DossierStatus
    status_note: str
    received_at: dt.datetime
    due_at: dt.datetime | None
    fee_due: int
    pickup_place: str
    mode: FilingMode
    # Keyed hash of the applicant's ID number, when the one-stop system gave it.
    applicant_id_hash: str | None = None


class Directory(Protocol):
    """What the menus may read."""

    async def agency_for_service_code(self, service_code: str) -> AgencyView | None: ...

    async def agency_for_sms_number(self, number: str) -> AgencyView | None: ...

    async def service_codes(self) -> list[str]: ...

    async def procedures(self, agency_id: int) -> list[ProcedureView]: ...

    async def procedure(self, agency_id: int, procedure_id: int) -> ProcedureView | None: ...

    async def dossier(self, dossier_id: int) -> DossierView | None: ...

    async def dossier_by_code(self, code: str) -> DossierView | None: ...

    async def dossiers_by_tail(self, agency_id: int, tail: str) -> list[DossierView]: ...

    async def dossiers_of(self, phone: str, id_hash: str | None) -> list[DossierView]:
        """A citizen's dossiers: filed with this phone, or under this ID hash; newest first."""
        ...
