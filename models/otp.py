"""One-time codes sent by SMS, for the gateway's own journeys and for the portal's API.

BEING BUILT (issue 8): the interface below is what the menus, the SMS keywords and the
API call; the bodies come with the OTP service.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from typing import Callable

from models.fastsql import Tx
from models.outbox import OutboxWriter


class OtpPurpose(str, enum.Enum):
    REGISTER = "register"
    PIN_RESET = "pin_reset"
    DELETE_DATA = "delete_data"
    PORTAL = "portal"


@dataclass(frozen=True, slots=True)
class OtpStarted:
    public_id: str
    expires_at: dt.datetime
    resend_after: dt.datetime


@dataclass(frozen=True, slots=True)
class OtpVerdict:
    status: str  # approved | pending | expired | canceled | failed | none
    tries_left: int


class OtpLimited(Exception):
    """No new code now: ``reason`` resend | phone | global, and when to try again."""

    def __init__(self, reason: str, retry_after: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class OtpService:
    def __init__(
        self,
        settings,  # gateway.settings.OtpSettings (read by attribute)
        outbox: OutboxWriter,
        key: str,
        phone_key: Callable[[str], str],
        sms_text: Callable[[str, "OtpPurpose", str, int], str],  # (lang, purpose, code, minutes)
    ) -> None:
        self._settings = settings
        self._outbox = outbox
        self._key = key
        self._phone_key = phone_key
        self._sms_text = sms_text
