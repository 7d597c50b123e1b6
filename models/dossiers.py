"""Dossiers from the one-stop system, their status changes and the SMS they cause.

``DossierService`` is the one place that changes a dossier: the sync API, the CSV import,
clerks (console, API, SMS commands) and the reminder job all call it, each inside its own
unit of work (``tx``), so a change, its history row, its SMS in the outbox and its
notification record commit together or not at all.

- **Idempotent.** A dossier is keyed by its code: a record equal to what is stored changes
  nothing and sends nothing. A pushed event is keyed by (client, event id): its claim is
  one ``INSERT ... ON CONFLICT DO NOTHING``, so a replay, or the same event reaching two
  workers at once, applies once. An event older than the dossier's current state
  (``state_at``) is recorded as ``stale`` and moves nothing back.
- **Notifications.** A real change (the status, or what the status SMS would say) writes
  the applicant's SMS from the per-status template (composed by the menus' text
  catalogue, injected as ``compose``), in the citizen's language. It waits
  ``debounce_seconds``: a later change of the same dossier cancels what still waits, so a
  change and its reversal inside the window send one message, the latest. Quiet hours and
  opt-outs apply (the outbox writer); a phone that is not a valid VN mobile gets none, and
  every skip is recorded on the dossier with its reason (``dossier_notification``).
- **Locks.** On PostgreSQL the rows a batch changes are locked in id order
  (``FOR UPDATE``), so two batches touching the same dossiers serialise without deadlock;
  SQLite's writer lock does the same for the whole transaction.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Protocol, Sequence

from menus.views import DossierView
from models.directory import DatabaseDirectory
from models.entities import DossierStatus, FilingMode, SmsKind, SmsStatus
from models.fastsql import Tx, as_datetime
from models.outbox import OutboxWriter, OutgoingSms

# What a notification SMS says, in a language: (lang, kind, dossier, reminder number) -> text.
Compose = Callable[[str, SmsKind, DossierView, int], str]

MAX_BATCH = 1000
_CHUNK = 400  # parameters per IN (...) list: well under SQLite's and asyncpg's limits

SKIP_INVALID_PHONE = "applicant phone is not a valid VN mobile number"
SKIP_OPTED_OUT = "recipient opted out"
SUPERSEDED = "superseded by a later change of the dossier"


class Outcome(str, enum.Enum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"  # nothing to change: nothing sent
    APPLIED = "applied"  # an event that moved the dossier
    STALE = "stale"  # an event older than the dossier's state: recorded, not applied
    REPLAYED = "replayed"  # an event id seen before: nothing done


@dataclass(frozen=True, slots=True)
class DossierRecord:
    """A dossier as a one-stop system describes it (validated at the edge)."""

    code: str
    tail: str
    agency_id: int
    procedure_id: int
    applicant_name: str
    applicant_phone: str  # E.164 when a valid VN mobile, else as given (digits and +)
    applicant_id_hash: str | None
    received_at: dt.datetime
    due_at: dt.datetime | None
    fee_due: int
    pickup_place: str
    mode: FilingMode
    status: DossierStatus
    status_note: str = ""
    status_at: dt.datetime | None = None  # when the status took effect; default: received_at
    # False when the record named no status: a new dossier starts at ``status`` (1), an
    # existing one keeps its own (a re-sent sheet without the column must not reset it).
    status_given: bool = True
    # True when the edge found applicant_phone a valid VN mobile (it parsed it already);
    # None: not known, checked when an SMS is due.
    applicant_phone_valid: bool | None = None


@dataclass(frozen=True, slots=True)
class StatusEvent:
    """A status change pushed by a one-stop system (or made by a clerk, without event id)."""

    code: str
    status: DossierStatus
    occurred_at: dt.datetime
    event_id: str = ""
    note: str = ""  # the reason (3, 8), the missing documents (5), any remark
    due_at: dt.datetime | None = None  # None: unchanged
    fee_due: int | None = None  # None: unchanged


@dataclass(slots=True)
class _Row:
    """A dossier row as read for a change."""

    id: int
    code: str
    agency_id: int
    procedure_id: int
    applicant_name: str
    applicant_phone: str
    applicant_id_hash: str | None
    received_at: dt.datetime
    due_at: dt.datetime | None
    fee_due: int
    pickup_place: str
    mode: FilingMode
    status: DossierStatus
    status_note: str
    state_at: dt.datetime | None
    tail: str


_ROW_COLUMNS = (
    "id, code, agency_id, procedure_id, applicant_name, applicant_phone, applicant_id_hash, received_at, due_at,"
    " fee_due, pickup_place, mode, status, status_note, state_at, tail"
)


def _row(values: tuple) -> _Row:
    return _Row(
        values[0], values[1], values[2], values[3], values[4], values[5], values[6], as_datetime(values[7]),
        as_datetime(values[8]), values[9], values[10], FilingMode(values[11]), DossierStatus(values[12]),
        values[13], as_datetime(values[14]), values[15],
    )


@dataclass(slots=True)
class Notified:
    """What one notification did: the outbox row it wrote, or why none. A batch writes its
    SMS together when it ends: ``sms_id`` is set then, before the service call returns."""

    sms_id: int | None
    skipped: str = ""
    text: str = ""
    parts: int = 0


@dataclass(frozen=True, slots=True)
class ItemResult:
    outcome: Outcome
    code: str
    notified: Notified | None = None
    event_id: str = ""


class PostalOutcome(str, enum.Enum):
    RECORDED = "recorded"
    ALREADY = "already"  # asked before: still waiting or handled
    NOT_APPLICANT = "not_applicant"  # only the applicant's phone may ask
    NOT_READY = "not_ready"  # the result is not ready (status 9)
    NOT_POSTAL = "not_postal"  # "mot phan": collected at the desk only
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class NotificationRecord:
    """One line of a dossier's notification history."""

    kind: SmsKind
    status: DossierStatus
    created_at: dt.datetime
    skipped: str
    sms_status: SmsStatus | None
    parts: int | None
    queued_for: dt.datetime | None
    sent_at: dt.datetime | None
    delivered_at: dt.datetime | None
    error: str


