"""Dossier codes (ma ho so): normalising what citizens type and splitting out the keypad tail.

National format ``AAA.BB.CC.Pnn-YYMMDD-NNNN`` (agency, date received, daily sequence);
some systems use an 8-digit date and a longer sequence (``G09.20-20260609-0092637``).
The *tail* is the date and sequence digits run together (``2105310001``): it is what a
keypad user can type, resolved within the agency behind the dialled USSD code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_CODE_RE = re.compile(r"^(?P<agency>[0-9A-Z]+(?:\.[0-9A-Z]+)*)-(?P<date>\d{6}|\d{8})-(?P<seq>\d{4,8})$")
_TAIL_RE = re.compile(r"^\d{10,16}$")


@dataclass(frozen=True, slots=True)
class DossierCode:
    agency: str
    date: str
    sequence: str

    @property
    def text(self) -> str:
        return f"{self.agency}-{self.date}-{self.sequence}"

    @property
    def tail(self) -> str:
        return self.date + self.sequence


def normalize(raw: str) -> str:
    """Upper-case with all white space removed; keypad-friendly separators left alone."""
    return "".join(raw.split()).upper()


# The column's width: no longer text is a code, and none is worth normalising.
MAX_LENGTH = 64


def parse(raw: str) -> DossierCode | None:
    """A full dossier code, or None when the text is not one."""
    if len(raw) > 4 * MAX_LENGTH:  # spaces are forgiven, not unbounded work
        return None
    code = normalize(raw)
    match = _CODE_RE.match(code) if len(code) <= MAX_LENGTH else None
    if not match:
        return None
    return DossierCode(match["agency"], match["date"], match["seq"])


def parse_tail(raw: str) -> str | None:
    """The digits-only tail (10 to 16 digits), or None."""
    if len(raw) > 4 * MAX_LENGTH:
        return None
    text = normalize(raw)
    return text if _TAIL_RE.match(text) else None
