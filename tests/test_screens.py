"""Every screen of every menu, in every language, with long realistic data, fits the limit.

The data here is deliberately long (the longest names a province might import, accented
Vietnamese from an import that kept its diacritics); the renderer must page or shorten
it, never overflow, and never put a character outside GSM-7 on a screen.
"""

from __future__ import annotations

import datetime as dt
import itertools
import zoneinfo

import pytest

from models.sms_text import Encoding, is_gsm7, units
from menus import ussd as _menu  # noqa: F401 - registers screens
from menus.engine import Frame, HopContext, MenuState, Notice, Screen, render
from menus.registration import REASON_TEXT
from menus.render import Content, Item, Renderer, ScreenTooLong
from menus.texts import LANGUAGES, T
from menus.views import AgencyView, DossierView, Localized, ProcedureView
from models.entities import DossierStatus, FilingMode
from models.identity import Reason
from models.otp import OtpPending
from models.unit_of_work import UnitOfWork

NOW = dt.datetime(2026, 11, 23, 3, 0, tzinfo=dt.timezone.utc)
LONG_AGENCY = AgencyView(
    id=1,
    code="000.32.22.H23",
    name="Ủy ban nhân dân xã Phượng Kỳ (sáp nhập từ các xã Tân Kỳ, Đại Hợp và Dân Chủ) tỉnh Hải Dương",
    address="Bộ phận Một cửa, Trụ sở Ủy ban nhân dân xã Phượng Kỳ, thôn Đông Hạ, xã Phượng Kỳ, tỉnh Hải Dương",
    desk_hours=Localized("Thứ Hai đến Thứ Sáu 7h30-11h30 và 13h30-17h00; sáng Thứ Bảy 7h30-11h30", "Monday to Friday 7:30-11:30 and 13:30-17:00; Saturday morning 7:30-11:30"),
    hotline="0987.542.228",
)
LONG_PROCEDURES = [
    ProcedureView(
        id=n,
        name=Localized(f"Thủ tục đăng ký lại khai sinh có yếu tố nước ngoài số {n} và cấp bản sao trích lục", f"Re-registration of a birth with a foreign element number {n} and extract copy"),
        processing_time=Localized("05 ngày làm việc kể từ ngày nhận đủ hồ sơ hợp lệ; trường hợp cần xác minh thì không quá 10 ngày", "5 working days from a complete dossier; up to 10 if checks are needed"),
        fee=Localized("8.000 đồng/bản sao; miễn lệ phí cho người thuộc gia đình có công với cách mạng, hộ nghèo", "8,000 VND per copy; free for families of war veterans and poor households"),
        documents=Localized(
            "Tờ khai theo mẫu; Giấy chứng sinh hoặc văn bản của người làm chứng; CCCD của cha, mẹ; "
            "Giấy chứng nhận kết hôn; văn bản ủy quyền có chứng thực nếu người khác đi nộp; "
            "giấy tờ chứng minh nơi cư trú; bản dịch có chứng thực các giấy tờ bằng tiếng nước ngoài [bản chính] {nếu có}",
            "Form; birth certificate or a witness statement; parents' ID cards; marriage certificate; "
            "certified power of attorney if someone else files; proof of residence; certified translations [originals] {if any}",
        ),
    )
    for n in range(1, 13)
]


def long_dossier(status: DossierStatus, mode: FilingMode, n: int) -> DossierView:
    return DossierView(
        id=n,
        code="000.32.22.H23.CA.TP.VP-20261123-00923456"[:64],
        agency=LONG_AGENCY,
        procedure_name=LONG_PROCEDURES[0].name,
        applicant_name="Nguyễn Thị Phượng Hoàng Anh Đào Ngọc Bích Thủy Tiên Kim Chi Bảo Ngọc",
        applicant_phone="+84987542228",
        status=status,
        status_note="Bổ sung bản sao có chứng thực Giấy chứng nhận kết hôn của cha mẹ và văn bản xác nhận cư trú do Công an xã cấp trong vòng 30 ngày",
        received_at=NOW - dt.timedelta(days=40),
        due_at=NOW - dt.timedelta(days=30),
        fee_due=199_000,
        pickup_place="",
        mode=mode,
        applicant_id_hash="f" * 64,
    )


DOSSIERS = [
    long_dossier(status, mode, n)
    for n, (status, mode) in enumerate(itertools.product(DossierStatus, FilingMode), start=1)
]


