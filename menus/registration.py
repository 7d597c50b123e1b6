"""Registration, PIN, "my dossiers" and deleting one's data: the USSD screens of the feature.

The journeys, as a caller meets them:

- **2 Registration** (``REGISTER``): a consent screen (what is kept, why, how to delete it;
  nothing is stored before "1 Dong y"), then the ID number, the full name, the date of
  birth, a code sent by SMS (valid until the time it says, "1" sends another after
  ``otp.resend_seconds``), a PIN twice; the citizen is created and a confirmation SMS
  follows. A registered phone is offered a PIN reset through a code instead; one
  registered by SMS (no PIN yet) sets its PIN.
- **3 My dossiers** (``MY_DOSSIERS``): the PIN first (``pin.max_failures`` wrong ones lock
  for ``pin.lock_seconds``, and the screen says until when), then the caller's dossiers,
  matched by phone or by ID hash, newest first, each opening to its status with personal
  details.
- **6 Help > 2 Delete my data** (``DELETE_DATA``): confirmed by a code, then the citizen row,
  preferences and any registration by SMS go and an SMS confirms it.

What a dialogue keeps in its session (frame ``args``, stored as JSON) is never the typed
secret: the ID number as its keyed hash and last three digits, the name as typed, and
keyed hashes, salted per dialogue (``n``), of the ID's birth-year digits, the forms of the
date of birth a PIN must not be, and the first PIN entry. Steps whose answer depends on a
change (a code check, a PIN attempt, the registration itself) call the services with the
hop's transaction; the SMS and the deletion are returned as effects.
"""

from __future__ import annotations

import datetime as dt
import hmac
import math
from typing import Any, Awaitable, Callable, Mapping

from menus.engine import Frame, HopContext, Notice, Outcome, Screen, Target, clip_echo, content, on_enter, on_text
from menus.render import Content, Item
from menus.texts import T, text
from models import identity
from models.effects import DeletePersonalData, SendSms
from models.entities import SmsKind
from models.identity import Reason, Refusal
from models.otp import OtpLimited, OtpPurpose

REASON_TEXT = {
    Reason.ID_FORMAT: T.REASON_ID_FORMAT,
    Reason.ID_PROVINCE: T.REASON_ID_PROVINCE,
    Reason.ID_BIRTH_YEAR: T.REASON_ID_BIRTH_YEAR,
    Reason.NAME_LENGTH: T.REASON_NAME_LENGTH,
    Reason.NAME_CHARACTERS: T.REASON_NAME_CHARACTERS,
    Reason.BIRTH_FORMAT: T.REASON_BIRTH_FORMAT,
    Reason.BIRTH_NOT_A_DATE: T.REASON_BIRTH_NOT_A_DATE,
    Reason.BIRTH_FUTURE: T.REASON_BIRTH_FUTURE,
    Reason.BIRTH_TOO_EARLY: T.REASON_BIRTH_TOO_EARLY,
    Reason.PIN_FORMAT: T.REASON_PIN_FORMAT,
    Reason.PIN_SAME_DIGITS: T.REASON_PIN_SAME_DIGITS,
    Reason.PIN_SEQUENCE: T.REASON_PIN_SEQUENCE,
    Reason.PIN_REPEATED: T.REASON_PIN_REPEATED,
    Reason.PIN_BIRTH_DATE: T.REASON_PIN_BIRTH_DATE,
}
assert set(REASON_TEXT) == set(Reason), "every refusal needs its words"

RESEND = "1"  # typed on a code screen: send another code
# A dossier in "my dossiers" is its date and procedure, the name cut so a page lists several.
LIST_LABEL_PROCEDURE = 34


def refusal_notice(refusal: Refusal) -> Notice:
    return Notice(REASON_TEXT[refusal.reason], refusal.values)


def refusal_text(lang: str, refusal: Refusal) -> str:
    return text(lang, REASON_TEXT[refusal.reason], **refusal.values)


def local_time(ctx: HopContext, moment: dt.datetime) -> str:
    return moment.astimezone(ctx.tz).strftime("%H:%M")


