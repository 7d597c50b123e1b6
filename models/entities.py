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
    # Keyed hash of the applicant's ID number, when the one-stop system gave it: matches the
    # dossier to a registered citizen ("my dossiers") without storing the number.
    applicant_id_hash = fields.CharField(max_length=64, null=True)
    status = fields.IntEnumField(DossierStatus)
    status_note = fields.CharField(max_length=300, default="")
    received_at = fields.DatetimeField()
    due_at = fields.DatetimeField(null=True)
    fee_due = fields.IntField(default=0)  # VND still to pay at pickup
    pickup_place = fields.CharField(max_length=300, default="")
    mode = fields.CharEnumField(FilingMode, max_length=16, default=FilingMode.PARTIAL)
    updated_at = fields.DatetimeField(auto_now=True)
    # When the one-stop system says the current status took effect: an event older than
    # this is recorded but does not move the dossier back.
    state_at = fields.DatetimeField(null=True)
    # Reminders sent since the result was ready (status 9); reset when it is ready again.
    reminders_sent = fields.IntField(default=0)

    class Meta:
        table = "dossier"
        # AddIndex, not db_index on the field: AddField does not create a field's index.
        indexes = (("applicant_id_hash",),)


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


class Citizen(Model):
    """A registered citizen. Only what the service needs: the phone as a keyed hash (every
    request brings the number itself), the ID number as a keyed hash plus its last three
    digits for display, the name as typed (for greeting), and the PIN as a slow salted hash."""

    id = fields.BigIntField(primary_key=True)
    phone_key = fields.CharField(max_length=64, unique=True)
    id_hash = fields.CharField(max_length=64, db_index=True)
    id_last3 = fields.CharField(max_length=3)
    name = fields.CharField(max_length=60)
    lang = fields.CharField(max_length=2, default="vi")
    pin_hash = fields.CharField(max_length=200, null=True)
    pin_failures = fields.IntField(default=0)
    pin_locked_until = fields.DatetimeField(null=True)
    registered_at = fields.DatetimeField()
    updated_at = fields.DatetimeField()

    class Meta:
        table = "citizen"


class OtpChallenge(Model):
    """One OTP sent to a phone for one purpose. The code is kept only as a keyed hash."""

    id = fields.BigIntField(primary_key=True)
    public_id = fields.CharField(max_length=40, unique=True)  # what the portal's API sees
    phone_key = fields.CharField(max_length=64)
    purpose = fields.CharField(max_length=24)
    code_hash = fields.CharField(max_length=64)
    # pending | approved | expired | canceled | failed (too many wrong codes)
    status = fields.CharField(max_length=12, default="pending")
    checks = fields.IntField(default=0)
    api_client_id = fields.BigIntField(null=True)
    created_at = fields.DatetimeField()
    expires_at = fields.DatetimeField()
    resend_after = fields.DatetimeField()
    decided_at = fields.DatetimeField(null=True)

    class Meta:
        table = "otp_challenge"
        indexes = (("phone_key", "purpose", "status"), ("created_at",))


class RateCounter(Model):
    """A count of events in one fixed window (OTPs per phone per hour, per minute overall),
    raised with one atomic upsert so that limits hold across workers."""

    id = fields.BigIntField(primary_key=True)
    scope = fields.CharField(max_length=100)
    window_start = fields.DatetimeField()
    count = fields.IntField(default=0)

    class Meta:
        table = "rate_counter"
        unique_together = (("scope", "window_start"),)
        indexes = (("window_start",),)


class ApiClient(Model):
    """A system allowed to call /api/v1 (the provincial portal, a one-stop system).
    The key is shown once when made; only its SHA-256 is kept."""

    id = fields.BigIntField(primary_key=True)
    name = fields.CharField(max_length=80, unique=True)
    key_prefix = fields.CharField(max_length=12)
    key_hash = fields.CharField(max_length=64, unique=True)
    scopes = fields.CharField(max_length=200)  # space separated: "otp", "sync", ...
    active = fields.BooleanField(default=True)
    created_at = fields.DatetimeField()

    class Meta:
        table = "api_client"


