"""Unaccented Vietnamese: the default language of every screen and SMS."""

from menus.texts import T

TEXTS = {
    T.MAIN_TITLE: "DVC {agency}",
    T.MAIN_LOOKUP: "Tra cuu ho so",
    T.MAIN_REGISTER: "Dang ky tai khoan",
    T.MAIN_MY_DOSSIERS: "Ho so cua toi",
    T.MAIN_PROCEDURES: "Thu tuc hanh chinh",
    T.MAIN_PICKUP: "Nhan ket qua",
    T.MAIN_HELP: "Ho tro",
    T.MAIN_LANGUAGE: "English",
    T.NAV_PREV: "8 Truoc",
    T.NAV_NEXT: "9 Tiep",
    T.NAV_BACK: "0 Lai",
    T.NAV_HOME: "00 Dau",
    T.INVALID_CHOICE: "Lua chon khong hop le.",
    T.GOODBYE: "Cam on ban da dung dich vu cong.",
    T.SORRY_ERROR: "Xin loi, he thong dang gap su co. Vui long quay so lai sau it phut.",
    T.SESSION_EXPIRED: "Phien lam viec da het han. Vui long quay so lai.",
    T.SORRY_TOO_LONG: "Xin loi, yeu cau qua dai hoac qua nhieu buoc mot luc. Vui long quay so lai.",
    T.SMS_CUT: " (tin da cat bot)",
    T.RESUME_TITLE: "Ban dang dung giua chung.",
    T.RESUME_CONTINUE: "Tiep tuc",
    T.RESUME_RESTART: "Bat dau lai",
    T.LOOKUP_PROMPT: "Nhap ma ho so, hoac 10 so cuoi (ngay YYMMDD + so thu tu), vd 2605140001:",
    T.LOOKUP_BAD_CODE: "Ma khong dung. Nhap lai ma ho so hoac 10 so cuoi:",
    T.LOOKUP_NOT_FOUND: "Khong tim thay ho so {code}. Nhap lai:",
    T.LOOKUP_NEED_FULL_CODE: "Hay nhap day du ma ho so, vd 000.17.22.H56-210531-0001:",
    T.LOOKUP_CHOOSE_TITLE: "Co {count} ho so trung so. Chon:",
    T.LOOKUP_CHOOSE_ITEM: "{agency_code} {procedure}",
    T.RESULT_CODE: "Ho so {code}",
    T.RESULT_STATUS: "Trang thai: {status}.",
    T.RESULT_APPLICANT: "Nguoi nop: {name}.",
    T.RESULT_DUE: "Hen tra: {date}.",
    T.RESULT_OVERDUE: "Da qua han {days} ngay.",
    T.RESULT_REASON: "Ly do: {reason}.",
    T.RESULT_CALL: "Hotline {hotline}.",
    T.RESULT_MISSING_DOCS: "Can bo sung: {documents}. Nop tai {place}.",
    T.RESULT_MISSING_DOCS_PUBLIC: "Lien he bo phan Mot cua de biet giay to can bo sung.",
    T.RESULT_FEE: "So tien can nop: {amount}.",
    T.RESULT_PICKUP: "Nhan tai {place}, gio {hours}. Mang giay hen tra va CCCD.",
    T.RESULT_PICKUP_FEE: "Phi khi nhan: {amount}.",
    T.RESULT_DELIVERY_FULL: "Ket qua gui qua buu chinh hoac truc tuyen theo dang ky.",
    T.RESULT_PRIVATE_HINT: "Goi tu so dien thoai nguoi nop de xem chi tiet.",
    T.STATUS_1: "Da nop, dang cho tiep nhan",
    T.STATUS_2: "Da duoc tiep nhan",
    T.STATUS_3: "Khong duoc tiep nhan",
    T.STATUS_4: "Dang xu ly",
    T.STATUS_5: "Can bo sung giay to",
    T.STATUS_6: "Can nop phi, le phi",
    T.STATUS_7: "Da rut ho so theo yeu cau",
    T.STATUS_8: "Dung xu ly",
    T.STATUS_9: "Da co ket qua, moi den nhan",
    T.STATUS_10: "Da tra ket qua",
    T.FEE_FREE: "mien phi",
    T.FEE_AMOUNT: "{amount} d",
    T.PROCEDURES_TITLE: "Thu tuc hanh chinh:",
    T.PROCEDURES_EMPTY: "Chua co thu tuc nao.",
    T.PROCEDURE_DETAIL: "{name}. Thoi han: {time}. Le phi: {fee}. Giay to: {documents}.",
    T.PICKUP_INFO: (
        "Nhan ket qua tai {address}. Gio lam viec: {hours}. Mang giay hen tra va CCCD, "
        "nop phi neu co. Hotline {hotline}."
    ),
    T.HELP_INFO: (
        "Hotline {hotline}. Gio lam viec: {hours}. Nhan tin: HS <ma ho so> de tra cuu; "
        "TT <ten thu tuc> xem thu tuc; TG huong dan; HUY ngung tin bao."
    ),
    T.COMING_SOON: (
        "Chuc nang nay sap co. Hien ban co the dang ky tren Cong dich vu cong "
        "hoac tai bo phan Mot cua. Hotline {hotline}."
    ),
    T.SMS_HELP: (
        "DVC {agency}: HS <ma ho so> tra cuu ho so; TT <ten thu tuc> xem thu tuc; "
        "HUY ngung tin bao, DK TB nhan lai. Hotline {hotline}."
    ),
    T.SMS_UNKNOWN: "Khong hieu tin nhan. Gui HS <ma ho so> de tra cuu, TT <ten thu tuc>, TG de xem huong dan.",
    T.SMS_STATUS_NEED_CODE: "Gui HS <ma ho so>, vd HS 000.17.22.H56-210531-0001 hoac HS 2105310001.",
    T.SMS_NOT_FOUND: "Khong tim thay ho so {code}. Kiem tra lai ma tren giay hen hoac goi {hotline}.",
    T.SMS_SEVERAL: "Co {count} ho so trung so {tail}. Gui HS kem ma day du, vd HS {example}.",
    T.SMS_NEED_FULL_CODE: "Gui HS kem ma ho so day du, vd HS 000.17.22.H56-210531-0001.",
    T.SMS_PROCEDURE_NEED_NAME: "Gui TT <ten thu tuc>, vd TT khai sinh, TT ket hon, TT tam tru.",
    T.SMS_PROCEDURE_NOT_FOUND: "Khong tim thay thu tuc {query}. Vd: TT khai sinh, TT ket hon, TT tam tru.",
    T.SMS_OPTED_OUT: "Da ngung tin bao ho so den so nay. Ma OTP va tin tra loi van duoc gui. Gui DK TB de nhan lai.",
    T.SMS_OPTED_IN: "Da bat lai tin bao ho so cho so nay. Gui HUY de ngung.",
    T.OTP_SMS: "Ma OTP {code} de {purpose}, het han sau {minutes} phut. KHONG chia se ma nay cho bat ky ai, ke ca can bo.",
    T.OTP_FOR_REGISTER: "dang ky tai khoan DVC",
    T.OTP_FOR_PIN_RESET: "dat lai ma PIN DVC",
    T.OTP_FOR_DELETE_DATA: "xoa du lieu ca nhan DVC",
    T.OTP_FOR_PORTAL: "xac thuc tren Cong DVC",
}
