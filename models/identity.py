"""What a citizen types to register, checked: ID number, full name, date of birth, PIN.

Pure functions with no storage: each returns the clean value or a ``Refusal`` whose
``reason`` the menus turn into words ("ma tinh 099 khong ton tai", "nam sinh khong khop
so dinh danh"), so every wrong input is re-prompted with what was wrong.

Domain facts (DESIGN.md section 2):

- Legacy CMND: 9 digits. Personal ID / CCCD: 12 digits = 3-digit province code + 1 digit
  century and gender (0 male 1900s, 1 female 1900s, 2 male 2000s, 3 female 2000s, 4/5
  2100s, ...) + 2 digits of the birth year + 6 digits. No checksum.
- The province codes are the 63 of Circular 07/2016/TT-BCA (001 Ha Noi ... 096 Ca Mau);
  numbers issued before the 2025 mergers keep them, so the list is fixed, not data.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Mapping

from models.sms_text import unaccent

# Circular 07/2016/TT-BCA, annex: the province part of a 12-digit personal ID number.
PROVINCE_CODES = frozenset(
    """001 002 004 006 008 010 011 012 014 015 017 019 020 022 024 025 026 027 030 031 033
    034 035 036 037 038 040 042 044 045 046 048 049 051 052 054 056 058 060 062 064 066
    067 068 070 072 074 075 077 079 080 082 083 084 086 087 089 091 092 093 094 095 096""".split()
)
assert len(PROVINCE_CODES) == 63

NAME_MIN, NAME_MAX = 2, 60
EARLIEST_BIRTH = dt.date(1900, 1, 1)
PIN_LENGTH = 6


class Reason(enum.Enum):
    """Why an input was refused; each has its words in the menus' catalogues."""

    ID_FORMAT = "id_format"  # not 9 or 12 digits
    ID_PROVINCE = "id_province"  # values: province
    ID_BIRTH_YEAR = "id_birth_year"  # century/year digits do not match the date of birth
    NAME_LENGTH = "name_length"
    NAME_CHARACTERS = "name_characters"
    BIRTH_FORMAT = "birth_format"  # not DDMMYYYY
    BIRTH_NOT_A_DATE = "birth_not_a_date"  # 31022000
    BIRTH_FUTURE = "birth_future"  # today or later
    BIRTH_TOO_EARLY = "birth_too_early"  # before 1900
    PIN_FORMAT = "pin_format"  # not six digits
    PIN_SAME_DIGITS = "pin_same_digits"  # 000000, 777777
    PIN_SEQUENCE = "pin_sequence"  # 123456, 654321
    PIN_REPEATED = "pin_repeated"  # 121212, 123123
    PIN_BIRTH_DATE = "pin_birth_date"  # a form of the date of birth


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: Reason
    values: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class IdNumber:
    digits: str

    @property
    def is_personal_id(self) -> bool:
        """12 digits (CCCD / personal ID), not a 9-digit CMND."""
        return len(self.digits) == 12

    @property
    def last3(self) -> str:
        return self.digits[-3:]

    @property
    def birth_code(self) -> str | None:
        """Digits 4-6 of a personal ID: century/gender and year ("090" = a man born 1990)."""
        return self.digits[3:6] if self.is_personal_id else None


_ID_SEPARATORS = re.compile(r"[\s.\-]")


def parse_id_number(raw: str) -> IdNumber | Refusal:
    """A 9-digit CMND or a 12-digit personal ID (spaces, dots and dashes ignored)."""
    digits = _ID_SEPARATORS.sub("", raw or "")
    if not digits.isascii() or not digits.isdigit() or len(digits) not in (9, 12):
        return Refusal(Reason.ID_FORMAT)
    if len(digits) == 12 and digits[:3] not in PROVINCE_CODES:
        return Refusal(Reason.ID_PROVINCE, {"province": digits[:3]})
    if len(set(digits)) == 1:
        return Refusal(Reason.ID_FORMAT)  # 000000000: no card has it
    return IdNumber(digits)


def birth_codes(birth: dt.date) -> frozenset[str]:
    """The century/gender + year digits a personal ID of someone born on ``birth`` has,
    either gender: 1990 -> {"090", "190"}, 2003 -> {"203", "303"}."""
    century = birth.year // 100 - 19  # 0 for the 1900s, 1 for the 2000s, 2 for the 2100s
    year = f"{birth.year % 100:02d}"
    return frozenset({f"{2 * century}{year}", f"{2 * century + 1}{year}"})


