"""The citizen USSD journey through POST /ussd/at (cumulative contract), real app, real DB."""

from __future__ import annotations

import re

import pytest

from gateway.app import DIRECTORY
from models.entities import Agency, Citizen, Dossier, DossierStatus, FilingMode, UssdSession
from models.seed import DEMO_PHONE, NEIGHBOUR

OTHER_PHONE = "0912000111"


async def read_all(phone, screen: str) -> str:
    """Page through a long screen with 9 and return its text without navigation lines."""
    pages = [screen]
    while "9 Tiep" in screen or "9 Next" in screen:
        _, screen = await phone.press("9")
        pages.append(screen)
    body = []
    for page in pages:
        lines = page.splitlines()
        body.extend(lines[1:-1])  # title and navigation dropped
    return " ".join(body)


async def look_up(phone, code: str, msisdn: str = DEMO_PHONE) -> str:
    """Dial, choose lookup, type the code, read every page of the answer."""
    caller = phone(msisdn)
    await caller.dial()
    await caller.press("1")
    _, screen = await caller.press(code)
    return await read_all(caller, screen)


async def find(**filters) -> Dossier:
    dossier = await Dossier.filter(**filters).order_by("id").first()
    assert dossier is not None, filters
    return dossier


async def test_dial_shows_main_menu_with_agency(phone):
    kind, screen = await phone().dial()
    assert kind == "CON"
    assert screen.splitlines() == [
        "DVC UBND xa Phuong Ky",
        "1 Tra cuu ho so",
        "2 Dang ky tai khoan",
        "3 Ho so cua toi",
        "4 Thu tuc hanh chinh",
        "5 Nhan ket qua",
        "6 Ho tro",
        "7 English",
    ]


async def test_lookup_full_code_in_any_case_and_spacing_owner_sees_details(phone):
    dossier = await find(status=DossierStatus.PROCESSING, applicant_phone=DEMO_PHONE)
    messy = "  " + dossier.code.lower().replace("-", " - ") + " "
    caller = phone()
    await caller.dial()
    kind, screen = await caller.press("1")
    assert "Nhap ma ho so" in screen
    kind, screen = await caller.press(messy)
    assert kind == "CON"
    assert screen.splitlines()[0] == f"Ho so {dossier.code}"
    text = await read_all(caller, screen)
    assert "Trang thai: Dang xu ly." in text
    assert f"Nguoi nop: {dossier.applicant_name}." in text
    assert "Hen tra: " in text


async def test_lookup_hides_personal_data_from_other_phones(phone):
    dossier = await find(status=DossierStatus.NEEDS_DOCUMENTS, applicant_phone=DEMO_PHONE)
    text = await look_up(phone, dossier.code, OTHER_PHONE)
    assert "Can bo sung giay to" in text  # the status itself
    assert dossier.applicant_name not in text
    assert dossier.status_note not in text
    assert "Lien he bo phan Mot cua" in text
    assert "Goi tu so dien thoai nguoi nop de xem chi tiet." in text

    text = await look_up(phone, dossier.code, DEMO_PHONE)
    assert f"Can bo sung: {dossier.status_note}." in text
    assert "Goi tu so dien thoai" not in text


STATUS_WORDS = {
    DossierStatus.FILED: "Da nop, dang cho tiep nhan",
    DossierStatus.RECEIVED: "Da duoc tiep nhan",
    DossierStatus.REFUSED: "Khong duoc tiep nhan",
    DossierStatus.PROCESSING: "Dang xu ly",
    DossierStatus.NEEDS_DOCUMENTS: "Can bo sung giay to",
    DossierStatus.NEEDS_PAYMENT: "Can nop phi, le phi",
    DossierStatus.WITHDRAWN: "Da rut ho so theo yeu cau",
    DossierStatus.STOPPED: "Dung xu ly",
    DossierStatus.READY: "Da co ket qua, moi den nhan",
    DossierStatus.DELIVERED: "Da tra ket qua",
}
STATUS_DETAIL = {
    DossierStatus.FILED: None,
    DossierStatus.RECEIVED: "Hen tra: ",
    DossierStatus.REFUSED: "Ly do: Ho so khong thuoc tham quyen cua xa.",
    DossierStatus.PROCESSING: "Hen tra: ",
    DossierStatus.NEEDS_DOCUMENTS: "Can bo sung: Ban sao Giay chung sinh co chung thuc.",
    DossierStatus.NEEDS_PAYMENT: "So tien can nop: ",
    DossierStatus.WITHDRAWN: None,
    DossierStatus.STOPPED: "Ly do: Nguoi nop khong bo sung giay to dung han.",
    DossierStatus.READY: "Mang giay hen tra va CCCD.",
    DossierStatus.DELIVERED: None,
}