def ussd_code(ctx: HopContext) -> str:
    return ctx.agency.service_code if ctx.agency else ""


def _hotline(ctx: HopContext) -> str:
    return ctx.agency.hotline if ctx.agency else ""


def _citizens(ctx: HopContext) -> Any:
    return ctx.uow.services.citizens


def _otp(ctx: HopContext) -> Any:
    return ctx.uow.services.otp


def _same(digest: str | None, expected: str | None) -> bool:
    return bool(digest and expected) and hmac.compare_digest(digest, expected)


def limited_wait(exc: OtpLimited) -> tuple[str, dict[str, int]]:
    """How to say "not now": seconds for a resend, minutes for the hourly and global caps."""
    if exc.reason == "resend":
        return "seconds", {"seconds": exc.retry_after}
    return "minutes", {"minutes": max(1, math.ceil(exc.retry_after / 60))}


async def send_code(ctx: HopContext, lang: str, purpose: OtpPurpose, resend: bool = False) -> Notice | None:
    """Send a code for ``purpose``; a notice saying when to try again if none may go now.
    Unless the caller asked for another one (``resend``), a code sent moments ago (the
    caller went back and forth) still works: no notice."""
    otp = _otp(ctx)
    try:
        await otp.start(ctx.uow.tx, ctx.phone, purpose, lang, ctx.now)
    except OtpLimited as exc:  # start wrote nothing: the rest of the hop may commit
        if not resend and exc.reason == "resend" and await otp.pending(ctx.uow.tx, ctx.phone, purpose, ctx.now):
            return None
        unit, values = limited_wait(exc)
        return Notice(T.OTP_RESEND_WAIT if unit == "seconds" else T.OTP_LIMITED, values)
    return None


# Entry 2: registration ----------------------------------------------------------------

@on_enter(Screen.REGISTER)
async def register_entry(ctx: HopContext, lang: str, args: Mapping[str, Any]) -> Frame:
    citizen = await _citizens(ctx).by_phone(ctx.uow.tx, ctx.phone)
    if citizen is None:
        return Frame(Screen.REGISTER)
    if not citizen.has_pin:  # registered by SMS: the PIN is set here, on the phone that registered
        return Frame(Screen.PIN_NEW, {"n": _citizens(ctx).new_nonce(), "via": "first"})
    return Frame(Screen.PIN_RESET, {"l3": citizen.id_last3})


@content(Screen.REGISTER)
async def consent(ctx: HopContext, lang: str, args: Mapping[str, Any]) -> Content[Target]:
    sms_number = ctx.agency.sms_number if ctx.agency else ""
    items = (
        Item(text(lang, T.CONSENT_AGREE), Frame(Screen.REGISTER_ID)),
        Item(text(lang, T.CONSENT_DECLINE), Frame(Screen.REGISTER_DECLINED)),
    )
    return Content(text(lang, T.MAIN_REGISTER), body=text(lang, T.CONSENT_BODY, sms=sms_number), items=items)


@content(Screen.REGISTER_DECLINED)
async def declined(ctx: HopContext, lang: str, args: Mapping[str, Any]) -> Content[Target]:
    return Content(text(lang, T.MAIN_REGISTER), body=text(lang, T.REGISTER_DECLINED), end=True)


def _prompt(title: T, prompt: T) -> Callable[[HopContext, str, Mapping[str, Any]], Awaitable[Content[Target]]]:
    async def show(ctx: HopContext, lang: str, args: Mapping[str, Any]) -> Content[Target]:
        return Content(text(lang, title), body=text(lang, prompt), prompt=True)

    return show


content(Screen.REGISTER_ID)(_prompt(T.MAIN_REGISTER, T.REGISTER_ID_PROMPT))
content(Screen.REGISTER_NAME)(_prompt(T.MAIN_REGISTER, T.REGISTER_NAME_PROMPT))
content(Screen.REGISTER_BIRTH)(_prompt(T.MAIN_REGISTER, T.REGISTER_BIRTH_PROMPT))
content(Screen.REGISTER_PIN)(_prompt(T.PIN_TITLE, T.PIN_CREATE_PROMPT))
content(Screen.REGISTER_PIN_AGAIN)(_prompt(T.PIN_TITLE, T.PIN_AGAIN_PROMPT))
content(Screen.PIN_NEW)(_prompt(T.PIN_TITLE, T.PIN_NEW_PROMPT))
content(Screen.PIN_NEW_AGAIN)(_prompt(T.PIN_TITLE, T.PIN_AGAIN_PROMPT))
content(Screen.MY_DOSSIERS)(_prompt(T.MAIN_MY_DOSSIERS, T.MY_PIN_PROMPT))


