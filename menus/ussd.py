"""The citizen USSD menu: main menu, dossier status lookup, procedures, pickup, help
(registration, "my dossiers" and deleting one's data are ``menus.registration``).

Each screen is a content function (and, for typed input, a text handler) registered on
its ``Screen`` symbol. Registration is checked at the end of this module.
"""

from __future__ import annotations

import datetime as dt
import hmac
from typing import Any, Mapping

from menus.engine import (
    Command,
    Frame,
    HopContext,
    Notice,
    Screen,
    Target,
    check_registry,
    content,
    on_enter,
    on_text,
)
from menus.render import Content, Item
from menus.texts import T, text
from menus.views import DossierView, ProcedureView
from models import dossier_code
from models.entities import DossierStatus, FilingMode

STATUS_TEXT = {
    DossierStatus.FILED: T.STATUS_1,
    DossierStatus.RECEIVED: T.STATUS_2,
    DossierStatus.REFUSED: T.STATUS_3,
    DossierStatus.PROCESSING: T.STATUS_4,
    DossierStatus.NEEDS_DOCUMENTS: T.STATUS_5,
    DossierStatus.NEEDS_PAYMENT: T.STATUS_6,
    DossierStatus.WITHDRAWN: T.STATUS_7,
    DossierStatus.STOPPED: T.STATUS_8,
    DossierStatus.READY: T.STATUS_9,
    DossierStatus.DELIVERED: T.STATUS_10,
}
assert set(STATUS_TEXT) == set(DossierStatus), "every status needs its citizen text"


def _agency_name(ctx: HopContext) -> str:
    return ctx.agency.name if ctx.agency else ""


def _hotline(ctx: HopContext) -> str:
    return ctx.agency.hotline if ctx.agency else ""


def money(lang: str, amount: int) -> str:
    """8000 -> "8.000 d" (vi) / "8,000 VND" (en); 0 -> free."""
    if amount <= 0:
        return text(lang, T.FEE_FREE)
    grouped = f"{amount:,}"
    return text(lang, T.FEE_AMOUNT, amount=grouped.replace(",", ".") if lang == "vi" else grouped)


def local_date(ctx: HopContext, moment: dt.datetime) -> str:
    return moment.astimezone(ctx.tz).strftime("%d/%m/%Y")


def overdue_days(ctx: HopContext, dossier: DossierView) -> int:
    """Whole days past the due date, for dossiers still with the commune; 0 if not late."""
    if dossier.due_at is None or not dossier.status.is_open:
        return 0
    today = ctx.now.astimezone(ctx.tz).date()
    due = dossier.due_at.astimezone(ctx.tz).date()
    return max((today - due).days, 0)


# Main menu ---------------------------------------------------------------------------

# The main menu is the same for every caller of one agency: built once per language and name.
_MAIN_MENUS: dict[tuple[str, str], Content[Target]] = {}


@content(Screen.MAIN)
async def main_menu(ctx: HopContext, lang: str, args: Mapping[str, Any]) -> Content[Target]:
    key = (lang, _agency_name(ctx))
    found = _MAIN_MENUS.get(key)
    if found is None:
        if len(_MAIN_MENUS) >= 256:
            _MAIN_MENUS.clear()  # agencies renamed many times over: start again
        found = _MAIN_MENUS[key] = _main_menu(lang, key[1])
    return found


def _main_menu(lang: str, agency_name: str) -> Content[Target]:
    items: list[Item[Target]] = [
        Item(text(lang, T.MAIN_LOOKUP), Frame(Screen.LOOKUP_ENTER)),
        Item(text(lang, T.MAIN_REGISTER), Frame(Screen.REGISTER)),
        Item(text(lang, T.MAIN_MY_DOSSIERS), Frame(Screen.MY_DOSSIERS)),
        Item(text(lang, T.MAIN_PROCEDURES), Frame(Screen.PROCEDURES)),
        Item(text(lang, T.MAIN_PICKUP), Frame(Screen.PICKUP)),
        Item(text(lang, T.MAIN_HELP), Frame(Screen.HELP)),
        Item(text(lang, T.MAIN_LANGUAGE), Command.TOGGLE_LANGUAGE),
    ]
    return Content(text(lang, T.MAIN_TITLE, agency=agency_name), items=tuple(items), nav=False)


@content(Screen.RESUME)
async def resume_menu(ctx: HopContext, lang: str, args: Mapping[str, Any]) -> Content[Target]:
    items = (
        Item(text(lang, T.RESUME_CONTINUE), Command.RESUME),
        Item(text(lang, T.RESUME_RESTART), Command.RESTART),
    )
    return Content(text(lang, T.RESUME_TITLE), items=items, nav=False)


# Status lookup -----------------------------------------------------------------------

@content(Screen.LOOKUP_ENTER)
async def lookup_prompt(ctx: HopContext, lang: str, args: Mapping[str, Any]) -> Content[Target]:
    return Content(text(lang, T.LOOKUP_PROMPT), prompt=True)


