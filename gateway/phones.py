"""Vietnamese mobile numbers: parse any common spelling to E.164, mask for logs, key for storage.

Carrier prefixes are deliberately ignored: numbers are portable, so nothing here routes by them.
"""

from __future__ import annotations

import functools
import hashlib
import hmac

import re

import phonenumbers
from phonenumbers import PhoneMetadata, PhoneNumberType

_MOBILE_TYPES = {PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE}

# The spellings one-stop systems and aggregators send nearly always: 0XXXXXXXXX, 84XXXXXXXXX,
# +84XXXXXXXXX. For those, the national number is checked against phonenumbers' own VN
# metadata (its general and mobile patterns) without a full parse, a tenth of the cost:
# a sync batch checks a thousand numbers. Only a match is taken from here; anything else
# goes through ``phonenumbers.parse``, and tests/test_phones.py checks both agree.
_VN = PhoneMetadata.metadata_for_region("VN")
_PLAIN = re.compile(r"(?:0|\+?84)(\d{9})")
_VN_NUMBER = re.compile(_VN.general_desc.national_number_pattern)
_VN_MOBILE = re.compile(_VN.mobile.national_number_pattern)


# The longest spelling worth parsing ("+84 (0) 987 542 228" and the like). Anything longer
# is refused before the cache, so a caller cannot fill it with huge keys.
MAX_RAW_LENGTH = 32


def normalize_msisdn(raw: str | None) -> str | None:
    """E.164 (``+84987542228``) for a valid Vietnamese mobile number, else None.

    Accepts ``0987542228``, ``84987542228``, ``+84 987 542 228``, ``0987.542.228``.
    """
    if not raw or not isinstance(raw, str) or len(raw) > MAX_RAW_LENGTH:
        return None
    return _normalize(raw)


@functools.lru_cache(maxsize=4096)  # parsing costs ~50 us; a worker sees the same callers hop after hop
def _normalize(raw: str) -> str | None:
    text = raw.strip()
    plain = _PLAIN.fullmatch(text)
    if plain is not None:
        national = plain.group(1)
        if _VN_NUMBER.fullmatch(national) and _VN_MOBILE.fullmatch(national):
            return "+84" + national
    return _parsed(text)


def _parsed(text: str) -> str | None:
    digits = "".join(ch for ch in text if ch.isdigit())
    # Aggregators often send 84XXXXXXXXX without the plus sign.
    if not text.startswith("+") and digits.startswith("84") and len(digits) == 11:
        text = "+" + digits
    try:
        number = phonenumbers.parse(text, "VN")
    except phonenumbers.NumberParseException:
        return None
    if number.country_code != 84 or not phonenumbers.is_valid_number(number):
        return None
    if phonenumbers.number_type(number) not in _MOBILE_TYPES:
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def mask(e164: str | None) -> str:
    """A log-safe form that keeps only what helps support: ``+8498*****28``."""
    if not e164:
        return "-"
    if len(e164) <= 6:
        return "*" * len(e164)
    return e164[:5] + "*" * (len(e164) - 7) + e164[-2:]


@functools.lru_cache(maxsize=4096)
def phone_key(e164: str, secret_key: str) -> str:
    """A keyed hash of a number, so sessions can be found by phone without storing it."""
    return hmac.new(secret_key.encode(), e164.encode(), hashlib.sha256).hexdigest()

