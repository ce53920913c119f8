"""Read a shop's data directory, validate it and return the accepted rows as a `Shop`.

Every command that reads a data directory goes through `load_shop`, so the data a model sees has
always passed the same rules (`features.validation`). A `postgresql://...?schema=S` URL in place
of the directory reads the same four tables from PostgreSQL (`features.database`). Reading is
vectorised (pyarrow CSV reader, pandas parsing) so ten million purchase lines load in seconds,
not minutes.
"""

from __future__ import annotations

import csv
import io
import mmap
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from features.contract import FILE_SUFFIXES, TABLES, Table
from features.shop import Shop
from features.validation import (
    RawTable,
    TableReport,
    TableVerdict,
    ValidationReport,
    validate_tables,
)

REJECTS_DIRNAME = "_rejects"
REJECT_COLUMNS = ("line", "reason", "detail")
"""The first columns of a rejects file; the rejected row's own columns follow, as text. A
database table's rejects file has `key` (e.g. `order_id=O1 item_id=I4`) in place of `line`."""
_CHUNK_BYTES = 1 << 24


class UnreadableTable(ValueError):
    """A table file cannot be read at all (not CSV/Parquet, bad encoding, missing column...)."""


class DataRejected(ValueError):
    """More rows were rejected than `max_reject_rate` allows; `report` says which and why."""

    def __init__(self, message: str, report: ValidationReport) -> None:
        super().__init__(message)
        self.report = report


class RejectsNotWritable(ValueError):
    """The rejects file cannot be written where it was meant to go."""


@dataclass(frozen=True)
class LoadedShop:
    """A validated shop and the report of what was accepted and rejected."""

    shop: Shop
    report: ValidationReport


def load_shop(
    directory: Path | str,
    as_of: pd.Timestamp | None = None,
    max_reject_rate: float = 0.01,
    rejects_dir: Path | None = None,
) -> LoadedShop:
    """Read, validate and return the shop in `directory` (tables as NAME.csv or NAME.parquet).

    `as_of` (default: now; a naive value means UTC): rows dated after it are rejected as data
    from the future. It is the time the data describes ("now"), not a feature cut-off: to see
    the shop as it was at an earlier time, load it and call `shop.before(cut_off)`.
    Rejected rows are written whole to `rejects_dir` (default `directory/_rejects/`) as
    `NAME.rejects.csv`; input files are never modified. Raises `UnreadableTable` when a file
    cannot be read at all, `DataRejected` when a table's reject rate exceeds `max_reject_rate`
    (a fraction, 0.01 = 1%), `RejectsNotWritable` when rejects cannot be written.

    `directory` may instead be a `postgresql://USER@HOST:PORT/DB?schema=SCHEMA` URL: the tables
    (or views) of that schema are read (`features.database.read_database`, which raises
    `DatabaseUnreadable`); the report names each rejected row by its key, and rejected rows are
    written to `rejects_dir` only when it is given."""
    from features.postgres_url import is_postgres_url, split_url

    as_of = to_utc(as_of) if as_of is not None else pd.Timestamp.now(tz="UTC")
    source: Path | str
    if is_postgres_url(directory):
        from features.database import read_database

        source = split_url(str(directory)).masked
        raw_tables, notes = read_database(str(directory))
        rejects_to = Path(rejects_dir) if rejects_dir is not None else None
    else:
        source = Path(directory)
        if not source.is_dir():
            raise FileNotFoundError(f"data directory {source} does not exist")
        rejects_to = Path(rejects_dir) if rejects_dir is not None else source / REJECTS_DIRNAME
        raw_tables, notes = read_directory(source)
    verdicts = validate_tables(raw_tables, as_of)
    reports = {
        name: _table_report(verdict, raw_tables.get(name), rejects_to)
        for name, verdict in verdicts.items()
    }
    report = ValidationReport(source, as_of, max_reject_rate, reports, notes)
    shop = Shop(
        purchases=verdicts["purchases"].accepted,
        feedback=verdicts["feedback"].accepted,
        items=verdicts["items"].accepted,
        customers=verdicts["customers"].accepted,
    )
    over = report.tables_over_limit
    if over:
        raise DataRejected(_rejected_message(report, over), report)
    return LoadedShop(shop, report)


