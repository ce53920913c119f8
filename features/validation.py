"""The rules of the data contract: every row of every table is accepted or rejected with a reason.

Pure functions over DataFrames (no I/O): `features.loading` reads the files, calls
`validate_tables` and writes the rejects. A rejected row gets the first reason that applies, in
this order: the CSV line could not be split (`bad_row`); per column in contract order: required
value empty, value does not parse, value out of range; then table rules (rating required for
`kind=rating`, timestamp after `as_of`, order consistency, duplicates) and last the references
between tables, which only ever point at rows that were themselves accepted.
`docs/data-contract.md` documents every reason code below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.contract import FEEDBACK_KINDS, TABLES, Column, Table

REASONS: dict[str, str] = {
    "bad_row": "the CSV line does not have one value per column of the header",
    "missing_value": "a required value is empty",
    "bad_integer": "the value is not a whole number",
    "bad_number": "the value is not a finite number",
    "bad_timestamp": "the value is not an ISO 8601 timestamp (or is outside 1678-2261)",
    "bad_boolean": "the value is not one of true/false/1/0/yes/no",
    "unknown_kind": "feedback kind is not one of " + "/".join(FEEDBACK_KINDS),
    "out_of_range": "the number is outside the allowed range",
    "missing_rating": "feedback of kind `rating` has no rating",
    "after_as_of": "the timestamp is after `as_of` (data from the future)",
    "duplicate_line": "every value equals an earlier row; the earlier row is kept",
    "duplicate_order_item": "the same (order_id, item_id) appears earlier with other values; "
    "the earlier row is kept",
    "duplicate_item": "the same item_id appears earlier in the items table; "
    "the earlier row is kept",
    "duplicate_customer": "the same customer_id appears earlier in the customers table; "
    "the earlier row is kept",
    "order_conflict": "the order_id appears earlier with another customer or another time",
    "unknown_item": "the item_id is not in the items table (or, without one, in the purchases)",
    "unknown_customer": "the customer_id is in neither the purchases nor the customers table",
    "unknown_order": "the order_id is not among the accepted purchases",
    "order_customer_mismatch": "the order_id belongs to another customer",
}
"""Every reason code a row can be rejected with, and what it means."""

KEY_DUPLICATE_REASON = {
    "purchases": "duplicate_order_item",
    "items": "duplicate_item",
    "customers": "duplicate_customer",
}

TRUE_WORDS = ("true", "1", "yes")
FALSE_WORDS = ("false", "0", "no")

# Outside this window a timestamp does not fit datetime64[ns] (1677-09-21 .. 2262-04-11).
EARLIEST_TIMESTAMP = pd.Timestamp("1678-01-01", tz="UTC")
LATEST_TIMESTAMP = pd.Timestamp("2262-01-01", tz="UTC")


@dataclass
class RawTable:
    """One table as read from its file, before validation.

    `frame` holds the file's columns as read (strings for CSV, native types for Parquet);
    `line_numbers` the 1-based line of each row in the file (CSV: header = line 1; Parquet: row
    index + 1). `preset_reasons`/`preset_details`, when given, reject rows already at reading
    (e.g. a CSV line with the wrong number of fields): None where the row is fine."""

    name: str
    frame: pd.DataFrame
    line_numbers: np.ndarray
    source: Path | None = None
    preset_reasons: np.ndarray | None = None
    preset_details: np.ndarray | None = None


@dataclass
class TableVerdict:
    """The outcome for one table: accepted rows in canonical types, and a reason per raw row.

    `reasons[i]` is None when raw row i was accepted, else its reason code; `details[i]` says
    what was wrong in words. `accepted` keeps the raw row order."""

    name: str
    accepted: pd.DataFrame
    reasons: np.ndarray
    details: np.ndarray
    inferred: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def rejected_rows(self) -> np.ndarray:
        """0-based positions of the rejected raw rows."""
        return np.flatnonzero(pd.notna(self.reasons))


@dataclass
class TableReport:
    """Counts for one table: rows read, accepted, rejected per reason, and where the rejects are."""

    name: str
    source: Path | None
    read: int
    accepted: int
    rejected_by_reason: dict[str, int]
    rejects_path: Path | None = None
    inferred: bool = False
    notes: list[str] = field(default_factory=list)
    rejected_rows: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    """0-based positions (record order in the file) of the rejected rows."""
    rejected_reasons: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=object))
    """The reason code of each row in `rejected_rows`."""

    @property
    def rejected(self) -> int:
        """Number of rejected rows."""
        return sum(self.rejected_by_reason.values())

    @property
    def reject_rate(self) -> float:
        """Rejected rows / rows read (0.0 for an empty or inferred table)."""
        return self.rejected / self.read if self.read else 0.0


@dataclass
class ValidationReport:
    """What validation found in one data directory."""

    directory: Path
    as_of: pd.Timestamp
    max_reject_rate: float
    tables: dict[str, TableReport]
    notes: list[str] = field(default_factory=list)

    @property
    def tables_over_limit(self) -> list[str]:
        """Names of the tables whose reject rate is above `max_reject_rate`."""
        return [t.name for t in self.tables.values() if t.reject_rate > self.max_reject_rate]

    @property
    def within_limit(self) -> bool:
        """True when every table's reject rate is within `max_reject_rate`."""
        return not self.tables_over_limit

    @property
    def rejects_paths(self) -> dict[str, Path]:
        """Rejects file per table that has rejected rows."""
        return {t.name: t.rejects_path for t in self.tables.values() if t.rejects_path}

    def summary_text(self) -> str:
        """A human-readable summary: per table, counts per reason and the rejects file."""
        lines = [
            f"Validated {self.directory} (as_of {self.as_of.isoformat()}, "
            f"max reject rate {self.max_reject_rate:.2%})"
        ]
        for table in self.tables.values():
            if table.inferred:
                lines.append(f"  {table.name:<10} inferred from purchases: {table.accepted:,} rows")
            else:
                source = table.source.name if table.source else "(absent: empty)"
                lines.append(
                    f"  {table.name:<10} {source}: read {table.read:,}, accepted "
                    f"{table.accepted:,}, rejected {table.rejected:,} ({table.reject_rate:.2%})"
                )
            for reason, count in sorted(table.rejected_by_reason.items(), key=lambda kv: -kv[1]):
                lines.append(f"      {reason:<24} {count:>10,}  {REASONS.get(reason, '')}")
            if table.rejects_path:
                lines.append(f"      rejected rows written to {table.rejects_path}")
            lines.extend(f"      note: {note}" for note in table.notes)
        lines.extend(f"  note: {note}" for note in self.notes)
        over = self.tables_over_limit
        if over:
            lines.append(
                f"Result: reject rate above {self.max_reject_rate:.2%} in {', '.join(over)}"
            )
        else:
            lines.append("Result: every table within the allowed reject rate")
        return "\n".join(lines)


