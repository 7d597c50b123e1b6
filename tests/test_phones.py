import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import phones
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



_NATIONAL = st.text(alphabet="0123456789", min_size=9, max_size=9)
# Mostly real mobile prefixes (so that the fast path is taken), some anything.
_MOBILE_LIKE = st.builds(lambda head, rest: head + rest,
                         st.sampled_from(["9", "8", "3", "7", "5", "12", "16", "2", "1", "0", "4", "6"]),
                         st.text(alphabet="0123456789", min_size=8, max_size=8)).map(lambda s: s[:9])


@settings(max_examples=3000, deadline=None)
@given(national=st.one_of(_NATIONAL, _MOBILE_LIKE), prefix=st.sampled_from(["0", "84", "+84"]))
def test_the_plain_spelling_shortcut_agrees_with_a_full_parse(national, prefix):
    text = prefix + national
    phones._normalize.cache_clear()
    assert phones._normalize(text) == phones._parsed(text)


def test_the_shortcut_is_taken_for_the_common_spellings(monkeypatch):
    def no_parse(text):
        raise AssertionError(f"full parse of {text!r}")

    monkeypatch.setattr(phones, "_parsed", no_parse)
    phones._normalize.cache_clear()
    for raw in ("0987542228", "84987542228", "+84987542228", "0912345678", "0356789012"):
        assert phones.normalize_msisdn(raw) == "+84" + raw.lstrip("+")[-9:]
    phones._normalize.cache_clear()
