"""Tests for models.sms_text: unaccenting, GSM-7 membership, lengths, parts, policies."""

import pytest

from models.sms_text import (
    GSM7_BASIC,
    GSM7_EXTENSION,
    Encoding,
    Policy,
    SmsText,
    count_parts,
    is_gsm7,
    prepare,
    split_parts,
    unaccent,
    units,
)

GSM7, UCS2 = Encoding.GSM7, Encoding.UCS2

# --------------------------------------------------------------------------- unaccent


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hồ sơ của bạn đã được xử lý xong", "Ho so cua ban da duoc xu ly xong"),
        ("Đăng ký khai sinh", "Dang ky khai sinh"),
        ("ĐƯỢC TIẾP NHẬN", "DUOC TIEP NHAN"),
        ("Ủy ban nhân dân xã Phượng Kỳ", "Uy ban nhan dan xa Phuong Ky"),
        (
            "LƯU Ý: NHỮNG HỘ GẶP KHÓ KHĂN ĐƯỢC HỖ TRỢ",
            "LUU Y: NHUNG HO GAP KHO KHAN DUOC HO TRO",
        ),
        ("CẨN THẬN, KHÔNG Ỷ LẠI", "CAN THAN, KHONG Y LAI"),
        ("Hỗ trợ 1 tỷ đồng cho hộ nghèo", "Ho tro 1 ty dong cho ho ngheo"),
        ("Mời ông/bà đến UBND xã lúc 8h30 ngày 15/3.", "Moi ong/ba den UBND xa luc 8h30 ngay 15/3."),
        ("Cơ sở thờ tự, người dân", "Co so tho tu, nguoi dan"),
        ("Đề nghị đóng thuế đúng hạn", "De nghi dong thue dung han"),
        # Decomposed input (Unikey "Unicode tổ hợp"): base + separate marks.
        ("Vie\u0302\u0323t Nam", "Viet Nam"),
        ("\u0110a\u0306ng ky\u0301", "Dang ky"),
        # Typography.
        ("Thông báo: “Họp dân” – 19h…", 'Thong bao: "Hop dan" - 19h...'),
        ("Xã ‘Phượng Kỳ’ — thôn 3", "Xa 'Phuong Ky' - thon 3"),
        ("Số\u00a0điện thoại", "So dien thoai"),
        # Latin letters in GSM-7 basic are still stripped ...
        ("Café à Nîmes, Ñandú, Ça", "Cafe a Nimes, Nandu, Ca"),
        # ... except those with no Vietnamese look-alike and no decomposition.
        ("Øre, Æsir, Straße", "Øre, Æsir, Straße"),
        # Extension-table characters and GSM-7 symbols pass through.
        ("[Xã Phượng Kỳ] {OTP} 5€ ~^|\\", "[Xa Phuong Ky] {OTP} 5€ ~^|\\"),
        ("@£$¥§¿¡ΔΩ\n\r", "@£$¥§¿¡ΔΩ\n\r"),
        # Anything else becomes one '?' per character.
        ("Giá 50.000₫ 😀", "Gia 50.000? ?"),
        ("Xã 社 한", "Xa ? ?"),
        ("a`b", "a?b"),
        ("", ""),
    ],
)
def test_unaccent(text, expected):
    assert unaccent(text) == expected


# All 134 Vietnamese accented letters (67 lower + 67 upper), by plain base letter.
VIETNAMESE_LETTERS = {
    "a": "áàảãạăắằẳẵặâấầẩẫậ",
    "e": "éèẻẽẹêếềểễệ",
    "i": "íìỉĩị",
    "o": "óòỏõọôốồổỗộơớờởỡợ",
    "u": "úùủũụưứừửữự",
    "y": "ýỳỷỹỵ",
    "d": "đ",
    "A": "ÁÀẢÃẠĂẮẰẲẴẶÂẤẦẨẪẬ",
    "E": "ÉÈẺẼẸÊẾỀỂỄỆ",
    "I": "ÍÌỈĨỊ",
    "O": "ÓÒỎÕỌÔỐỒỔỖỘƠỚỜỞỠỢ",
    "U": "ÚÙỦŨỤƯỨỪỬỮỰ",
    "Y": "ÝỲỶỸỴ",
    "D": "Đ",
}
LETTER_CASES = [(ch, base) for base, chars in VIETNAMESE_LETTERS.items() for ch in chars]


def test_letter_table_is_complete():
    letters = [ch for ch, _ in LETTER_CASES]
    assert len(letters) == 134
    assert len(set(letters)) == 134
    assert not any(ch.isascii() for ch in letters)


@pytest.mark.parametrize(("letter", "base"), LETTER_CASES, ids=[c for c, _ in LETTER_CASES])
def test_unaccent_every_vietnamese_letter(letter, base):
    assert unaccent(letter) == base
    assert unaccent(f"x{letter}x") == f"x{base}x"
    assert not is_gsm7(letter) or letter in "éèìòùàÉ"