@on_text(Screen.REGISTER_ID)
async def typed_id(ctx: HopContext, lang: str, args: Mapping[str, Any], value: str) -> Frame | Notice:
    number = identity.parse_id_number(value)
    if isinstance(number, Refusal):
        return refusal_notice(number)
    citizens = _citizens(ctx)
    nonce = citizens.new_nonce()
    code = number.birth_code
    return Frame(Screen.REGISTER_NAME, {
        "n": nonce,
        "idh": citizens.id_hash(number.digits),
        "l3": number.last3,
        # A personal ID's century/year digits, to hold against the date of birth next.
        "yc": citizens.entry_digest(nonce, "birth:" + code) if code else None,
    })


@on_text(Screen.REGISTER_NAME)
async def typed_name(ctx: HopContext, lang: str, args: Mapping[str, Any], value: str) -> Frame | Notice:
    name = identity.parse_name(value)
    if isinstance(name, Refusal):
        return refusal_notice(name)
    return Frame(Screen.REGISTER_BIRTH, {**args, "name": name})


@on_text(Screen.REGISTER_BIRTH)
async def typed_birth(ctx: HopContext, lang: str, args: Mapping[str, Any], value: str) -> Frame | Notice:
    birth = identity.parse_birth_date(value, ctx.now.astimezone(ctx.tz).date())
    if isinstance(birth, Refusal):
        return refusal_notice(birth)
    citizens, nonce = _citizens(ctx), args["n"]
    if args.get("yc") is not None and not any(
        _same(citizens.entry_digest(nonce, "birth:" + code), args["yc"]) for code in identity.birth_codes(birth)
    ):
        return refusal_notice(Refusal(Reason.ID_BIRTH_YEAR))
    refused = await send_code(ctx, lang, OtpPurpose.REGISTER)
    if refused is not None:
        return refused
    forms = sorted(citizens.entry_digest(nonce, "pin:" + pin) for pin in identity.birth_date_pins(birth))
    return Frame(Screen.REGISTER_OTP, {**args, "bp": forms})


@on_text(Screen.REGISTER_PIN)
async def typed_first_pin(ctx: HopContext, lang: str, args: Mapping[str, Any], value: str) -> Frame | Notice:
    citizens, nonce = _citizens(ctx), args["n"]
    refusal = identity.check_pin(value)
    if refusal is None and citizens.entry_digest(nonce, "pin:" + value) in args.get("bp", ()):
        refusal = Refusal(Reason.PIN_BIRTH_DATE)
    if refusal is not None:
        return refusal_notice(refusal)
    # The first entry rests in the session only as the slow salted hash the citizen's PIN
    # will be stored as (a fast hash of six digits is undone in a second).
    return Frame(Screen.REGISTER_PIN_AGAIN, {**args, "p1": await citizens.hash_pin(value)})


@on_text(Screen.REGISTER_PIN_AGAIN)
async def typed_pin_again(ctx: HopContext, lang: str, args: Mapping[str, Any], value: str) -> Frame | Notice | Outcome:
    citizens = _citizens(ctx)
    if not await citizens.verify_pin(value, args.get("p1")):
        return Notice(T.PIN_MISMATCH)
    pin_hash = args["p1"]
    citizen = await citizens.register(
        ctx.uow.tx, ctx.phone, args["idh"], args["l3"], args["name"], lang, ctx.now, pin_hash=pin_hash)
    if citizen is None:  # registered meanwhile (another session of this phone, or by SMS)
        return Frame(Screen.REGISTER_ALREADY)
    confirmation = SendSms(ctx.phone, text(
        lang, T.REGISTER_SMS, name=citizen.name, last3=citizen.id_last3, code=ussd_code(ctx), hotline=_hotline(ctx),
    ), SmsKind.REPLY, lang)
    return Outcome(Frame(Screen.REGISTER_DONE, {"name": citizen.name}), (confirmation,))


