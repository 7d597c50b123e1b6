"""SMS text preparation for the commune gateway: encoding, length and segmentation.

Vietnamese diacritics are outside the GSM-7 default alphabet (3GPP TS 23.038),
so a single accented letter forces UCS-2 and cuts a message from 160 to 70
characters (153 -> 67 per part when concatenated).  This module decides how a
message is sent (:func:`prepare`), strips Vietnamese accents to plain ASCII
(:func:`unaccent`), and counts and splits messages exactly as an SMSC would
(:func:`units`, :func:`count_parts`, :func:`split_parts`).
"""

from __future__ import annotations

import enum
import unicodedata
from dataclasses import dataclass


class Encoding(str, enum.Enum):
    """SMS data coding: GSM-7 default alphabet or UCS-2 (UTF-16)."""

    GSM7 = "gsm7"
    UCS2 = "ucs2"


class Policy(str, enum.Enum):
    """How :func:`prepare` treats characters outside GSM-7.

    UNACCENT: always strip to GSM-7 (the default for citizen SMS).
    UNICODE:  send the text as written (UCS-2 unless it already is GSM-7).
    AUTO:     keep diacritics when that costs no more parts than unaccenting.
    """

    UNACCENT = "unaccent"
    UNICODE = "unicode"
    AUTO = "auto"


# 3GPP TS 23.038 default alphabet, in table order (0x1B ESC is not a character).
GSM7_BASIC: frozenset[str] = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
# Extension table: each is sent as ESC + char and costs two septets.
GSM7_EXTENSION: frozenset[str] = frozenset("\f^{}\\[~]|€")

# (single-part limit, per-part limit when concatenated), in units.
_LIMITS = {Encoding.GSM7: (160, 153), Encoding.UCS2: (70, 67)}

# Applied before decomposition: letters NFD cannot strip, and typography.
_PRE = str.maketrans(
    {
        "đ": "d",
        "Đ": "D",
        "Ð": "D",  # U+00D0 (Eth), a common stand-in for Đ from legacy fonts
        **dict.fromkeys("‘’‚‛′", "'"),
        **dict.fromkeys("“”„‟″«»", '"'),
        **dict.fromkeys("‐‑‒–—―−", "-"),
        "…": "...",
        **dict.fromkeys("\t\u00a0\u2002\u2003\u2007\u2009\u200a\u202f", " "),
        **dict.fromkeys("\u00ad\u200b\u200c\u200d\u2060\ufeff"),  # invisible
    }
)


def unaccent(text: str) -> str:
    """Return *text* as plain GSM-7, stripping Vietnamese diacritics to ASCII.

    Decomposes (NFD) and drops every combining mark, so multi-mark letters
    such as ặ, Ữ, ự come out as a, U, u; maps đ/Đ to d/D and common
    typography (curly quotes, dashes, ellipsis, odd spaces) to ASCII.  Latin
    letters that GSM-7 does contain but that collide with Vietnamese tones
    (é, è, à, ...) are stripped too.  Anything still outside GSM-7 becomes '?'.
    """
    decomposed = unicodedata.normalize("NFD", text.translate(_PRE))
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    # Recompose so e.g. a Hangul syllable becomes one '?' rather than three.
    return "".join(
        c if c in GSM7_BASIC or c in GSM7_EXTENSION else "?"
        for c in unicodedata.normalize("NFC", stripped)
    )


# ASCII characters that are not one-septet GSM-7: the extension ones cost two, the rest
# (backtick, DEL, most control characters) are not in the alphabet at all.
_ASCII_EXTENSION = frozenset(c for c in GSM7_EXTENSION if c.isascii())
_ASCII_NOT_BASIC = frozenset(chr(i) for i in range(128)) - GSM7_BASIC - _ASCII_EXTENSION


def is_gsm7(text: str) -> bool:
    """True if every character is in the GSM-7 basic or extension table."""
    return all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text)


def _cost(char: str, encoding: Encoding) -> int:
    """Units one code point costs: septets (GSM-7) or UTF-16 code units (UCS-2)."""
    if encoding is Encoding.UCS2:
        return 2 if ord(char) > 0xFFFF else 1
    if char in GSM7_BASIC:
        return 1
    if char in GSM7_EXTENSION:
        return 2
    raise ValueError(f"{char!r} (U+{ord(char):04X}) is not in the GSM-7 alphabet")