def to_utc(timestamp: pd.Timestamp | str) -> pd.Timestamp:
    """A timestamp as tz-aware UTC: a naive value is taken as UTC, an aware one converted."""
    stamp = pd.Timestamp(timestamp)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def table_path(directory: Path, table: Table) -> Path | None:
    """The file holding `table` in `directory` (None when absent).

    Raises `UnreadableTable` when both NAME.csv and NAME.parquet exist."""
    found = [directory / f"{table.name}{suffix}" for suffix in FILE_SUFFIXES]
    found = [path for path in found if path.exists()]
    if len(found) > 1:
        raise UnreadableTable(f"{found[0]} and {found[1]} both exist: keep only one file per table")
    return found[0] if found else None


def read_directory(directory: Path) -> tuple[dict[str, RawTable], list[str]]:
    """Read every contract table present in `directory`; notes list files that were ignored."""
    raw_tables: dict[str, RawTable] = {}
    for table in TABLES.values():
        path = table_path(directory, table)
        if path is None:
            if table.name == "purchases":
                raise UnreadableTable(
                    f"{directory}: no purchases.csv or purchases.parquet; "
                    "the purchases table is required (see docs/data-contract.md)"
                )
            continue
        raw_tables[table.name] = read_table(path, table)
    known = {f"{t}{s}" for t in TABLES for s in FILE_SUFFIXES}
    ignored = sorted(
        p.name
        for p in directory.iterdir()
        if p.is_file() and p.suffix in FILE_SUFFIXES and p.name not in known
    )
    notes = (
        [f"ignored file(s) that are not contract tables: {', '.join(ignored)}"] if ignored else []
    )
    return raw_tables, notes


def read_table(path: Path, table: Table) -> RawTable:
    """Read one table file as raw values with line numbers; raises `UnreadableTable`."""
    if path.suffix == ".parquet":
        raw = _read_parquet(path, table)
    else:
        raw = _read_csv(path, table)
    _check_columns(path, table, list(raw.frame.columns))
    return raw


def _check_columns(path: Path, table: Table, columns: list[str]) -> None:
    duplicated = sorted({c for c in columns if columns.count(c) > 1})
    if duplicated:
        raise UnreadableTable(f"{path}: column(s) {', '.join(duplicated)} appear more than once")
    missing = [c for c in table.required_columns if c not in columns]
    if missing:
        raise UnreadableTable(
            f"{path}: missing required column(s) {', '.join(missing)} "
            f"(found: {', '.join(columns) or 'none'}); see docs/data-contract.md"
        )


def _read_parquet(path: Path, table: Table) -> RawTable:
    import pyarrow.parquet as pq

    try:
        arrow = pq.read_table(path)
    except Exception as error:  # pyarrow raises several types for a non-Parquet file
        raise UnreadableTable(f"{path}: not a readable Parquet file ({error})") from error
    frame = arrow.to_pandas()
    return RawTable(table.name, frame, np.arange(1, len(frame) + 1), source=path)


def _read_csv(path: Path, table: Table) -> RawTable:
    """Read a CSV with every column as text; line numbers count the header as line 1."""
    header = _read_header(path)
    for separator in (";", "\t", "|"):
        if len(header) == 1 and separator in header[0]:
            raise UnreadableTable(
                f"{path}: the header {header[0]!r} looks separated by {separator!r}; "
                "Patronage reads comma-separated files (save as CSV with commas)"
            )
    arrow, bad_rows = _arrow_csv(path, header, use_threads=True)
    if bad_rows:  # read again in one thread: the malformed lines then come in file order
        arrow, bad_rows = _arrow_csv(path, header, use_threads=False)
    frame = arrow.to_pandas()
    if len(frame.columns) == len(header):
        frame.columns = header  # names with the spaces around them trimmed
    embedded = _embedded_newlines(arrow)
    if embedded.any():
        # Quoted values span lines: number rows by counting them, if nothing else interferes.
        line_numbers = 2 + np.arange(len(frame)) + np.concatenate(([0], np.cumsum(embedded)[:-1]))
        if bad_rows or _physical_lines(path) != 1 + len(frame) + int(embedded.sum()):
            return _read_csv_slowly(path, table, header)
        return RawTable(table.name, frame, line_numbers.astype(np.int64), source=path)
    lines = _record_lines(path, bad_rows)
    if lines is None or len(lines[0]) != len(frame):
        return _read_csv_slowly(path, table, header)
    good_lines, bad_lines, bad_texts = lines
    if not bad_texts:
        return RawTable(table.name, frame, good_lines, source=path)
    return _with_bad_rows(table, path, frame, header, good_lines, bad_lines, bad_texts)