# --------------------------------------------------------------------------- is_gsm7


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", True),
        ("Ho so cua ban da duoc xu ly xong", True),
        ("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ", True),
        ("¤¡ÄÖÑÜ§¿äöñüà", True),
        ("€[]{}~^|\\\f", True),
        ("bè", True),  # a Vietnamese word that happens to be GSM-7
        ("Hồ sơ", False),
        ("đ", False),
        ("Đ", False),
        ("ê", False),
        ("á", False),
        ("ç", False),  # only capital Ç is in the table
        ("`", False),
        ("\t", False),
        ("\x1b", False),  # ESC is the escape code, not a character
        ("“x”", False),
        ("😀", False),
    ],
)
def test_is_gsm7(text, expected):
    assert is_gsm7(text) is expected


def test_table_sizes():
    assert len(GSM7_BASIC) == 127
    assert len(GSM7_EXTENSION) == 10
    assert not GSM7_BASIC & GSM7_EXTENSION


# --------------------------------------------------------------------------- units


@pytest.mark.parametrize(
    ("text", "encoding", "expected"),
    [
        ("", GSM7, 0),
        ("", UCS2, 0),
        ("abc", GSM7, 3),
        ("€", GSM7, 2),
        ("a{b}", GSM7, 6),
        ("\f", GSM7, 2),
        ("Ho so da xong", GSM7, 13),
        ("Hồ sơ đã xong", UCS2, 13),
        ("Việt", UCS2, 4),
        ("😀", UCS2, 2),
        ("a😀b", UCS2, 4),
        ("Chúc mừng năm mới 🎉", UCS2, 20),
        ("€", UCS2, 1),
    ],
)
def test_units(text, encoding, expected):
    assert units(text, encoding) == expected


@pytest.mark.parametrize("text", ["Việt", "a`b", "😀"])
def test_units_gsm7_rejects_foreign_characters(text):
    with pytest.raises(ValueError):
        units(text, GSM7)


# --------------------------------------------------------------------------- parts


@pytest.mark.parametrize(
    ("text", "encoding", "expected"),
    [
        ("", GSM7, 1),
        ("", UCS2, 1),
        ("a" * 160, GSM7, 1),
        ("a" * 161, GSM7, 2),
        ("a" * 306, GSM7, 2),
        ("a" * 307, GSM7, 3),
        ("a" * 459, GSM7, 3),
        ("a" * 460, GSM7, 4),
        ("{" * 80, GSM7, 1),  # 160 septets
        ("{" * 81, GSM7, 2),  # 162 septets
        ("€" + "a" * 158, GSM7, 1),  # 159 chars, 160 septets
        ("€€" + "a" * 157, GSM7, 2),  # 159 chars, 161 septets
        ("a" * 152 + "€" + "a" * 152, GSM7, 3),  # 306 septets, escape pair pushed over
        ("a" * 152 + "€" + "a" * 151, GSM7, 2),
        ("ệ" * 70, UCS2, 1),
        ("ệ" * 71, UCS2, 2),
        ("ệ" * 134, UCS2, 2),
        ("ệ" * 135, UCS2, 3),
        ("ệ" * 68 + "😀", UCS2, 1),  # 70 units
        ("ệ" * 69 + "😀", UCS2, 2),  # 71 units
        ("😀" * 35, UCS2, 1),
        ("😀" * 36, UCS2, 2),
        ("ệ" * 66 + "😀" + "ệ" * 66, UCS2, 3),  # 134 units, surrogate pair pushed over
        ("ệ" * 66 + "😀" + "ệ" * 65, UCS2, 2),
        ("a" * 161, UCS2, 3),  # same text costs more parts in UCS-2
    ],
)
def test_count_parts(text, encoding, expected):
    assert count_parts(text, encoding) == expected


@pytest.mark.parametrize(
    ("text", "encoding", "expected"),
    [
        ("", GSM7, [""]),
        ("Hello", GSM7, ["Hello"]),
        ("a" * 160, GSM7, ["a" * 160]),
        ("a" * 161, GSM7, ["a" * 153, "a" * 8]),
        ("a" * 152 + "€" + "a" * 152, GSM7, ["a" * 152, "€" + "a" * 151, "a"]),
        ("€" * 81, GSM7, ["€" * 76, "€" * 5]),
        ("ệ" * 71, UCS2, ["ệ" * 67, "ệ" * 4]),
        ("ệ" * 66 + "😀" + "ệ" * 66, UCS2, ["ệ" * 66, "😀" + "ệ" * 65, "ệ"]),
        ("😀" * 36, UCS2, ["😀" * 33, "😀" * 3]),
    ],
)
def test_split_parts_exact(text, encoding, expected):
    assert split_parts(text, encoding) == expected


LONG_VI = (
    "UBND xã Phượng Kỳ thông báo: Hồ sơ đăng ký khai sinh của bạn đã được xử lý xong. "
    "Mời ông/bà đến nhận kết quả tại bộ phận một cửa, mang theo CCCD và giấy hẹn. "
    "Mọi thắc mắc xin liên hệ cán bộ tư pháp – hộ tịch 😀."
)
LONG_ASCII = (
    "[UBND] Lich tiem chung {dot 2} tai tram y te xa: 7h30-11h00, "
    "mang theo so tiem & CCCD. Chi phi 0€. Hotline ~ 24/7 | xin cam on. " * 4
)