class _Verdicts:
    """The reason per row, filled rule by rule; a row keeps the first reason it gets."""

    def __init__(self, size: int) -> None:
        self.reasons = np.full(size, None, dtype=object)
        self.details = np.full(size, None, dtype=object)
        self.ok = np.ones(size, dtype=bool)

    def reject(
        self, mask: np.ndarray, reason: str, detail: str | Callable[[np.ndarray], object]
    ) -> None:
        """Reject rows in `mask` not rejected yet; `detail(rows)` gives a text per new row."""
        new = np.asarray(mask, dtype=bool) & self.ok
        if not new.any():
            return
        rows = np.flatnonzero(new)
        self.reasons[rows] = reason
        self.details[rows] = detail if isinstance(detail, str) else np.asarray(detail(rows))
        self.ok[rows] = False


def _is_text_dtype(series: pd.Series) -> bool:
    return pd.api.types.is_string_dtype(series.dtype) or series.dtype == object


def _stripped_text(series: pd.Series) -> pd.Series:
    """The values as stripped strings; missing (None/NaN/empty) as NaN."""
    if not _is_text_dtype(series):
        missing = series.isna().to_numpy()
        if pd.api.types.is_float_dtype(series.dtype):
            finite = series.dropna()
            if len(finite) and (finite == np.floor(finite)).all():
                series = series.astype("Int64")  # 12.0 read from a float column means "12"
        text = series.astype("str")
        text[missing] = np.nan
        return text
    # Arrow's kernels: pandas' .str.strip() costs seconds on ten million values.
    arrow = _arrow_text(series)
    stripped = pc.utf8_trim_whitespace(arrow)
    empty = pc.equal(stripped, "")
    clean = not pc.any(empty).as_py() and not pc.any(pc.not_equal(stripped, arrow)).as_py()
    if clean and series.dtype == "str":
        return series  # the usual case: nothing to trim, no copy back to pandas
    stripped = pc.if_else(empty, pa.scalar(None, stripped.type), stripped)
    return pd.Series(stripped.to_pandas(), index=series.index).astype("str")