@pytest.mark.parametrize("status", list(DossierStatus))
async def test_every_status_is_said_in_plain_words(phone, status):
    dossier = await find(status=status, applicant_phone=DEMO_PHONE, mode=FilingMode.PARTIAL)
    text = await look_up(phone, dossier.code, DEMO_PHONE)
    assert f"Trang thai: {STATUS_WORDS[status]}." in text
    if STATUS_DETAIL[status]:
        assert STATUS_DETAIL[status] in text
    if status in (DossierStatus.REFUSED, DossierStatus.STOPPED):
        assert "Hotline 0987.542.228." in text
    if not status.is_open or status is DossierStatus.FILED:
        assert "Hen tra" not in text


async def test_ready_for_pickup_says_where_when_what_to_bring_and_fee(phone):
    dossier = await find(status=DossierStatus.READY, mode=FilingMode.PARTIAL)
    await Dossier.filter(id=dossier.id).update(fee_due=16000)
    text = await look_up(phone, dossier.code, DEMO_PHONE)
    assert "Nhan tai Bo phan Mot cua, UBND xa Phuong Ky, huyen Tu Ky, Hai Duong" in text
    assert "gio T2-T6 7h30-11h30, 13h30-17h; sang T7 7h30-11h30" in text
    assert "Mang giay hen tra va CCCD." in text
    assert "Phi khi nhan: 16.000 d." in text


async def test_ready_full_online_dossier_is_sent_not_collected(phone):
    dossier = await find(status=DossierStatus.READY, mode=FilingMode.FULL)
    text = await look_up(phone, dossier.code, DEMO_PHONE)
    assert "Ket qua gui qua buu chinh hoac truc tuyen" in text
    assert "Nhan tai" not in text


async def test_overdue_is_computed_from_the_due_date(phone, clock):
    dossier = await find(status=DossierStatus.PROCESSING)
    await Dossier.filter(id=dossier.id).update(due_at=clock.now.replace(hour=0) - __import__("datetime").timedelta(days=4))
    text = await look_up(phone, dossier.code, "0987542228")
    assert re.search(r"Da qua han [45] ngay\.", text), text


async def test_digit_tail_resolves_within_the_dialled_agency(phone):
    phuong_ky = await find(code__startswith="000.32.22.H23-", status=DossierStatus.FILED)
    neighbour = await Dossier.get(tail=phuong_ky.tail, agency__code=NEIGHBOUR["code"])
    caller = phone()
    await caller.dial("*384#")
    await caller.press("1")
    _, screen = await caller.press(phuong_ky.tail)
    assert screen.splitlines()[0] == f"Ho so {phuong_ky.code}"

    caller = phone()
    await caller.dial("*385#")
    await caller.press("1")
    _, screen = await caller.press(phuong_ky.tail)
    assert screen.splitlines()[0] == f"Ho so {neighbour.code}"


async def test_digit_tail_matching_several_dossiers_asks_which(phone):
    shared = await Dossier.filter(code__startswith="000.32.22.H23.CA-").first()
    both = await Dossier.filter(tail=shared.tail, agency__service_code="*384#").order_by("code")
    assert len(both) == 2
    caller = phone(OTHER_PHONE)
    await caller.dial()
    await caller.press("1")
    _, screen = await caller.press(shared.tail)
    lines = screen.splitlines()
    assert lines[0] == "Co 2 ho so trung so. Chon:"
    assert lines[1].startswith("1 000.32.22.H23 ")
    assert lines[2].startswith("2 000.32.22.H23.CA ")
    for dossier in both:  # nothing personal in the choice list
        assert dossier.applicant_name not in screen
    _, screen = await caller.press("2")
    assert screen.splitlines()[0] == f"Ho so {both[1].code}"