def _arrow_csv(path: Path, header: list[str], use_threads: bool) -> tuple[pa.Table, list[str]]:
    """Every column as text; the lines with the wrong number of values are skipped and
    returned (as their text)."""
    import pyarrow.csv as pcsv

    bad_rows: list[str] = []

    def keep_bad_row(row: object) -> str:
        bad_rows.append(getattr(row, "text", ""))
        return "skip"

    try:
        arrow = pcsv.read_csv(
            path,
            read_options=pcsv.ReadOptions(block_size=_CHUNK_BYTES, use_threads=use_threads),
            parse_options=pcsv.ParseOptions(
                newlines_in_values=True, invalid_row_handler=keep_bad_row
            ),
            convert_options=pcsv.ConvertOptions(
                column_types={name: pa.string() for name in header},
                strings_can_be_null=True,
                null_values=[""],
                quoted_strings_can_be_null=True,
            ),
        )
    except pa.ArrowInvalid as error:
        if "UTF8" in str(error):
            raise UnreadableTable(_encoding_problem(path)) from error
        raise UnreadableTable(f"{path}: not a readable CSV file ({error})") from error
    return arrow, bad_rows


def _record_lines(
    path: Path, bad_rows: list[str]
) -> tuple[np.ndarray, np.ndarray, list[str]] | None:
    """For a CSV without line breaks inside values: the 1-based line of every record the
    reader kept, and of every malformed line (`bad_rows`, in file order) with its text.

    Blank and whitespace-only lines are skipped, like the reader does. None when a malformed
    line cannot be found (the caller then counts lines with Python's csv module)."""
    data = np.memmap(path, dtype=np.uint8, mode="r")  # read-only: the input is never touched
    newlines = np.concatenate(
        [np.zeros(0, dtype=np.int64)]
        + [
            np.flatnonzero(data[i : i + _CHUNK_BYTES] == 10) + i
            for i in range(0, len(data), _CHUNK_BYTES)
        ]
    )
    ends = newlines if len(data) and data[-1] == 10 else np.append(newlines, len(data))
    starts = np.concatenate(([0], newlines + 1))[: len(ends)]
    lengths = ends - starts
    carriage = lengths == 1
    carriage[carriage] = data[starts[carriage]] == 13
    blank = (lengths == 0) | carriage
    bad_index: list[int] = []
    position = 0
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as raw:
        for text in bad_rows:
            needle = text.encode("utf-8")
            while True:
                found = raw.find(needle, position)
                if found < 0:
                    return None
                line = int(np.searchsorted(starts, found, side="right")) - 1
                if starts[line] == found and ends[line] - found - len(needle) in (0, 1):
                    break
                position = found + 1
            bad_index.append(line)
            position = int(ends[line])
    keep = ~blank
    keep[0] = False  # the header
    keep[bad_index] = False
    good_lines = np.flatnonzero(keep) + 1
    real_bad = [(i + 1, t) for i, t in zip(bad_index, bad_rows, strict=True) if t.strip()]
    bad_lines = np.asarray([line for line, _ in real_bad], dtype=np.int64)
    return good_lines, bad_lines, [text for _, text in real_bad]