def _arrow_text(series: pd.Series) -> pa.Array | pa.ChunkedArray:
    """Text values as an Arrow string array (no copy for Arrow-backed pandas strings)."""
    if not pd.api.types.is_string_dtype(series.dtype) or series.dtype == object:
        series = series.astype("str")
    return pa.array(series, from_pandas=True)


def _show(values: pd.Series, rows: np.ndarray) -> pd.Series:
    """The raw values of `rows` as text for messages."""
    return values.iloc[rows].astype("str").fillna("")


def _fast_then_slow(
    text: pd.Series,
    fast_paths: list[tuple[str, Callable[[pa.Array | pa.ChunkedArray], np.ndarray]]],
    slow: Callable[[pd.Series], np.ndarray],
) -> np.ndarray:
    """Parse `text` (stripped, NaN when missing) into a numpy array.

    Values matching a fast path's regular expression (the common, well-formed ones) are parsed
    by its Arrow kernel; the rest (odd forms, mistakes, a few rows) by the pandas parser `slow`.
    Every parser marks a missing or unparseable value with NaN/NaT (int64 min)."""
    arrow = _arrow_text(text)
    result: np.ndarray | None = None
    handled = np.zeros(len(text), dtype=bool)
    for pattern, fast in fast_paths:
        matched = pc.fill_null(pc.match_substring_regex(arrow, pattern), False)
        if not pc.any(matched).as_py():
            continue
        try:
            values = fast(pc.if_else(matched, arrow, pa.scalar(None, arrow.type)))
        except pa.ArrowInvalid:  # e.g. 2025-02-30 matches the pattern but is no date
            continue
        mask = matched.to_numpy(zero_copy_only=False)
        if result is None:
            result = values
        else:
            result[mask] = values[mask]
        handled |= mask
    if result is None:
        return np.array(slow(text))  # a writable copy: callers mask values in place
    rest = text.notna().to_numpy() & ~handled
    if rest.any():
        result[rest] = slow(text[rest])
    return result


NUMBER_PATTERN = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
ZONED_TIMESTAMP_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?)?"
    r"(Z|[+-][0-9]{2}(:?[0-9]{2})?)$"
)
NAIVE_TIMESTAMP_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?)?)?$"
)


def _parse_numbers(raw: pd.Series, text: pd.Series) -> pd.Series:
    """Numbers as float64 (`text`: the stripped values); NaN when missing or not a number."""
    if pd.api.types.is_bool_dtype(raw.dtype):
        return pd.Series(np.full(len(raw), np.nan), index=raw.index)
    if pd.api.types.is_numeric_dtype(raw.dtype):
        return raw.astype("float64")
    values = _fast_then_slow(
        text,
        [(NUMBER_PATTERN, _arrow_numbers)],
        lambda text: pd.to_numeric(text, errors="coerce").to_numpy(dtype="float64"),
    )
    return pd.Series(values, index=raw.index, dtype="float64")


