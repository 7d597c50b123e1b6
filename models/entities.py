"""The domain tables: agencies, their procedures, dossiers with status history, USSD sessions.

Agency names and codes are data (communes were merged in 2025 and will be again), so
nothing in code names a commune. Dossier status uses the national portal's code list.
"""

from __future__ import annotations

import enum

from tortoise import fields
from tortoise.models import Model


class DossierStatus(enum.IntEnum):
    """The national portal's dossier status codes (DESIGN.md section 2)."""

    FILED = 1  # Moi dang ky
    RECEIVED = 2  # Duoc tiep nhan
    REFUSED = 3  # Khong duoc tiep nhan
    PROCESSING = 4  # Dang xu ly
    NEEDS_DOCUMENTS = 5  # Yeu cau bo sung giay to
    NEEDS_PAYMENT = 6  # Yeu cau thuc hien nghia vu tai chinh
    WITHDRAWN = 7  # Cong dan yeu cau rut ho so
    STOPPED = 8  # Dung xu ly
    READY = 9  # Da xu ly xong: result ready for pickup
    DELIVERED = 10  # Da tra ket qua

    @property
    def is_open(self) -> bool:
        """Still with the commune: a due date applies and it can be overdue."""
        return self in (
            DossierStatus.FILED,
            DossierStatus.RECEIVED,
            DossierStatus.PROCESSING,
            DossierStatus.NEEDS_DOCUMENTS,
            DossierStatus.NEEDS_PAYMENT,
        )


class FilingMode(str, enum.Enum):
    """Online service level since Decree 42/2022."""

    PARTIAL = "mot_phan"  # file online, pay and collect in person
    FULL = "toan_trinh"  # also pay online, result by post or online


class Agency(Model):
    id = fields.IntField(primary_key=True)
    code = fields.CharField(max_length=40, unique=True)
    name = fields.CharField(max_length=200)
    address = fields.CharField(max_length=300)
    desk_hours = fields.CharField(max_length=200)
    desk_hours_en = fields.CharField(max_length=200)
    hotline = fields.CharField(max_length=20)
    # The USSD code citizens dial for this agency, e.g. "*384#".
    service_code = fields.CharField(max_length=32, null=True, unique=True)
    # The number citizens send SMS keywords to, e.g. "8088".
    sms_number = fields.CharField(max_length=20, null=True, unique=True)

    class Meta:
        table = "agency"


class Procedure(Model):
    id = fields.IntField(primary_key=True)
    agency: fields.ForeignKeyRelation[Agency] = fields.ForeignKeyField(
        "models.Agency", related_name="procedures", on_delete=fields.CASCADE
    )
    code = fields.CharField(max_length=40)
    position = fields.IntField(default=0)
    name = fields.CharField(max_length=200)
    name_en = fields.CharField(max_length=200)
    processing_time = fields.CharField(max_length=200)
    processing_time_en = fields.CharField(max_length=200)
    fee = fields.CharField(max_length=300)
    fee_en = fields.CharField(max_length=300)
    documents = fields.TextField()
    documents_en = fields.TextField()

    class Meta:
        table = "procedure"
        unique_together = (("agency", "code"),)


class Dossier(Model):
    id = fields.IntField(primary_key=True)
    # Normalised national code, e.g. "000.17.22.H56-210531-0001".
    code = fields.CharField(max_length=64, unique=True)
    # Digits of the date and sequence ("2105310001"): what a keypad user can type.
    tail = fields.CharField(max_length=24, db_index=True)
    agency: fields.ForeignKeyRelation[Agency] = fields.ForeignKeyField(
        "models.Agency", related_name="dossiers", on_delete=fields.RESTRICT
    )
    procedure: fields.ForeignKeyRelation[Procedure] = fields.ForeignKeyField(
        "models.Procedure", related_name="dossiers", on_delete=fields.RESTRICT
    )
    applicant_name = fields.CharField(max_length=120)
    applicant_phone = fields.CharField(max_length=16, db_index=True)  # E.164
    status = fields.IntEnumField(DossierStatus)
    status_note = fields.CharField(max_length=300, default="")
    received_at = fields.DatetimeField()
    due_at = fields.DatetimeField(null=True)
    fee_due = fields.IntField(default=0)  # VND still to pay at pickup
    pickup_place = fields.CharField(max_length=300, default="")
    mode = fields.CharEnumField(FilingMode, max_length=16, default=FilingMode.PARTIAL)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "dossier"


class DossierStatusChange(Model):
    id = fields.IntField(primary_key=True)
    dossier: fields.ForeignKeyRelation[Dossier] = fields.ForeignKeyField(
        "models.Dossier", related_name="status_changes", on_delete=fields.CASCADE
    )
    old_status = fields.IntEnumField(DossierStatus, null=True)
    new_status = fields.IntEnumField(DossierStatus)
    note = fields.CharField(max_length=300, default="")
    changed_at = fields.DatetimeField()
    source = fields.CharField(max_length=40, default="")

    class Meta:
        table = "dossier_status_change"


