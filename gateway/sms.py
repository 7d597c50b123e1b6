"""Internal SMS types where transports (``gateway.providers``) and the gateway core meet.

A transport sends ``OutgoingSms`` and answers with a ``SendResult``; whatever comes back
from the network (a citizen's message, a delivery report) it hands to an ``SmsSink`` as
``IncomingSms`` or ``DeliveryReport``. HTTP-based providers also parse their inbound and
delivery-report webhooks into the same types (see ``gateway.providers``).
"""

from __future__ import annotations

import abc
import datetime as dt
import enum
from dataclasses import dataclass, field
from typing import Any, Protocol

from models.sms_text import Encoding


@dataclass(frozen=True, slots=True)
class OutgoingSms:
    id: int  # the outbox row id: the gateway's own message id
    to: str  # E.164
    text: str  # already prepared for ``encoding`` (unaccented for GSM-7)
    encoding: Encoding
    parts: int
    sender: str = ""  # sender id / short code; "" means the transport's default


class SendOutcome(str, enum.Enum):
    SENT = "sent"  # accepted by the provider / SMSC
    RETRY = "retry"  # transient failure: try again later
    THROTTLED = "throttled"  # the provider asks us to slow down: try again soon, no attempt used
    FAILED = "failed"  # permanent: never retry (invalid number, rejected content...)


@dataclass(frozen=True, slots=True)
class SendResult:
    outcome: SendOutcome
    provider_id: str | None = None  # the provider's message id, to match delivery reports
    error: str = ""


class DeliveryState(str, enum.Enum):
    QUEUED = "queued"  # queued at the provider / SMSC
    SENT = "sent"  # handed to the network (at the SMSC)
    DELIVERED = "delivered"  # reached the phone
    FAILED = "failed"  # will not reach the phone


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    state: DeliveryState
    message_id: int | None = None  # ours, when the provider echoes it (e.g. Kannel dlr-url)
    provider_id: str | None = None  # theirs, when that is what the report carries
    reason: str = ""


@dataclass(frozen=True, slots=True)
class IncomingSms:
    transport: str  # which adapter it came through ("kannel", "smpp", ...)
    sender: str  # E.164 of the citizen or clerk
    receiver: str  # the service number it was sent to
    text: str
    provider_id: str | None = None  # for dropping duplicates
    received_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc))


class SmsSink(Protocol):
    """Where a transport hands what the network sends back."""

    async def incoming(self, message: IncomingSms) -> None: ...

    async def report(self, report: DeliveryReport) -> None: ...


class SmsTransport(abc.ABC):
    """One outbound route to phones. Implementations live in ``gateway.providers``."""

    name: str

    async def start(self) -> None:
        """Connect (bind, open sessions). Called once before the first send."""

    async def close(self) -> None:
        """Disconnect cleanly."""

    def inbox(self, phone: str) -> list[Any] | None:
        """What was delivered to a phone, for transports that deliver locally (else None)."""
        return None

    @abc.abstractmethod
    async def send(self, message: OutgoingSms) -> SendResult:
        """Submit one message (all its parts). Never raises for network trouble: says RETRY."""