def units(text: str, encoding: Encoding) -> int:
    """Length of *text* in septets (extension chars count 2) or UTF-16 code units.

    Raises ValueError for GSM-7 if *text* contains a non-GSM-7 character.
    """
    if encoding is Encoding.UCS2:
        return len(text) + sum(1 for c in text if ord(c) > 0xFFFF) if not text.isascii() else len(text)
    # Fast path for what screens mostly are: printable ASCII without GSM-7 oddities.
    if text.isascii() and not _ASCII_NOT_BASIC.intersection(text):
        return len(text) + sum(text.count(c) for c in _ASCII_EXTENSION if c in text)
    return sum(_cost(c, encoding) for c in text)


def split_parts(text: str, encoding: Encoding) -> list[str]:
    """Split *text* into the segments of a concatenated SMS.

    Text within the single-part limit (160 septets / 70 code units, including
    the empty string) is one part; otherwise parts are filled greedily up to
    153 / 67 units.  Splitting per code point means a GSM-7 escape pair or a
    UTF-16 surrogate pair is never cut, so ``"".join(parts) == text``.
    """
    single, per_part = _LIMITS[encoding]
    costs = [_cost(c, encoding) for c in text]
    if sum(costs) <= single:
        return [text]
    parts: list[str] = []
    start = used = 0
    for i, cost in enumerate(costs):
        if used + cost > per_part:
            parts.append(text[start:i])
            start, used = i, 0
        used += cost
    parts.append(text[start:])
    return parts


def count_parts(text: str, encoding: Encoding) -> int:
    """Number of SMS parts needed for *text*; an empty message is 1 part.

    May exceed ``ceil(units / 153)`` (or ``/ 67``) when an escape or surrogate
    pair would straddle a part boundary; always equals ``len(split_parts())``.
    """
    return len(split_parts(text, encoding))


@dataclass(frozen=True, slots=True)
class SmsText:
    """A message ready to send: final text, its encoding, part and unit counts."""

    text: str
    encoding: Encoding
    parts: int
    units: int

    @classmethod
    def of(cls, text: str, encoding: Encoding) -> SmsText:
        """Measure *text* in *encoding*."""
        return cls(text, encoding, count_parts(text, encoding), units(text, encoding))


def prepare(text: str, policy: Policy = Policy.UNACCENT) -> SmsText:
    """Choose the text and encoding to send *text* under *policy*.

    UNACCENT: ``unaccent(text)``, always GSM-7.
    UNICODE:  the text as written; GSM-7 if it already is GSM-7, else UCS-2.
    AUTO:     GSM-7 as written if possible; otherwise UCS-2 with diacritics if
              that needs no more parts than the unaccented GSM-7 text, else the
              unaccented text.
    UNICODE and AUTO normalise to NFC first: decomposed input (as some
    Vietnamese keyboards produce) renders the same but costs up to three
    UCS-2 units per letter.
    """
    policy = Policy(policy)
    if policy is Policy.UNACCENT:
        return SmsText.of(unaccent(text), Encoding.GSM7)
    text = unicodedata.normalize("NFC", text)
    if is_gsm7(text):
        return SmsText.of(text, Encoding.GSM7)
    as_written = SmsText.of(text, Encoding.UCS2)
    if policy is Policy.UNICODE:
        return as_written
    stripped = SmsText.of(unaccent(text), Encoding.GSM7)
    return as_written if as_written.parts <= stripped.parts else stripped


def fit_parts(message: SmsText, max_parts: int, marker: str) -> SmsText:
    """*message* cut to at most *max_parts* parts, ending in *marker* when it was cut.

    The cut falls on a word boundary where one is near (within a fifth of the kept text),
    so a reply never ends mid-word. *marker* must be representable in the message's
    encoding (the catalogue's markers are ASCII).
    """
    if message.parts <= max_parts:
        return message
    kept = "".join(split_parts(message.text, message.encoding)[:max_parts])
    while kept:
        candidate = kept.rstrip() + marker
        if count_parts(candidate, message.encoding) <= max_parts:
            break
        kept = kept[:-max(len(marker) // 2, 1)]
    space = kept.rstrip().rfind(" ")
    if space > len(kept) * 4 // 5:
        kept = kept[:space]
    return SmsText.of(kept.rstrip() + marker, message.encoding)