class NotificationSettings(Protocol):
    debounce_seconds: int
    reminder_first_days: int
    reminder_second_days: int


class BatchRejected(ValueError):
    """A batch that cannot be applied as a whole: (index, field, message) per fault."""

    def __init__(self, errors: list[tuple[int, str, str]]) -> None:
        super().__init__(f"{len(errors)} item(s) refused")
        self.errors = errors


def _chunks(values: Sequence, size: int = _CHUNK) -> Iterable[Sequence]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


_CREATES_PER_INSERT = 500  # 16 parameters a row: well under SQLite's and asyncpg's 32,767
_CLAIMS_PER_INSERT = 1000  # 7 a row


@functools.lru_cache(maxsize=32)
def _insert_dossiers(rows: int) -> str:
    return (
        "INSERT INTO dossier (code, tail, agency_id, procedure_id, applicant_name, applicant_phone,"
        " applicant_id_hash, status, status_note, received_at, due_at, fee_due, pickup_place, mode, updated_at,"
        " state_at, reminders_sent) VALUES " + ",".join(["(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,0)"] * rows)
        + " ON CONFLICT (code) DO NOTHING RETURNING id, code"
    )


@functools.lru_cache(maxsize=32)
def _claim_events(rows: int) -> str:
    return (
        "INSERT INTO dossier_event (api_client_id, event_id, dossier_id, status, occurred_at, received_at, outcome)"
        " VALUES " + ",".join(["(?,?,?,?,?,?,?)"] * rows)
        + " ON CONFLICT (api_client_id, event_id) DO NOTHING RETURNING id, event_id"
    )
_UPDATE_DATA = (
    "UPDATE dossier SET procedure_id=?, applicant_name=?, applicant_phone=?, applicant_id_hash=?, received_at=?,"
    " due_at=?, fee_due=?, pickup_place=?, mode=?, updated_at=? WHERE id=?"
)
_UPDATE_STATUS = (
    "UPDATE dossier SET status=?, status_note=?, due_at=?, fee_due=?, state_at=?, updated_at=?,"
    " reminders_sent=CASE WHEN ?=1 THEN 0 ELSE reminders_sent END WHERE id=?"
)
_INSERT_CHANGE = (
    "INSERT INTO dossier_status_change (dossier_id, old_status, new_status, note, changed_at, source)"
    " VALUES (?,?,?,?,?,?)"
)
_EVENT_OUTCOME = "UPDATE dossier_event SET outcome=? WHERE id=?"
_INSERT_NOTIFICATION = (
    "INSERT INTO dossier_notification (dossier_id, kind, status, outbound_sms_id, skipped, created_at)"
    " VALUES (?,?,?,?,?,?)"
)
# What still waits of these dossiers' status, pickup and reminder SMS (read once per batch):
# a newer change replaces it.
_WAITING = (
    "SELECT n.dossier_id, o.id FROM dossier_notification n JOIN outbound_sms o ON o.id = n.outbound_sms_id"
    " WHERE o.status=? AND n.kind IN (?,?,?) AND n.dossier_id IN ({marks})"
)
_SUPERSEDE = "UPDATE outbound_sms SET status=?, last_error=? WHERE status=? AND id IN ({marks})"
_HISTORY = (
    # Every column named apart: a PostgreSQL row comes back as a dict keyed by column name.
    "SELECT n.kind, n.status AS told_status, n.created_at AS noted_at, n.skipped, o.status AS sms_status, o.parts,"
    " o.next_attempt_at, o.sent_at,"
    " o.delivered_at, o.last_error FROM dossier_notification n LEFT JOIN outbound_sms o ON o.id = n.outbound_sms_id"
    " WHERE n.dossier_id=? ORDER BY n.created_at, n.id"
)