@on_text(Screen.LOOKUP_ENTER)
async def lookup_code(ctx: HopContext, lang: str, args: Mapping[str, Any], value: str) -> Frame | Notice:
    code = dossier_code.parse(value)
    if code is not None:
        dossier = await ctx.directory.dossier_by_code(code.text)
        if dossier is None:
            return Notice(T.LOOKUP_NOT_FOUND, {"code": code.text})
        return Frame(Screen.LOOKUP_RESULT, {"id": dossier.id})
    tail = dossier_code.parse_tail(value)
    if tail is None:
        return Notice(T.LOOKUP_BAD_CODE)
    if ctx.agency is None:
        return Notice(T.LOOKUP_NEED_FULL_CODE)
    matches = await ctx.directory.dossiers_by_tail(ctx.agency.id, tail)
    if not matches:
        return Notice(T.LOOKUP_NOT_FOUND, {"code": tail})
    if len(matches) == 1:
        return Frame(Screen.LOOKUP_RESULT, {"id": matches[0].id})
    return Frame(Screen.LOOKUP_CHOOSE, {"tail": tail})


@content(Screen.LOOKUP_CHOOSE)
async def lookup_choose(ctx: HopContext, lang: str, args: Mapping[str, Any]) -> Content[Target]:
    # Only the code's agency part and the procedure: nothing personal before the choice.
    matches = await ctx.directory.dossiers_by_tail(ctx.agency.id, args["tail"]) if ctx.agency else []
    items = tuple(
        Item(
            text(lang, T.LOOKUP_CHOOSE_ITEM, agency_code=d.code.rsplit("-", 2)[0], procedure=d.procedure_name.get(lang)),
            Frame(Screen.LOOKUP_RESULT, {"id": d.id}),
        )
        for d in matches
    )
    return Content(text(lang, T.LOOKUP_CHOOSE_TITLE, count=len(matches)), items=items)


@content(Screen.LOOKUP_RESULT)
async def lookup_result(ctx: HopContext, lang: str, args: Mapping[str, Any]) -> Content[Target]:
    dossier = await ctx.directory.dossier(args["id"])
    if dossier is None:  # deleted between hops
        return Content(text(lang, T.LOOKUP_NOT_FOUND, code=""), end=True)
    # From "my dossiers" (after the PIN) the frame holds the caller's ID hash: a dossier
    # filed under that ID number is theirs, whichever phone filed it.
    id_hash, filed_under = args.get("idh"), dossier.applicant_id_hash
    owner = ctx.phone == dossier.applicant_phone or bool(
        id_hash and filed_under and hmac.compare_digest(id_hash, filed_under))
    items: tuple[Item[Target], ...] = ()
    if (dossier.status is DossierStatus.READY and dossier.mode is FilingMode.FULL
            and ctx.phone == dossier.applicant_phone):  # only the applicant's phone may ask
        items = (Item(text(lang, T.RESULT_POSTAL_OPTION), Frame(Screen.POSTAL_DONE, {"id": dossier.id})),)
    return Content(text(lang, T.RESULT_CODE, code=dossier.code), body=" ".join(status_sentences(ctx, lang, dossier, owner)),
                   items=items)


@on_enter(Screen.POSTAL_DONE)
async def postal_request(ctx: HopContext, lang: str, args: Mapping[str, Any]) -> Frame:
    outcome = await ctx.uow.services.dossiers.request_postal(ctx.uow.tx, args["id"], ctx.phone, "ussd", ctx.now)
    return Frame(Screen.POSTAL_DONE, {"id": args["id"], "o": outcome.value})


@content(Screen.POSTAL_DONE)
async def postal_done(ctx: HopContext, lang: str, args: Mapping[str, Any]) -> Content[Target]:
    dossier = await ctx.directory.dossier(args["id"])
    code = dossier.code if dossier else ""
    return Content(text(lang, T.RESULT_POSTAL_OPTION), body=postal_text(lang, args.get("o", ""), code, ussd=True), end=True)


_POSTAL_TEXTS = {
    "recorded": T.SMS_POSTAL_RECORDED,
    "already": T.SMS_POSTAL_ALREADY,
    "not_applicant": T.SMS_POSTAL_NOT_APPLICANT,
    "not_ready": T.SMS_POSTAL_NOT_READY,
    "not_postal": T.SMS_POSTAL_NOT_POSTAL,
}


def postal_text(lang: str, outcome: str, code: str, *, ussd: bool = False) -> str:
    """What the applicant is told about a request for postal delivery (SMS or screen)."""
    if ussd and outcome == "recorded":
        return text(lang, T.POSTAL_CONFIRM_SCREEN)
    key = _POSTAL_TEXTS.get(outcome)
    if key is None:  # the dossier went between two hops
        return text(lang, T.SORRY_ERROR)
    return text(lang, key, code=code)