@content(Screen.REGISTER_DONE)
async def registered(ctx: HopContext, lang: str, args: Mapping[str, Any]) -> Content[Target]:
    return Content(text(lang, T.MAIN_REGISTER), body=text(lang, T.REGISTER_DONE, name=args.get("name", "")), end=True)


@content(Screen.REGISTER_ALREADY)
async def already(ctx: HopContext, lang: str, args: Mapping[str, Any]) -> Content[Target]:
    return Content(text(lang, T.MAIN_REGISTER), body=text(lang, T.REGISTER_ALREADY), end=True)


# Codes sent by SMS: one screen per journey, the same behaviour ------------------------

Approved = Callable[[HopContext, str, Mapping[str, Any]], Awaitable["Frame | Notice | Outcome"]]


def code_screen(screen: Screen, purpose: OtpPurpose, approved: Approved) -> None:
    """A screen that takes the code sent for ``purpose``, or "1" for another one, and on
    the right code spends the approval and goes where ``approved`` says."""

    async def show(ctx: HopContext, lang: str, args: Mapping[str, Any]) -> Content[Target]:
        live = await _otp(ctx).pending(ctx.uow.tx, ctx.phone, purpose, ctx.now) if ctx.uow is not None else None
        if live is None:
            body = text(lang, T.OTP_PROMPT_GONE)
        else:
            body = text(lang, T.OTP_PROMPT, time=local_time(ctx, live.expires_at))
        return Content(text(lang, T.OTP_TITLE), body=body, prompt=True)

    async def typed(ctx: HopContext, lang: str, args: Mapping[str, Any], value: str) -> Frame | Notice | Outcome:
        otp = _otp(ctx)
        if value == RESEND:
            return await send_code(ctx, lang, purpose, resend=True) or Notice(T.OTP_RESENT)
        if len(value) != 6 or not value.isascii() or not value.isdigit():
            return Notice(T.OTP_FORMAT)
        verdict = await otp.check(ctx.uow.tx, ctx.phone, purpose, value, ctx.now)
        if verdict.status == "approved" and await otp.consume(ctx.uow.tx, ctx.phone, purpose, ctx.now):
            return await approved(ctx, lang, args)
        if verdict.status == "pending":
            return Notice(T.OTP_WRONG, {"tries": verdict.tries_left})
        if verdict.status == "failed":
            return Notice(T.OTP_FAILED)
        return Notice(T.OTP_EXPIRED)

    content(screen)(show)
    on_text(screen)(typed)


async def _registration_approved(ctx: HopContext, lang: str, args: Mapping[str, Any]) -> Frame:
    return Frame(Screen.REGISTER_PIN, args)


async def _reset_approved(ctx: HopContext, lang: str, args: Mapping[str, Any]) -> Frame:
    return Frame(Screen.PIN_NEW, {"n": _citizens(ctx).new_nonce(), "via": "otp"})


async def _deletion_approved(ctx: HopContext, lang: str, args: Mapping[str, Any]) -> Outcome:
    confirmation = SendSms(ctx.phone, text(lang, T.DELETE_SMS), SmsKind.REPLY, lang)
    return Outcome(Frame(Screen.DELETE_DONE), (DeletePersonalData(ctx.phone, "ussd"), confirmation))


code_screen(Screen.REGISTER_OTP, OtpPurpose.REGISTER, _registration_approved)
code_screen(Screen.PIN_RESET_OTP, OtpPurpose.PIN_RESET, _reset_approved)
code_screen(Screen.DELETE_OTP, OtpPurpose.DELETE_DATA, _deletion_approved)


def _sends_code_on_enter(screen: Screen, purpose: OtpPurpose) -> None:
    async def enter(ctx: HopContext, lang: str, args: Mapping[str, Any]) -> Notice | Outcome:
        refused = await send_code(ctx, lang, purpose)
        return refused if refused is not None else Outcome(None)  # None: open the screen chosen

    on_enter(screen)(enter)