class DossierService:
    def __init__(
        self,
        outbox: OutboxWriter,
        directory: DatabaseDirectory,
        settings: NotificationSettings,
        compose: Compose,
        valid_phone: Callable[[str], bool],
        default_lang: str = "vi",
    ) -> None:
        self._outbox = outbox
        self._directory = directory
        self._settings = settings
        self._compose = compose
        self._valid_phone = valid_phone
        self._default_lang = default_lang

    @property
    def directory(self) -> DatabaseDirectory:
        return self._directory

    # -- reading --------------------------------------------------------------------------

    async def _rows(self, tx: Tx, where: str, values: Sequence, lock: bool, limit: int | None = None) -> list[_Row]:
        sql = f"SELECT {_ROW_COLUMNS} FROM dossier WHERE {where} ORDER BY id"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        if lock and tx.dialect == "postgres":
            sql += " FOR UPDATE"
        return [_row(r) for r in await tx.fetch(sql, values)]

    async def _rows_by_code(self, tx: Tx, codes: Sequence[str], lock: bool = True) -> dict[str, _Row]:
        found: dict[str, _Row] = {}
        unique = sorted(set(codes))
        for chunk in _chunks(unique):
            marks = ",".join("?" * len(chunk))
            for row in await self._rows(tx, f"code IN ({marks})", chunk, lock):
                found[row.code] = row
        return found

    async def agency_of_codes(self, tx: Tx, codes: Sequence[str]) -> dict[str, int]:
        """The agency of each known code (the API checks a client's reach with it)."""
        return {code: row.agency_id for code, row in (await self._rows_by_code(tx, codes, lock=False)).items()}

    async def view(self, tx: Tx, dossier_id: int) -> DossierView | None:
        return await self._directory.dossier(dossier_id)

    async def history(self, tx: Tx, dossier_id: int) -> list[NotificationRecord]:
        """Every SMS meant for the dossier's applicant: when queued, sent, delivered, or why not."""
        return [
            NotificationRecord(
                kind=SmsKind(r[0]), status=DossierStatus(r[1]), created_at=as_datetime(r[2]), skipped=r[3],
                sms_status=SmsStatus(r[4]) if r[4] else None, parts=r[5], queued_for=as_datetime(r[6]),
                sent_at=as_datetime(r[7]), delivered_at=as_datetime(r[8]), error=r[9] or "",
            )
            for r in await tx.fetch(_HISTORY, (dossier_id,))
        ]

    # -- dossiers -------------------------------------------------------------------------

    async def upsert(self, tx: Tx, records: Sequence[DossierRecord], now: dt.datetime, *,
                     source: str, notify: bool = True, allowed_agencies: set[int] | None = None) -> list[ItemResult]:
        """Create or update dossiers by code. A code that exists under an agency outside
        ``allowed_agencies`` refuses the whole batch (BatchRejected), before any write."""
        existing = await self._rows_by_code(tx, [r.code for r in records])
        if allowed_agencies is not None:
            errors = [(i, "code", "this dossier belongs to an agency this client may not change")
                      for i, r in enumerate(records)
                      if r.code in existing and existing[r.code].agency_id not in allowed_agencies]
            if errors:
                raise BatchRejected(errors)
        batch = _Batch(self._outbox)
        await batch.load(tx, [r.applicant_phone for r in records if notify])
        batch.valid_phones.update(r.applicant_phone for r in records if r.applicant_phone_valid)
        if notify:
            await batch.load_waiting(tx, [row.id for row in existing.values()])
        new: dict[str, DossierRecord] = {}  # code -> its first record in the batch
        for record in records:
            if record.code not in existing:
                new.setdefault(record.code, record)
        created = await self._create(tx, list(new.values()), now, batch)
        raced = [code for code in new if code not in created]
        if raced:  # a concurrent batch created them first (PostgreSQL): update them instead
            found = await self._rows_by_code(tx, raced)
            if allowed_agencies is not None:
                errors = [(i, "code", "this dossier belongs to an agency this client may not change")
                          for i, r in enumerate(records) if r.code in found and found[r.code].agency_id not in allowed_agencies]
                if errors:
                    raise BatchRejected(errors)
            existing.update(found)
            if notify:
                await batch.load_waiting(tx, [row.id for row in found.values()])
        results = []
        for record in records:
            row = existing.get(record.code)
            if row is None:  # the record that created it
                row = existing[record.code] = created[record.code]
                notified = await self._notify(tx, row, now, batch, source) if notify else None
                results.append(ItemResult(Outcome.CREATED, record.code, notified))
                continue
            results.append(await self._update(tx, row, record, now, source, notify, batch))
        await batch.flush(tx)
        return results

    async def _create(self, tx: Tx, records: Sequence[DossierRecord], now: dt.datetime,
                      batch: "_Batch") -> dict[str, _Row]:
        """Insert new dossiers, many to a statement; the rows written, by code (a code a
        concurrent batch wrote first is left out)."""
        created: dict[str, _Row] = {}
        for chunk in _chunks(records, _CREATES_PER_INSERT):
            values: list = []
            for r in chunk:
                values += (r.code, r.tail, r.agency_id, r.procedure_id, r.applicant_name, r.applicant_phone,
                           r.applicant_id_hash, int(r.status), r.status_note, r.received_at, r.due_at, r.fee_due,
                           r.pickup_place, r.mode.value, now, r.status_at or r.received_at)
            ids = {code: dossier_id for dossier_id, code in await tx.fetch(_insert_dossiers(len(chunk)), values)}
            for r in chunk:
                dossier_id = ids.get(r.code)
                if dossier_id is None:
                    continue
                state_at = r.status_at or r.received_at
                batch.changes.append((dossier_id, None, int(r.status), r.status_note, state_at, "create"))
                batch.waiting[dossier_id] = []  # a new dossier has no SMS waiting yet
                created[r.code] = _Row(
                    dossier_id, r.code, r.agency_id, r.procedure_id, r.applicant_name, r.applicant_phone,
                    r.applicant_id_hash, r.received_at, r.due_at, r.fee_due, r.pickup_place, r.mode, r.status,
                    r.status_note, state_at, r.tail,
                )
        return created

    async def _update(self, tx: Tx, row: _Row, record: DossierRecord, now: dt.datetime, source: str,
                      notify: bool, batch: "_Batch") -> ItemResult:
        data_changed = (
            row.procedure_id, row.applicant_name, row.applicant_phone, row.applicant_id_hash, row.received_at,
            row.fee_due, row.pickup_place, row.mode,
        ) != (
            record.procedure_id, record.applicant_name, record.applicant_phone, record.applicant_id_hash,
            record.received_at, record.fee_due, record.pickup_place, record.mode,
        ) or (record.due_at is not None and row.due_at != record.due_at)
        status_at = record.status_at or now
        moves = record.status_given and (record.status, record.status_note) != (row.status, row.status_note) and (
            row.state_at is None or status_at >= row.state_at)
        # A move is told anyway; new data alone only if it changes what the SMS says.
        before = await self._texts(row) if notify and data_changed and not moves else None
        if data_changed:
            row.procedure_id, row.applicant_name, row.applicant_phone = (
                record.procedure_id, record.applicant_name, record.applicant_phone)
            row.applicant_id_hash, row.received_at, row.fee_due = (
                record.applicant_id_hash, record.received_at, record.fee_due)
            row.pickup_place, row.mode = record.pickup_place, record.mode
            if record.due_at is not None:
                row.due_at = record.due_at
            await batch.write_status_updates(tx)  # in order: an earlier item may have moved this row
            await tx.fetch(_UPDATE_DATA, (
                row.procedure_id, row.applicant_name, row.applicant_phone, row.applicant_id_hash, row.received_at,
                row.due_at, row.fee_due, row.pickup_place, row.mode.value, now, row.id,
            ))
        if moves:
            self._set_status(batch, row, record.status, record.status_note, row.due_at, row.fee_due,
                             status_at, now, source)
        if not (data_changed or moves):
            return ItemResult(Outcome.UNCHANGED, row.code)
        notified = None
        if notify and (moves or await self._texts(row) != before):
            notified = await self._notify(tx, row, now, batch, source)
        return ItemResult(Outcome.UPDATED, row.code, notified)

    def _set_status(self, batch: "_Batch", row: _Row, status: DossierStatus, note: str, due_at: dt.datetime | None,
                    fee_due: int, state_at: dt.datetime, now: dt.datetime, source: str) -> None:
        """The change, written with the batch's other changes (``_Batch.flush``)."""
        old = row.status
        ready_again = status is DossierStatus.READY and old is not DossierStatus.READY
        batch.status_updates.append((int(status), note, due_at, fee_due, state_at, now, 1 if ready_again else 0, row.id))
        batch.changes.append((row.id, int(old), int(status), note, state_at, source[:40]))
        row.status, row.status_note, row.due_at, row.fee_due, row.state_at = status, note, due_at, fee_due, state_at

    # -- status events --------------------------------------------------------------------

    async def apply_events(self, tx: Tx, client_id: int, events: Sequence[StatusEvent], now: dt.datetime, *,
                           source: str, allowed_agencies: set[int] | None = None) -> list[ItemResult]:
        """Apply a batch of pushed events, in order. An unknown code, or one of an agency
        outside ``allowed_agencies``, refuses the whole batch before any write."""
        rows = await self._rows_by_code(tx, [e.code for e in events])
        errors = [(i, "code", "no such dossier for this client") for i, e in enumerate(events)
                  if e.code not in rows or (allowed_agencies is not None and rows[e.code].agency_id not in allowed_agencies)]
        if errors:
            raise BatchRejected(errors)
        batch = _Batch(self._outbox)
        await batch.load(tx, [rows[e.code].applicant_phone for e in events])
        await batch.load_waiting(tx, [row.id for row in rows.values()])
        # Claimed all at once: an event id already stored (or named earlier in the batch) is a replay.
        first: dict[str, StatusEvent] = {}
        for event in events:
            first.setdefault(event.event_id, event)
        claims: dict[str, int] = {}
        for chunk in _chunks(list(first.values()), _CLAIMS_PER_INSERT):
            values: list = []
            for e in chunk:
                values += (client_id, e.event_id, rows[e.code].id, int(e.status), e.occurred_at, now,
                           Outcome.APPLIED.value)
            claims.update((event_id, claim_id) for claim_id, event_id in await tx.fetch(_claim_events(len(chunk)), values))
        results = []
        for event in events:
            row = rows[event.code]
            claim_id = claims.pop(event.event_id, None) if first[event.event_id] is event else None
            if claim_id is None:
                results.append(ItemResult(Outcome.REPLAYED, row.code, event_id=event.event_id))
                continue
            result = await self._move(tx, row, event, now, source, batch)
            if result.outcome is not Outcome.APPLIED:
                batch.event_outcomes.append((result.outcome.value, claim_id))
            results.append(replace(result, event_id=event.event_id))
        await batch.flush(tx)
        return results

    async def change_status(self, tx: Tx, dossier_id: int, event: StatusEvent, now: dt.datetime, *,
                            source: str, debounce: bool = False) -> ItemResult | None:
        """A clerk's change (console, API, SMS command): applied now, its SMS without
        debounce unless asked. None if there is no such dossier."""
        return (await self.change_statuses(tx, [(dossier_id, event)], now, source=source, debounce=debounce))[0]

    async def change_statuses(self, tx: Tx, moves: Sequence[tuple[int, StatusEvent]], now: dt.datetime, *,
                              source: str, debounce: bool = False) -> list[ItemResult | None]:
        """Clerks' changes to many dossiers at once (a bulk alert), as one batch: the rows
        read and locked together, the SMS and records written together. A clerk's act
        stands: one dated before the state the one-stop system last gave is taken as just after
        that state (``state_at``), not refused as stale. A dossier collected (10) since the
        clerk looked is not moved back: STALE. None for an unknown dossier id."""
        rows: dict[int, _Row] = {}
        for chunk in _chunks(sorted({dossier_id for dossier_id, _ in moves})):
            marks = ",".join("?" * len(chunk))
            rows.update((row.id, row) for row in await self._rows(tx, f"id IN ({marks})", chunk, lock=True))
        batch = _Batch(self._outbox)
        await batch.load(tx, [row.applicant_phone for row in rows.values()])
        await batch.load_waiting(tx, list(rows))
        results: list[ItemResult | None] = []
        for dossier_id, event in moves:
            row = rows.get(dossier_id)
            if row is None:
                results.append(None)
                continue
            if row.status is DossierStatus.DELIVERED and event.status is not DossierStatus.DELIVERED:
                # Collected since the clerk looked (read again here, under the lock): stays so.
                results.append(ItemResult(Outcome.STALE, row.code))
                continue
            if row.state_at is not None and event.occurred_at <= row.state_at:
                # Strictly after: an old one-stop event replayed later (its id purged) is then
                # older than the clerk's act, and moves nothing.
                event = replace(event, occurred_at=row.state_at + dt.timedelta(microseconds=1))
            results.append(await self._move(tx, row, event, now, source, batch, debounce=debounce))
        await batch.flush(tx)
        return results

    async def _move(self, tx: Tx, row: _Row, event: StatusEvent, now: dt.datetime, source: str,
                    batch: "_Batch", debounce: bool = True) -> ItemResult:
        if row.state_at is not None and event.occurred_at < row.state_at:
            return ItemResult(Outcome.STALE, row.code)
        due_at = row.due_at if event.due_at is None else event.due_at
        fee_due = row.fee_due if event.fee_due is None else event.fee_due
        if (event.status, event.note, due_at, fee_due) == (row.status, row.status_note, row.due_at, row.fee_due):
            return ItemResult(Outcome.UNCHANGED, row.code)
        moved = event.status is not row.status
        before = None if moved else await self._texts(row)  # a move is told anyway
        self._set_status(batch, row, event.status, event.note, due_at, fee_due, event.occurred_at, now, source)
        notified = None
        if moved or await self._texts(row) != before:
            notified = await self._notify(tx, row, now, batch, source, debounce=debounce)
        return ItemResult(Outcome.APPLIED, row.code, notified)

    # -- notifications --------------------------------------------------------------------

    async def _dossier_view(self, row: _Row) -> DossierView:
        agency = await self._directory.agency(row.agency_id)
        procedure = await self._directory.procedure(row.agency_id, row.procedure_id)
        if agency is None or procedure is None:  # added since the cache was filled
            self._directory.forget()
            agency = await self._directory.agency(row.agency_id)
            procedure = await self._directory.procedure(row.agency_id, row.procedure_id)
        return DossierView(
            id=row.id, code=row.code, agency=agency, procedure_name=procedure.name, applicant_name=row.applicant_name,
            applicant_phone=row.applicant_phone, status=row.status, status_note=row.status_note,
            received_at=row.received_at, due_at=row.due_at, fee_due=row.fee_due, pickup_place=row.pickup_place,
            mode=row.mode, applicant_id_hash=row.applicant_id_hash,
        )

    async def _texts(self, row: _Row) -> str:
        """What the status SMS would say now (in the default language): a change that does
        not alter it (a new due date on a refused dossier) sends nothing."""
        kind = SmsKind.PICKUP if row.status is DossierStatus.READY else SmsKind.STATUS
        return self._compose(self._default_lang, kind, await self._dossier_view(row), 0)

    async def _notify(self, tx: Tx, row: _Row, now: dt.datetime, batch: "_Batch", source: str, *,
                      kind: SmsKind | None = None, reminder: int = 0, debounce: bool = True) -> Notified:
        if kind is None:
            kind = SmsKind.PICKUP if row.status is DossierStatus.READY else SmsKind.STATUS
        if kind is not SmsKind.REMINDER:
            # The applicant is told the latest state only: what still waits goes.
            batch.supersede(row.id)
        notified = await self._write(tx, row, kind, reminder, now, batch,
                                     self._settings.debounce_seconds if debounce else 0)
        if batch.outgoing and batch.outgoing[-1][1] is notified:
            batch.waiting.setdefault(row.id, []).append(batch.outgoing[-1][0])
        batch.notifications.append((row.id, kind.value, int(row.status), notified, notified.skipped, now))
        return notified

    async def _write(self, tx: Tx, row: _Row, kind: SmsKind, reminder: int, now: dt.datetime,
                     batch: "_Batch", delay: float) -> Notified:
        phone = row.applicant_phone
        if phone not in batch.valid_phones and not self._valid_phone(phone):
            return Notified(None, SKIP_INVALID_PHONE)
        lang = batch.lang(phone) or self._default_lang
        text = self._compose(lang, kind, await self._dossier_view(row), reminder)
        opted_out = batch.opted_out(phone)
        if opted_out is None and not kind.essential:
            opted_out = await self._outbox.opted_out(tx, phone)
        message = self._outbox.message(phone, text, kind, now, lang=lang, delay_seconds=delay,
                                       opted_out=bool(opted_out))
        if message is None:
            return Notified(None, SKIP_OPTED_OUT)
        notified = Notified(None, "", message.text, message.parts)
        batch.outgoing.append((message, notified))
        return notified

    async def resend(self, tx: Tx, dossier_id: int, now: dt.datetime, *, source: str) -> Notified | None:
        """Send the dossier's current status SMS again now (a clerk's GUI LAI)."""
        found = await self._rows(tx, "id=?", (dossier_id,), lock=True)
        if not found:
            return None
        batch = _Batch(self._outbox)
        await batch.load(tx, [found[0].applicant_phone])
        await batch.load_waiting(tx, [found[0].id])
        notified = await self._notify(tx, found[0], now, batch, source, debounce=False)
        await batch.flush(tx)
        return notified

    async def applicant_lang(self, tx: Tx, dossier_id: int) -> str | None:
        """The language the dossier's applicant chose (a registered citizen), if any."""
        rows = await tx.fetch("SELECT applicant_phone FROM dossier WHERE id=?", (dossier_id,))
        return await self._lang_of(tx, rows[0][0]) if rows else None

    async def _lang_of(self, tx: Tx, phone: str) -> str | None:
        batch = _Batch(self._outbox)
        await batch.load(tx, [phone])
        return batch.lang(phone)

    async def preview(self, tx: Tx, dossier_id: int, status: DossierStatus | None = None, lang: str | None = None) -> str | None:
        """The text the applicant would get for the dossier (at ``status``), before the
        outbox prepares it for the air: in ``lang``, or else in the language the applicant
        chose (a registered citizen), as the real message would be."""
        found = await self._rows(tx, "id=?", (dossier_id,), lock=False)
        if not found:
            return None
        row = found[0]
        if status is not None:
            row.status = status
        if lang is None:
            lang = await self._lang_of(tx, row.applicant_phone)
        kind = SmsKind.PICKUP if row.status is DossierStatus.READY else SmsKind.STATUS
        return self._compose(lang or self._default_lang, kind, await self._dossier_view(row), 0)

    # -- reminders ------------------------------------------------------------------------

    async def send_due_reminders(self, tx: Tx, now: dt.datetime, limit: int = 500) -> int:
        """Remind applicants whose result waits uncollected: the first after
        ``reminder_first_days``, the second after ``reminder_second_days`` (0: off).
        Each is claimed by raising ``reminders_sent`` with a conditional update, so two
        processes never send the same reminder; a dossier moved to 10 gets none."""
        days = [d for d in (self._settings.reminder_first_days, self._settings.reminder_second_days) if d > 0]
        sent = 0
        for number, wait in enumerate(days):
            cutoff = now - dt.timedelta(days=wait)
            rows = await self._rows(
                tx, "status=? AND reminders_sent=? AND COALESCE(state_at, updated_at) <= ?",
                (int(DossierStatus.READY), number, cutoff), lock=True, limit=limit)
            if not rows:
                continue
            batch = _Batch(self._outbox)
            await batch.load(tx, [r.applicant_phone for r in rows])
            await batch.load_waiting(tx, [r.id for r in rows])
            for row in rows:
                claimed = await tx.fetch(
                    "UPDATE dossier SET reminders_sent=? WHERE id=? AND reminders_sent=? AND status=? RETURNING id",
                    (number + 1, row.id, number, int(DossierStatus.READY)))
                if claimed:
                    await self._notify(tx, row, now, batch, "reminder", kind=SmsKind.REMINDER,
                                       reminder=number + 1, debounce=False)
                    sent += 1
            await batch.flush(tx)
        return sent

    # -- postal delivery ------------------------------------------------------------------

    async def request_postal(self, tx: Tx, dossier_id: int, phone: str, channel: str, now: dt.datetime) -> PostalOutcome:
        """The applicant asks for a "toan trinh" result by post: recorded once, for the clerk."""
        found = await self._rows(tx, "id=?", (dossier_id,), lock=True)
        if not found:
            return PostalOutcome.UNKNOWN
        row = found[0]
        if phone != row.applicant_phone:
            return PostalOutcome.NOT_APPLICANT
        if row.mode is not FilingMode.FULL:
            return PostalOutcome.NOT_POSTAL
        if row.status is not DossierStatus.READY:
            return PostalOutcome.NOT_READY
        inserted = await tx.fetch(
            "INSERT INTO postal_request (dossier_id, channel, status, requested_at) VALUES (?,?,?,?)"
            " ON CONFLICT (dossier_id) DO NOTHING RETURNING id", (row.id, channel, "waiting", now))
        return PostalOutcome.RECORDED if inserted else PostalOutcome.ALREADY


