"""``python -m gateway import-dossiers FILE.csv``: the real command in a subprocess, and
``gateway.importer`` called as the command calls it, on a real database (SQLite, or
PostgreSQL when GATEWAY_TEST_DATABASE_URL names one) seeded with the demo commune.

What the import wrote is read back from the tables: ``dossier``, ``outbound_sms`` (the
status SMS, queued for the server's dispatcher) and ``dossier_notification``.
"""

from __future__ import annotations

import csv
import io
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway import importer
from gateway.api_sync import openapi_schemas
from gateway.importer import ImportFileError, ImportOptions, ImportSummary
from gateway.outbox import Outbox
from gateway.services import build_services
from gateway.settings import Settings
from models.db import open_database
from models.directory import DatabaseDirectory
from models.fastsql import SqlRunner, open_runner
from models.seed import seed
from models.unit_of_work import Services
from tests.servers import run_cli

AGENCY = "000.32.22.H23"  # Phuong Ky (seed)
OTHER_AGENCY = "000.33.22.H23"  # Tan Ky (seed)
COLUMNS = ["code", "agency", "procedure", "applicant_name", "applicant_phone", "id_number", "received_at", "due_at",
           "fee_due", "pickup_place", "mode", "status", "status_note", "status_at"]
PHONE_DIGITS = "912345678"  # of 0912345678, in any spelling
ID_NUMBER = "030185001234"  # a valid 12-digit personal ID (Hai Duong, a man born 1985)


def row(number: int = 1, **extra: object) -> dict[str, object]:
    values: dict[str, object] = {
        "code": f"{AGENCY}-250101-{number:04d}",
        "agency": AGENCY,
        "procedure": "1.001193",
        "applicant_name": "Tran Thi Binh",
        "applicant_phone": "0912345678",
        "received_at": "2026-12-01T08:00:00+07:00",
        "due_at": "2026-12-04",
        "status": 2,
    }
    values.update(extra)
    return values


def csv_text(rows: list[dict[str, object]], columns: list[str] = COLUMNS, delimiter: str = ",") -> str:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(columns)
    for values in rows:
        writer.writerow(["" if values.get(c) is None else values.get(c) for c in columns])
    return out.getvalue()


def write_csv(path: Path, rows: list[dict[str, object]], *, columns: list[str] = COLUMNS, delimiter: str = ",",
              encoding: str = "utf-8") -> Path:
    path.write_bytes(csv_text(rows, columns, delimiter).encode(encoding))
    return path


@dataclass
class Desk:
    """The import as the CLI runs it: its own runner, outbox and services on the database."""

    settings: Settings
    sql: SqlRunner
    services: Services

    async def run(self, path: Path, **options: object) -> ImportSummary:
        return await importer.import_dossiers(self.settings, self.sql, self.services, path, ImportOptions(**options))

    async def count(self, table: str, where: str = "1=1", params: tuple = ()) -> int:
        return (await self.sql.fetch(f"SELECT COUNT(*) FROM {table} WHERE {where}", params))[0][0]

    async def counts(self) -> dict[str, int]:
        return {t: await self.count(t) for t in
                ("dossier", "dossier_status_change", "dossier_notification", "outbound_sms")}

    async def imported(self) -> dict[str, tuple]:
        rows = await self.sql.fetch(
            "SELECT code, applicant_name, applicant_phone, status, applicant_id_hash FROM dossier"
            " WHERE code LIKE ? ORDER BY code", (f"{AGENCY}-250101-%",))
        return {r[0]: r[1:] for r in rows}


@pytest.fixture
async def desk(settings):
    async with open_database(settings.database.url, run_migrations=True):
        await seed()
        sql = open_runner(settings.database.url)
        outbox = Outbox(settings, sql=sql)
        directory = DatabaseDirectory(settings.ussd.catalogue_cache_seconds, sql)
        try:
            yield Desk(settings, sql, build_services(settings, outbox, directory))
        finally:
            await sql.close()


def settings_file(tmp_path: Path, settings: Settings) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text(f'[database]\nurl = "{settings.database.url}"\n[logging]\nformat = "json"\n')
    return path


def assert_no_numbers(text: str) -> None:
    """No phone or ID number, in any spelling, on any line."""
    for line in text.splitlines():
        digits = "".join(ch for ch in line if ch.isdigit())
        for secret in (PHONE_DIGITS, ID_NUMBER, ID_NUMBER[:9]):
            assert secret not in digits, line


# -- through the real command -------------------------------------------------------------