class LongDirectory:
    async def agency_for_service_code(self, service_code):
        return LONG_AGENCY

    async def procedures(self, agency_id):
        return LONG_PROCEDURES

    async def procedure(self, agency_id, procedure_id):
        return next((p for p in LONG_PROCEDURES if p.id == procedure_id), None)

    async def dossier(self, dossier_id):
        return next((d for d in DOSSIERS if d.id == dossier_id), None)

    async def dossier_by_code(self, code):
        return DOSSIERS[0]

    async def dossiers_by_tail(self, agency_id, tail):
        return DOSSIERS[:9]

    async def dossiers_of(self, phone, id_hash):
        return DOSSIERS if id_hash else []


class LiveCode:
    """What the OTP service says of the code on a code screen: one sent, or none left."""

    def __init__(self, sent: bool) -> None:
        self.sent = sent

    async def pending(self, tx, phone, purpose, now):
        if not self.sent:
            return None
        return OtpPending("id", NOW + dt.timedelta(minutes=5), NOW + dt.timedelta(minutes=1), 5)


class Services:
    def __init__(self, code_sent: bool) -> None:
        self.otp = LiveCode(code_sent)


LONG_NAME = "Nguyễn Thị Phượng Hoàng Anh Đào Ngọc Bích Thủy Tiên Kim Chi Bảo"[:60]


# Every screen and the arguments it is shown with: adding a screen without adding it here fails.
SCREEN_ARGS = {
    Screen.MAIN: [{}],
    Screen.RESUME: [{}],
    Screen.LOOKUP_ENTER: [{}],
    Screen.LOOKUP_CHOOSE: [{"tail": "2611230001"}],
    Screen.LOOKUP_RESULT: [{"id": d.id} for d in DOSSIERS] + [{"id": 999}] + [{"id": d.id, "idh": "f" * 64} for d in DOSSIERS[:6]],
    Screen.REGISTER: [{}],
    Screen.REGISTER_DECLINED: [{}],
    Screen.REGISTER_ID: [{}],
    Screen.REGISTER_NAME: [{}],
    Screen.REGISTER_BIRTH: [{}],
    Screen.REGISTER_OTP: [{}],
    Screen.REGISTER_PIN: [{}],
    Screen.REGISTER_PIN_AGAIN: [{}],
    Screen.REGISTER_DONE: [{"name": LONG_NAME}, {"name": "An"}],
    Screen.REGISTER_ALREADY: [{}],
    Screen.PIN_RESET: [{"l3": "234"}],
    Screen.PIN_RESET_OTP: [{}],
    Screen.PIN_NEW: [{}],
    Screen.PIN_NEW_AGAIN: [{}],
    Screen.PIN_SET_DONE: [{}],
    Screen.MY_DOSSIERS: [{}],
    Screen.MY_DOSSIER_LIST: [{"idh": "f" * 64}, {}],
    Screen.MY_LOCKED: [{"until": (NOW + dt.timedelta(minutes=15)).isoformat()}],
    Screen.MY_NOT_REGISTERED: [{}],
    Screen.MY_NO_PIN: [{}],
    Screen.DELETE_DATA: [{}],
    Screen.DELETE_OTP: [{}],
    Screen.DELETE_DONE: [{}],
    Screen.DELETE_NOTHING: [{}],
    Screen.POSTAL_DONE: [{"id": d.id, "o": o} for d in DOSSIERS[:2]
                         for o in ("recorded", "already", "not_applicant", "not_ready", "not_postal", "unknown")],
    Screen.PROCEDURES: [{}],
    Screen.PROCEDURE_DETAIL: [{"id": 1}, {"id": 999}],
    Screen.PICKUP: [{}],
    Screen.HELP: [{}],
    Screen.HELP_SMS: [{}],
}
NOTICES = [
    None,
    Notice(T.INVALID_CHOICE),
    Notice(T.LOOKUP_BAD_CODE),
    Notice(T.LOOKUP_NEED_FULL_CODE),
    Notice(T.LOOKUP_NOT_FOUND, {"code": "G09.20.H23.CA.TP.VP.XA.PHUONG.KY-20261123-00923456"}),
]
# Registration, codes, PINs: every re-prompt the feature can give, on each of its screens.
FEATURE_SCREENS = {screen for screen in Screen if screen.name.startswith(("REGISTER", "PIN_", "MY_", "DELETE_"))}
FEATURE_NOTICES = [
    None,
    Notice(T.INVALID_CHOICE),
    *(Notice(REASON_TEXT[reason], {"province": "099"} if reason is Reason.ID_PROVINCE else {}) for reason in Reason),
    Notice(T.OTP_FORMAT),
    Notice(T.OTP_WRONG, {"tries": 4}),
    Notice(T.OTP_EXPIRED),
    Notice(T.OTP_FAILED),
    Notice(T.OTP_RESENT),
    Notice(T.OTP_RESEND_WAIT, {"seconds": 59}),
    Notice(T.OTP_LIMITED, {"minutes": 60}),
    Notice(T.PIN_MISMATCH),
    Notice(T.PIN_WRONG, {"tries": 4}),
]