class SmsRegistration(Model):
    """A registration started by SMS (DK ...), waiting for consent (DONG Y) and then the OTP."""

    id = fields.BigIntField(primary_key=True)
    phone_key = fields.CharField(max_length=64, unique=True)
    id_hash = fields.CharField(max_length=64)
    id_last3 = fields.CharField(max_length=3)
    name = fields.CharField(max_length=60)
    lang = fields.CharField(max_length=2, default="vi")
    stage = fields.CharField(max_length=12)  # consent | otp
    created_at = fields.DatetimeField()
    expires_at = fields.DatetimeField()

    class Meta:
        table = "sms_registration"


class DeletionAudit(Model):
    """That a citizen's data was deleted on request, and when and how: nothing that says who."""

    id = fields.BigIntField(primary_key=True)
    deleted_at = fields.DatetimeField()
    channel = fields.CharField(max_length=8)  # ussd | sms
    removed = fields.CharField(max_length=200)  # what went, e.g. "citizen,pin,preferences"

    class Meta:
        table = "deletion_audit"


class ApiClientAgency(Model):
    """An agency whose dossiers an API client (a one-stop system) may create and change."""

    id = fields.BigIntField(primary_key=True)
    api_client: fields.ForeignKeyRelation[ApiClient] = fields.ForeignKeyField(
        "models.ApiClient", related_name="agencies", on_delete=fields.CASCADE
    )
    agency: fields.ForeignKeyRelation[Agency] = fields.ForeignKeyField(
        "models.Agency", related_name="api_clients", on_delete=fields.CASCADE
    )

    class Meta:
        table = "api_client_agency"
        unique_together = (("api_client", "agency"),)


class DossierEvent(Model):
    """A status change a one-stop system pushed, by its own event id: a replay is a no-op
    (the unique key settles two workers receiving it at once)."""

    id = fields.BigIntField(primary_key=True)
    api_client_id = fields.BigIntField()
    event_id = fields.CharField(max_length=64)
    dossier: fields.ForeignKeyRelation[Dossier] = fields.ForeignKeyField(
        "models.Dossier", related_name="events", on_delete=fields.CASCADE
    )
    status = fields.IntEnumField(DossierStatus)
    occurred_at = fields.DatetimeField()
    received_at = fields.DatetimeField()
    # applied | unchanged (the dossier was already so) | stale (older than the dossier's state)
    outcome = fields.CharField(max_length=12)

    class Meta:
        table = "dossier_event"
        unique_together = (("api_client_id", "event_id"),)
        indexes = (("received_at",),)  # the purger's range


class DossierNotification(Model):
    """An SMS the gateway meant to send the applicant about a dossier: the outbox row it
    wrote (queued, sent, delivered: read there), or why it sent none."""

    id = fields.BigIntField(primary_key=True)
    dossier: fields.ForeignKeyRelation[Dossier] = fields.ForeignKeyField(
        "models.Dossier", related_name="notifications", on_delete=fields.CASCADE
    )
    kind = fields.CharEnumField(SmsKind, max_length=16)
    status = fields.IntEnumField(DossierStatus)  # the dossier's status it told
    outbound_sms_id = fields.BigIntField(null=True)
    skipped = fields.CharField(max_length=120, default="")  # why no SMS, when none
    created_at = fields.DatetimeField()

    class Meta:
        table = "dossier_notification"
        indexes = (("dossier_id", "created_at"), ("outbound_sms_id",), ("created_at",))  # the last: the purger's


