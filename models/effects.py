"""Effects: the changes a USSD step or an SMS keyword asks for, as plain values.

Menus are pure: a step reads through the read port and returns its reply, its new state
and these effects. The edge applies them (``models.unit_of_work.apply``) inside the same
transaction as the session write or the inbound record, so a hop or a text changes all it
asked for or nothing, and a retried hop, answered from the stored reply, repeats none.
Adding an effect is one dataclass here and one handler in ``models.unit_of_work``.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.entities import SmsKind


class Effect:
    """Base of every effect (a marker: handlers are looked up by type)."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class SendSms(Effect):
    to: str  # E.164
    text: str
    kind: SmsKind
    lang: str
    urgent: bool = False
    ttl_seconds: int | None = None


@dataclass(frozen=True, slots=True)
class SetNotifications(Effect):
    """HUY / DK TB: non-essential SMS to this phone off or on; off also cancels what waits."""

    phone: str  # E.164
    on: bool


@dataclass(frozen=True, slots=True)
class DeletePersonalData(Effect):
    """A confirmed request to delete one's data (XOA, or the menu): the citizen row, the
    preferences and any registration by SMS go; an anonymous audit row stays."""

    phone: str  # E.164
    channel: str  # ussd | sms