def _arrow_numbers(arrow: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return pc.cast(arrow, pa.float64()).to_numpy(zero_copy_only=False).copy()


NAT = np.iinfo(np.int64).min
"""NaT as int64 nanoseconds."""


def _arrow_timestamps(arrow: pa.Array | pa.ChunkedArray, zoned: bool) -> np.ndarray:
    """Nanoseconds since the epoch, UTC; a zoned value is converted, a naive one taken as UTC."""
    target = pa.timestamp("ns", tz="UTC") if zoned else pa.timestamp("ns")
    nanoseconds = pc.fill_null(pc.cast(pc.cast(arrow, target), pa.int64()), NAT)
    return nanoseconds.to_numpy(zero_copy_only=False).copy()


def _pandas_timestamps(text: pd.Series) -> np.ndarray:
    parsed = pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")
    outside = (parsed < EARLIEST_TIMESTAMP) | (parsed > LATEST_TIMESTAMP)
    parsed = parsed.mask(outside).astype("datetime64[ns, UTC]")
    return parsed.dt.tz_convert(None).to_numpy(dtype="datetime64[ns]").view("int64")


def _parse_timestamps(raw: pd.Series, text: pd.Series) -> pd.Series:
    """Timestamps as datetime64[ns, UTC] (`text`: the stripped values): no zone means UTC;
    unparseable or out of range -> NaT."""
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        return raw.dt.tz_convert("UTC").astype("datetime64[ns, UTC]")
    if pd.api.types.is_datetime64_dtype(raw.dtype):
        return raw.dt.tz_localize("UTC").astype("datetime64[ns, UTC]")
    if not _is_text_dtype(raw):
        return pd.Series(pd.NaT, index=raw.index, dtype="datetime64[ns, UTC]")
    nanoseconds = _fast_then_slow(
        text,
        [
            (ZONED_TIMESTAMP_PATTERN, lambda arrow: _arrow_timestamps(arrow, zoned=True)),
            (NAIVE_TIMESTAMP_PATTERN, lambda arrow: _arrow_timestamps(arrow, zoned=False)),
        ],
        _pandas_timestamps,
    )
    # Arrow accepts years the pandas parser refuses; one range for both.
    outside = (nanoseconds < EARLIEST_TIMESTAMP.value) | (nanoseconds > LATEST_TIMESTAMP.value)
    nanoseconds[outside] = NAT
    return pd.Series(nanoseconds.view("datetime64[ns]"), index=raw.index).dt.tz_localize("UTC")


def _parse_booleans(raw: pd.Series, text: pd.Series) -> pd.Series:
    """True/False, or NaN when the value is not a recognised word."""
    if pd.api.types.is_bool_dtype(raw.dtype):
        return raw.astype("boolean")
    text = text.str.lower()
    words = dict.fromkeys(TRUE_WORDS, True) | dict.fromkeys(FALSE_WORDS, False)
    words |= {"1.0": True, "0.0": False}  # a numeric Parquet column read as text
    return text.map(words).astype("boolean")


def _is_native(raw: pd.Series, column: Column) -> bool:
    """Whether `raw` already has a type that fits `column` (e.g. an int64 Parquet column)."""
    dtype = raw.dtype
    if column.kind in ("int", "float"):
        return pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
    if column.kind == "timestamp":
        return pd.api.types.is_datetime64_any_dtype(dtype)
    if column.kind == "bool":
        return pd.api.types.is_bool_dtype(dtype)
    return False


def _parse_column(
    raw: pd.Series, column: Column, verdicts: _Verdicts
) -> tuple[pd.Series, np.ndarray]:
    """Parse one column into its canonical type, rejecting bad values.

    Returns the parsed values (for every row) and the missing mask."""
    name = column.name
    if column.kind == "text":
        values = raw if _is_text_dtype(raw) else _stripped_text(raw)
        values = values.astype("str")
        missing = (values.isna() | (values.str.strip() == "")).to_numpy()
        values = values.mask(missing)
    else:
        # Native Parquet values of the right type are parsed as they are, not via text.
        text = raw if _is_native(raw, column) else _stripped_text(raw)
        missing = text.isna().to_numpy()
    if column.required:
        verdicts.reject(missing, "missing_value", f"{name} is empty")

    def says(message: str) -> Callable[[np.ndarray], object]:
        return lambda rows: (f"{name} " + _show(raw, rows) + " " + message).to_numpy()

    if column.kind == "id":
        values = text
    elif column.kind in ("int", "float"):
        values = _parse_numbers(raw, text)
        bad = ~missing & ~np.isfinite(values.to_numpy())
        if column.kind == "int":
            whole = np.floor(values.fillna(0)) == values.fillna(0)
            bad |= ~missing & ~whole.to_numpy()
            verdicts.reject(bad, "bad_integer", says("is not a whole number"))
        else:
            verdicts.reject(bad, "bad_number", says("is not a number"))
        if column.minimum is not None:
            low = (values < column.minimum).to_numpy()
            verdicts.reject(low, "out_of_range", says(f"is below {column.minimum:g}"))
        if column.maximum is not None:
            high = (values > column.maximum).to_numpy()
            verdicts.reject(high, "out_of_range", says(f"is above {column.maximum:g}"))
        if column.kind == "int":
            values = values.where(np.isfinite(values)).round().astype("Int64")
    elif column.kind == "timestamp":
        values = _parse_timestamps(raw, text)
        bad = ~missing & values.isna().to_numpy()
        verdicts.reject(bad, "bad_timestamp", says("is not an ISO 8601 timestamp"))
    elif column.kind == "bool":
        values = _parse_booleans(raw, text)
        bad = ~missing & values.isna().to_numpy()
        verdicts.reject(bad, "bad_boolean", says("is not true/false/1/0/yes/no"))
    elif column.kind == "choice":
        values = text.str.lower()
        bad = ~missing & ~values.isin(column.choices).to_numpy()
        choices = "/".join(column.choices)
        code = "unknown_kind" if name == "kind" else "out_of_range"
        verdicts.reject(bad, code, says(f"is not one of {choices}"))
    return values, missing


def _first_line_of_group(
    frame: pd.DataFrame, columns: list[str], line_numbers: np.ndarray
) -> np.ndarray:
    """For each row, the line number of the first row with the same values in `columns`."""
    lines = pd.Series(line_numbers, index=frame.index)
    return (
        lines.groupby([frame[c] for c in columns], sort=False, dropna=False)
        .transform("first")
        .to_numpy()
    )


def _reject_duplicates(
    table: Table,
    parsed: pd.DataFrame,
    line_numbers: np.ndarray,
    verdicts: _Verdicts,
    order_numbers: np.ndarray | None = None,
) -> None:
    """Later copies of a row are rejected: `duplicate_line` when every value is equal, the
    table's key reason (e.g. `duplicate_order_item`) when only the key is equal.

    `order_numbers` (purchases): an integer per row standing for its order_id, so that the
    (order_id, item_id) key is hashed as integers rather than as two text columns."""
    candidates = np.flatnonzero(verdicts.ok)
    rows = parsed.iloc[candidates]
    lines = line_numbers[candidates]
    all_columns = list(parsed.columns)
    key = list(table.key) or all_columns
    combined = None
    if order_numbers is not None and key == ["order_id", "item_id"]:
        item_codes = _codes_by_first_appearance(rows["item_id"])
        items = int(item_codes.max(initial=0)) + 1
        if (int(order_numbers.max(initial=0)) + 1) * items < 2**62:  # else int64 overflows
            combined = order_numbers[candidates] * items + item_codes
    if combined is not None:
        in_group = pd.Series(combined).duplicated(keep=False).to_numpy()
    else:
        in_group = rows.duplicated(subset=key, keep=False).to_numpy()
    if not in_group.any():
        return
    group = rows[in_group]
    group_lines = lines[in_group]
    positions = candidates[in_group]
    exact = group.duplicated(subset=all_columns, keep="first").to_numpy()
    first_exact = _first_line_of_group(group, all_columns, group_lines)
    mask = np.zeros(len(parsed), dtype=bool)
    mask[positions[exact]] = True
    details = pd.Series(None, index=range(len(parsed)), dtype=object)
    details.iloc[positions] = [f"same values as line {line}" for line in first_exact]
    verdicts.reject(mask, "duplicate_line", lambda r: details.iloc[r].to_numpy())
    if not table.key:
        return
    later = group.duplicated(subset=key, keep="first").to_numpy()
    first_key = _first_line_of_group(group, key, group_lines)
    key_text = " and ".join(key)
    details.iloc[positions] = [f"{key_text} already on line {line}" for line in first_key]
    mask[:] = False
    mask[positions[later]] = True
    verdicts.reject(mask, KEY_DUPLICATE_REASON[table.name], lambda r: details.iloc[r].to_numpy())


def _codes_by_first_appearance(values: pd.Series) -> np.ndarray:
    """Integer codes of text values, numbered 0, 1, ... in order of first appearance (Arrow's
    dictionary encoding: about twice as fast as pandas.factorize on Arrow strings)."""
    encoded = pc.dictionary_encode(_arrow_text(values))
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.unify_dictionaries().combine_chunks()
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)