async def test_the_command_imports_reports_rejected_lines_and_runs_again_unchanged(desk, settings, tmp_path):
    path = write_csv(tmp_path / "dossiers.csv", [
        row(1, id_number=ID_NUMBER),
        row(2, applicant_phone="not a phone"),
        row(3, status=9, pickup_place="Bo phan Mot cua", fee_due=8000),
    ])
    before = await desk.counts()
    code, out, err = await run_cli(settings_file(tmp_path, settings), "import-dossiers", str(path))
    assert code == 1, (out, err)
    assert out.splitlines() == [
        f"{path}: 3 rows",
        "imported: 2 (created 2, updated 0)",
        "unchanged: 0",
        "rejected: 1",
        "  line 3 [applicant_phone]: applicant_phone is not a phone number",
        "SMS queued: 2",
    ], out
    assert "it/s" not in err and "row/s" not in err and "\r" not in err  # no progress bar off a terminal
    after = await desk.counts()
    assert after["dossier"] - before["dossier"] == 2
    assert after["outbound_sms"] - before["outbound_sms"] == 2
    imported = await desk.imported()
    assert sorted(imported) == [f"{AGENCY}-250101-0001", f"{AGENCY}-250101-0003"]
    assert imported[f"{AGENCY}-250101-0001"][3] not in (None, ID_NUMBER)  # hashed
    assert_no_numbers(out + err)

    path = write_csv(tmp_path / "dossiers.csv", [row(1, id_number=ID_NUMBER), row(3, status=9, pickup_place="Bo phan Mot cua", fee_due=8000)])
    code, out, err = await run_cli(settings_file(tmp_path, settings), "import-dossiers", "--quiet", str(path))
    assert code == 0, (out, err)
    assert out.splitlines()[1:] == ["imported: 0 (created 0, updated 0)", "unchanged: 2", "rejected: 0",
                                    "SMS queued: 0"], out
    assert await desk.counts() == after


async def test_the_command_refuses_a_bad_file_with_exit_2_and_writes_nothing(desk, settings, tmp_path):
    before = await desk.counts()
    path = write_csv(tmp_path / "dossiers.csv", [row(1)], columns=COLUMNS + ["applicant_email"])
    code, out, err = await run_cli(settings_file(tmp_path, settings), "import-dossiers", str(path))
    assert code == 2, (out, err)
    assert "unknown column 'applicant_email'" in err and out == ""
    code, out, err = await run_cli(settings_file(tmp_path, settings), "import-dossiers", str(tmp_path / "none.csv"))
    assert code == 2 and "no such file" in err, (out, err)
    (tmp_path / "cp1258.csv").write_bytes(csv_text([row(1, applicant_name="Nguy\xea\u0303n")]).encode("cp1258"))
    code, out, err = await run_cli(settings_file(tmp_path, settings), "import-dossiers", str(tmp_path / "cp1258.csv"))
    assert code == 2 and "line 2 is not valid utf-8" in err and "--encoding" in err, (out, err)
    assert await desk.counts() == before


async def test_the_command_dry_run_and_no_notify(desk, settings, tmp_path):
    path = write_csv(tmp_path / "dossiers.csv", [row(1), row(2)])
    before = await desk.counts()
    code, out, err = await run_cli(settings_file(tmp_path, settings), "import-dossiers", "--dry-run", str(path))
    assert code == 0, (out, err)
    assert out.splitlines() == [f"{path}: 2 rows (dry run: nothing written)",
                                "would be imported: 2 (created 2, updated 0)", "unchanged: 0", "rejected: 0",
                                "SMS that would be queued: 2"], out
    assert await desk.counts() == before
    code, out, err = await run_cli(settings_file(tmp_path, settings), "import-dossiers", "--no-notify", str(path))
    assert code == 0, (out, err)
    after = await desk.counts()
    assert after["dossier"] == before["dossier"] + 2 and after["outbound_sms"] == before["outbound_sms"]


# -- the module, as the command calls it --------------------------------------------------

