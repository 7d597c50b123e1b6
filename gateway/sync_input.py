"""Reading what a one-stop system sends about dossiers: the sync API's JSON items and the
CSV import's rows, checked the same way into ``models.dossiers`` values.

Every fault is a ``FieldFault`` naming the field, so the API can answer a batch with one
error per bad item (and apply none of it), and the import can list each rejected line.
ID numbers are checked (``models.identity``) and hashed here with the gateway's ID key:
the number itself goes no further than this module.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping
from zoneinfo import ZoneInfo

from gateway.phones import normalize_msisdn
from models import dossier_code
from models.directory import DatabaseDirectory
from models.dossiers import DossierRecord, StatusEvent
from models.entities import DossierStatus, FilingMode
from models.identity import Refusal, parse_id_number

MAX_NAME = 120
MAX_TEXT = 300
MAX_FEE = 1_000_000_000  # VND: a commune's fees are far below
MAX_PHONE_CHARS = 20
_EVENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,63}")
_PHONE_CHARS = re.compile(r"[0-9+().\- ]+")
# A number sent as a string: ASCII digits, and few (str.isdigit also takes "\u00b2", which
# int() refuses, and int() refuses more than 4,300 digits).
_DIGITS = re.compile(r"[0-9]{1,12}")

DOSSIER_FIELDS = {
    "code", "agency", "procedure", "applicant_name", "applicant_phone", "id_number", "received_at", "due_at",
    "fee_due", "pickup_place", "mode", "status", "status_note", "status_at",
}
EVENT_FIELDS = {"event_id", "code", "status", "occurred_at", "reason", "missing_documents", "due_at", "fee_due"}


class FieldFault(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class Reader:
    """Checks items against the catalogue (agencies, procedures) and the ID key."""

    directory: DatabaseDirectory
    id_hash: Callable[[str], str]
    timezone: str

    async def dossier(self, item: Any, allowed_agencies: set[int] | None = None) -> DossierRecord:
        if not isinstance(item, Mapping):
            raise FieldFault("", "each dossier must be a JSON object")
        _known(item, DOSSIER_FIELDS)
        code = _code(item)
        agency_code = _text(item, "agency", 40, required=True)
        agency = await self.directory.agency_by_code(agency_code)
        if agency is None:
            self.directory.forget()  # an agency added since the cache was filled
            agency = await self.directory.agency_by_code(agency_code)
        if agency is None or (allowed_agencies is not None and agency.id not in allowed_agencies):
            raise FieldFault("agency", f"no agency {agency_code[:40]!r} for this client")
        procedure_code = _text(item, "procedure", 40, required=True)
        procedure = await self.directory.procedure_by_code(agency.id, procedure_code)
        if procedure is None:
            raise FieldFault("procedure", f"agency {agency.code} has no procedure {procedure_code[:40]!r}")
        name = _text(item, "applicant_name", MAX_NAME, required=True).strip()
        if not name:
            raise FieldFault("applicant_name", "applicant_name is empty")
        raw_phone = _text(item, "applicant_phone", MAX_PHONE_CHARS, required=True)
        phone = _phone(raw_phone)
        id_hash = None
        id_number = _text(item, "id_number", 20)
        if id_number:
            parsed = parse_id_number(id_number)
            if isinstance(parsed, Refusal):
                raise FieldFault("id_number", "id_number is not a 9-digit CMND or a 12-digit personal ID number")
            id_hash = self.id_hash(parsed.digits)
        received_at = self._moment(item, "received_at", required=True)
        mode_text = _text(item, "mode", 16) or FilingMode.PARTIAL.value
        try:
            mode = FilingMode(mode_text)
        except ValueError:
            raise FieldFault("mode", "mode must be mot_phan or toan_trinh") from None
        return DossierRecord(
            code=code.text, tail=code.tail, agency_id=agency.id, procedure_id=procedure.id, applicant_name=name,
            applicant_phone=phone, applicant_id_hash=id_hash, received_at=received_at,
            due_at=self._moment(item, "due_at"), fee_due=_fee(item), pickup_place=_text(item, "pickup_place", MAX_TEXT) or "",
            mode=mode, status=_status(item, default=DossierStatus.FILED), status_note=_text(item, "status_note", MAX_TEXT) or "",
            status_at=self._moment(item, "status_at"), status_given=item.get("status") not in (None, ""),
            # Parsed already (cached): the dossier service need not parse it again.
            applicant_phone_valid=True if normalize_msisdn(raw_phone) == phone else None,
        )

    def event(self, item: Any) -> StatusEvent:
        if not isinstance(item, Mapping):
            raise FieldFault("", "each event must be a JSON object")
        _known(item, EVENT_FIELDS)
        event_id = _text(item, "event_id", 64, required=True)
        if not _EVENT_ID.fullmatch(event_id):
            raise FieldFault("event_id", "event_id is 1-64 letters, digits, '.', '_', ':' or '-'")
        status = _status(item)
        reason = _text(item, "reason", MAX_TEXT) or ""
        missing = _text(item, "missing_documents", MAX_TEXT) or ""
        if missing and status is not DossierStatus.NEEDS_DOCUMENTS:
            raise FieldFault("missing_documents", "missing_documents goes with status 5 only")
        return StatusEvent(
            code=_code(item).text, status=status, occurred_at=self._moment(item, "occurred_at", required=True),
            event_id=event_id, note=missing or reason, due_at=self._moment(item, "due_at"),
            fee_due=_fee(item) if item.get("fee_due") is not None else None,
        )

    def _moment(self, item: Mapping, name: str, *, required: bool = False) -> dt.datetime | None:
        raw = _text(item, name, 40, required=required)
        if not raw:
            return None
        return parse_moment(raw, self.timezone, name)


@functools.lru_cache(maxsize=1024)  # a batch's moments repeat (one received date for a day's dossiers)
def parse_moment(raw: str, timezone: str, name: str) -> dt.datetime:
    """ISO 8601: a date and time with its offset, or a bare date (local midnight), as UTC."""
    text = raw.strip()
    try:
        if len(text) == 10:
            moment = dt.datetime.combine(dt.date.fromisoformat(text), dt.time())
        else:
            moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise FieldFault(name, f"{name} must be ISO 8601, e.g. 2026-12-02T08:30:00+07:00 or 2026-12-02") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(timezone))
    # Checked before converting: a moment near year 1 or 9999 does not survive the shift to UTC.
    if not 2000 <= moment.year <= 2100:
        raise FieldFault(name, f"{name} is out of range")
    return moment.astimezone(dt.timezone.utc)


def _known(item: Mapping, allowed: set[str]) -> None:
    for name in item:
        if name not in allowed:
            shown = str(name)[:40]
            raise FieldFault(shown, f"unknown field {shown!r}")


def _text(item: Mapping, name: str, limit: int, *, required: bool = False) -> str | None:
    value = item.get(name)
    if value is None or value == "":
        if required:
            raise FieldFault(name, f"{name} is required")
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise FieldFault(name, f"{name} must be a string")
    value = str(value)
    if len(value) > limit:
        raise FieldFault(name, f"{name} is longer than {limit} characters")
    if "\x00" in value:
        raise FieldFault(name, f"{name} contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise FieldFault(name, f"{name} is not valid text") from None
    return value


def _code(item: Mapping) -> dossier_code.DossierCode:
    raw = _text(item, "code", dossier_code.MAX_LENGTH, required=True)
    code = dossier_code.parse(raw)
    if code is None:
        raise FieldFault("code", "code is not a dossier code like 000.17.22.H56-210531-0001")
    return code


def _status(item: Mapping, default: DossierStatus | None = None) -> DossierStatus:
    value = item.get("status")
    if value is None and default is not None:
        return default
    if isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10:
        raise FieldFault("status", "status must be a code from 1 to 10")
    return DossierStatus(value)


def _fee(item: Mapping) -> int:
    value = item.get("fee_due", 0)
    if value in (None, ""):
        return 0
    if isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_FEE:
        raise FieldFault("fee_due", f"fee_due must be a whole number of dong from 0 to {MAX_FEE}")
    return value


def _phone(raw: str) -> str:
    """E.164 for a VN mobile; anything else phone-like is kept as given (digits and a
    leading +), so the dossier is stored and its SMS skip is recorded, not refused."""
    normalized = normalize_msisdn(raw)
    if normalized is not None:
        return normalized
    if not _PHONE_CHARS.fullmatch(raw):
        raise FieldFault("applicant_phone", "applicant_phone is not a phone number")
    digits = "".join(ch for ch in raw if ch.isdigit())
    if not digits:
        raise FieldFault("applicant_phone", "applicant_phone is not a phone number")
    return (("+" if raw.strip().startswith("+") else "") + digits)[:16]