def status_sentences(ctx: HopContext, lang: str, dossier: DossierView, owner: bool | None = None) -> list[str]:
    """What the citizen should hear about a dossier (DESIGN.md status table).

    Personal details (name, refusal reasons, missing documents) only for the applicant:
    a caller whose phone is the applicant's, or ``owner`` when the caller proved it
    otherwise (a PIN, and the dossier filed under their ID number).
    """
    if owner is None:
        owner = ctx.phone == dossier.applicant_phone
    status = dossier.status
    said = [dossier.procedure_name.get(lang) + ".", text(lang, T.RESULT_STATUS, status=text(lang, STATUS_TEXT[status]))]
    if owner:
        said.append(text(lang, T.RESULT_APPLICANT, name=dossier.applicant_name))
    if status.is_open and status is not DossierStatus.FILED and dossier.due_at is not None:
        said.append(text(lang, T.RESULT_DUE, date=local_date(ctx, dossier.due_at)))
        late = overdue_days(ctx, dossier)
        if late:
            said.append(text(lang, T.RESULT_OVERDUE, days=late))
    place = dossier.pickup_place or dossier.agency.address
    if status in (DossierStatus.REFUSED, DossierStatus.STOPPED):
        if owner and dossier.status_note:
            said.append(text(lang, T.RESULT_REASON, reason=dossier.status_note))
        said.append(text(lang, T.RESULT_CALL, hotline=dossier.agency.hotline))
    elif status is DossierStatus.NEEDS_DOCUMENTS:
        if owner and dossier.status_note:
            said.append(text(lang, T.RESULT_MISSING_DOCS, documents=dossier.status_note, place=place))
        else:
            said.append(text(lang, T.RESULT_MISSING_DOCS_PUBLIC))
    elif status is DossierStatus.NEEDS_PAYMENT:
        said.append(text(lang, T.RESULT_FEE, amount=money(lang, dossier.fee_due)))
    elif status is DossierStatus.READY:
        if dossier.mode is FilingMode.FULL:
            said.append(text(lang, T.RESULT_DELIVERY_FULL))
        else:
            said.append(text(lang, T.RESULT_PICKUP, place=place, hours=dossier.agency.desk_hours.get(lang)))
            said.append(text(lang, T.RESULT_PICKUP_FEE, amount=money(lang, dossier.fee_due)))
    if not owner:
        said.append(text(lang, T.RESULT_PRIVATE_HINT))
    return said


# Catalogue, pickup, help ---------------------------------------------------------------

@content(Screen.PROCEDURES)
async def procedures(ctx: HopContext, lang: str, args: Mapping[str, Any]) -> Content[Target]:
    found = await ctx.directory.procedures(ctx.agency.id) if ctx.agency else []
    if not found:
        return Content(text(lang, T.PROCEDURES_TITLE), body=text(lang, T.PROCEDURES_EMPTY))
    items = tuple(Item(p.name.get(lang), Frame(Screen.PROCEDURE_DETAIL, {"id": p.id})) for p in found)
    return Content(text(lang, T.PROCEDURES_TITLE), items=items)


@content(Screen.PROCEDURE_DETAIL)
async def procedure_detail(ctx: HopContext, lang: str, args: Mapping[str, Any]) -> Content[Target]:
    found = await ctx.directory.procedure(ctx.agency.id, args["id"]) if ctx.agency else None
    if found is None:
        return Content(text(lang, T.PROCEDURES_TITLE), body=text(lang, T.PROCEDURES_EMPTY))
    return Content(text(lang, T.PROCEDURES_TITLE), body=procedure_text(lang, found))


def procedure_text(lang: str, procedure: ProcedureView) -> str:
    """Time, fee and documents of a procedure (USSD screen and SMS answer alike)."""
    return text(
        lang,
        T.PROCEDURE_DETAIL,
        name=procedure.name.get(lang),
        time=procedure.processing_time.get(lang),
        fee=procedure.fee.get(lang),
        documents=procedure.documents.get(lang),
    )


@content(Screen.PICKUP)
async def pickup(ctx: HopContext, lang: str, args: Mapping[str, Any]) -> Content[Target]:
    agency = ctx.agency
    body = text(
        lang,
        T.PICKUP_INFO,
        address=agency.address if agency else "",
        hours=agency.desk_hours.get(lang) if agency else "",
        hotline=_hotline(ctx),
    )
    return Content(text(lang, T.MAIN_PICKUP), body=body)


@content(Screen.HELP)
async def help_screen(ctx: HopContext, lang: str, args: Mapping[str, Any]) -> Content[Target]:
    hours = ctx.agency.desk_hours.get(lang) if ctx.agency else ""
    items = (
        Item(text(lang, T.HELP_SMS_ITEM), Frame(Screen.HELP_SMS)),
        Item(text(lang, T.DELETE_MENU_ITEM), Frame(Screen.DELETE_DATA)),
    )
    return Content(text(lang, T.MAIN_HELP), body=text(lang, T.HELP_INFO, hotline=_hotline(ctx), hours=hours), items=items)


@content(Screen.HELP_SMS)
async def help_sms(ctx: HopContext, lang: str, args: Mapping[str, Any]) -> Content[Target]:
    return Content(text(lang, T.HELP_SMS_ITEM), body=text(lang, T.HELP_SMS_INFO))


# The registration feature's screens (entries 2 and 3, delete-my-data) register themselves.
from menus import registration as _registration  # noqa: E402,F401

check_registry()