async def test_a_good_file_creates_the_dossiers_and_queues_their_sms(desk, tmp_path):
    path = write_csv(tmp_path / "d.csv", [
        row(1, id_number=ID_NUMBER, fee_due="20000", mode="toan_trinh"),
        row(2, applicant_phone="+84 912 345 679", status=""),
        row(3, applicant_phone="0220 3123 456"),  # a landline: stored, its SMS skipped and recorded
    ])
    summary = await desk.run(path)
    assert (summary.rows, summary.created, summary.updated, summary.unchanged, summary.rejected) == (3, 3, 0, 0, [])
    assert summary.exit_code == 0
    assert summary.sms_queued == 2 and summary.sms_skipped == {"applicant phone is not a valid VN mobile number": 1}
    imported = await desk.imported()
    assert imported[f"{AGENCY}-250101-0001"][:3] == ("Tran Thi Binh", "+84912345678", 2)
    assert imported[f"{AGENCY}-250101-0002"][1:3] == ("+84912345679", 1)  # no status: filed (1)
    assert imported[f"{AGENCY}-250101-0001"][3] == desk.services.citizens.id_hash(ID_NUMBER)
    sms = await desk.sql.fetch(
        "SELECT d.code, o.to_phone, o.status, o.text, n.skipped FROM dossier_notification n"
        " JOIN dossier d ON d.id = n.dossier_id LEFT JOIN outbound_sms o ON o.id = n.outbound_sms_id"
        " WHERE d.code LIKE ? ORDER BY d.code", (f"{AGENCY}-250101-%",))
    assert [(s[0][-4:], s[1], s[2], s[4]) for s in sms] == [
        ("0001", "+84912345678", "queued", ""),
        ("0002", "+84912345679", "queued", ""),
        ("0003", None, None, "applicant phone is not a valid VN mobile number"),
    ]
    assert "tiep nhan" in sms[0][3]
    source = await desk.sql.fetch("SELECT source FROM dossier_status_change c JOIN dossier d ON d.id = c.dossier_id"
                                  " WHERE d.code = ?", (f"{AGENCY}-250101-0001",))
    assert source == [("create",)]


async def test_a_second_run_is_all_unchanged_and_sends_nothing(desk, tmp_path):
    path = write_csv(tmp_path / "d.csv", [row(n, id_number=ID_NUMBER, pickup_place="Mot cua, tang 1",
                                              applicant_name="Nguyễn Thị Hồng") for n in range(1, 6)])
    first = await desk.run(path)
    assert first.created == 5 and first.sms_queued == 5
    before = await desk.counts()
    second = await desk.run(path)
    assert (second.created, second.updated, second.unchanged, second.sms_queued) == (0, 0, 5, 0)
    assert await desk.counts() == before


async def test_bad_rows_are_reported_with_their_lines_while_good_rows_import(desk, tmp_path):
    text = csv_text([
        row(1),                                                    # line 2
        row(2, applicant_phone="call me"),                         # line 3
        row(3, status_note="Can bo sung:\nban sao CCCD", status=5),  # lines 4-5: a cell over two lines
        row(4, status=11),                                         # line 6
        row(5, procedure="9.999999", status_note="a\nb"),          # lines 7-8: reported at its first
        row(6, received_at=""),                                    # line 9
        row(7, id_number="12345"),                                 # line 10
        # line 11: blank, skipped
        row(8, received_at="01/12/2026"),                          # line 12
        row(9, code="HS-1"),                                       # line 13
        row(10, fee_due="20.000"),                                 # line 14
        row(11, mode="buu_dien"),                                  # line 15
        row(12, code=f"{OTHER_AGENCY}-250101-0012", agency=OTHER_AGENCY),  # line 16: any agency
        row(13),                                                   # line 17: one cell too many
    ])
    lines = text.split("\r\n")
    lines.insert(8, "")
    lines[-2] += ",extra"
    path = tmp_path / "d.csv"
    path.write_text("\r\n".join(lines), encoding="utf-8")
    summary = await desk.run(path, chunk_size=2)
    assert [str(r) for r in summary.rejected] == [
        "line 3 [applicant_phone]: applicant_phone is not a phone number",
        "line 6 [status]: status must be a code from 1 to 10",
        "line 7 [procedure]: agency 000.32.22.H23 has no procedure '9.999999'",
        "line 9 [received_at]: received_at is required",
        "line 10 [id_number]: id_number is not a 9-digit CMND or a 12-digit personal ID number",
        "line 12 [received_at]: received_at must be ISO 8601, e.g. 2026-12-02T08:30:00+07:00 or 2026-12-02",
        "line 13 [code]: code is not a dossier code like 000.17.22.H56-210531-0001",
        "line 14 [fee_due]: fee_due must be a whole number of dong from 0 to 1000000000",
        "line 15 [mode]: mode must be mot_phan or toan_trinh",
        "line 17: the line has 15 cells, the header 14 columns",
    ]
    assert [(r.line, r.field) for r in summary.rejected][-1] == (17, "")
    assert (summary.rows, summary.created, summary.exit_code) == (13, 3, 1)
    assert sorted(c[-4:] for c in await desk.imported()) == ["0001", "0003"]
    assert await desk.count("dossier", "code = ?", (f"{OTHER_AGENCY}-250101-0012",)) == 1
    note = await desk.sql.fetch("SELECT status_note FROM dossier WHERE code = ?", (f"{AGENCY}-250101-0003",))
    assert note == [("Can bo sung:\nban sao CCCD",)]
    printed = summary.lines()
    assert printed[3] == "rejected: 10" and printed[4:14] == [f"  {r}" for r in summary.rejected]