def _first_row_of_code(codes: np.ndarray) -> np.ndarray:
    """For each row, the position of the first row with its code (codes numbered by first
    appearance, so a code first appears exactly where the running maximum grows)."""
    if len(codes) == 0:
        return np.zeros(0, dtype=np.int64)
    running = np.maximum.accumulate(codes)
    new = np.empty(len(codes), dtype=bool)
    new[0] = True
    new[1:] = running[1:] > running[:-1]
    return np.flatnonzero(new)[codes]


def _order_numbers(order_ids: pd.Series) -> np.ndarray:
    """An integer per row for its order, numbered 0, 1, ... by first appearance.

    When every order's lines are contiguous (the usual export) these are run numbers, found
    without hashing ten million strings; otherwise Arrow's dictionary codes."""
    if len(order_ids) == 0:
        return np.zeros(0, dtype=np.int64)
    arrow = _arrow_text(order_ids)
    same_as_previous = pc.equal(arrow[1:], arrow[:-1]).to_numpy(zero_copy_only=False)
    starts = np.concatenate(([True], ~same_as_previous))
    first_ids = arrow.filter(pa.array(starts))
    if pc.count_distinct(first_ids).as_py() == len(first_ids):  # no order_id in two runs
        return np.cumsum(starts) - 1
    return _codes_by_first_appearance(order_ids)