class PostalRequest(Model):
    """An applicant asked (BUUDIEN <code>) for a "toan trinh" result by post."""

    id = fields.BigIntField(primary_key=True)
    dossier: fields.OneToOneRelation[Dossier] = fields.OneToOneField(
        "models.Dossier", related_name="postal_request", on_delete=fields.CASCADE
    )
    channel = fields.CharField(max_length=8)  # sms | ussd
    status = fields.CharField(max_length=12, default="waiting")  # waiting | handled
    requested_at = fields.DatetimeField()
    handled_at = fields.DatetimeField(null=True)

    class Meta:
        table = "postal_request"
        indexes = (("status", "requested_at"),)


class Clerk(Model):
    """A clerk of one or more agencies, or an admin (role). The password as a slow hash."""

    id = fields.BigIntField(primary_key=True)
    login = fields.CharField(max_length=40, unique=True)
    name = fields.CharField(max_length=80)
    # The clerk's own work phone, for SMS commands (XONG, TRA, GUI LAI): E.164, and its
    # keyed hash for the lookup by sender.
    phone = fields.CharField(max_length=16, null=True)
    phone_key = fields.CharField(max_length=64, null=True, unique=True)
    role = fields.CharField(max_length=8, default="clerk")  # clerk | admin
    password_hash = fields.CharField(max_length=200)
    must_change_password = fields.BooleanField(default=True)
    failed_logins = fields.IntField(default=0)
    locked_until = fields.DatetimeField(null=True)
    active = fields.BooleanField(default=True)
    created_at = fields.DatetimeField()
    last_login_at = fields.DatetimeField(null=True)

    class Meta:
        table = "clerk"


class ClerkAgency(Model):
    id = fields.BigIntField(primary_key=True)
    clerk: fields.ForeignKeyRelation[Clerk] = fields.ForeignKeyField(
        "models.Clerk", related_name="agencies", on_delete=fields.CASCADE
    )
    agency: fields.ForeignKeyRelation[Agency] = fields.ForeignKeyField(
        "models.Agency", related_name="clerks", on_delete=fields.CASCADE
    )

    class Meta:
        table = "clerk_agency"
        unique_together = (("clerk", "agency"),)


class ClerkSession(Model):
    """A console login: the cookie carries the session id, only its hash is kept, so logout
    and idle expiry end it on the server too."""

    id = fields.BigIntField(primary_key=True)
    clerk: fields.ForeignKeyRelation[Clerk] = fields.ForeignKeyField(
        "models.Clerk", related_name="sessions", on_delete=fields.CASCADE
    )
    sid_hash = fields.CharField(max_length=64, unique=True)
    created_at = fields.DatetimeField()
    last_seen_at = fields.DatetimeField()
    ended = fields.BooleanField(default=False)

    class Meta:
        table = "clerk_session"
        indexes = (("last_seen_at",),)


class ClerkToken(Model):
    """A clerk's bearer token for /api/v1, shown once: only its SHA-256 is kept."""

    id = fields.BigIntField(primary_key=True)
    clerk: fields.ForeignKeyRelation[Clerk] = fields.ForeignKeyField(
        "models.Clerk", related_name="tokens", on_delete=fields.CASCADE
    )
    token_prefix = fields.CharField(max_length=12)
    token_hash = fields.CharField(max_length=64, unique=True)
    created_at = fields.DatetimeField()
    revoked = fields.BooleanField(default=False)

    class Meta:
        table = "clerk_token"


class AuditLog(Model):
    """Who did what, when, from which channel. Never a citizen's phone or ID in clear:
    the target is a dossier code, a clerk login or an account id."""

    id = fields.BigIntField(primary_key=True)
    at = fields.DatetimeField()
    clerk_id = fields.BigIntField(null=True)  # null: the CLI or the system
    actor = fields.CharField(max_length=40)  # the clerk's login, "cli", "system"
    channel = fields.CharField(max_length=8)  # console | api | sms | cli
    action = fields.CharField(max_length=40)  # login, login_failed, alert_sent, status_changed, ...
    target = fields.CharField(max_length=80, default="")
    detail = fields.CharField(max_length=300, default="")

    class Meta:
        table = "audit_log"
        indexes = (("at",), ("clerk_id", "at"))