_sends_code_on_enter(Screen.PIN_RESET_OTP, OtpPurpose.PIN_RESET)
_sends_code_on_enter(Screen.DELETE_OTP, OtpPurpose.DELETE_DATA)


# PIN reset, and the first PIN of a phone registered by SMS ----------------------------

@content(Screen.PIN_RESET)
async def pin_reset(ctx: HopContext, lang: str, args: Mapping[str, Any]) -> Content[Target]:
    items = (Item(text(lang, T.PIN_RESET_SEND), Frame(Screen.PIN_RESET_OTP)),)
    return Content(text(lang, T.PIN_TITLE), body=text(lang, T.PIN_RESET_OFFER, last3=args.get("l3", "")), items=items)


@on_text(Screen.PIN_NEW)
async def typed_new_pin(ctx: HopContext, lang: str, args: Mapping[str, Any], value: str) -> Frame | Notice:
    refusal = identity.check_pin(value)  # no date of birth is kept to hold it against
    if refusal is not None:
        return refusal_notice(refusal)
    return Frame(Screen.PIN_NEW_AGAIN, {**args, "p1": await _citizens(ctx).hash_pin(value)})


@on_text(Screen.PIN_NEW_AGAIN)
async def typed_new_pin_again(ctx: HopContext, lang: str, args: Mapping[str, Any], value: str) -> Frame | Notice | Outcome:
    citizens = _citizens(ctx)
    if not await citizens.verify_pin(value, args.get("p1")):
        return Notice(T.PIN_MISMATCH)
    citizen = await citizens.by_phone(ctx.uow.tx, ctx.phone)
    if citizen is None:  # deleted meanwhile
        return Frame(Screen.MY_NOT_REGISTERED)
    if args.get("via") != "otp" and citizen.has_pin:
        # A PIN was set meanwhile: changing it takes a code.
        return Frame(Screen.PIN_RESET, {"l3": citizen.id_last3})
    if not await citizens.set_pin(ctx.uow.tx, citizen.id, args["p1"], ctx.now, first=args.get("via") != "otp"):
        return Frame(Screen.PIN_RESET, {"l3": citizen.id_last3})  # another session set one first
    warning = SendSms(ctx.phone, text(lang, T.PIN_SET_SMS, hotline=_hotline(ctx)), SmsKind.REPLY, lang)
    return Outcome(Frame(Screen.PIN_SET_DONE), (warning,))


@content(Screen.PIN_SET_DONE)
async def pin_set(ctx: HopContext, lang: str, args: Mapping[str, Any]) -> Content[Target]:
    return Content(text(lang, T.PIN_TITLE), body=text(lang, T.PIN_SET_DONE), end=True)


# Entry 3: my dossiers --------------------------------------------------------------------

@on_enter(Screen.MY_DOSSIERS)
async def my_dossiers_entry(ctx: HopContext, lang: str, args: Mapping[str, Any]) -> Frame | Outcome:
    citizen = await _citizens(ctx).by_phone(ctx.uow.tx, ctx.phone)
    if citizen is None:
        return Frame(Screen.MY_NOT_REGISTERED)
    if not citizen.has_pin:
        return Frame(Screen.MY_NO_PIN)
    until = citizen.locked_at(ctx.now)
    if until is not None:
        return Frame(Screen.MY_LOCKED, {"until": until.isoformat()})
    return Outcome(None)


@on_text(Screen.MY_DOSSIERS)
async def typed_pin(ctx: HopContext, lang: str, args: Mapping[str, Any], value: str) -> Frame | Notice:
    if len(value) != 6 or not value.isascii() or not value.isdigit():
        return refusal_notice(Refusal(Reason.PIN_FORMAT))  # not counted: not a PIN
    citizens = _citizens(ctx)
    citizen = await citizens.by_phone(ctx.uow.tx, ctx.phone)
    if citizen is None:
        return Frame(Screen.MY_NOT_REGISTERED)
    verdict = await citizens.check_pin(ctx.uow.tx, citizen, value, ctx.now)
    if verdict.ok:
        return Frame(Screen.MY_DOSSIER_LIST, {"idh": citizen.id_hash})
    if verdict.locked_until is not None:
        return Frame(Screen.MY_LOCKED, {"until": verdict.locked_until.isoformat()})
    return Notice(T.PIN_WRONG, {"tries": verdict.tries_left})