def _reject_order_conflicts(
    parsed: pd.DataFrame, line_numbers: np.ndarray, verdicts: _Verdicts, order_numbers: np.ndarray
) -> None:
    """An order belongs to one customer at one time: the first accepted line of an order
    defines both; later lines that disagree are rejected as `order_conflict`.

    `order_numbers`: `_order_numbers` of the rows still accepted (by position in `parsed`)."""
    candidates = np.flatnonzero(verdicts.ok)
    rows = parsed.iloc[candidates]
    first = _first_row_of_code(order_numbers[candidates])
    customers = _arrow_text(rows["customer_id"])
    same_customer = pc.equal(customers, customers.take(pa.array(first)))
    times = rows["ordered_at"].to_numpy(dtype="datetime64[ns]").view("int64")
    conflict = ~same_customer.to_numpy(zero_copy_only=False) | (times != times[first])
    if not conflict.any():
        return
    mask = np.zeros(len(parsed), dtype=bool)
    mask[candidates[conflict]] = True
    first_of_row = pd.Series(-1, index=range(len(parsed)))
    first_of_row.iloc[candidates] = first

    def detail(reject_rows: np.ndarray) -> object:
        own = parsed.iloc[reject_rows]
        head = rows.iloc[first_of_row.iloc[reject_rows].to_numpy()]
        head_lines = line_numbers[candidates[first_of_row.iloc[reject_rows].to_numpy()]]
        return [
            f"order {o} is on line {hl} for customer {hc} at {ht.isoformat()}; "
            f"this line says customer {c} at {t.isoformat()}"
            for o, hl, hc, ht, c, t in zip(
                own["order_id"],
                head_lines,
                head["customer_id"],
                head["ordered_at"],
                own["customer_id"],
                own["ordered_at"],
                strict=True,
            )
        ]

    verdicts.reject(mask, "order_conflict", detail)


def _isin(values: pd.Series, known: pd.Index | pd.Series) -> np.ndarray:
    """`values.isin(known)` for text, computed by Arrow: pandas' own loops in Python over
    `known` for Arrow-backed strings, which costs seconds for a million customers."""
    arrow_values = pa.array(values.astype("str"), from_pandas=True)
    value_set = pa.array(pd.Series(known).astype("str").dropna().unique(), from_pandas=True)
    found = pc.is_in(arrow_values, value_set=value_set.cast(arrow_values.type))
    return found.fill_null(False).to_numpy(zero_copy_only=False)


def _reject_unknown(
    parsed: pd.DataFrame,
    column: str,
    known: pd.Index | pd.Series,
    reason: str,
    where: str,
    verdicts: _Verdicts,
) -> None:
    """Reject rows whose non-empty `column` value is not in `known`."""
    values = parsed[column]
    unknown = values.notna().to_numpy() & ~_isin(values, known)
    verdicts.reject(
        unknown,
        reason,
        lambda rows: (
            f"{column} " + values.iloc[rows].astype("str") + f" is not {where}"
        ).to_numpy(),
    )


