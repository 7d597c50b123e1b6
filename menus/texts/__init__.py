"""Citizen-facing texts: one catalogue per language, keyed by the ``T`` symbols.

Both catalogues are checked when this module loads: every key present in each, the
same placeholders in each, plain ASCII only (unaccented Vietnamese keeps a screen or an
SMS in GSM-7). A missing or misspelt text fails at import, not in front of a citizen.
"""

from __future__ import annotations

import enum
import string
from typing import Any, Mapping

LANGUAGES = ("vi", "en")


class T(enum.Enum):
    MAIN_TITLE = enum.auto()
    MAIN_LOOKUP = enum.auto()
    MAIN_REGISTER = enum.auto()
    MAIN_MY_DOSSIERS = enum.auto()
    MAIN_PROCEDURES = enum.auto()
    MAIN_PICKUP = enum.auto()
    MAIN_HELP = enum.auto()
    MAIN_LANGUAGE = enum.auto()
    NAV_PREV = enum.auto()
    NAV_NEXT = enum.auto()
    NAV_BACK = enum.auto()
    NAV_HOME = enum.auto()
    INVALID_CHOICE = enum.auto()
    GOODBYE = enum.auto()
    SORRY_ERROR = enum.auto()
    SESSION_EXPIRED = enum.auto()
    SORRY_TOO_LONG = enum.auto()
    SMS_CUT = enum.auto()
    RESUME_TITLE = enum.auto()
    RESUME_CONTINUE = enum.auto()
    RESUME_RESTART = enum.auto()
    LOOKUP_PROMPT = enum.auto()
    LOOKUP_BAD_CODE = enum.auto()
    LOOKUP_NOT_FOUND = enum.auto()
    LOOKUP_NEED_FULL_CODE = enum.auto()
    LOOKUP_CHOOSE_TITLE = enum.auto()
    LOOKUP_CHOOSE_ITEM = enum.auto()
    RESULT_CODE = enum.auto()
    RESULT_STATUS = enum.auto()
    RESULT_APPLICANT = enum.auto()
    RESULT_DUE = enum.auto()
    RESULT_OVERDUE = enum.auto()
    RESULT_REASON = enum.auto()
    RESULT_CALL = enum.auto()
    RESULT_MISSING_DOCS = enum.auto()
    RESULT_MISSING_DOCS_PUBLIC = enum.auto()
    RESULT_FEE = enum.auto()
    RESULT_PICKUP = enum.auto()
    RESULT_PICKUP_FEE = enum.auto()
    RESULT_DELIVERY_FULL = enum.auto()
    RESULT_PRIVATE_HINT = enum.auto()
    STATUS_1 = enum.auto()
    STATUS_2 = enum.auto()
    STATUS_3 = enum.auto()
    STATUS_4 = enum.auto()
    STATUS_5 = enum.auto()
    STATUS_6 = enum.auto()
    STATUS_7 = enum.auto()
    STATUS_8 = enum.auto()
    STATUS_9 = enum.auto()
    STATUS_10 = enum.auto()
    FEE_FREE = enum.auto()
    FEE_AMOUNT = enum.auto()
    PROCEDURES_TITLE = enum.auto()
    PROCEDURES_EMPTY = enum.auto()
    PROCEDURE_DETAIL = enum.auto()
    PICKUP_INFO = enum.auto()
    HELP_INFO = enum.auto()
    HELP_SMS_ITEM = enum.auto()
    HELP_SMS_INFO = enum.auto()
    SMS_HELP = enum.auto()
    SMS_UNKNOWN = enum.auto()
    SMS_STATUS_NEED_CODE = enum.auto()
    SMS_NOT_FOUND = enum.auto()
    SMS_SEVERAL = enum.auto()
    SMS_NEED_FULL_CODE = enum.auto()
    SMS_PROCEDURE_NEED_NAME = enum.auto()
    SMS_PROCEDURE_NOT_FOUND = enum.auto()
    SMS_OPTED_OUT = enum.auto()
    SMS_OPTED_IN = enum.auto()
    OTP_SMS = enum.auto()
    OTP_FOR_REGISTER = enum.auto()
    OTP_FOR_PIN_RESET = enum.auto()
    OTP_FOR_DELETE_DATA = enum.auto()
    OTP_FOR_PORTAL = enum.auto()
    # Registration, PIN, my dossiers, deleting one's data (menus.registration)
    CONSENT_BODY = enum.auto()
    CONSENT_AGREE = enum.auto()
    CONSENT_DECLINE = enum.auto()
    REGISTER_DECLINED = enum.auto()
    REGISTER_ID_PROMPT = enum.auto()
    REGISTER_NAME_PROMPT = enum.auto()
    REGISTER_BIRTH_PROMPT = enum.auto()
    REGISTER_DONE = enum.auto()
    REGISTER_ALREADY = enum.auto()
    REGISTER_SMS = enum.auto()
    REASON_ID_FORMAT = enum.auto()
    REASON_ID_PROVINCE = enum.auto()
    REASON_ID_BIRTH_YEAR = enum.auto()
    REASON_NAME_LENGTH = enum.auto()
    REASON_NAME_CHARACTERS = enum.auto()
    REASON_BIRTH_FORMAT = enum.auto()
    REASON_BIRTH_NOT_A_DATE = enum.auto()
    REASON_BIRTH_FUTURE = enum.auto()
    REASON_BIRTH_TOO_EARLY = enum.auto()
    REASON_PIN_FORMAT = enum.auto()
    REASON_PIN_SAME_DIGITS = enum.auto()
    REASON_PIN_SEQUENCE = enum.auto()
    REASON_PIN_REPEATED = enum.auto()
    REASON_PIN_BIRTH_DATE = enum.auto()
    OTP_TITLE = enum.auto()
    OTP_PROMPT = enum.auto()
    OTP_PROMPT_GONE = enum.auto()
    OTP_FORMAT = enum.auto()
    OTP_WRONG = enum.auto()
    OTP_EXPIRED = enum.auto()
    OTP_FAILED = enum.auto()
    OTP_RESENT = enum.auto()
    OTP_RESEND_WAIT = enum.auto()
    OTP_LIMITED = enum.auto()
    PIN_TITLE = enum.auto()
    PIN_CREATE_PROMPT = enum.auto()
    PIN_NEW_PROMPT = enum.auto()
    PIN_AGAIN_PROMPT = enum.auto()
    PIN_MISMATCH = enum.auto()
    PIN_SET_DONE = enum.auto()
    PIN_SET_SMS = enum.auto()
    PIN_RESET_OFFER = enum.auto()
    PIN_RESET_SEND = enum.auto()
    MY_PIN_PROMPT = enum.auto()
    PIN_WRONG = enum.auto()
    PIN_LOCKED = enum.auto()
    MY_NOT_REGISTERED = enum.auto()
    MY_REGISTER = enum.auto()
    MY_NO_PIN = enum.auto()
    MY_SET_PIN = enum.auto()
    MY_DOSSIERS_TITLE = enum.auto()
    MY_DOSSIERS_EMPTY = enum.auto()
    MY_DOSSIER_ITEM = enum.auto()
    DELETE_MENU_ITEM = enum.auto()
    DELETE_TITLE = enum.auto()
    DELETE_EXPLAIN = enum.auto()
    DELETE_SEND = enum.auto()
    DELETE_NOTHING = enum.auto()
    DELETE_DONE = enum.auto()
    DELETE_SMS = enum.auto()
    SMS_REGISTER_HOWTO = enum.auto()
    SMS_REGISTER_REFUSED = enum.auto()
    SMS_REGISTER_CONSENT = enum.auto()
    SMS_ALREADY_REGISTERED = enum.auto()
    SMS_NO_REGISTRATION = enum.auto()
    SMS_NEED_CONSENT = enum.auto()
    SMS_OTP_SENT = enum.auto()
    SMS_CODE_NEEDED = enum.auto()
    SMS_CODE_WRONG = enum.auto()
    SMS_CODE_EXPIRED = enum.auto()
    SMS_CODE_FAILED = enum.auto()
    SMS_CODE_WAIT = enum.auto()
    SMS_CODE_LIMITED = enum.auto()
    SMS_REGISTERED = enum.auto()
    SMS_DELETE_CODE_SENT = enum.auto()
    SMS_DELETE_HINT = enum.auto()


def _catalogues() -> dict[str, Mapping[T, str]]:
    from menus.texts import en, vi

    return {"vi": vi.TEXTS, "en": en.TEXTS}


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def _check(catalogues: Mapping[str, Mapping[T, str]]) -> None:
    reference = catalogues["vi"]
    for lang, texts in catalogues.items():
        missing = set(T) - set(texts)
        if missing:
            raise ImportError(f"text catalogue {lang!r} lacks {sorted(k.name for k in missing)}")
        for key, text in texts.items():
            if not text.isascii():
                raise ImportError(f"text {lang}.{key.name} is not plain ASCII: {text!r}")
            if _placeholders(text) != _placeholders(reference[key]):
                raise ImportError(f"text {lang}.{key.name} has other placeholders than vi")


CATALOGUES = _catalogues()
_check(CATALOGUES)


def text(lang: str, key: T, **values: Any) -> str:
    """The text for ``key`` in ``lang``, with its placeholders filled."""
    template = CATALOGUES[lang][key]
    return template.format(**values) if values else template
