"""Applying effects inside a unit of work: one handler per effect type, checked at start.

``Services`` holds the domain services a unit of work may call (the outbox writer, phone
preferences, and the services of later features). ``apply`` runs each effect's handler
with the unit of work's transaction, in order; an exception rolls the whole unit back.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Awaitable, Callable, Iterable

from models.effects import DeletePersonalData, Effect, SendSms, SetNotifications
from models.entities import SmsKind, SmsStatus
from models.fastsql import Tx
from models.outbox import OutboxWriter

Handler = Callable[[Tx, Any, dt.datetime], Awaitable[None]]

_PREFERENCE_INSERT = (
    "INSERT INTO phone_preference (phone_key, notifications_off, updated_at) VALUES (?,?,?)"
    " ON CONFLICT (phone_key) DO UPDATE SET notifications_off=excluded.notifications_off,"
    " updated_at=excluded.updated_at"
)
_CANCEL_WAITING = (
    "UPDATE outbound_sms SET status=?, last_error=? WHERE to_phone=? AND status=? AND kind IN ({kinds})"
)
_NOT_ESSENTIAL = [kind.value for kind in SmsKind if not kind.essential]


class Services:
    def __init__(self, outbox: OutboxWriter, phone_key: Callable[[str], str],
                 on_sms_queued: Callable[[], None] = lambda: None) -> None:
        self.outbox = outbox
        # The features' services, set by the edge that builds this (gateway.services).
        self.otp: Any = None
        self.citizens: Any = None
        self.dossiers: Any = None  # models.dossiers.DossierService
        self.clerks: Any = None  # models.clerks.ClerkService
        self.desk: Any = None  # models.desk_actions.DeskActions: what clerks do, on every channel
        self._phone_key = phone_key
        self._on_sms_queued = on_sms_queued
        self._handlers: dict[type, Handler] = {
            SendSms: self._send_sms,
            SetNotifications: self._set_notifications,
            DeletePersonalData: self._delete_personal_data,
        }

    def register(self, effect_type: type, handler: Handler) -> None:
        """A feature's own effect and the service that applies it."""
        self._handlers[effect_type] = handler

    def wake_if_written(self, since: int) -> None:
        """After a commit: wake the dispatcher if the unit of work wrote an SMS (an effect's,
        or an OTP a step sent), so it goes now rather than at the next poll."""
        if self.outbox.written != since:
            self._on_sms_queued()

    def check(self) -> None:
        """Every effect type has its handler (the app calls this once everything registered)."""
        # By name: a dataclass with slots is a second class object, beside the first one.
        handled = {_name(cls) for cls in self._handlers}
        missing = sorted({_name(cls) for cls in _effect_types()} - handled)
        if missing:
            raise TypeError(f"effects without a handler: {missing}")

    async def apply(self, tx: Tx, effects: Iterable[Effect], now: dt.datetime) -> None:
        for effect in effects:
            await self._handlers[type(effect)](tx, effect, now)

    async def _send_sms(self, tx: Tx, effect: SendSms, now: dt.datetime) -> None:
        await self.outbox.enqueue(
            tx, effect.to, effect.text, effect.kind, now,
            urgent=effect.urgent, ttl_seconds=effect.ttl_seconds, lang=effect.lang,
        )

    async def _set_notifications(self, tx: Tx, effect: SetNotifications, now: dt.datetime) -> None:
        key = self._phone_key(effect.phone)
        await tx.fetch(_PREFERENCE_INSERT, (key, not effect.on, now))
        if not effect.on:
            # What is already waiting (held for quiet hours, or for a retry) is not sent either.
            marks = ",".join("?" * len(_NOT_ESSENTIAL))
            await tx.fetch(_CANCEL_WAITING.format(kinds=marks), (
                SmsStatus.FAILED.value, "recipient opted out", effect.phone, SmsStatus.QUEUED.value, *_NOT_ESSENTIAL,
            ))

    async def _delete_personal_data(self, tx: Tx, effect: DeletePersonalData, now: dt.datetime) -> None:
        await self.citizens.delete(tx, effect.phone, effect.channel, now)


def _effect_types() -> list[type]:
    found, todo = [], list(Effect.__subclasses__())
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo += cls.__subclasses__()
    return found


def _name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


class UnitOfWork:
    """One hop's or one text's transaction, with the services that may act in it. A step
    that must know the outcome of a change to answer (was the code right? is the PIN
    locked?) calls a service through ``services`` with ``tx``; anything else it returns
    as effects, applied by the edge after the session write."""

    __slots__ = ("tx", "services", "now")

    def __init__(self, tx: Tx, services: Services, now: dt.datetime) -> None:
        self.tx = tx
        self.services = services
        self.now = now

    async def apply(self, effects: Iterable[Effect]) -> None:
        await self.services.apply(self.tx, effects, self.now)