def _check_table(
    raw: RawTable, table: Table, as_of: pd.Timestamp
) -> tuple[pd.DataFrame, _Verdicts, list[str]]:
    """Per-row rules of one table (no references yet): parsed values and verdicts."""
    frame = raw.frame
    verdicts = _Verdicts(len(frame))
    notes: list[str] = []
    if raw.preset_reasons is not None:
        preset = pd.notna(raw.preset_reasons)
        details = raw.preset_details if raw.preset_details is not None else raw.preset_reasons
        for reason in pd.unique(raw.preset_reasons[preset]):
            verdicts.reject(raw.preset_reasons == reason, str(reason), lambda r: details[r])
    parsed: dict[str, pd.Series] = {}
    for column in table.columns:
        if column.name in frame.columns:
            parsed[column.name], _ = _parse_column(frame[column.name], column, verdicts)
        else:
            parsed[column.name] = _missing_column(column, len(frame))
    extra = [c for c in frame.columns if c not in table.columns_by_name]
    if extra and table.extra_columns_allowed:
        for name in extra:
            text = frame[name] if _is_text_dtype(frame[name]) else _stripped_text(frame[name])
            parsed[name] = text.astype("str")
    elif extra:
        notes.append(f"ignored column(s) not in the contract: {', '.join(map(str, extra))}")
    result = pd.DataFrame(parsed, index=pd.RangeIndex(len(frame)))
    if table.name == "feedback":
        no_rating = ((result["kind"] == "rating") & result["rating"].isna()).to_numpy()
        verdicts.reject(no_rating, "missing_rating", "kind is rating but rating is empty")
    if table.timestamp_column:
        stamps = result[table.timestamp_column]
        late = (stamps > as_of).to_numpy()
        verdicts.reject(
            late,
            "after_as_of",
            lambda rows: (
                f"{table.timestamp_column} "
                + stamps.iloc[rows].map(pd.Timestamp.isoformat).astype("str")
                + f" is after as_of {as_of.isoformat()}"
            ).to_numpy(),
        )
    if table.name == "purchases":
        # Before duplicates, so that a line reusing an order_id for another customer is
        # reported as the conflict it is, not as a duplicate of another rejected line.
        order_numbers = np.full(len(result), -1, dtype=np.int64)
        accepted_so_far = np.flatnonzero(verdicts.ok)
        order_numbers[accepted_so_far] = _order_numbers(result["order_id"].iloc[accepted_so_far])
        _reject_order_conflicts(result, raw.line_numbers, verdicts, order_numbers)
        _reject_duplicates(table, result, raw.line_numbers, verdicts, order_numbers)
    else:
        _reject_duplicates(table, result, raw.line_numbers, verdicts)
    return result, verdicts, notes


def _missing_column(column: Column, size: int) -> pd.Series:
    """An absent optional column, filled with 'unknown' in its canonical type."""
    if column.kind == "float":
        return pd.Series(np.full(size, np.nan))
    if column.kind == "int":
        return pd.Series(pd.array([pd.NA] * size, dtype="Int64"))
    if column.kind == "timestamp":
        return pd.Series(pd.NaT, index=range(size), dtype="datetime64[ns, UTC]")
    if column.kind == "bool":
        return pd.Series(np.ones(size, dtype=bool))  # an item is available unless it says not
    return pd.Series(np.full(size, np.nan), dtype="str")


def _canonical(table: Table, parsed: pd.DataFrame, verdicts: _Verdicts) -> pd.DataFrame:
    """The accepted rows in canonical types (see features/shop.py)."""
    accepted = parsed[verdicts.ok].reset_index(drop=True)
    for column in table.columns:
        if column.kind == "int" and column.required:
            accepted[column.name] = accepted[column.name].astype("int64")
        elif column.kind == "bool":
            accepted[column.name] = accepted[column.name].fillna(True).astype(bool)
    return accepted


def infer_items(purchases: pd.DataFrame) -> pd.DataFrame:
    """Items table inferred from accepted purchases: one row per item_id, available, price =
    median unit_price (NaN when no line has a price), name and category missing."""
    prices = purchases.groupby("item_id", sort=True)["unit_price"].median()
    return pd.DataFrame(
        {
            "item_id": prices.index.astype("str"),
            "name": pd.Series(np.full(len(prices), np.nan), dtype="str"),
            "category": pd.Series(np.full(len(prices), np.nan), dtype="str"),
            "price": prices.to_numpy(dtype="float64"),
            "available": np.ones(len(prices), dtype=bool),
        }
    )


def infer_customers(purchases: pd.DataFrame) -> pd.DataFrame:
    """Customers table inferred from accepted purchases: one row per customer_id, with
    `signed_up_at` = their first order (UTC)."""
    first = purchases.groupby("customer_id", sort=True)["ordered_at"].min()
    return pd.DataFrame(
        {
            "customer_id": first.index.astype("str"),
            "signed_up_at": first.array.astype("datetime64[ns, UTC]"),
        }
    )