def _with_bad_rows(
    table: Table,
    path: Path,
    frame: pd.DataFrame,
    header: list[str],
    good_lines: np.ndarray,
    bad_lines: np.ndarray,
    bad_texts: list[str],
) -> RawTable:
    """Put the malformed lines back among the records, in file order, rejected as `bad_row`."""
    width = len(header)
    records = [next(csv.reader([text])) for text in bad_texts]
    details = [
        f"expected {width} values, found {len(r)}: {t}"
        for r, t in zip(records, bad_texts, strict=True)
    ]
    padded = [(r + [""] * width)[:width] for r in records]
    bad_frame = pd.DataFrame(padded, columns=header, dtype="str")
    bad_frame = bad_frame.mask(bad_frame == "")
    lines = np.concatenate((good_lines, bad_lines))
    order = np.argsort(lines, kind="stable")
    combined = pd.concat([frame, bad_frame], ignore_index=True).iloc[order].reset_index(drop=True)
    reasons = np.concatenate(
        (np.full(len(frame), None, dtype=object), np.full(len(bad_texts), "bad_row", dtype=object))
    )[order]
    all_details = np.concatenate(
        (np.full(len(frame), None, dtype=object), np.asarray(details, dtype=object))
    )[order]
    return RawTable(
        table.name,
        combined,
        lines[order],
        source=path,
        preset_reasons=reasons,
        preset_details=all_details,
    )


def _read_header(path: Path) -> list[str]:
    """The header's column names; raises `UnreadableTable` for empty, binary or non-UTF-8 files."""
    with open(path, "rb") as handle:
        start = handle.read(1 << 16)
    if not start.strip():
        raise UnreadableTable(f"{path}: the file is empty (a CSV needs at least a header line)")
    if start.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise UnreadableTable(f"{path}: the file is UTF-16 encoded; save it as UTF-8 CSV")
    if b"\x00" in start:
        raise UnreadableTable(f"{path}: binary data, not a CSV text file (nor Parquet by its name)")
    first_line = start.split(b"\n", 1)[0]
    try:
        text = first_line.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise UnreadableTable(_encoding_problem(path)) from error
    return [name.strip() for name in next(csv.reader([text]))]


def _encoding_problem(path: Path) -> str:
    """Where the first byte that is not UTF-8 sits, for the error message."""
    line = 1
    with open(path, "rb") as handle:
        carry = b""
        while chunk := handle.read(_CHUNK_BYTES):
            data = carry + chunk
            try:
                data.decode("utf-8")
                carry = b""
            except UnicodeDecodeError as error:
                if error.reason == "unexpected end of data" and error.start >= len(data) - 3:
                    carry = data[error.start :]
                    line += data[: error.start].count(b"\n")
                    continue
                line += data[: error.start].count(b"\n")
                return (
                    f"{path}: not valid UTF-8 text (first bad byte on line {line}); "
                    "save the file as UTF-8"
                )
            line += chunk.count(b"\n")
    return f"{path}: not valid UTF-8 text; save the file as UTF-8"


def _embedded_newlines(arrow: object) -> np.ndarray:
    """Per row, the line breaks inside quoted values (they make a row span several lines)."""
    import pyarrow.compute as pc

    counts = np.zeros(arrow.num_rows, dtype=np.int64)  # type: ignore[attr-defined]
    for column in arrow.columns:  # type: ignore[attr-defined]
        if pc.any(pc.match_substring(column, "\n")).as_py():
            counts += pc.count_substring(column, "\n").fill_null(0).to_numpy(zero_copy_only=False)
    return counts


def _physical_lines(path: Path) -> int:
    """Lines in the file, not counting trailing blank lines."""
    newlines = 0
    last = b""
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK_BYTES):
            newlines += chunk.count(b"\n")
            last = (last + chunk)[-4096:]
    trailing = last[len(last.rstrip(b"\r\n\t ")) :]
    newlines -= trailing.count(b"\n")
    return newlines + 1