@content(Screen.MY_LOCKED)
async def locked(ctx: HopContext, lang: str, args: Mapping[str, Any]) -> Content[Target]:
    until = dt.datetime.fromisoformat(args["until"]).astimezone(ctx.tz) if args.get("until") else ctx.now
    body = text(lang, T.PIN_LOCKED, time=until.strftime("%H:%M"), date=until.strftime("%d/%m"))
    return Content(text(lang, T.MAIN_MY_DOSSIERS), body=body, end=True)


@content(Screen.MY_NOT_REGISTERED)
async def not_registered(ctx: HopContext, lang: str, args: Mapping[str, Any]) -> Content[Target]:
    items = (Item(text(lang, T.MY_REGISTER), Frame(Screen.REGISTER)),)
    return Content(text(lang, T.MAIN_MY_DOSSIERS), body=text(lang, T.MY_NOT_REGISTERED), items=items)


@content(Screen.MY_NO_PIN)
async def no_pin(ctx: HopContext, lang: str, args: Mapping[str, Any]) -> Content[Target]:
    items = (Item(text(lang, T.MY_SET_PIN), Frame(Screen.REGISTER)),)  # entry 2 sets a first PIN
    return Content(text(lang, T.MAIN_MY_DOSSIERS), body=text(lang, T.MY_NO_PIN), items=items)


@content(Screen.MY_DOSSIER_LIST)
async def my_dossier_list(ctx: HopContext, lang: str, args: Mapping[str, Any]) -> Content[Target]:
    # Reached only through the PIN (``typed_pin``), which put the citizen's ID hash here.
    id_hash = args.get("idh")
    found = await ctx.directory.dossiers_of(ctx.phone, id_hash)
    title = text(lang, T.MY_DOSSIERS_TITLE, count=len(found))
    if not found:
        return Content(title, body=text(lang, T.MY_DOSSIERS_EMPTY))
    items = tuple(
        Item(
            text(lang, T.MY_DOSSIER_ITEM, date=d.received_at.astimezone(ctx.tz).strftime("%d/%m/%y"),
                 procedure=clip_echo(d.procedure_name.get(lang), LIST_LABEL_PROCEDURE)),
            Frame(Screen.LOOKUP_RESULT, {"id": d.id, "idh": id_hash}),
        )
        for d in found
    )
    return Content(title, items=items)


# Help > delete my data -----------------------------------------------------------------

@on_enter(Screen.DELETE_DATA)
async def delete_entry(ctx: HopContext, lang: str, args: Mapping[str, Any]) -> Frame | Outcome:
    if not await _citizens(ctx).has_data(ctx.uow.tx, ctx.phone):
        return Frame(Screen.DELETE_NOTHING)
    return Outcome(None)


@content(Screen.DELETE_DATA)
async def delete_data(ctx: HopContext, lang: str, args: Mapping[str, Any]) -> Content[Target]:
    items = (Item(text(lang, T.DELETE_SEND), Frame(Screen.DELETE_OTP)),)
    return Content(text(lang, T.DELETE_TITLE), body=text(lang, T.DELETE_EXPLAIN), items=items)


@content(Screen.DELETE_DONE)
async def deleted(ctx: HopContext, lang: str, args: Mapping[str, Any]) -> Content[Target]:
    return Content(text(lang, T.DELETE_TITLE), body=text(lang, T.DELETE_DONE), end=True)


@content(Screen.DELETE_NOTHING)
async def nothing_to_delete(ctx: HopContext, lang: str, args: Mapping[str, Any]) -> Content[Target]:
    return Content(text(lang, T.DELETE_TITLE), body=text(lang, T.DELETE_NOTHING), end=True)