def validate_tables(
    raw_tables: dict[str, RawTable], as_of: pd.Timestamp
) -> dict[str, TableVerdict]:
    """Apply every contract rule to the tables read from one directory.

    `raw_tables` must contain `purchases`; absent `feedback` counts as empty, absent `items` and
    `customers` are inferred from the accepted purchases. `as_of` (tz-aware UTC): rows dated
    after it are rejected. Never raises on bad rows: each one gets a reason."""
    checked = {name: _check_table(raw, TABLES[name], as_of) for name, raw in raw_tables.items()}
    verdicts: dict[str, TableVerdict] = {}

    def finish(name: str, notes: list[str] | None = None) -> pd.DataFrame:
        parsed, table_verdicts, table_notes = checked[name]
        accepted = _canonical(TABLES[name], parsed, table_verdicts)
        verdicts[name] = TableVerdict(
            name, accepted, table_verdicts.reasons, table_verdicts.details, notes=table_notes
        )
        return accepted

    items = finish("items") if "items" in checked else None
    customers = finish("customers") if "customers" in checked else None

    purchases_parsed, purchase_verdicts, _ = checked["purchases"]
    if items is not None:
        _reject_unknown(
            purchases_parsed,
            "item_id",
            items["item_id"],
            "unknown_item",
            "in the items table",
            purchase_verdicts,
        )
    purchases = finish("purchases")

    if items is None:
        items = infer_items(purchases)
        verdicts["items"] = _inferred("items", items)
    if customers is None:
        customers = infer_customers(purchases)
        verdicts["customers"] = _inferred("customers", customers)
    else:
        missing = pd.Index(purchases["customer_id"].unique()).difference(customers["customer_id"])
        if len(missing):
            extra = pd.DataFrame({"customer_id": missing.astype("str")})
            customers = pd.concat([customers, extra], ignore_index=True)
            verdicts["customers"].accepted = customers
            verdicts["customers"].notes.append(
                f"{len(missing):,} customers of the purchases are not in the customers table; "
                "added with empty attributes"
            )

    if "feedback" in checked:
        parsed, feedback_verdicts, _ = checked["feedback"]
        _reject_unknown(
            parsed,
            "customer_id",
            customers["customer_id"],
            "unknown_customer",
            "in the purchases or the customers table",
            feedback_verdicts,
        )
        _reject_unknown(
            parsed, "item_id", items["item_id"], "unknown_item", "a known item", feedback_verdicts
        )
        _reject_unknown(
            parsed,
            "order_id",
            purchases["order_id"],
            "unknown_order",
            "among the accepted purchases",
            feedback_verdicts,
        )
        order_owner = _order_owner(parsed["order_id"], purchases)
        mismatch = (order_owner.notna() & (order_owner != parsed["customer_id"])).to_numpy()
        feedback_verdicts.reject(
            mismatch,
            "order_customer_mismatch",
            lambda rows: (
                "order "
                + parsed["order_id"].iloc[rows].astype("str")
                + " belongs to customer "
                + order_owner.iloc[rows].astype("str")
            ).to_numpy(),
        )
        finish("feedback")
    else:
        verdicts["feedback"] = TableVerdict(
            "feedback",
            _canonical(TABLES["feedback"], _empty_parsed(TABLES["feedback"]), _Verdicts(0)),
            np.empty(0, dtype=object),
            np.empty(0, dtype=object),
        )
    return {name: verdicts[name] for name in TABLES}


def _order_owner(order_ids: pd.Series, purchases: pd.DataFrame) -> pd.Series:
    """The customer of each order id (NaN when not an accepted order), looked up by Arrow."""
    position = pc.index_in(_arrow_text(order_ids), value_set=_arrow_text(purchases["order_id"]))
    owners = _arrow_text(purchases["customer_id"]).take(position)
    return pd.Series(owners.to_pandas(), index=order_ids.index).astype("str")


def _empty_parsed(table: Table) -> pd.DataFrame:
    return pd.DataFrame({c.name: _missing_column(c, 0) for c in table.columns})


def _inferred(name: str, accepted: pd.DataFrame) -> TableVerdict:
    return TableVerdict(
        name, accepted, np.empty(0, dtype=object), np.empty(0, dtype=object), inferred=True
    )