@dataclass(slots=True)
class _Batch:
    """One batch's reads done up front and its writes done together, in its transaction.

    Read once: the languages and opt-outs of its phones (two statements), and the SMS
    still waiting for its dossiers. Claimed up front with multi-row inserts: the new
    dossiers (``RETURNING`` their ids) and the events' ids (a duplicate is a replay).
    Written at the end (``flush``), with one statement each (or one per 500 rows): the
    outbox rows (their ids then set on the notifications), the status updates, history
    rows, notification records and event outcomes, and the superseding of what waited.
    Nothing in the batch reads what it defers, so the transaction commits exactly what
    item-by-item writes would.
    """

    outbox: OutboxWriter
    _langs: dict[str, str] = field(default_factory=dict)
    _off: set[str] = field(default_factory=set)
    _keys: dict[str, str] = field(default_factory=dict)
    valid_phones: set[str] = field(default_factory=set)  # checked at the edge already
    # dossier id -> its queued status/pickup/reminder SMS (ids, or this batch's own not yet
    # written); dossiers not read: none known
    waiting: dict[int, list[int | OutgoingSms]] = field(default_factory=dict)
    outgoing: list[tuple[OutgoingSms, Notified]] = field(default_factory=list)
    superseded: list[int] = field(default_factory=list)
    status_updates: list[tuple] = field(default_factory=list)
    changes: list[tuple] = field(default_factory=list)
    notifications: list[tuple] = field(default_factory=list)
    event_outcomes: list[tuple] = field(default_factory=list)

    async def load_waiting(self, tx: Tx, dossier_ids: Sequence[int]) -> None:
        ids = sorted(set(dossier_ids) - set(self.waiting))
        for dossier_id in ids:
            self.waiting[dossier_id] = []
        kinds = (SmsKind.STATUS.value, SmsKind.PICKUP.value, SmsKind.REMINDER.value)
        for chunk in _chunks(ids):
            sql = _WAITING.format(marks=",".join("?" * len(chunk)))
            for dossier_id, sms_id in await tx.fetch(sql, (SmsStatus.QUEUED.value, *kinds, *chunk)):
                self.waiting[dossier_id].append(sms_id)

    def supersede(self, dossier_id: int) -> None:
        if dossier_id not in self.waiting:
            raise RuntimeError("load_waiting first: the dossier's waiting SMS were not read")
        for sms in self.waiting[dossier_id]:
            if isinstance(sms, OutgoingSms):  # this batch's own: written as superseded already
                sms.status, sms.last_error = SmsStatus.FAILED, SUPERSEDED
            else:
                self.superseded.append(sms)
        self.waiting[dossier_id] = []

    async def write_status_updates(self, tx: Tx) -> None:
        await tx.execute_many(_UPDATE_STATUS, self.status_updates)
        self.status_updates.clear()

    async def flush(self, tx: Tx) -> None:
        await self.write_status_updates(tx)
        await tx.execute_many(_INSERT_CHANGE, self.changes)
        if self.outgoing:
            ids = await self.outbox.write(tx, [message for message, _ in self.outgoing])
            for (_, notified), sms_id in zip(self.outgoing, ids):
                notified.sms_id = sms_id
        await tx.execute_many(_INSERT_NOTIFICATION, [
            (dossier_id, kind, status, notified.sms_id, skipped, now)
            for dossier_id, kind, status, notified, skipped, now in self.notifications])
        await tx.execute_many(_EVENT_OUTCOME, self.event_outcomes)
        for chunk in _chunks(self.superseded):
            await tx.fetch(_SUPERSEDE.format(marks=",".join("?" * len(chunk))),
                           (SmsStatus.FAILED.value, SUPERSEDED, SmsStatus.QUEUED.value, *chunk))
        for pending in (self.status_updates, self.changes, self.outgoing, self.notifications, self.event_outcomes,
                        self.superseded):
            pending.clear()

    async def load(self, tx: Tx, phones: Sequence[str]) -> None:
        keys = {phone: self.outbox.phone_key(phone) for phone in set(phones)}
        self._keys = keys
        by_key = {key: phone for phone, key in keys.items()}
        values = sorted(by_key)
        for chunk in _chunks(values):
            marks = ",".join("?" * len(chunk))
            for key, lang in await tx.fetch(f"SELECT phone_key, lang FROM citizen WHERE phone_key IN ({marks})", chunk):
                self._langs[by_key[key]] = lang
            for (key,) in await tx.fetch(
                    f"SELECT phone_key FROM phone_preference WHERE notifications_off=? AND phone_key IN ({marks})",
                    (True, *chunk)):
                self._off.add(by_key[key])

    def lang(self, phone: str) -> str | None:
        return self._langs.get(phone)

    def opted_out(self, phone: str) -> bool | None:
        return (phone in self._off) if phone in self._keys else None