@pytest.mark.parametrize(
    ("text", "encoding", "n_parts", "limit"),
    [
        (LONG_VI, UCS2, 4, 67),
        (LONG_ASCII, GSM7, 4, 153),
        ("€" * 200, GSM7, 3, 153),
        ("😀" * 100, UCS2, 4, 67),
    ],
)
def test_split_parts_round_trip(text, encoding, n_parts, limit):
    parts = split_parts(text, encoding)
    assert len(parts) == n_parts == count_parts(text, encoding)
    assert "".join(parts) == text
    assert all(0 < units(p, encoding) <= limit for p in parts)
    assert not any("\ud800" <= ch <= "\udfff" for p in parts for ch in p)


def test_split_parts_gsm7_rejects_foreign_characters():
    with pytest.raises(ValueError):
        split_parts("Việt", GSM7)


# --------------------------------------------------------------------------- prepare

LONG_VI_2 = (
    "UBND xã Phượng Kỳ thông báo: Hồ sơ đăng ký khai sinh của bạn đã được xử lý xong. "
    "Mời ông/bà đến nhận kết quả tại bộ phận một cửa."
)
LONG_VI_2_ASCII = (
    "UBND xa Phuong Ky thong bao: Ho so dang ky khai sinh cua ban da duoc xu ly xong. "
    "Moi ong/ba den nhan ket qua tai bo phan mot cua."
)


@pytest.mark.parametrize(
    ("text", "policy", "expected"),
    [
        # UNACCENT: always GSM-7, always stripped.
        ("Hồ sơ đã xong", Policy.UNACCENT, SmsText("Ho so da xong", GSM7, 1, 13)),
        ("Café", Policy.UNACCENT, SmsText("Cafe", GSM7, 1, 4)),
        ("Chúc mừng 🎉", Policy.UNACCENT, SmsText("Chuc mung ?", GSM7, 1, 11)),
        ("Mã {OTP}", Policy.UNACCENT, SmsText("Ma {OTP}", GSM7, 1, 10)),
        (LONG_VI_2, Policy.UNACCENT, SmsText(LONG_VI_2_ASCII, GSM7, 1, 129)),
        ("ệ" * 161, Policy.UNACCENT, SmsText("e" * 161, GSM7, 2, 161)),
        # UNICODE: as written.
        ("Hồ sơ đã xong", Policy.UNICODE, SmsText("Hồ sơ đã xong", UCS2, 1, 13)),
        ("Hello", Policy.UNICODE, SmsText("Hello", GSM7, 1, 5)),
        ("Café", Policy.UNICODE, SmsText("Café", GSM7, 1, 4)),
        ("Vie\u0302\u0323t", Policy.UNICODE, SmsText("Việt", UCS2, 1, 4)),  # NFC
        (LONG_VI_2, Policy.UNICODE, SmsText(LONG_VI_2, UCS2, 2, 129)),
        ("Chúc mừng 🎉", Policy.UNICODE, SmsText("Chúc mừng 🎉", UCS2, 1, 12)),
        # AUTO: GSM-7 as written if possible ...
        ("Hello {OTP}", Policy.AUTO, SmsText("Hello {OTP}", GSM7, 1, 13)),
        ("Café", Policy.AUTO, SmsText("Café", GSM7, 1, 4)),
        ("e\u0301", Policy.AUTO, SmsText("é", GSM7, 1, 1)),  # NFC makes it GSM-7
        # ... keep diacritics when it costs no extra part ...
        ("Hồ sơ đã xong", Policy.AUTO, SmsText("Hồ sơ đã xong", UCS2, 1, 13)),
        ("ệ" * 70, Policy.AUTO, SmsText("ệ" * 70, UCS2, 1, 70)),
        ("ệ" + "{" * 80, Policy.AUTO, SmsText("ệ" + "{" * 80, UCS2, 2, 81)),  # tie: 2 vs 2
        ("Đ" + "…" * 60, Policy.AUTO, SmsText("Đ" + "…" * 60, UCS2, 1, 61)),  # GSM-7 would be 2
        # ... otherwise unaccent.
        ("ệ" * 71, Policy.AUTO, SmsText("e" * 71, GSM7, 1, 71)),
        (LONG_VI_2, Policy.AUTO, SmsText(LONG_VI_2_ASCII, GSM7, 1, 129)),
    ],
)
def test_prepare(text, policy, expected):
    assert prepare(text, policy) == expected


def test_prepare_defaults_to_unaccent():
    assert prepare("Đăng ký khai sinh") == SmsText("Dang ky khai sinh", GSM7, 1, 17)


def test_prepare_accepts_policy_value_string():
    assert prepare("Đã xong", "auto") == SmsText("Đã xong", UCS2, 1, 7)


def test_smstext_is_frozen():
    sms = prepare("Xin chào")
    with pytest.raises(AttributeError):
        sms.text = "x"  # type: ignore[misc]
