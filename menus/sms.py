"""SMS keyword commands: what a citizen's text means, and the answer.

Keywords forgive case, diacritics, extra spaces and separators (``hs:000...``, ``Hs.``,
``Tra cứu``). English keywords get English answers. The router reads through the same
``Directory`` port as the USSD menu; an opt-out, an opt-in or a deletion is returned as an
effect (``models.effects``) for the caller to apply in the same transaction as the reply.
Registration (``DK``, ``DONG Y``, ``OTP <code>`` or the bare code) and ``XOA`` call the
citizen and OTP services with the text's unit of work (``ctx.uow``), since their answer
depends on what those decide.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from models.sms_text import unaccent
from menus.engine import HopContext, clip_echo
from menus.registration import limited_wait, local_time, refusal_text, ussd_code
from menus.texts import T, text
from menus.ussd import postal_text, procedure_text, status_sentences
from menus.views import ProcedureView
from models import dossier_code, identity
from models.effects import DeletePersonalData, Effect, SetNotifications
from models.entities import DossierStatus, FilingMode
from models.identity import Refusal
from models.otp import OtpLimited, OtpPurpose


class Command(enum.Enum):
    STATUS = "status"
    PROCEDURE = "procedure"
    HELP = "help"
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"
    REGISTER = "register"  # DK <id number> <full name> <DDMMYYYY>
    CONSENT = "consent"  # DONG Y
    CODE = "code"  # OTP <code>, or the bare six digits
    DELETE = "delete"  # XOA, then XOA <code>
    POSTAL = "postal"  # BUUDIEN [<code>]: a "toan trinh" result by post
    # From a clerk's registered phone only; anyone else gets the citizen's answer.
    CLERK_READY = "clerk_ready"  # XONG <code>: ready (9), pickup alert
    CLERK_COLLECTED = "clerk_collected"  # TRA <code>: collected (10); a citizen's TRA <code> is a lookup
    CLERK_RESEND = "clerk_resend"  # GUI LAI <code>: the last alert again
    UNKNOWN = "unknown"


# keyword (after unaccenting, upper case; a space means "any spaces, or none"), command, language
KEYWORDS: list[tuple[str, Command, str]] = [
    ("TRA CUU", Command.STATUS, "vi"),
    ("HS", Command.STATUS, "vi"),
    ("STATUS", Command.STATUS, "en"),
    ("TT", Command.PROCEDURE, "vi"),
    ("INFO", Command.PROCEDURE, "en"),
    ("TG", Command.HELP, "vi"),
    ("HELP", Command.HELP, "en"),
    ("?", Command.HELP, "vi"),
    ("HUY", Command.OPT_OUT, "vi"),
    ("STOP", Command.OPT_OUT, "en"),
    ("DK TB", Command.OPT_IN, "vi"),
    ("START", Command.OPT_IN, "en"),
    ("DK", Command.REGISTER, "vi"),  # after "DK TB" (longest first): "DK TB" stays the opt-in
    ("DONG Y", Command.CONSENT, "vi"),
    ("OTP", Command.CODE, "vi"),
    ("XOA", Command.DELETE, "vi"),
    ("BUU DIEN", Command.POSTAL, "vi"),
    ("XONG", Command.CLERK_READY, "vi"),
    ("TRA", Command.CLERK_COLLECTED, "vi"),  # after "TRA CUU" (longest first)
    ("GUI LAI", Command.CLERK_RESEND, "vi"),
    ("POST", Command.POSTAL, "en"),
]
_SEPARATORS = " \t\r\n:.,;-_/#*="
_PATTERNS = [
    (re.compile("^" + r"\s*".join(re.escape(word) for word in keyword.split()) + r"(?![A-Z])"), command, lang)
    for keyword, command, lang in sorted(KEYWORDS, key=lambda k: -len(k[0]))
]


@dataclass(frozen=True, slots=True)
class Parsed:
    command: Command
    argument: str
    lang: str


_BARE_CODE = re.compile(r"^\d{6}$")


def parse(message: str) -> Parsed:
    """Split a text into its keyword and argument."""
    normalized = unaccent(message).upper().strip(_SEPARATORS)
    if _BARE_CODE.match(normalized):  # the code alone, as the registration SMS invites
        return Parsed(Command.CODE, normalized, "vi")
    for pattern, command, lang in _PATTERNS:
        match = pattern.match(normalized)
        if match:
            argument = normalized[match.end():].strip(_SEPARATORS)
            return Parsed(command, argument, lang)
    return Parsed(Command.UNKNOWN, normalized, "vi")


@dataclass(frozen=True, slots=True)
class Answer:
    reply: str
    command: Command
    lang: str
    effects: tuple[Effect, ...] = ()


async def answer(ctx: HopContext, message: str) -> Answer:
    """The reply to one incoming text (and the effect to apply, if any)."""
    parsed = parse(message)
    lang = parsed.lang
    if parsed.command in _CLERK_COMMANDS:
        clerk = await ctx.uow.services.clerks.by_phone(ctx.uow.tx, ctx.phone) if ctx.uow is not None else None
        if clerk is not None:
            return Answer(await _clerk_command(ctx, clerk, parsed), parsed.command, lang)
        # Not a clerk's phone: nothing privileged, the citizen's answer.
        parsed = Parsed(Command.STATUS if parsed.command is Command.CLERK_COLLECTED else Command.UNKNOWN,
                        parsed.argument, lang)
    hotline = ctx.agency.hotline if ctx.agency else ""
    agency_name = ctx.agency.name if ctx.agency else ""
    if parsed.command is Command.STATUS:
        reply = await _status(ctx, lang, parsed.argument, hotline)
    elif parsed.command is Command.PROCEDURE:
        reply = await _procedure(ctx, lang, parsed.argument)
    elif parsed.command is Command.HELP:
        reply = text(lang, T.SMS_HELP, agency=agency_name, hotline=hotline)
    elif parsed.command is Command.OPT_OUT:
        return Answer(text(lang, T.SMS_OPTED_OUT), parsed.command, lang, (SetNotifications(ctx.phone, on=False),))
    elif parsed.command is Command.OPT_IN:
        return Answer(text(lang, T.SMS_OPTED_IN), parsed.command, lang, (SetNotifications(ctx.phone, on=True),))
    elif parsed.command is Command.REGISTER:
        reply = await _register(ctx, lang, message)
    elif parsed.command is Command.CONSENT:
        reply = await _consent(ctx, lang)
    elif parsed.command is Command.CODE:
        reply = await _registration_code(ctx, lang, parsed.argument)
    elif parsed.command is Command.DELETE:
        return await _delete(ctx, lang, parsed.argument)
    elif parsed.command is Command.POSTAL:
        reply = await _postal(ctx, lang, parsed.argument)
    else:
        reply = text(lang, T.SMS_UNKNOWN)
    return Answer(reply, parsed.command, lang)


# What people write between the keyword and the code: "Tra cuu ho so ...", "HS ma ...".
_FILLER = re.compile(r"^(?:MA\b[\s:.]*)?(?:HO\s*SO\b[\s:.]*)?(?:MA\b[\s:.]*)?(?:SO\b[\s:.]*)?")


async def _status(ctx: HopContext, lang: str, argument: str, hotline: str) -> str:
    argument = _FILLER.sub("", argument)
    if not argument:
        return text(lang, T.SMS_STATUS_NEED_CODE)
    code = dossier_code.parse(argument)
    if code is not None:
        dossier = await ctx.directory.dossier_by_code(code.text)
        if dossier is None:
            return text(lang, T.SMS_NOT_FOUND, code=code.text, hotline=hotline)
        matches = [dossier]
    else:
        tail = dossier_code.parse_tail(argument)
        if tail is None:
            return text(lang, T.SMS_STATUS_NEED_CODE)
        if ctx.agency is None:
            return text(lang, T.SMS_NEED_FULL_CODE)
        matches = await ctx.directory.dossiers_by_tail(ctx.agency.id, tail)
        if not matches:
            return text(lang, T.SMS_NOT_FOUND, code=tail, hotline=hotline)
        if len(matches) > 1:
            return text(lang, T.SMS_SEVERAL, count=len(matches), tail=tail, example=matches[0].code)
    dossier = matches[0]
    return " ".join([text(lang, T.RESULT_CODE, code=dossier.code) + ":", *status_sentences(ctx, lang, dossier)])


_CLERK_COMMANDS = (Command.CLERK_READY, Command.CLERK_COLLECTED, Command.CLERK_RESEND)


async def _clerk_command(ctx: HopContext, clerk, parsed: Parsed) -> str:
    """XONG / TRA / GUI LAI from a clerk's phone, within the clerk's agencies, audited."""
    from models.audit import Actor
    from models.desk_actions import Verdict

    lang = parsed.lang
    query = _FILLER.sub("", parsed.argument)
    if not query:
        return text(lang, T.SMS_CLERK_NEED_CODE)
    desk, tx, actor = ctx.uow.services.desk, ctx.uow.tx, Actor(clerk.id, clerk.login, "sms")
    if parsed.command is Command.CLERK_READY:
        result = await desk.mark_ready(tx, clerk.scope, actor, query, ctx.now)
    elif parsed.command is Command.CLERK_COLLECTED:
        result = await desk.mark_collected(tx, clerk.scope, actor, query, ctx.now)
    else:
        result = await desk.resend(tx, clerk.scope, actor, query, ctx.now)
    shown = clip_echo(query)
    if result.verdict is Verdict.UNKNOWN:
        return text(lang, T.SMS_CLERK_UNKNOWN, query=shown)
    if result.verdict is Verdict.AMBIGUOUS:
        return text(lang, T.SMS_CLERK_AMBIGUOUS, query=shown)
    if result.verdict is Verdict.OTHER_AGENCY:
        return text(lang, T.SMS_CLERK_OTHER_AGENCY, code=result.code)
    if result.verdict is Verdict.ALREADY_COLLECTED:
        return text(lang, T.SMS_CLERK_ALREADY_COLLECTED, code=result.code)
    notified = result.notified
    if notified is not None and notified.sms_id is None:
        status = text(lang, T.STATUS_10 if parsed.command is Command.CLERK_COLLECTED else T.STATUS_9)
        return text(lang, T.SMS_CLERK_READY_SKIPPED, code=result.code, status=status, reason=notified.skipped)
    parts = notified.parts if notified is not None else 0
    if parsed.command is Command.CLERK_COLLECTED:
        return text(lang, T.SMS_CLERK_COLLECTED, code=result.code)
    if parsed.command is Command.CLERK_RESEND or result.verdict is Verdict.SENT and notified is None:
        return text(lang, T.SMS_CLERK_RESENT, code=result.code, parts=parts)
    return text(lang, T.SMS_CLERK_READY, code=result.code, parts=parts)


async def _postal(ctx: HopContext, lang: str, argument: str) -> str:
    """BUUDIEN <code or tail>, or BUUDIEN alone when the sender has one result waiting
    that may go by post (what the pickup SMS invites)."""
    argument = _FILLER.sub("", argument)
    if argument:
        code = dossier_code.parse(argument)
        if code is not None:
            found = await ctx.directory.dossier_by_code(code.text)
            matches = [found] if found else []
        else:
            tail = dossier_code.parse_tail(argument)
            if tail is None or ctx.agency is None:
                return text(lang, T.SMS_POSTAL_NEED_CODE)
            matches = await ctx.directory.dossiers_by_tail(ctx.agency.id, tail)
            # A shared tail: the sender's own dossier is the one meant.
            matches = [d for d in matches if d.applicant_phone == ctx.phone] or matches[:1]
        if not matches:
            return text(lang, T.SMS_NOT_FOUND, code=clip_echo(argument), hotline=ctx.agency.hotline if ctx.agency else "")
    else:
        mine = await ctx.directory.dossiers_of(ctx.phone, None)
        matches = [d for d in mine if d.status is DossierStatus.READY and d.mode is FilingMode.FULL
                   and d.applicant_phone == ctx.phone]
        if len(matches) != 1:
            return text(lang, T.SMS_POSTAL_NEED_CODE)
    dossier = matches[0]
    outcome = await ctx.uow.services.dossiers.request_postal(ctx.uow.tx, dossier.id, ctx.phone, "sms", ctx.now)
    return postal_text(lang, outcome.value, dossier.code)


def _words(value: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", unaccent(value).lower()))


async def _procedure(ctx: HopContext, lang: str, argument: str) -> str:
    if not argument or ctx.agency is None:
        return text(lang, T.SMS_PROCEDURE_NEED_NAME)
    wanted = _words(argument)
    best: ProcedureView | None = None
    best_score = 0
    for procedure in await ctx.directory.procedures(ctx.agency.id):
        score = max(len(wanted & _words(procedure.name.vi)), len(wanted & _words(procedure.name.en)))
        if score > best_score:
            best, best_score = procedure, score
    if best is None:
        return text(lang, T.SMS_PROCEDURE_NOT_FOUND, query=clip_echo(argument.lower()))
    return procedure_text(lang, best)


# Registration by SMS: DK, DONG Y, the code; deleting one's data: XOA, XOA <code> ---------

@dataclass(frozen=True, slots=True)
class RegistrationFields:
    id_number: str
    name: str  # as typed, accents kept
    birth: str


_CODE_LENGTH = 6
_TOKEN_EDGES = ",;:"
_DIGIT_SEPARATORS = re.compile(r"[./\-]")
_SEPARATED_DATE = re.compile(r"^\d{1,2}[/.\-]\d{1,2}[/.\-]\d{4}$")


def registration_fields(message: str) -> RegistrationFields | None:
    """The ID number, name and date of birth of ``DK ...``, in any order: the 9- or
    12-digit number (dots, dashes allowed), the date (DDMMYYYY or DD/MM/YYYY), and the
    words left are the name, kept as typed. None if the parts are not all there once."""
    tokens = message.lstrip(_SEPARATORS).split()
    if not tokens:
        return None
    first = tokens[0]
    cut = next((i for i in range(1, len(first) + 1) if unaccent(first[:i]).upper() == "DK"), None)
    if cut is None:
        return None
    rest = first[cut:].strip(_SEPARATORS)
    numbers: list[str] = []
    dates: list[str] = []
    words: list[str] = []
    for token in ([rest] if rest else []) + tokens[1:]:
        bare = token.strip(_TOKEN_EDGES)
        digits = _DIGIT_SEPARATORS.sub("", bare)
        if not bare:
            continue
        if digits.isascii() and digits.isdigit():
            (dates if _SEPARATED_DATE.match(bare) or len(digits) == 8 else numbers).append(bare)
        else:
            words.append(bare)
    if len(numbers) != 1 or len(dates) != 1 or not words:
        return None
    return RegistrationFields(numbers[0], " ".join(words), dates[0])


def _services(ctx: HopContext):
    return ctx.uow.services.citizens, ctx.uow.services.otp


def _code_of(argument: str) -> str | None:
    """The six digits of "OTP 123 456" / "XOA 123456"; None if there are not six."""
    digits = re.sub(r"[\s.\-]", "", argument)
    return digits if len(digits) == _CODE_LENGTH and digits.isdigit() else None


async def _register(ctx: HopContext, lang: str, message: str) -> str:
    fields = registration_fields(message)
    if fields is None:
        return text(lang, T.SMS_REGISTER_HOWTO)
    number = identity.parse_id_number(fields.id_number)
    birth = identity.parse_birth_date(fields.birth, ctx.now.astimezone(ctx.tz).date())
    name = identity.parse_name(fields.name)
    for checked in (number, birth):
        if isinstance(checked, Refusal):
            return text(lang, T.SMS_REGISTER_REFUSED, reason=refusal_text(lang, checked))
    mismatch = identity.check_id_birth(number, birth) or (name if isinstance(name, Refusal) else None)
    if mismatch is not None:
        return text(lang, T.SMS_REGISTER_REFUSED, reason=refusal_text(lang, mismatch))
    citizens, _ = _services(ctx)
    if await citizens.by_phone(ctx.uow.tx, ctx.phone) is not None:
        return text(lang, T.SMS_ALREADY_REGISTERED, code=ussd_code(ctx))
    # Nothing is a citizen yet: the registration waits for DONG Y, then the code.
    held = await citizens.start_sms_registration(
        ctx.uow.tx, ctx.phone, citizens.id_hash(number.digits), number.last3, name, lang, ctx.now)
    return text(lang, T.SMS_REGISTER_CONSENT, last3=held.id_last3, name=clip_echo(held.name, 30))


def _not_now(lang: str, exc: OtpLimited, again: str) -> str:
    unit, values = limited_wait(exc)
    if unit == "seconds":
        return text(lang, T.SMS_CODE_WAIT, again=again, **values)
    return text(lang, T.SMS_CODE_LIMITED, **values)


async def _consent(ctx: HopContext, lang: str) -> str:
    citizens, otp = _services(ctx)
    held = await citizens.sms_registration(ctx.uow.tx, ctx.phone, ctx.now)
    if held is None:
        return text(lang, T.SMS_NO_REGISTRATION)
    if await citizens.by_phone(ctx.uow.tx, ctx.phone) is not None:
        await citizens.finish_sms_registration(ctx.uow.tx, ctx.phone)
        return text(lang, T.SMS_ALREADY_REGISTERED, code=ussd_code(ctx))
    try:
        started = await otp.start(ctx.uow.tx, ctx.phone, OtpPurpose.REGISTER, held.lang, ctx.now)
        expires_at = started.expires_at
    except OtpLimited as exc:  # start wrote nothing
        live = await otp.pending(ctx.uow.tx, ctx.phone, OtpPurpose.REGISTER, ctx.now)
        if exc.reason != "resend" or live is None:
            return _not_now(lang, exc, "DONG Y")
        expires_at = live.expires_at  # the code sent a moment ago still works
    await citizens.set_sms_registration_stage(ctx.uow.tx, ctx.phone, "otp")
    return text(lang, T.SMS_OTP_SENT, time=local_time(ctx, expires_at))


async def _registration_code(ctx: HopContext, lang: str, argument: str) -> str:
    code = _code_of(argument)
    if code is None:
        return text(lang, T.SMS_CODE_NEEDED, keyword="OTP")
    citizens, otp = _services(ctx)
    held = await citizens.sms_registration(ctx.uow.tx, ctx.phone, ctx.now)
    if held is None:
        if await otp.pending(ctx.uow.tx, ctx.phone, OtpPurpose.DELETE_DATA, ctx.now) is not None:
            return text(lang, T.SMS_DELETE_HINT)  # deleting takes the word: XOA <code>
        return text(lang, T.SMS_NO_REGISTRATION)
    if held.stage != "otp":
        return text(lang, T.SMS_NEED_CONSENT)
    verdict = await otp.check(ctx.uow.tx, ctx.phone, OtpPurpose.REGISTER, code, ctx.now)
    if verdict.status == "approved" and await otp.consume(ctx.uow.tx, ctx.phone, OtpPurpose.REGISTER, ctx.now):
        await citizens.finish_sms_registration(ctx.uow.tx, ctx.phone)
        citizen = await citizens.register(
            ctx.uow.tx, ctx.phone, held.id_hash, held.id_last3, held.name, held.lang, ctx.now)
        if citizen is None:
            return text(lang, T.SMS_ALREADY_REGISTERED, code=ussd_code(ctx))
        return text(lang, T.SMS_REGISTERED, name=clip_echo(citizen.name, 30), code=ussd_code(ctx))
    return _verdict_text(lang, verdict, "OTP", "DONG Y")


def _verdict_text(lang: str, verdict, keyword: str, again: str) -> str:
    if verdict.status == "pending":
        return text(lang, T.SMS_CODE_WRONG, tries=verdict.tries_left, keyword=keyword)
    if verdict.status == "failed":
        return text(lang, T.SMS_CODE_FAILED, again=again)
    return text(lang, T.SMS_CODE_EXPIRED, again=again)


async def _delete(ctx: HopContext, lang: str, argument: str) -> Answer:
    citizens, otp = _services(ctx)
    code = _code_of(argument)
    if code is None and any(ch.isdigit() for ch in argument):
        return Answer(text(lang, T.SMS_CODE_NEEDED, keyword="XOA"), Command.DELETE, lang)
    if code is None:  # XOA (or XOA DU LIEU): send a code to confirm
        if not await citizens.has_data(ctx.uow.tx, ctx.phone):
            return Answer(text(lang, T.DELETE_NOTHING), Command.DELETE, lang)
        try:
            started = await otp.start(ctx.uow.tx, ctx.phone, OtpPurpose.DELETE_DATA, lang, ctx.now)
        except OtpLimited as exc:
            live = await otp.pending(ctx.uow.tx, ctx.phone, OtpPurpose.DELETE_DATA, ctx.now)
            if exc.reason != "resend" or live is None:
                return Answer(_not_now(lang, exc, "XOA"), Command.DELETE, lang)
            started = live
        return Answer(text(lang, T.SMS_DELETE_CODE_SENT, time=local_time(ctx, started.expires_at)), Command.DELETE, lang)
    verdict = await otp.check(ctx.uow.tx, ctx.phone, OtpPurpose.DELETE_DATA, code, ctx.now)
    if verdict.status == "approved" and await otp.consume(ctx.uow.tx, ctx.phone, OtpPurpose.DELETE_DATA, ctx.now):
        return Answer(text(lang, T.DELETE_SMS), Command.DELETE, lang, (DeletePersonalData(ctx.phone, "sms"),))
    return Answer(_verdict_text(lang, verdict, "XOA", "XOA"), Command.DELETE, lang)
