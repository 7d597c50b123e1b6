"""The SMS a citizen gets when a dossier changes: one template per status (DESIGN.md's
table), a pickup alert for status 9, reminders while a result waits.

Each notice should fit one GSM-7 part (160 characters), since operators bill and
throttle per part. A notice is composed from its parts in order of what matters; when the
full form is longer than a part, the variants below drop, in turn, the procedure name,
the full code (for the keypad tail, which the agency's number resolves), the long
address (for the agency's name), and finally clip the free text a one-stop system wrote
(a reason, the missing documents) and point to the hotline. What the citizen must know
stays in every variant: which dossier, what happened, and for a ready result where, when,
what to bring and the fee.
"""

from __future__ import annotations

import datetime as dt
from typing import Iterator
from zoneinfo import ZoneInfo

from menus.texts import T, text
from menus.ussd import money
from menus.views import DossierView
from models.entities import DossierStatus, FilingMode, SmsKind
from models.outbox import plain_gsm7
from models.sms_text import Encoding, Policy, prepare, units

ONE_PART = 160

_TEMPLATES = {
    DossierStatus.FILED: T.NOTICE_1,
    DossierStatus.RECEIVED: T.NOTICE_2,
    DossierStatus.REFUSED: T.NOTICE_3,
    DossierStatus.PROCESSING: T.NOTICE_4,
    DossierStatus.NEEDS_DOCUMENTS: T.NOTICE_5,
    DossierStatus.NEEDS_PAYMENT: T.NOTICE_6,
    DossierStatus.WITHDRAWN: T.NOTICE_7,
    DossierStatus.STOPPED: T.NOTICE_8,
    DossierStatus.READY: T.NOTICE_9,
    DossierStatus.DELIVERED: T.NOTICE_10,
}
assert set(_TEMPLATES) == set(DossierStatus), "every status needs its notice"
_WITH_DUE = {DossierStatus.RECEIVED: T.NOTICE_2_DUE, DossierStatus.PROCESSING: T.NOTICE_4_DUE}
# Statuses whose note (the one-stop system's free text) the citizen must read.
_WITH_NOTE = (DossierStatus.REFUSED, DossierStatus.STOPPED, DossierStatus.NEEDS_DOCUMENTS)
_WITH_HOTLINE = (DossierStatus.REFUSED, DossierStatus.STOPPED, DossierStatus.NEEDS_DOCUMENTS,
                 DossierStatus.NEEDS_PAYMENT)


class Notices:
    """``compose(lang, kind, dossier, reminder)`` for the dossier service."""

    def __init__(self, timezone: str, policy: Policy = Policy.UNACCENT) -> None:
        self._tz = ZoneInfo(timezone)
        self._policy = policy

    def __call__(self, lang: str, kind: SmsKind, dossier: DossierView, reminder: int = 0) -> str:
        candidate = ""
        for candidate in self._variants(lang, kind, dossier, reminder):  # composed one at a time
            if self.fits(candidate):
                return candidate
        return self._clipped(candidate)

    def fits(self, message: str) -> bool:
        # Plain ASCII (the catalogue, unaccented data) is measured without preparing it.
        if plain_gsm7(message):
            return units(message, Encoding.GSM7) <= ONE_PART
        return prepare(message, self._policy).parts == 1

    def _clipped(self, message: str) -> str:
        while len(message) > 20 and not self.fits(message):
            message = message[: len(message) - 4].rstrip() + "..."
        return message

    def _date(self, moment: dt.datetime) -> str:
        return moment.astimezone(self._tz).strftime("%d/%m/%Y")

    def _variants(self, lang: str, kind: SmsKind, dossier: DossierView, reminder: int) -> Iterator[str]:
        parts = dossier.code.rsplit("-", 2)
        tail = parts[1] + parts[2] if len(parts) == 3 else dossier.code
        procedure = dossier.procedure_name.get(lang)
        refs = [
            text(lang, T.NOTICE_REF_PROC, ref=dossier.code, procedure=procedure),
            text(lang, T.NOTICE_REF, ref=dossier.code),
            text(lang, T.NOTICE_REF, ref=tail),
        ]
        long_place = dossier.pickup_place or dossier.agency.address
        places = [long_place] if long_place == dossier.agency.name else [long_place, dossier.agency.name]
        note = dossier.status_note.strip().rstrip(".")
        # The same in every variant: worked out once.
        amount = money(lang, dossier.fee_due)
        due = self._date(dossier.due_at) if dossier.due_at else ""
        common = dict(amount=amount, due=due)
        for place in places:
            for ref in refs:
                yield self._compose(lang, kind, dossier, reminder, ref, place, note, **common)
        short = dict(ref=refs[-1], place=places[-1], **common)
        if kind is SmsKind.REMINDER:  # the pickup alert offered the post already
            yield self._compose(lang, kind, dossier, reminder, note=note, postal=False, **short)
        elif dossier.mode is FilingMode.FULL and dossier.status is DossierStatus.READY:
            # The desk hours go before the offer of the post: BUUDIEN is said nowhere else.
            yield self._compose(lang, kind, dossier, reminder, note=note, hours=False, **short)
        yield self._compose(lang, kind, dossier, reminder, note=note, postal=False, hours=False, **short)
        # Last: the shortest form, with the note clipped to what fits.
        shortest = self._compose(lang, kind, dossier, reminder, note="", **short)
        if note and dossier.status in _WITH_NOTE:
            room = ONE_PART - len(shortest) - len(text(lang, T.NOTICE_DOCUMENTS, documents="")) - 4
            if room > 10:
                yield self._compose(lang, kind, dossier, reminder, note=note[:room].rstrip() + "...", **short)
        yield shortest

    def _compose(self, lang: str, kind: SmsKind, dossier: DossierView, reminder: int, ref: str, place: str,
                 note: str, *, amount: str, due: str, postal: bool = True, hours: bool = True) -> str:
        status = dossier.status
        pickup = ""
        if kind is SmsKind.REMINDER or status is DossierStatus.READY:  # only these say where to collect
            if hours:
                pickup = text(lang, T.NOTICE_PICKUP_AT, place=place, hours=dossier.agency.desk_hours.get(lang),
                              amount=amount)
            else:
                pickup = text(lang, T.NOTICE_PICKUP_NO_HOURS, place=place, amount=amount)
        if kind is SmsKind.REMINDER:
            said = [text(lang, T.NOTICE_REMINDER, number=reminder, ref=ref), pickup]
        else:
            template = _WITH_DUE.get(status) if dossier.due_at is not None else None
            said = [text(lang, template or _TEMPLATES[status], ref=ref, place=place, amount=amount, due=due)]
            if note and status is DossierStatus.NEEDS_DOCUMENTS:
                said.append(text(lang, T.NOTICE_DOCUMENTS, documents=note))
            elif note and status in _WITH_NOTE:
                said.append(text(lang, T.NOTICE_REASON, reason=note))
            if status is DossierStatus.READY:
                said.append(pickup)
            if status in _WITH_HOTLINE and dossier.agency.hotline:
                said.append(text(lang, T.NOTICE_CALL, hotline=dossier.agency.hotline))
        if postal and status is DossierStatus.READY and dossier.mode is FilingMode.FULL:
            said.append(text(lang, T.NOTICE_9_POSTAL))
        return " ".join(said)
