import pytest

from models import dossier_code


@pytest.mark.parametrize(
    "raw, expected_text, expected_tail",
    [
        ("000.17.22.H56-210531-0001", "000.17.22.H56-210531-0001", "2105310001"),
        ("000.a0.01.h26-210212-9090", "000.A0.01.H26-210212-9090", "2102129090"),
        (" 000.17.22.H56 - 210531 - 0001 ", "000.17.22.H56-210531-0001", "2105310001"),
        ("g09.20-20260609-0092637", "G09.20-20260609-0092637", "202606090092637"),
        ("000.00.21.H23-260101-0001", "000.00.21.H23-260101-0001", "2601010001"),
    ],
)
def test_full_codes_are_normalised(raw, expected_text, expected_tail):
    code = dossier_code.parse(raw)
    assert code is not None
    assert code.text == expected_text
    assert code.tail == expected_tail


@pytest.mark.parametrize(
    "raw",
    ["", "000.17.22.H56", "000.17.22.H56-2105-0001", "000.17.22.H56-210531-01", "2105310001", "000.17.22.H56-210531-0001-X"],
)
def test_non_codes_are_rejected(raw):
    assert dossier_code.parse(raw) is None


@pytest.mark.parametrize(
    "raw, expected",
    [("2105310001", "2105310001"), (" 2105 310001 ", "2105310001"), ("202606090092637", "202606090092637"),
     ("210531001", None), ("21053100011234567", None), ("21053100a1", None)],
)
def test_tails(raw, expected):
    assert dossier_code.parse_tail(raw) == expected
