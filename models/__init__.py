"""Tortoise ORM models of the gateway and the database setup."""

from models.entities import (
    Agency,
    Dossier,
    DossierStatus,
    DossierStatusChange,
    FilingMode,
    InboundFingerprint,
    InboundSms,
    Lease,
    OutboundSms,
    PhonePreference,
    Procedure,
    SmsKind,
    SmsStatus,
    UssdSession,
)

__all__ = [
    "Agency",
    "Dossier",
    "DossierStatus",
    "DossierStatusChange",
    "FilingMode",
    "InboundFingerprint",
    "InboundSms",
    "Lease",
    "OutboundSms",
    "PhonePreference",
    "Procedure",
    "SmsKind",
    "SmsStatus",
    "UssdSession",
]
