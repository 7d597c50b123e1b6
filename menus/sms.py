"""SMS keyword commands: what a citizen's text means, and the answer.

Keywords forgive case, diacritics, extra spaces and separators (``hs:000...``, ``Hs.``,
``Tra cứu``). English keywords get English answers. The router reads through the same
``Directory`` port as the USSD menu and writes nothing: an opt-out or opt-in is returned
as an effect (``models.effects``) for the caller to apply in the same transaction as the
reply.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from models.sms_text import unaccent
from menus.engine import HopContext, clip_echo
from menus.texts import T, text
from menus.ussd import procedure_text, status_sentences
from menus.views import ProcedureView
from models import dossier_code
from models.effects import Effect, SetNotifications


class Command(enum.Enum):
    STATUS = "status"
    PROCEDURE = "procedure"
    HELP = "help"
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"
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


def parse(message: str) -> Parsed:
    """Split a text into its keyword and argument."""
    normalized = unaccent(message).upper().strip(_SEPARATORS)
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