async def test_a_dry_run_writes_nothing_and_counts_exactly_what_a_run_does(desk, tmp_path):
    await desk.run(write_csv(tmp_path / "first.csv", [row(1), row(2), row(3)]))
    path = write_csv(tmp_path / "second.csv", [
        row(1),                               # unchanged
        row(2, status=4),                     # updated: a status change, SMS
        row(3, pickup_place="Tang 2"),        # updated: data only (the status SMS does not say it)
        row(4), row(5),                       # created
        row(6, applicant_phone="x"),          # rejected
    ])
    before = await desk.counts()
    state = await desk.imported()
    dry = await desk.run(path, dry_run=True, chunk_size=2)
    assert await desk.counts() == before and await desk.imported() == state
    assert (dry.created, dry.updated, dry.unchanged, len(dry.rejected), dry.sms_queued) == (2, 2, 1, 1, 3)
    assert dry.dry_run and dry.lines()[1] == "would be imported: 4 (created 2, updated 2)"
    real = await desk.run(path, chunk_size=2)
    assert (real.created, real.updated, real.unchanged, len(real.rejected), real.sms_queued) == (2, 2, 1, 1, 3)
    after = await desk.counts()
    assert after["dossier"] == before["dossier"] + 2 and after["outbound_sms"] == before["outbound_sms"] + 3


async def test_an_excel_file_with_bom_and_semicolons(desk, tmp_path):
    path = write_csv(tmp_path / "excel.csv", [row(1, applicant_name="Nguyễn Thị Hồng", pickup_place="Bộ phận Một cửa; tầng 1"),
                                              row(2)], delimiter=";", encoding="utf-8-sig")
    assert path.read_bytes().startswith(b"\xef\xbb\xbfcode;")
    summary = await desk.run(path)
    assert (summary.created, summary.rejected) == (2, [])
    assert (await desk.imported())[f"{AGENCY}-250101-0001"][0] == "Nguyễn Thị Hồng"
    place = await desk.sql.fetch("SELECT pickup_place FROM dossier WHERE code = ?", (f"{AGENCY}-250101-0001",))
    assert place == [("Bộ phận Một cửa; tầng 1",)]


async def test_windows_1258_with_encoding(desk, tmp_path):
    # Windows-1258 writes most tones as combining marks after the base letter.
    name_1258 = "Nguy\xea\u0303n Thi\u0323 H\xf4\u0300ng"
    path = tmp_path / "cp1258.csv"
    path.write_bytes(csv_text([row(1, applicant_name=name_1258)]).encode("cp1258"))
    with pytest.raises(ImportFileError, match="line 2 is not valid utf-8"):
        await desk.run(path)
    summary = await desk.run(path, encoding="windows-1258")
    assert summary.created == 1
    stored = (await desk.imported())[f"{AGENCY}-250101-0001"][0]
    assert stored == "Nguyễn Thị Hồng" and unicodedata.is_normalized("NFC", stored)
    # The same dossier sent as UTF-8 NFC is the same record.
    again = await desk.run(write_csv(tmp_path / "utf8.csv", [row(1, applicant_name="Nguyễn Thị Hồng")]))
    assert again.unchanged == 1
    with pytest.raises(ImportFileError, match="unknown encoding"):
        await desk.run(path, encoding="klingon")


@pytest.mark.parametrize("columns, message", [
    (COLUMNS + ["applicant_email"], "unknown column 'applicant_email'"),
    (["Code", "AGENCY"] + COLUMNS[2:] + ["note", ""], "unknown column 'note'"),
    ([c for c in COLUMNS if c != "received_at"], "no column received_at"),
    (COLUMNS + ["status"], "column 'status' appears twice"),
])
async def test_a_bad_header_refuses_the_file_and_writes_nothing(desk, tmp_path, columns, message):
    before = await desk.counts()
    path = write_csv(tmp_path / "d.csv", [row(1), row(2)], columns=columns)
    with pytest.raises(ImportFileError, match=message):
        await desk.run(path)
    assert await desk.counts() == before