def test_the_walk_covers_every_screen():
    assert set(SCREEN_ARGS) == set(Screen)


def context(limit: int, phone: str, code_sent: bool = True) -> HopContext:
    return HopContext(
        directory=LongDirectory(), phone=phone, agency=LONG_AGENCY, now=NOW,
        tz=zoneinfo.ZoneInfo("Asia/Ho_Chi_Minh"), renderer=Renderer(limit),
        uow=UnitOfWork(None, Services(code_sent), NOW),
    )


def check_screen(screen_text: str, limit: int) -> None:
    assert is_gsm7(screen_text) and screen_text.isascii(), screen_text
    assert units(screen_text, Encoding.GSM7) <= limit, (len(screen_text), screen_text)


@pytest.mark.parametrize("limit", [160, 182])
@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("phone", ["+84987542228", "+84912000111"])  # owner and stranger
@pytest.mark.parametrize("code_sent", [True, False])  # a code screen with a live code, or after it ran out
async def test_every_page_of_every_screen_fits(limit, lang, phone, code_sent):
    ctx = context(limit, phone, code_sent)
    pages_seen = 0
    for screen, arg_sets in SCREEN_ARGS.items():
        for args in arg_sets:
            for notice in FEATURE_NOTICES if screen in FEATURE_SCREENS else NOTICES:
                page = 0
                while True:
                    state = MenuState(lang=lang, stack=(Frame(Screen.MAIN), Frame(screen, args, page)))
                    reply, shown = await render(ctx, state, notice)
                    check_screen(reply.text, limit)
                    pages_seen += 1
                    if "9" not in shown.choices:
                        break
                    page += 1
                    assert page < 40, f"{screen} does not stop paging"
    assert pages_seen > 300  # the walk really walked


async def test_long_answers_are_paged_not_cut():
    ctx = context(160, "+84987542228")
    dossier = next(d for d in DOSSIERS if d.status is DossierStatus.NEEDS_DOCUMENTS)
    words = []
    page = 0
    while True:
        state = MenuState(lang="vi", stack=(Frame(Screen.LOOKUP_RESULT, {"id": dossier.id}, page),))
        reply, shown = await render(ctx, state)
        words += reply.text.splitlines()[1:-1]
        if "9" not in shown.choices:
            break
        page += 1
    joined = " ".join(words)
    assert "Can bo sung: Bo sung ban sao co chung thuc Giay chung nhan ket hon" in joined
    assert "do Cong an xa cap trong vong 30 ngay." in joined
    assert page >= 2


def test_list_labels_too_long_for_a_line_are_shortened():
    renderer = Renderer(160)
    content = Content("T", items=tuple(Item("x" * 300, n) for n in range(3)))
    pages = renderer.pages(content, "vi")
    for page in pages:
        check_screen(page.text, 160)
    assert ".." in pages[0].text


def test_a_long_token_of_double_width_characters_is_paged_not_refused():
    renderer = Renderer(160)
    content = Content("Giay to", body="[" * 150 + " " + "{x}" * 90)
    pages = renderer.pages(content, "vi")
    assert len(pages) >= 3
    for page in pages:
        check_screen(page.text, 160)


async def test_a_very_long_mistyped_code_still_gets_a_reprompt_that_fits():
    ctx = context(160, "+84987542228")
    state = MenuState(lang="vi", stack=(Frame(Screen.MAIN), Frame(Screen.LOOKUP_ENTER)))
    notice = Notice(T.LOOKUP_NOT_FOUND, {"code": "A" * 140 + "-260101-0001"})
    reply, _ = await render(ctx, state, notice)
    check_screen(reply.text, 160)
    assert reply.text.startswith("Khong tim thay ho so AAAA")


def test_a_prompt_that_cannot_fit_is_a_loud_error():
    with pytest.raises(ScreenTooLong):
        Renderer(60).pages(Content("y" * 80, prompt=True), "vi")


def test_menu_numbering_is_stable_when_an_error_replaces_the_title():
    renderer = Renderer(160)
    content = Content("Thu tuc", items=tuple(Item(f"Thu tuc so {n} rat dai de lap day man hinh", n) for n in range(12)))
    plain = renderer.pages(content, "vi")
    noticed = renderer.pages(content, "vi", notice="Lua chon khong hop le.")
    assert [sorted(p.choices) for p in plain] == [sorted(p.choices) for p in noticed]
    assert [[i.target for i in p.choices.values()] for p in plain] == [[i.target for i in p.choices.values()] for p in noticed]