@pytest.mark.parametrize(
    "typed, expected",
    [
        ("000.99.99.H99-200101-0001", "Khong tim thay ho so 000.99.99.H99-200101-0001. Nhap lai:"),
        ("9912319999", "Khong tim thay ho so 9912319999. Nhap lai:"),
        ("12345", "Ma khong dung. Nhap lai ma ho so hoac 10 so cuoi:"),
        ("", "Ma khong dung. Nhap lai ma ho so hoac 10 so cuoi:"),
    ],
)
async def test_bad_or_unknown_codes_reprompt(phone, typed, expected):
    caller = phone()
    await caller.dial()
    await caller.press("1")
    kind, screen = await caller.press(typed)
    assert kind == "CON"
    if typed == "":
        assert screen.startswith("Lua chon khong hop le.")
    else:
        assert screen.splitlines()[0] == expected
    # The caller can still type a right code on the same screen.
    dossier = await find(status=DossierStatus.RECEIVED)
    _, screen = await caller.press(dossier.code)
    assert screen.startswith(f"Ho so {dossier.code}")


async def test_retry_of_the_same_text_gets_the_same_answer_and_changes_nothing(phone):
    caller = phone()
    await caller.dial()
    await caller.press("4")
    first = await caller.press("9")
    session = await UssdSession.get(external_id=caller.session_id)
    again = await caller.post("*".join(caller.inputs))
    assert again == first
    after = await UssdSession.get(external_id=caller.session_id)
    assert after.hops == session.hops == 3
    assert after.state == session.state
    # And the dialogue goes on from there, on page 2, not page 3.
    _, screen = await caller.press("8")
    assert "1 Dang ky khai sinh" in screen


async def test_dial_string_shortcut_goes_straight_to_the_result(phone):
    dossier = await find(code__startswith="000.32.22.H23-", status=DossierStatus.RECEIVED)
    caller = phone()
    kind, screen = await caller.dial(f"*384*1*{dossier.tail}#")
    assert kind == "CON"
    assert screen.splitlines()[0] == f"Ho so {dossier.code}"
    # Aggregators that also put the shortcut in text get the same screen.
    caller.session_id += "-b"
    _, again = await caller.post(f"1*{dossier.tail}")
    assert again == screen


async def test_back_home_and_exit(phone):
    caller = phone()
    await caller.dial()
    await caller.press("4")
    _, screen = await caller.press("1")
    assert "Dang ky khai sinh" in screen
    _, screen = await caller.press("0")
    assert screen.startswith("Thu tuc hanh chinh:")
    _, screen = await caller.press("2")
    _, screen = await caller.press("00")
    assert screen.startswith("DVC UBND xa Phuong Ky")
    kind, screen = await caller.press("0")
    assert kind == "END"
    assert screen == "Cam on ban da dung dich vu cong."


async def test_procedures_paginate_and_show_time_fee_documents(phone):
    caller = phone()
    await caller.dial()
    _, page1 = await caller.press("4")
    assert "9 Tiep" in page1 and "8 Truoc" not in page1
    names = []
    screen = page1
    while True:
        names += [line.split(" ", 1)[1] for line in screen.splitlines()[1:-1]]
        if "9 Tiep" not in screen:
            break
        _, screen = await caller.press("9")
        assert "8 Truoc" in screen
    assert len(names) == 10
    assert names[0] == "Dang ky khai sinh" and names[-1] == "Dang ky tam tru"
    # Back to page 1 with 8, then open "Chung thuc ban sao" from wherever it sits.
    while "8 Truoc" in screen:
        _, screen = await caller.press("8")
    assert screen == page1
    index = names.index("Chung thuc ban sao tu ban chinh")
    while True:
        keys = {line.split(" ", 1)[1]: line.split(" ", 1)[0] for line in screen.splitlines()[1:-1]}
        if "Chung thuc ban sao tu ban chinh" in keys:
            break
        _, screen = await caller.press("9")
    _, screen = await caller.press(keys["Chung thuc ban sao tu ban chinh"])
    text = await read_all(caller, screen)
    assert "Thoi han: Trong ngay." in text
    assert "Le phi: 2.000 d/trang; tu trang thu 3 la 1.000 d/trang; toi da 200.000 d/ban." in text
    assert "Giay to: Ban chinh va ban sao can chung thuc." in text
    assert index == 6


