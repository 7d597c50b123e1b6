"""``python -m gateway import-dossiers FILE.csv``: dossiers from a spreadsheet, for one-stop
desks that have no integration with the sync API.

The file is read whole and checked before the database is touched: a header row whose
columns are the sync API's dossier fields (an unknown, repeated or missing required column
stops everything), UTF-8 with or without the BOM Excel writes (or ``--encoding``, e.g.
cp1258, whose Vietnamese tone marks arrive as combining characters: text is made NFC),
cells split on ``,`` or ``;``, whichever the header uses. An empty cell is an absent value.

Each row is then read by the sync API's own checks (``gateway.sync_input.Reader``, every
agency allowed) and the valid ones are applied through ``DossierService.upsert``, one
transaction per chunk of ``chunk_size`` rows, the status SMS written in that transaction
(the server's dispatcher sends them later; nothing here wakes it). A bad row is rejected
with its line number and reason and never holds back the others; a code seen on an earlier
line rejects the later line. Dossiers are keyed by code, so running the same file again
changes nothing and sends nothing. ``dry_run`` runs the same upserts and rolls each chunk
back, so its counts are exactly what a real run would do.

Nothing printed carries a phone or ID number: a reason names the field, and the few
reasons that quote a cell (an unknown agency or procedure code) have any long run of
digits masked.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import sys
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence, TextIO

from gateway.settings import Settings
from gateway.sync_input import DOSSIER_FIELDS, FieldFault, Reader
from models.dossiers import MAX_BATCH, DossierRecord, Outcome
from models.fastsql import SqlRunner
from models.unit_of_work import Services

DEFAULT_CHUNK = 500
# The columns without which no row can be valid (the sync API's required fields): their
# absence is a file fault, not one rejection per row.
REQUIRED_COLUMNS = ("code", "agency", "procedure", "applicant_name", "applicant_phone", "received_at")
MAX_FILE_BYTES = 200 * 1024 * 1024  # far above a desk's export; bounds what is read into memory

EXIT_OK = 0
EXIT_REJECTED = 1  # some rows rejected, the others imported
EXIT_FILE = 2  # the file could not be read as a dossier table: nothing imported
EXIT_STOPPED = 3  # the database refused a chunk: the chunks before it are committed

# Anything that may be a phone or ID number: 9 or more digits, whatever stands between them.
# Inside quotes (a cell quoted by a reason) wherever it stands; elsewhere only standing
# alone, so that the example code in a reason (000.17.22.H56-210531-0001) stays readable.
_NUMBERISH = re.compile(r"\+?\d(?:[\s.\-()/]*\d){8,}")
_STANDALONE = re.compile(r"(?<![\w.\-])" + _NUMBERISH.pattern)
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


def without_numbers(text: str) -> str:
    """``text`` with every run of 9+ digits cut to its first two (``09********``)."""

    def cut(match: re.Match[str]) -> str:
        digits = "".join(ch for ch in match.group(0) if ch.isdigit())
        return digits[:2] + "*" * (len(digits) - 2)

    def cut_if_personal(match: re.Match[str]) -> str:
        # Outside quotes the text is the gateway's own: a limit like 1000000000 stays.
        digits = "".join(ch for ch in match.group(0) if ch.isdigit())
        personal = len(digits) in (9, 12) or (digits.startswith(("0", "84")) and len(digits) in (10, 11))
        return cut(match) if personal else match.group(0)

    text = _QUOTED.sub(lambda quoted: _NUMBERISH.sub(cut, quoted.group(0)), text)
    return _STANDALONE.sub(cut_if_personal, text)


class ImportFileError(ValueError):
    """The file as a whole cannot be imported (missing, undecodable, bad header)."""


class ImportStopped(RuntimeError):
    """The database refused a chunk (not a row's fault: the rows were valid). The chunks
    before it are committed; running the file again redoes only what is missing."""

    def __init__(self, first_line: int, last_line: int, summary: "ImportSummary", cause: BaseException) -> None:
        super().__init__(f"the database refused the chunk of lines {first_line}-{last_line} ({type(cause).__name__})")
        self.first_line, self.last_line, self.summary = first_line, last_line, summary


@dataclass(frozen=True, slots=True)
class ImportOptions:
    dry_run: bool = False
    notify: bool = True  # False: record the dossiers, write no SMS (loading history)
    encoding: str | None = None  # None: UTF-8, with or without a BOM
    chunk_size: int = DEFAULT_CHUNK
    progress: bool = False  # a progress bar on stderr, when stderr is a terminal


@dataclass(frozen=True, slots=True)
class Row:
    line: int  # where the row starts in the file, the header being line 1
    values: dict[str, str]  # column -> non-empty cell
    fault: FieldFault | None = None  # a fault of the row's shape, found while reading


@dataclass(frozen=True, slots=True)
class DossierTable:
    path: Path
    columns: tuple[str, ...]
    delimiter: str
    rows: tuple[Row, ...]


@dataclass(frozen=True, slots=True)
class Rejected:
    line: int
    field: str
    reason: str

    def __str__(self) -> str:
        where = f"line {self.line}" + (f" [{self.field}]" if self.field else "")
        return without_numbers(f"{where}: {self.reason}")


@dataclass(slots=True)
class ImportSummary:
    path: str
    dry_run: bool
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    sms_queued: int = 0
    sms_skipped: dict[str, int] = field(default_factory=dict)  # reason -> count
    rejected: list[Rejected] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return EXIT_REJECTED if self.rejected else EXIT_OK

    def lines(self) -> list[str]:
        would = "would be " if self.dry_run else ""
        said = [
            f"{self.path}: {self.rows} rows" + (" (dry run: nothing written)" if self.dry_run else ""),
            f"{would}imported: {self.created + self.updated} (created {self.created}, updated {self.updated})",
            f"unchanged: {self.unchanged}",
            f"rejected: {len(self.rejected)}",
        ]
        said += [f"  {rejected}" for rejected in self.rejected]
        sms = f"SMS {'that would be ' if self.dry_run else ''}queued: {self.sms_queued}"
        if self.sms_skipped:
            sms += " (none for " + "; ".join(f"{n}: {why}" for why, n in sorted(self.sms_skipped.items())) + ")"
        said.append(sms)
        return said


# -- reading the file ---------------------------------------------------------------------

def _decode(raw: bytes, encoding: str | None) -> str:
    name = (encoding or "utf-8").strip()
    try:
        codec = "utf-8-sig" if name.lower().replace("_", "-") in ("utf-8", "utf8") else name
        "".encode(codec)  # an unknown name fails here, not as a decoding fault
    except LookupError:
        raise ImportFileError(f"unknown encoding {name[:40]!r}") from None
    try:
        text = raw.decode(codec)
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        hint = "" if encoding else "; if the file is not UTF-8, name its encoding, e.g. --encoding cp1258"
        raise ImportFileError(f"line {line} is not valid {name} (byte 0x{raw[exc.start]:02x}){hint}") from None
    # Windows-1258 spells most tones as combining marks; NFC makes them the letters the API
    # receives, so the same name from either source is the same name (and "unchanged").
    return unicodedata.normalize("NFC", text.removeprefix("\ufeff"))


def _delimiter(header_line: str) -> str:
    """``;`` (Excel in locales with a decimal comma) or ``,``: whichever the header uses."""
    return ";" if header_line.count(";") > header_line.count(",") else ","


def _header(cells: Sequence[str]) -> tuple[str, ...]:
    columns = tuple(cell.strip().lower() for cell in cells)
    unknown = [c for c in columns if c and c not in DOSSIER_FIELDS]
    if unknown:
        shown = ", ".join(repr(without_numbers(c[:40])) for c in unknown)
        raise ImportFileError(
            f"unknown column{'s' if len(unknown) > 1 else ''} {shown} in the header (line 1); "
            f"the columns are: {', '.join(sorted(DOSSIER_FIELDS))}")
    repeated = sorted({c for c in columns if c and columns.count(c) > 1})
    if repeated:
        raise ImportFileError(f"column {repeated[0]!r} appears twice in the header (line 1)")
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise ImportFileError(f"the header (line 1) has no column {', '.join(missing)} (required)")
    return columns


def read_table(path: Path, encoding: str | None = None) -> DossierTable:
    """The file's rows, checked as a whole; ImportFileError if it cannot be imported."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ImportFileError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise ImportFileError(f"{path} is a directory, not a CSV file") from None
    except OSError as exc:
        raise ImportFileError(f"cannot read {path}: {exc.strerror or type(exc).__name__}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ImportFileError(f"{path} is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB: split it")
    text = _decode(raw, encoding)
    if not text.strip():
        raise ImportFileError(f"{path} is empty: the first line must be the header")
    delimiter = _delimiter(text.splitlines()[0])
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    rows: list[Row] = []
    try:
        columns = _header(next(reader))
        width = len(columns)
        previous_end = reader.line_num
        for cells in reader:
            line, previous_end = previous_end + 1, reader.line_num
            if not any(cell.strip() for cell in cells):
                continue  # a blank line, or one of empty cells: nothing to import
            values = {}
            fault = None
            for index, cell in enumerate(cells):
                cell = cell.strip()
                if not cell:
                    continue
                if index >= width:
                    fault = FieldFault("", f"the line has {len(cells)} cells, the header {width} columns")
                    break
                if not columns[index]:
                    fault = FieldFault("", f"a value in column {index + 1}, which has no name in the header")
                    break
                values[columns[index]] = cell
            rows.append(Row(line, values, fault))
    except csv.Error as exc:
        raise ImportFileError(f"line {reader.line_num} is not valid CSV: {exc}") from None
    return DossierTable(path, columns, delimiter, tuple(rows))


# -- applying it --------------------------------------------------------------------------

class _RollBack(Exception):
    """Raised inside a dry run's transaction: the upserts ran, and are undone."""


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


async def import_table(settings: Settings, sql: SqlRunner, services: Services, table: DossierTable,
                       options: ImportOptions = ImportOptions(), clock: Callable[[], dt.datetime] = utcnow,
                       progress_stream: TextIO | None = None) -> ImportSummary:
    from tqdm import tqdm

    if not 1 <= options.chunk_size <= MAX_BATCH:
        raise ValueError(f"chunk_size must be 1 to {MAX_BATCH}")
    reader = Reader(services.dossiers.directory, services.citizens.id_hash, settings.locale.timezone)
    summary = ImportSummary(str(table.path), options.dry_run, rows=len(table.rows))
    source = f"import:{table.path.name}"[:40]
    seen: dict[str, int] = {}  # code -> line of its valid row
    pending: list[tuple[int, DossierRecord]] = []
    stream = progress_stream or sys.stderr
    bar = tqdm(total=len(table.rows), unit="row", desc="dry run" if options.dry_run else "import", file=stream,
               disable=not (options.progress and stream.isatty()))

    async def apply() -> None:
        records = [record for _, record in pending]
        try:
            async with sql.transaction() as tx:
                results = await services.dossiers.upsert(tx, records, clock(), source=source, notify=options.notify)
                if options.dry_run:
                    raise _RollBack
        except _RollBack:
            pass
        except Exception as exc:
            raise ImportStopped(pending[0][0], pending[-1][0], summary, exc) from exc
        for result in results:
            if result.outcome is Outcome.CREATED:
                summary.created += 1
            elif result.outcome is Outcome.UPDATED:
                summary.updated += 1
            else:
                summary.unchanged += 1
            if result.notified is not None:
                if result.notified.sms_id is not None:
                    summary.sms_queued += 1
                else:
                    reason = result.notified.skipped
                    summary.sms_skipped[reason] = summary.sms_skipped.get(reason, 0) + 1
        pending.clear()

    read = 0
    with bar:
        for row in table.rows:
            read += 1
            try:
                if row.fault is not None:
                    raise row.fault
                record = await reader.dossier(row.values, allowed_agencies=None)
                if record.code in seen:
                    raise FieldFault("code", f"the same code as line {seen[record.code]}")
            except FieldFault as fault:
                summary.rejected.append(Rejected(row.line, fault.field, str(fault)))
                continue
            seen[record.code] = row.line
            pending.append((row.line, record))
            if len(pending) >= options.chunk_size:
                await apply()
                bar.update(read)
                read = 0
        if pending:
            await apply()
        bar.update(read)
    return summary


async def import_dossiers(settings: Settings, sql: SqlRunner, services: Services, path: Path,
                          options: ImportOptions = ImportOptions(), clock: Callable[[], dt.datetime] = utcnow,
                          progress_stream: TextIO | None = None) -> ImportSummary:
    """Read ``path`` and import it (ImportFileError, before any write, if it cannot be)."""
    table = read_table(path, options.encoding)
    return await import_table(settings, sql, services, table, options, clock, progress_stream)