def check_id_birth(number: IdNumber, birth: dt.date) -> Refusal | None:
    """A personal ID's century and year digits against the date of birth (a CMND has none)."""
    code = number.birth_code
    if code is not None and code not in birth_codes(birth):
        return Refusal(Reason.ID_BIRTH_YEAR)
    return None


_NAME_ALLOWED = re.compile(r"^[A-Za-z][A-Za-z '.\-]*$")


def parse_name(raw: str) -> str | Refusal:
    """The full name as typed (white space runs made one space), if it is a name:
    2-60 characters, letters (accented or not), spaces and ' - . only."""
    # NFC: a keyboard that types tones as combining marks spells the same name.
    name = unicodedata.normalize("NFC", " ".join((raw or "").split()))
    if not NAME_MIN <= len(name) <= NAME_MAX:
        return Refusal(Reason.NAME_LENGTH)
    plain = unaccent(name)
    if len(plain) != len(name) or not _NAME_ALLOWED.match(plain) or sum(c.isalpha() for c in plain) < 2:
        return Refusal(Reason.NAME_CHARACTERS)
    return name


_DATE_SEPARATED = re.compile(r"^(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{4})$", re.ASCII)


def parse_birth_date(raw: str, today: dt.date) -> dt.date | Refusal:
    """DDMMYYYY (or DD/MM/YYYY, DD.MM.YYYY, DD-MM-YYYY): a real date, before ``today``
    and not before 1900."""
    value = (raw or "").strip()
    separated = _DATE_SEPARATED.match(value)
    if separated:
        day, month, year = (int(part) for part in separated.groups())
    elif len(value) == 8 and value.isascii() and value.isdigit():
        day, month, year = int(value[:2]), int(value[2:4]), int(value[4:])
    else:
        return Refusal(Reason.BIRTH_FORMAT)
    try:
        birth = dt.date(year, month, day)
    except ValueError:
        return Refusal(Reason.BIRTH_NOT_A_DATE)
    if birth < EARLIEST_BIRTH:
        return Refusal(Reason.BIRTH_TOO_EARLY)
    if birth >= today:
        return Refusal(Reason.BIRTH_FUTURE)
    return birth


def birth_date_pins(birth: dt.date) -> frozenset[str]:
    """Every 6-digit PIN a date of birth suggests: DDMMYY, YYMMDD, MMDDYY, and each run of
    six digits inside DDMMYYYY, YYYYMMDD and MMDDYYYY (DDMM19, MMYYYY, YYYYMM, ...)."""
    dd, mm, yyyy = f"{birth.day:02d}", f"{birth.month:02d}", f"{birth.year:04d}"
    yy = yyyy[2:]
    found = {dd + mm + yy, yy + mm + dd, mm + dd + yy, yy + dd + mm}
    for long_form in (dd + mm + yyyy, yyyy + mm + dd, mm + dd + yyyy):
        found.update(long_form[i : i + PIN_LENGTH] for i in range(len(long_form) - PIN_LENGTH + 1))
    return frozenset(found)


def check_pin(pin: str, birth: dt.date | None = None) -> Refusal | None:
    """Six digits that are not trivial to guess; with ``birth``, not a form of it either."""
    if len(pin) != PIN_LENGTH or not pin.isascii() or not pin.isdigit():
        return Refusal(Reason.PIN_FORMAT)
    if len(set(pin)) == 1:
        return Refusal(Reason.PIN_SAME_DIGITS)
    steps = {int(b) - int(a) for a, b in zip(pin, pin[1:])}
    if steps in ({1}, {-1}):
        return Refusal(Reason.PIN_SEQUENCE)
    if pin[:2] * 3 == pin or pin[:3] * 2 == pin:
        return Refusal(Reason.PIN_REPEATED)
    if birth is not None and pin in birth_date_pins(birth):
        return Refusal(Reason.PIN_BIRTH_DATE)
    if birth is None and _reads_as_a_date(pin):
        # Without the date of birth (a PIN reset, a first PIN after SMS registration) no
        # PIN that reads as a date is taken: it might be the birth date.
        return Refusal(Reason.PIN_BIRTH_DATE)
    return None


def _reads_as_a_date(pin: str) -> bool:
    """DDMMYY, MMDDYY or YYMMDD naming a real calendar day."""
    for day, month in ((pin[0:2], pin[2:4]), (pin[2:4], pin[0:2]), (pin[4:6], pin[2:4])):
        d, m = int(day), int(month)
        if 1 <= m <= 12 and 1 <= d <= _DAYS_IN_MONTH[m - 1]:
            return True
    return False


_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)