async def test_pickup_and_help_screens(phone):
    caller = phone()
    await caller.dial()
    _, screen = await caller.press("5")
    text = await read_all(caller, screen)
    assert "Bo phan Mot cua, UBND xa Phuong Ky" in text and "Mang giay hen tra va CCCD" in text
    await caller.press("00")
    _, screen = await caller.press("6")
    assert screen.splitlines() == [
        "Ho tro",
        "Hotline 0987.542.228. Gio lam viec: T2-T6 7h30-11h30, 13h30-17h; sang T7 7h30-11h30.",
        "1 Cu phap tin nhan",
        "2 Xoa du lieu ca nhan",
        "0 Lai 00 Dau",
    ]
    _, screen = await caller.press("1")
    text = await read_all(caller, screen)
    assert "HS <ma ho so>" in text and "HUY" in text
    assert "DK <so CCCD> <ho ten> <ngay sinh> dang ky" in text and "XOA xoa du lieu ca nhan" in text


async def test_registration_starts_with_consent_and_stores_nothing_before_it(phone):
    caller = phone()
    await caller.dial()
    _, screen = await caller.press("2")
    assert screen.splitlines() == [
        "Dang ky tai khoan",
        "Luu so CCCD (ma hoa), ho ten, SDT nay de xem ho so cua ban. Xoa luc nao: SMS XOA toi 8088 hoac menu 6.",
        "1 Dong y",
        "2 Khong dong y",
        "0 Lai 00 Dau",
    ]
    kind, screen = await caller.press("2")
    assert kind == "END"
    assert screen.endswith("Ban chua dang ky. Khong co du lieu nao duoc luu.")
    assert await Citizen.all().count() == 0


async def test_my_dossiers_for_an_unregistered_phone_offers_registration(phone):
    caller = phone()
    await caller.dial()
    _, screen = await caller.press("3")
    assert screen.splitlines() == [
        "Ho so cua toi", "So nay chua dang ky. Dang ky de xem moi ho so cua ban.", "1 Dang ky", "0 Lai 00 Dau",
    ]
    _, screen = await caller.press("1")
    assert screen.startswith("Dang ky tai khoan\nLuu so CCCD (ma hoa)")


async def test_language_switch_to_english_and_back(phone):
    caller = phone()
    await caller.dial()
    _, screen = await caller.press("7")
    assert screen.splitlines()[0] == "Public services UBND xa Phuong Ky"
    assert "1 Track a dossier" in screen and "7 Tieng Viet" in screen
    _, screen = await caller.press("1")
    assert screen.startswith("Enter the dossier code")
    dossier = await find(status=DossierStatus.READY, applicant_phone=DEMO_PHONE, mode=FilingMode.PARTIAL)
    _, screen = await caller.press(dossier.code)
    text = await read_all(caller, screen)
    assert "Status: Result ready for pickup." in text
    assert "Bring the appointment slip and your ID card." in text
    await caller.press("00")
    _, screen = await caller.press("7")
    assert "1 Tra cuu ho so" in screen


async def test_invalid_choice_reprompts_same_menu(phone):
    caller = phone()
    await caller.dial()
    _, screen = await caller.press("8")
    lines = screen.splitlines()
    assert lines[0] == "Lua chon khong hop le."
    assert lines[1:] == ["1 Tra cuu ho so", "2 Dang ky tai khoan", "3 Ho so cua toi", "4 Thu tuc hanh chinh",
                         "5 Nhan ket qua", "6 Ho tro", "7 English"]


async def test_session_expires_after_ttl(phone, clock):
    caller = phone()
    await caller.dial()
    await caller.press("4")
    clock.advance(181)
    kind, screen = await caller.press("1")
    assert kind == "END"
    assert screen == "Phien lam viec da het han. Vui long quay so lai."