class UssdSession(Model):
    """One USSD dialogue. Shared through the database so any worker can serve any hop."""

    id = fields.BigIntField(primary_key=True)
    channel = fields.CharField(max_length=16)
    external_id = fields.CharField(max_length=128)
    # HMAC of the caller's number: enough to offer "continue" on redial, not the number itself.
    phone_key = fields.CharField(max_length=64, db_index=True)
    state = fields.JSONField()
    hops = fields.IntField(default=0)
    # What the aggregator sent last (cumulative text or hop id) and what we answered, for retries.
    last_request = fields.TextField(default="")
    last_reply = fields.TextField(default="")
    ended = fields.BooleanField(default=False)
    created_at = fields.DatetimeField()
    updated_at = fields.DatetimeField()

    class Meta:
        table = "ussd_session"
        unique_together = (("channel", "external_id"),)
        indexes = (("updated_at",),)  # retention purges by it


class SmsKind(str, enum.Enum):
    """Why a message is sent; decides whether opt-out and quiet hours apply."""

    OTP = "otp"  # urgent and essential
    REPLY = "reply"  # an answer to the citizen's own message: essential
    STATUS = "status"  # a dossier changed
    PICKUP = "pickup"  # result ready to collect
    REMINDER = "reminder"
    INFO = "info"

    @property
    def essential(self) -> bool:
        """Sent even to a phone that asked to stop notifications, and even in quiet hours:
        an OTP, or the answer to a text the citizen has just sent."""
        return self in (SmsKind.OTP, SmsKind.REPLY)


class SmsStatus(str, enum.Enum):
    QUEUED = "queued"  # waiting for a dispatcher (maybe for quiet hours or a retry)
    SENDING = "sending"  # claimed by a dispatcher
    SENT = "sent"  # accepted by the provider
    DELIVERED = "delivered"  # the phone got it (delivery report)
    FAILED = "failed"  # gave up: permanent error, too many attempts, or failed delivery
    EXPIRED = "expired"  # stale before it could be sent


class OutboundSms(Model):
    """The outbox: every SMS the gateway sends, written in the transaction that caused it."""

    id = fields.BigIntField(primary_key=True)
    to_phone = fields.CharField(max_length=16)  # E.164, needed to send
    text = fields.TextField()  # as it goes on the air (prepared for the encoding)
    encoding = fields.CharField(max_length=8)
    parts = fields.IntField()
    kind = fields.CharEnumField(SmsKind, max_length=16)
    urgent = fields.BooleanField(default=False)
    status = fields.CharEnumField(SmsStatus, max_length=16, default=SmsStatus.QUEUED)
    attempts = fields.IntField(default=0)
    next_attempt_at = fields.DatetimeField()
    expires_at = fields.DatetimeField()
    claimed_by = fields.CharField(max_length=64, null=True)
    claimed_until = fields.DatetimeField(null=True)
    transport = fields.CharField(max_length=16, default="")
    provider_id = fields.CharField(max_length=128, null=True, db_index=True)
    last_error = fields.CharField(max_length=300, default="")
    created_at = fields.DatetimeField()
    sent_at = fields.DatetimeField(null=True)
    delivered_at = fields.DatetimeField(null=True)

    class Meta:
        table = "outbound_sms"
        indexes = (("status", "next_attempt_at"), ("created_at",))  # the second for retention


class InboundSms(Model):
    """A message received, kept only to drop duplicates: no number, no text."""

    id = fields.BigIntField(primary_key=True)
    transport = fields.CharField(max_length=16)
    provider_id = fields.CharField(max_length=128, null=True)
    phone_key = fields.CharField(max_length=64)
    text_digest = fields.CharField(max_length=64)
    keyword = fields.CharField(max_length=16, default="")
    received_at = fields.DatetimeField()

    class Meta:
        table = "inbound_sms"
        unique_together = (("transport", "provider_id"),)
        indexes = (("phone_key", "text_digest", "received_at"), ("received_at",))  # the second for retention


class PhonePreference(Model):
    """A phone's choices, keyed by the HMAC of its number: notifications on or off."""

    id = fields.IntField(primary_key=True)
    phone_key = fields.CharField(max_length=64, unique=True)
    notifications_off = fields.BooleanField(default=False)
    updated_at = fields.DatetimeField()

    class Meta:
        table = "phone_preference"


class InboundFingerprint(Model):
    """The last time a phone's text (normalised) opened an answer: the duplicate window.

    One row per phone and text. A message claims it with one atomic upsert that succeeds
    only when the row is new or older than the window, so concurrent copies of one text
    (distinct provider ids, or none) get exactly one answer on every database.
    """

    id = fields.BigIntField(primary_key=True)
    phone_key = fields.CharField(max_length=64)
    text_digest = fields.CharField(max_length=64)
    seen_at = fields.DatetimeField(db_index=True)

    class Meta:
        table = "inbound_fingerprint"
        unique_together = (("phone_key", "text_digest"),)


class Lease(Model):
    """A named job only one process may run at a time (the purger, the dispatcher),
    held until ``expires_at`` and renewed by its holder."""

    name = fields.CharField(max_length=40, primary_key=True)
    holder = fields.CharField(max_length=80)
    expires_at = fields.DatetimeField()

    class Meta:
        table = "lease"
