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
