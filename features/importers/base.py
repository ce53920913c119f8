"""What every importer shares: the converted tables, writing them, validating, accounting."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from features.contract import FILE_SUFFIXES, TABLES
from features.loading import REJECTS_DIRNAME, DataRejected, load_shop
from features.validation import REASONS, ValidationReport

SOURCE_REJECTS_NAME = "source.rejects.csv"
"""Source rows an importer could not map onto the contract, in `DIR/_rejects/`."""


@dataclass
class ConvertedShop:
    """Contract tables converted from a public data set, and where every source row went.

    `tables` holds `purchases` and `feedback` (and `items`/`customers` when the source has
    them) in canonical types. `rows_behind[name][i]` is the number of source rows that output
    row i of table `name` stands for (e.g. identical grocery lines merged into one quantity);
    `source_rejects` the source rows that could not be mapped (columns `line`, `reason`,
    `detail`, then the source's own columns as text). Every source row is in exactly one place:
    `rows_behind` sums plus `len(source_rejects)` equal `source_rows`."""

    tables: dict[str, pd.DataFrame]
    source_rows: int
    rows_behind: dict[str, np.ndarray]
    source_rejects: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    """What the importer had to assume and the user should check (e.g. an ambiguous date order)."""

    def check_accounting(self) -> None:
        """Raise AssertionError when some source row is lost or counted twice (an importer bug)."""
        placed = sum(int(rows.sum()) for rows in self.rows_behind.values())
        placed += len(self.source_rejects)
        if placed != self.source_rows:
            raise AssertionError(
                f"importer lost track of rows: {self.source_rows:,} read, {placed:,} placed"
            )


SET_ASIDE_REASONS = {
    "no_customer": "guest lines without a customer id",
}
"""Source rows the contract cannot hold by design, not by fault (a shop's guest checkouts):
written to the rejects file with their reason like every rejected row, listed in the summary,
but not counted toward --max-reject-rate. An import that accepts nothing is still refused."""


@dataclass
class ImportSummary:
    """What an import did: source rows read, accepted and rejected (by reason), and the report
    of validating the written directory."""

    source: Path
    out_dir: Path
    input_rows: int
    accepted: int
    rejected_by_reason: dict[str, int]
    report: ValidationReport
    source_rejects_path: Path | None
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    max_reject_rate: float = 0.01
    reason_examples: dict[str, str] = field(default_factory=dict)
    """One example per source reject reason: its line and detail."""

    @property
    def rejected(self) -> int:
        """Source rows rejected, at import or by validation of the written tables."""
        return sum(self.rejected_by_reason.values())

    @property
    def set_aside(self) -> int:
        """Rejected source rows whose reason is in `SET_ASIDE_REASONS`."""
        return sum(
            n for reason, n in self.rejected_by_reason.items() if reason in SET_ASIDE_REASONS
        )

    @property
    def reject_rate(self) -> float:
        """Rejected source rows, less those set aside, / input rows (0.0 for an empty source)."""
        faulty = self.rejected - self.set_aside
        return faulty / self.input_rows if self.input_rows else 0.0

    @property
    def within_limit(self) -> bool:
        """True when some row was accepted, the source rows rejected (at import or by
        validation) are within `max_reject_rate`, and so is every written table."""
        return self.refusal is None

    @property
    def refusal(self) -> str | None:
        """Why the import did not do its job (one line), or None when it did."""
        if self.input_rows == 0:
            return "the source holds no rows"
        if self.accepted == 0:
            rejected = f"{self.rejected:,} of {self.input_rows:,} source rows rejected"
            return f"no row was accepted ({rejected})"
        if self.reject_rate > self.max_reject_rate:
            return (
                f"{self.rejected:,} of {self.input_rows:,} source rows rejected "
                f"({self.reject_rate:.2%}), above --max-reject-rate {self.max_reject_rate:.2%}"
            )
        if not self.report.within_limit:
            return (
                "the imported tables have more rejected rows than --max-reject-rate allows "
                f"({', '.join(self.report.tables_over_limit)})"
            )
        return None

    def refusal_text(self) -> str | None:
        """The refusal, the top reasons (with an example line) and where the rejected rows
        are; None when the import did its job."""
        if self.refusal is None:
            return None
        lines = [f"import refused: {self.refusal}"]
        top = sorted(self.rejected_by_reason.items(), key=lambda kv: -kv[1])[:3]
        for reason, count in top:
            example = self.reason_examples.get(reason) or REASONS.get(reason, "")
            lines.append(f"  {reason}: {count:,} rows" + (f" ({example})" if example else ""))
        if self.source_rejects_path:
            lines.append(f"  rejected source rows: {self.source_rejects_path}")
        for path in self.report.rejects_paths.values():
            lines.append(f"  rejected table rows: {path}")
        if self.accepted and self.reject_rate > self.max_reject_rate:
            lines.append(
                "  if these rows are expected (e.g. lines without a customer), pass a larger "
                "--max-reject-rate"
            )
        return "\n".join(lines)

    def summary_text(self) -> str:
        """Input rows, accepted and rejected (by reason), where the rejects are, then the
        validation summary of the written directory."""
        lines = [
            f"Imported {self.source} into {self.out_dir}",
            f"  input rows {self.input_rows:,}: accepted {self.accepted:,}, "
            f"rejected {self.rejected:,}",
        ]
        for reason, count in sorted(self.rejected_by_reason.items(), key=lambda kv: -kv[1]):
            lines.append(f"      {reason:<24} {count:>10,}")
        if self.source_rejects_path:
            lines.append(f"  source rows not imported: {self.source_rejects_path}")
        if self.set_aside:
            kinds = ", ".join(
                SET_ASIDE_REASONS[r] for r in self.rejected_by_reason if r in SET_ASIDE_REASONS
            )
            lines.append(
                f"  set aside {self.set_aside:,} rows ({kinds}): kept in the rejects file, not "
                "counted toward --max-reject-rate"
            )
        lines.extend(f"  note: {note}" for note in self.notes)
        lines.extend(f"  WARNING: {warning}" for warning in self.warnings)
        lines.append(self.report.summary_text())
        if self.refusal:
            lines.append(f"Import refused: {self.refusal}")
        else:
            lines.append(
                f"Import result: {self.accepted:,} of {self.input_rows:,} source rows accepted "
                f"({self.reject_rate:.2%} rejected, within {self.max_reject_rate:.2%})"
            )
        return "\n".join(lines)


def import_converted(
    converted: ConvertedShop,
    source: Path,
    out_dir: Path,
    *,
    file_format: str = "csv",
    overwrite: bool = False,
    as_of: pd.Timestamp | None = None,
    max_reject_rate: float = 0.01,
) -> ImportSummary:
    """Write converted tables to `out_dir`, validate it like any data directory, account for
    every source row. Raises ValueError when `out_dir` already holds contract tables and
    `overwrite` is False, AssertionError when the counts do not add up (an importer bug)."""
    converted.check_accounting()
    out_dir = Path(out_dir)
    _prepare(out_dir, overwrite)
    write_tables(converted.tables, out_dir, file_format)
    rejects_path = out_dir / REJECTS_DIRNAME / SOURCE_REJECTS_NAME
    if len(converted.source_rejects):
        rejects_path.parent.mkdir(parents=True, exist_ok=True)
        converted.source_rejects.to_csv(rejects_path, index=False)
    else:
        rejects_path.unlink(missing_ok=True)
    try:
        report = load_shop(out_dir, as_of=as_of, max_reject_rate=max_reject_rate).report
    except DataRejected as rejected:
        report = rejected.report
    by_reason = converted.source_rejects["reason"].value_counts().to_dict()
    accepted = 0
    for name, rows_behind in converted.rows_behind.items():
        table = report.tables[name]
        behind_rejected = rows_behind[table.rejected_rows]
        accepted += int(rows_behind.sum() - behind_rejected.sum())
        if len(table.rejected_rows):
            weights = pd.Series(behind_rejected).groupby(table.rejected_reasons).sum()
            for reason, count in weights.items():
                by_reason[reason] = by_reason.get(reason, 0) + int(count)
    summary = ImportSummary(
        source=Path(source),
        out_dir=out_dir,
        input_rows=converted.source_rows,
        accepted=accepted,
        rejected_by_reason={str(k): int(v) for k, v in by_reason.items()},
        report=report,
        source_rejects_path=rejects_path if len(converted.source_rejects) else None,
        notes=list(converted.notes),
        warnings=list(converted.warnings),
        max_reject_rate=max_reject_rate,
        reason_examples=_reason_examples(converted.source_rejects),
    )
    if summary.accepted + summary.rejected != summary.input_rows:
        raise AssertionError(
            f"import accounting is off: {summary.accepted:,} accepted + {summary.rejected:,} "
            f"rejected != {summary.input_rows:,} input rows"
        )
    return summary


def _reason_examples(rejects: pd.DataFrame) -> dict[str, str]:
    """The first rejected source row of each reason, as `line N: detail`."""
    first = rejects.drop_duplicates("reason")
    return {
        str(reason): f"e.g. line {line}: {detail}"
        for reason, line, detail in zip(
            first["reason"], first["line"], first["detail"], strict=True
        )
    }


def _prepare(out_dir: Path, overwrite: bool) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    existing = [
        out_dir / f"{name}{suffix}"
        for name in TABLES
        for suffix in FILE_SUFFIXES
        if (out_dir / f"{name}{suffix}").exists()
    ]
    if existing and not overwrite:
        raise ValueError(
            f"{out_dir} already holds {', '.join(p.name for p in existing)}; "
            "choose an empty directory or pass --overwrite"
        )
    for path in existing:
        path.unlink()


def write_tables(tables: dict[str, pd.DataFrame], out_dir: Path, file_format: str = "csv") -> None:
    """Write contract tables as NAME.csv (timestamps ISO 8601 with Z) or NAME.parquet."""
    if file_format not in ("csv", "parquet"):
        raise ValueError(f"unknown file format {file_format!r}: use csv or parquet")
    for name, frame in tables.items():
        if file_format == "parquet":
            frame.to_parquet(out_dir / f"{name}.parquet", index=False)
            continue
        text = frame.copy()
        for column in text.columns:
            if isinstance(text[column].dtype, pd.DatetimeTZDtype):
                text[column] = text[column].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
        text.to_csv(out_dir / f"{name}.csv", index=False)


def slug(descriptions: pd.Series) -> pd.Series:
    """Stable ids from names: lower case, runs of other characters as '-' ('UHT-milk' ->
    'uht-milk', 'flower (seeds)' -> 'flower-seeds'). Distinct names that would share a slug
    get a numeric suffix in sorted order of the names, so ids stay stable between runs."""
    names = pd.Series(descriptions.unique(), dtype="str")
    base = names.str.lower().str.replace(r"[^0-9a-z]+", "-", regex=True).str.strip("-")
    base = base.mask(base == "", "item")
    order = np.argsort(names.to_numpy(), kind="stable")
    taken: dict[str, int] = {}
    ids = np.empty(len(names), dtype=object)
    for position in order:  # loops over distinct names only (hundreds), not rows
        candidate = base.iloc[position]
        count = taken.get(candidate, 0)
        taken[candidate] = count + 1
        ids[position] = candidate if count == 0 else f"{candidate}-{count + 1}"
    mapping = dict(zip(names, ids, strict=True))
    return descriptions.map(mapping).astype("str")


def source_rejects(
    raw: pd.DataFrame, line_numbers: np.ndarray, reasons: np.ndarray, details: np.ndarray
) -> pd.DataFrame:
    """The rejected source rows, whole: line, reason, detail, then the source columns as text.

    `reasons[i]` is None for rows that were imported."""
    rejected = np.flatnonzero(pd.notna(reasons))
    head = pd.DataFrame(
        {
            "line": np.asarray(line_numbers)[rejected],
            "reason": np.asarray(reasons, dtype=object)[rejected],
            "detail": np.asarray(details, dtype=object)[rejected],
        }
    )
    body = raw.iloc[rejected].reset_index(drop=True).astype("str").fillna("")
    body.columns = [f"original.{c}" if c in head.columns else c for c in body.columns]
    return pd.concat([head, body], axis=1)


@dataclass
class SourceCSV:
    """A source CSV read as text, with how it was read."""

    frame: pd.DataFrame
    encoding: str
    separator: str

    def notes(self) -> list[str]:
        """What differs from a plain UTF-8, comma-separated file."""
        notes = []
        if self.encoding != "utf-8-sig":
            notes.append(f"not UTF-8; read as {self.encoding}")
        if self.separator != ",":
            notes.append(f"values separated by {SEPARATOR_NAMES[self.separator]}")
        return notes


SEPARATOR_NAMES = {",": "commas", ";": "semicolons", "\t": "tabs"}
UTF8_BOM = b"\xef\xbb\xbf"


def read_source_csv(src: Path) -> SourceCSV:
    """A source CSV with every value as text (ids keep leading zeros).

    Tries UTF-8 first (a byte-order mark is skipped), then Windows-1252 (the UCI Online Retail
    CSV exports use it). The separator (`,`, `;` or tab) is the one the header line uses most,
    outside quotes; comma when it has none."""
    with open(src, "rb") as handle:
        header = handle.readline()
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            separator = sniff_separator(header.removeprefix(UTF8_BOM).decode(encoding))
            frame = pd.read_csv(
                src, dtype=str, keep_default_na=False, encoding=encoding, sep=separator
            )
        except UnicodeDecodeError:
            continue
        if len(frame.columns) and header.startswith(UTF8_BOM) and encoding != "utf-8-sig":
            frame = frame.rename(columns={frame.columns[0]: frame.columns[0].removeprefix("ï»¿")})
        return SourceCSV(frame, encoding, separator)
    raise ValueError(f"{src}: neither UTF-8 nor Windows-1252 text; save it as UTF-8 CSV")


def sniff_separator(header: str) -> str:
    """`,`, `;` or tab: whichever the header line holds most of outside quoted names."""
    unquoted = re.sub(r'"[^"]*"', "", header)
    counts = {separator: unquoted.count(separator) for separator in SEPARATOR_NAMES}
    best = max(counts, key=lambda separator: counts[separator])
    return best if counts[best] else ","


def first_reasons(
    size: int, rules: list[tuple[pd.Series, str, str | pd.Series]]
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's reason and detail: the first rule `(mask, reason, detail)` that applies, in
    order; None for rows no rule rejects. `detail` is one text or a text per row."""
    reasons = np.full(size, None, dtype=object)
    details = np.full(size, None, dtype=object)
    for mask, reason, detail in rules:
        new = mask.to_numpy(dtype=bool, na_value=False) & pd.isna(reasons)
        reasons[new] = reason
        details[new] = (
            detail.to_numpy(dtype=object)[new] if isinstance(detail, pd.Series) else detail
        )
    return reasons, details


def require_columns(src: Path, frame: pd.DataFrame, columns: list[str]) -> None:
    """Raise ValueError naming the file and the missing columns."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{src}: missing column(s) {', '.join(missing)} (found: {', '.join(frame.columns)})"
        )


def ids_from_numbers(values: pd.Series) -> pd.Series:
    """Ids that an export turned into numbers ('17850.0') back to their text ('17850')."""
    return values.str.strip().str.replace(re.compile(r"\.0+$"), "", regex=True)
