"""Demo data: the Phuong Ky commune (Tu Ky, Hai Duong), its ten procedures, ~30 dossiers.

Figures are from the laws as summarised in DESIGN.md; a province verifies them locally.
Dates are relative to the day the seed runs so that "overdue" and "due soon" stay true.
Seeding is idempotent: it replaces the demo agencies' data and nothing else.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass

from tortoise.transactions import in_transaction

from models import dossier_code
from models.entities import Agency, Dossier, DossierStatus, DossierStatusChange, FilingMode, Procedure

DEMO_PHONE = "+84987542228"  # the commune hotline, also the simulator's default phone

PHUONG_KY = dict(
    code="000.32.22.H23",
    name="UBND xa Phuong Ky",
    address="Bo phan Mot cua, UBND xa Phuong Ky, huyen Tu Ky, Hai Duong",
    desk_hours="T2-T6 7h30-11h30, 13h30-17h; sang T7 7h30-11h30",
    desk_hours_en="Mon-Fri 7:30-11:30, 13:30-17:00; Sat 7:30-11:30",
    hotline="0987.542.228",
    service_code="*384#",
    sms_number="8088",
)
# A neighbour on another code: proves tail lookups stay within the dialled agency.
NEIGHBOUR = dict(
    code="000.33.22.H23",
    name="UBND xa Tan Ky",
    address="Bo phan Mot cua, UBND xa Tan Ky, huyen Tu Ky, Hai Duong",
    desk_hours="T2-T6 7h30-11h30, 13h30-17h",
    desk_hours_en="Mon-Fri 7:30-11:30, 13:30-17:00",
    hotline="0220.3747.123",
    service_code="*385#",
    sms_number="8089",
)


@dataclass(frozen=True)
class ProcedureSeed:
    code: str
    name: str
    name_en: str
    time: str
    time_en: str
    fee: str
    fee_en: str
    documents: str
    documents_en: str
    days: int  # working days used for demo due dates


PROCEDURES = [
    ProcedureSeed(
        "1.001193", "Dang ky khai sinh", "Birth registration",
        "Trong ngay (lien thong truc tuyen toi da 3 ngay lam viec)", "Same day (online bundle up to 3 working days)",
        "Mien phi neu dang ky dung han", "Free if registered on time",
        "To khai dang ky khai sinh; Giay chung sinh; CCCD cua cha hoac me; Giay chung nhan ket hon (neu co)",
        "Birth registration form; birth certificate from the hospital; a parent's ID card; marriage certificate (if any)",
        1,
    ),
    ProcedureSeed(
        "1.000894", "Dang ky ket hon", "Marriage registration",
        "Trong ngay; toi da 5 ngay lam viec neu can xac minh", "Same day; up to 5 working days if checks are needed",
        "Mien phi", "Free",
        "To khai dang ky ket hon; CCCD hai ben; Giay xac nhan tinh trang hon nhan (neu khac noi cu tru)",
        "Marriage registration form; both ID cards; marital status certificate (if resident elsewhere)",
        5,
    ),
    ProcedureSeed(
        "1.000656", "Dang ky khai tu", "Death registration",
        "Trong ngay; toi da 3 ngay lam viec neu can xac minh", "Same day; up to 3 working days if checks are needed",
        "Mien phi neu dang ky dung han", "Free if registered on time",
        "To khai dang ky khai tu; Giay bao tu hoac giay to thay the; CCCD nguoi di khai",
        "Death registration form; death notice or equivalent; ID card of the declarant",
        3,
    ),
    ProcedureSeed(
        "1.004873", "Xac nhan tinh trang hon nhan", "Marital status certificate",
        "3 ngay lam viec", "3 working days",
        "Theo quy dinh cua tinh", "Set by the province",
        "To khai cap Giay xac nhan tinh trang hon nhan; CCCD; ban an ly hon hoac giay chung tu (neu co)",
        "Application form; ID card; divorce ruling or death certificate of spouse (if any)",
        3,
    ),
    ProcedureSeed(
        "1.004859", "Thay doi, cai chinh ho tich", "Change or correction of civil status",
        "3 ngay lam viec", "3 working days",
        "Theo quy dinh cua tinh", "Set by the province",
        "To khai thay doi, cai chinh ho tich; giay to lien quan lam can cu; CCCD",
        "Application form; supporting documents; ID card",
        3,
    ),
    ProcedureSeed(
        "2.000635", "Cap ban sao trich luc ho tich", "Copy of civil status extract",
        "Trong ngay", "Same day",
        "8.000 d/ban sao", "8,000 VND per copy",
        "To khai cap ban sao trich luc; CCCD", "Application form; ID card",
        1,
    ),
    ProcedureSeed(
        "2.000815", "Chung thuc ban sao tu ban chinh", "Certified copy from original",
        "Trong ngay", "Same day",
        "2.000 d/trang; tu trang thu 3 la 1.000 d/trang; toi da 200.000 d/ban",
        "2,000 VND per page; 1,000 VND from page 3; at most 200,000 VND per copy",
        "Ban chinh va ban sao can chung thuc", "The original and the copies to certify",
        1,
    ),
    ProcedureSeed(
        "2.000884", "Chung thuc chu ky", "Signature certification",
        "Trong ngay", "Same day",
        "10.000 d/truong hop", "10,000 VND per case",
        "Giay to can chung thuc chu ky; CCCD nguoi ky (ky truoc mat can bo)",
        "The document to certify; ID card of the signer (sign in front of the officer)",
        1,
    ),
    ProcedureSeed(
        "1.004194", "Dang ky thuong tru", "Permanent residence registration",
        "7 ngay lam viec", "7 working days",
        "20.000 d (nop truc tuyen 10.000 d)", "20,000 VND (10,000 VND online)",
        "To khai thay doi thong tin cu tru; giay to chung minh cho o hop phap; CCCD",
        "Residence change form; proof of lawful residence; ID card",
        7,
    ),
    ProcedureSeed(
        "1.004222", "Dang ky tam tru", "Temporary residence registration",
        "3 ngay lam viec", "3 working days",
        "15.000 d (nop truc tuyen 7.000 d)", "15,000 VND (7,000 VND online)",
        "To khai thay doi thong tin cu tru; giay to chung minh cho o hop phap; CCCD",
        "Residence change form; proof of lawful residence; ID card",
        3,
    ),
]

_NAMES = [
    "Nguyen Van An", "Tran Thi Binh", "Le Van Cuong", "Pham Thi Dung", "Hoang Van Em",
    "Vu Thi Giang", "Dang Van Hai", "Bui Thi Hoa", "Do Van Khanh", "Ngo Thi Lan",
]
_NOTES = {
    DossierStatus.REFUSED: "Ho so khong thuoc tham quyen cua xa",
    DossierStatus.NEEDS_DOCUMENTS: "Ban sao Giay chung sinh co chung thuc",
    DossierStatus.STOPPED: "Nguoi nop khong bo sung giay to dung han",
}


def _add_working_days(start: dt.datetime, days: int) -> dt.datetime:
    current = start
    while days > 0:
        current += dt.timedelta(days=1)
        if current.weekday() < 5:
            days -= 1
    return current


async def seed(now: dt.datetime | None = None) -> dict[str, int]:
    """Load the demo commune. Returns counts of what was written."""
    now = now or dt.datetime.now(dt.timezone.utc)
    rng = random.Random(42)
    counts = {"agencies": 0, "procedures": 0, "dossiers": 0}
    async with in_transaction():
        for agency_data in (PHUONG_KY, NEIGHBOUR):
            existing = await Agency.get_or_none(code=agency_data["code"])
            if existing is not None:
                await DossierStatusChange.filter(dossier__agency_id=existing.id).delete()
                await Dossier.filter(agency_id=existing.id).delete()
                await Procedure.filter(agency_id=existing.id).delete()
                await existing.delete()
        agency = await Agency.create(**PHUONG_KY)
        neighbour = await Agency.create(**NEIGHBOUR)
        counts["agencies"] = 2
        procedures = []
        for position, item in enumerate(PROCEDURES, start=1):
            for owner in (agency, neighbour):
                created = await Procedure.create(
                    agency=owner, code=item.code, position=position, name=item.name, name_en=item.name_en,
                    processing_time=item.time, processing_time_en=item.time_en, fee=item.fee,
                    fee_en=item.fee_en, documents=item.documents, documents_en=item.documents_en,
                )
                counts["procedures"] += 1
                if owner is agency:
                    procedures.append((item, created))

        statuses = [s for s in DossierStatus for _ in range(3)]  # 30 dossiers, 3 per status
        codes_by_number: dict[int, str] = {}
        for number, status in enumerate(statuses, start=1):
            item, procedure = procedures[number % len(procedures)]
            received = now - dt.timedelta(days=rng.randint(1, 25), hours=rng.randint(0, 8))
            due = _add_working_days(received, item.days)
            # Every third open dossier is overdue; the others are due in the coming days.
            if status.is_open and number % 3 != 0:
                due = now + dt.timedelta(days=rng.randint(1, 6))
            sequence = f"{number:04d}"
            # Two units of the commune share a desk: same date and number, different agency part.
            agency_part = PHUONG_KY["code"] if number != 2 else "000.32.22.H23.CA"
            date_part = received.strftime("%y%m%d")
            if number == 5:
                # Same tail as dossier 2, to exercise "several dossiers match".
                date_part, sequence = dossier_code.parse(codes_by_number[2]).date, "0002"
            code = f"{agency_part}-{date_part}-{sequence}"
            codes_by_number[number] = code
            fee_due = 0
            if status in (DossierStatus.NEEDS_PAYMENT, DossierStatus.READY):
                fee_due = rng.choice([0, 8000, 10000, 20000, 16000])
            dossier = await Dossier.create(
                code=code,
                tail=dossier_code.parse(code).tail,
                agency=agency,
                procedure=procedure,
                applicant_name=_NAMES[number % len(_NAMES)],
                applicant_phone=DEMO_PHONE if number % 2 == 0 else f"+8491234{number:04d}",
                status=status,
                status_note=_NOTES.get(status, ""),
                received_at=received,
                due_at=None if status is DossierStatus.FILED else due,
                fee_due=fee_due,
                pickup_place="",
                mode=FilingMode.FULL if number % 6 == 4 or number == 27 else FilingMode.PARTIAL,
            )
            await DossierStatusChange.create(
                dossier=dossier, old_status=None, new_status=status, changed_at=received, source="seed"
            )
            counts["dossiers"] += 1
        # The neighbour has a dossier with the same tail as one of Phuong Ky's.
        same_tail = dossier_code.parse(codes_by_number[1])
        neighbour_procedure = await Procedure.filter(agency=neighbour).first()
        await Dossier.create(
            code=f"{NEIGHBOUR['code']}-{same_tail.date}-{same_tail.sequence}",
            tail=same_tail.tail, agency=neighbour, procedure=neighbour_procedure,
            applicant_name="Ly Van Minh", applicant_phone="+84912340999",
            status=DossierStatus.PROCESSING, received_at=now - dt.timedelta(days=2),
            due_at=now + dt.timedelta(days=3),
        )
        counts["dossiers"] += 1
    return counts