async def test_dropped_session_can_be_resumed_or_restarted(phone, clock):
    caller = phone()
    await caller.dial()
    await caller.press("4")
    _, left_at = await caller.press("9")
    clock.advance(60)  # the network dropped the session; the citizen dials again
    kind, screen = await caller.dial()
    assert screen.splitlines() == ["Ban dang dung giua chung.", "1 Tiep tuc", "2 Bat dau lai"]
    _, screen = await caller.press("1")
    assert screen == left_at

    clock.advance(30)
    _, screen = await caller.dial()
    assert screen.startswith("Ban dang dung giua chung.")
    _, screen = await caller.press("2")
    assert screen.startswith("DVC UBND xa Phuong Ky")


async def test_no_resume_offer_after_the_window_or_after_a_finished_dialogue(phone, clock):
    caller = phone()
    await caller.dial()
    await caller.press("4")
    clock.advance(301)
    _, screen = await caller.dial()
    assert screen.startswith("DVC UBND xa Phuong Ky")
    await caller.press("0")  # END: finished
    _, screen = await caller.dial()
    assert screen.startswith("DVC UBND xa Phuong Ky")


async def test_resume_is_per_phone(phone, clock):
    first = phone("0987542228")
    await first.dial()
    await first.press("4")
    other = phone("0912000111")
    _, screen = await other.dial()
    assert screen.startswith("DVC UBND xa Phuong Ky")


async def test_internal_error_still_answers_within_the_contract(client, phone, monkeypatch):
    async def broken(code):
        raise RuntimeError("database went away")

    monkeypatch.setattr(client.app[DIRECTORY], "dossier_by_code", broken)
    caller = phone()
    await caller.dial()
    await caller.press("1")
    kind, screen = await caller.press("000.17.22.H56-210531-0001")
    assert kind == "END"
    assert screen == "Xin loi, he thong dang gap su co. Vui long quay so lai sau it phut."


@pytest.mark.parametrize(
    "form, message",
    [
        ({"serviceCode": "*384#", "phoneNumber": "0987542228", "text": ""}, "sessionId is required"),
        ({"sessionId": "x", "serviceCode": "*384#", "phoneNumber": "12345", "text": ""}, "phoneNumber"),
        ({"sessionId": "x", "phoneNumber": "0987542228", "text": ""}, "serviceCode is required"),
        ({"sessionId": "x" * 129, "serviceCode": "*384#", "phoneNumber": "0987542228"}, "too long"),
    ],
)
async def test_malformed_requests_get_a_json_400(client, form, message):
    response = await client.post("/ussd/at", data=form)
    assert response.status == 400
    body = await response.json()
    assert message in body["error"]
    assert await UssdSession.all().count() == 0


async def test_unknown_paths_and_contracts_are_json_errors(client):
    response = await client.get("/nowhere")
    assert response.status == 404
    assert (await response.json())["status"] == 404
    response = await client.post("/ussd/nope", data={"sessionId": "x"})
    assert response.status == 404
    assert "no USSD contract" in (await response.json())["error"]
    response = await client.get("/ussd/at")
    assert response.status == 405
    assert (await response.json())["status"] == 405


async def test_agency_from_unknown_code_falls_back_only_when_single(client, phone):
    caller = phone()
    _, screen = await caller.dial("*999#")  # two agencies: no guess
    assert screen.splitlines()[0] == "DVC"
    await caller.press("1")
    _, screen = await caller.press("2601010001")
    assert screen.startswith("Hay nhap day du ma ho so")

    neighbour = await Agency.get(code=NEIGHBOUR["code"])
    await Dossier.filter(agency=neighbour).delete()
    await neighbour.delete()
    client.app[DIRECTORY].forget()
    _, screen = await phone("0912000222").dial("*999#")
    assert screen.splitlines()[0] == "DVC UBND xa Phuong Ky"


async def test_no_resume_offer_after_an_answer_was_read_to_the_end(phone):
    dossier = await find(status=DossierStatus.WITHDRAWN)
    caller = phone()
    await caller.dial()
    await caller.press("1")
    _, screen = await caller.press(dossier.code)
    await read_all(caller, screen)
    _, screen = await caller.dial()  # hung up after reading: a fresh start
    assert screen.startswith("DVC UBND xa Phuong Ky")