async def test_header_names_are_forgiving_and_unnamed_empty_columns_ignored(desk, tmp_path):
    text = csv_text([row(1)]).replace("code,agency,", " Code ,AGENCY,", 1).replace("\r\n", ",\r\n")
    path = tmp_path / "d.csv"
    path.write_text(text)  # a trailing delimiter on every line: an unnamed, empty column
    summary = await desk.run(path)
    assert (summary.created, summary.rejected) == (1, [])


async def test_no_notify_records_without_sms(desk, tmp_path):
    before = await desk.counts()
    summary = await desk.run(write_csv(tmp_path / "d.csv", [row(1), row(2, status=9)]), notify=False)
    assert (summary.created, summary.sms_queued, summary.sms_skipped) == (2, 0, {})
    after = await desk.counts()
    assert after["dossier"] == before["dossier"] + 2
    assert after["outbound_sms"] == before["outbound_sms"]
    assert after["dossier_notification"] == before["dossier_notification"]


async def test_a_code_repeated_in_the_file_rejects_the_later_line(desk, tmp_path):
    path = write_csv(tmp_path / "d.csv", [
        row(1, applicant_phone="bad"),                 # line 2: rejected, so line 4 is the first valid one
        row(2),                                        # line 3
        row(1),                                        # line 4
        row(2, code=f" {AGENCY.lower()} - 250101-0002", status=4),  # line 5: the same code, spelt otherwise
        row(1, status=9),                              # line 6
    ])
    summary = await desk.run(path, chunk_size=1)
    assert [str(r) for r in summary.rejected] == [
        "line 2 [applicant_phone]: applicant_phone is not a phone number",
        "line 5 [code]: the same code as line 3",
        "line 6 [code]: the same code as line 4",
    ]
    assert summary.created == 2
    assert {c[-4:]: v[2] for c, v in (await desk.imported()).items()} == {"0001": 2, "0002": 2}


async def test_no_phone_or_id_number_in_clear_in_what_is_printed(desk, tmp_path):
    path = write_csv(tmp_path / "d.csv", [
        row(1, id_number="0301850012"),                          # a bad ID number
        row(2, agency="0912 345 678"),                           # columns mixed up: a phone as the agency
        row(3, procedure=ID_NUMBER),                             # an ID number as the procedure
        row(4, applicant_phone="+84 912-345-678 ext"),           # not a phone
        row(5, id_number=ID_NUMBER, applicant_phone="0912345678", status=12),
    ])
    for dry_run in (True, False):
        summary = await desk.run(path, dry_run=dry_run)
        assert len(summary.rejected) == 5
        assert_no_numbers("\n".join(summary.lines()))
    assert str(summary.rejected[1]).startswith("line 3 [agency]: no agency '09********'")
    with pytest.raises(ImportFileError) as refused:
        await desk.run(write_csv(tmp_path / "h.csv", [], columns=COLUMNS + ["0912345678"]))
    assert_no_numbers(str(refused.value))


async def test_the_progress_bar_shows_on_a_terminal_only(desk, tmp_path):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    path = write_csv(tmp_path / "d.csv", [row(n) for n in range(1, 8)])
    for options, shown in ((ImportOptions(progress=True, chunk_size=3), True),
                           (ImportOptions(progress=False, dry_run=True), False)):
        stream = Terminal()
        await importer.import_dossiers(desk.settings, desk.sql, desk.services, path, options, progress_stream=stream)
        assert ("7/7" in stream.getvalue()) is shown, stream.getvalue()
    stream = io.StringIO()  # not a terminal
    await importer.import_dossiers(desk.settings, desk.sql, desk.services, path, ImportOptions(progress=True),
                                   progress_stream=stream)
    assert stream.getvalue() == ""


async def test_a_header_only_file_imports_nothing_and_an_empty_one_is_refused(desk, tmp_path):
    summary = await desk.run(write_csv(tmp_path / "d.csv", []))
    assert (summary.rows, summary.exit_code) == (0, 0)
    (tmp_path / "empty.csv").write_bytes(b"\xef\xbb\xbf\r\n")
    with pytest.raises(ImportFileError, match="empty"):
        await desk.run(tmp_path / "empty.csv")


def test_the_required_columns_are_the_sync_apis_required_fields():
    assert set(importer.REQUIRED_COLUMNS) == set(openapi_schemas()["Dossier"]["required"])
    assert set(COLUMNS) == set(openapi_schemas()["Dossier"]["properties"]) == importer.DOSSIER_FIELDS