def _read_csv_slowly(path: Path, table: Table, header: list[str]) -> RawTable:
    """Exact line numbers and rows with the wrong number of fields, with Python's csv module.

    Only used for files with blank lines or malformed rows (the fast reader cannot number those)."""
    records: list[list[str]] = []
    lines: list[int] = []
    reasons: list[str | None] = []
    details: list[str | None] = []
    width = len(header)
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        line = reader.line_num + 1
        for record in reader:
            if record and any(value.strip() for value in record):
                if len(record) == width:
                    reasons.append(None)
                    details.append(None)
                else:
                    buffer = io.StringIO()
                    csv.writer(buffer).writerow(record)
                    reasons.append("bad_row")
                    details.append(
                        f"expected {width} values, found {len(record)}: {buffer.getvalue().strip()}"
                    )
                    record = (record + [""] * width)[:width]
                records.append(record)
                lines.append(line)
            line = reader.line_num + 1
    frame = pd.DataFrame(records, columns=header, dtype="str")
    frame = frame.mask(frame == "")
    return RawTable(
        table.name,
        frame,
        np.asarray(lines, dtype=np.int64),
        source=path,
        preset_reasons=np.asarray(reasons, dtype=object),
        preset_details=np.asarray(details, dtype=object),
    )


def _table_report(
    verdict: TableVerdict, raw: RawTable | None, rejects_dir: Path | None
) -> TableReport:
    """Counts for one table; writes its rejects file when it has rejected rows (a database
    table's only when `rejects_dir` is given; its report names the rejected rows by key)."""
    rejected = verdict.rejected_rows
    reasons = pd.Series(verdict.reasons[rejected]).value_counts()
    report = TableReport(
        name=verdict.name,
        source=raw.source if raw else None,
        read=len(raw.frame) if raw else 0,
        accepted=len(verdict.accepted),
        rejected_by_reason={str(k): int(v) for k, v in reasons.items()},
        inferred=verdict.inferred,
        notes=list(verdict.notes),
        rejected_rows=rejected,
        rejected_reasons=verdict.reasons[rejected],
    )
    if raw is not None and raw.key_columns:
        report.rejected_keys = raw.row_keys(rejected)
        report.rejected_details = [str(d) for d in verdict.details[rejected]]
    if rejects_dir is None:
        return report
    path = rejects_dir / f"{verdict.name}.rejects.csv"
    if raw is not None and len(rejected):
        write_rejects(raw, verdict, path)
        report.rejects_path = path
    elif path.exists():
        # A rejects file from an earlier run would describe rows that are now fine.
        try:
            path.unlink()
        except OSError:
            report.notes.append(f"could not remove the outdated {path}")
    return report


def write_rejects(raw: RawTable, verdict: TableVerdict, path: Path) -> None:
    """Write the rejected rows whole: line, reason, detail, then every original column as text."""
    rows = verdict.rejected_rows
    original = raw.frame.iloc[rows]
    text = pd.DataFrame(
        {
            (f"original.{name}" if name in REJECT_COLUMNS else str(name)): _as_text(original[name])
            for name in original.columns
        }
    )
    where = {"key": raw.row_keys(rows)} if raw.key_columns else {"line": raw.line_numbers[rows]}
    rejects = pd.concat(
        [
            pd.DataFrame(
                {
                    **where,
                    "reason": verdict.reasons[rows],
                    "detail": verdict.details[rows],
                }
            ),
            text.reset_index(drop=True),
        ],
        axis=1,
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not os.access(path.parent, os.W_OK):
            raise PermissionError(f"{path.parent} is not writable")
        rejects.to_csv(path, index=False)
    except OSError as error:
        raise RejectsNotWritable(
            f"cannot write the rejected rows to {path} ({error}); "
            "pass --rejects-dir (rejects_dir=) with a writable directory"
        ) from error


def _as_text(values: pd.Series) -> pd.Series:
    """Values as they would read in a CSV: missing -> empty, timestamps in ISO 8601."""
    if isinstance(values.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(values):
        return values.map(lambda v: "" if pd.isna(v) else v.isoformat()).astype("str")
    return values.astype("str").fillna("")


def _rejected_message(report: ValidationReport, over: list[str]) -> str:
    parts = []
    for name in over:
        table = report.tables[name]
        parts.append(
            f"{name}: {table.rejected:,} of {table.read:,} rows rejected "
            f"({table.reject_rate:.2%}), above the limit of {report.max_reject_rate:.2%}; "
            + (
                f"see {table.rejects_path}"
                if table.rejects_path
                else "the summary names them by key (--rejects-dir writes them all)"
            )
        )
    return (
        "; ".join(parts)
        + ". Fix those rows, or allow more with --max-reject-rate (see docs/data-contract.md)."
    )
