import pytest

from gateway.phones import mask, normalize_msisdn, phone_key


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("0987542228", "+84987542228"),
        ("84987542228", "+84987542228"),
        ("+84987542228", "+84987542228"),
        ("+84 987 542 228", "+84987542228"),
        ("0987.542.228", "+84987542228"),
        ("0337123456", "+84337123456"),  # 03x
        ("0567123456", "+84567123456"),  # 05x
        ("0707123456", "+84707123456"),  # 07x
        ("0812345678", "+84812345678"),  # 08x
        ("0241234567", None),  # Hanoi landline
        ("01687542228", None),  # pre-2018 11-digit mobile
        ("12345", None),
        ("", None),
        (None, None),
        ("+12025550123", None),  # not Vietnamese
        ("abc", None),
    ],
)
def test_normalize_msisdn(raw, expected):
    assert normalize_msisdn(raw) == expected


def test_mask_keeps_only_prefix_and_last_two():
    assert mask("+84987542228") == "+8498*****28"
    assert "542" not in mask("+84987542228")
    assert mask(None) == "-"


def test_phone_key_is_keyed_and_stable():
    assert phone_key("+84987542228", "k1") == phone_key("+84987542228", "k1")
    assert phone_key("+84987542228", "k1") != phone_key("+84987542228", "k2")
    assert "987542228" not in phone_key("+84987542228", "k1")

