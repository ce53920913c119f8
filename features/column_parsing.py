"""Parse one column of a contract table into its canonical type, rejecting values that do not fit.

A value is missing (empty), does not parse (`bad_integer`, `bad_number`, `bad_timestamp`,
`bad_boolean`, `unknown_kind`) or is out of range; the well-formed bulk of a column is parsed by
Arrow kernels, the odd rest by pandas. CSV gives text, Parquet native types: both are accepted.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.contract import MAX_ID_LENGTH, MAX_INTEGER, MAX_SHOWN_ITEMS, Column
from features.validation_results import RowVerdicts

TRUE_WORDS = ("true", "1", "yes")
FALSE_WORDS = ("false", "0", "no")

# Outside this window a timestamp does not fit datetime64[ns] (1677-09-21 .. 2262-04-11).
EARLIEST_TIMESTAMP = pd.Timestamp("1678-01-01", tz="UTC")
LATEST_TIMESTAMP = pd.Timestamp("2262-01-01", tz="UTC")


def is_text_dtype(series: pd.Series) -> bool:
    """Whether the values are text (a pandas string dtype or Python objects)."""
    return pd.api.types.is_string_dtype(series.dtype) or series.dtype == object


def stripped_text(series: pd.Series) -> pd.Series:
    """The values as stripped strings; missing (None/NaN/empty) as NaN."""
    if not is_text_dtype(series):
        missing = series.isna().to_numpy()
        if pd.api.types.is_float_dtype(series.dtype):
            finite = series.dropna()
            if len(finite) and (finite == np.floor(finite)).all():
                series = series.astype("Int64")  # 12.0 read from a float column means "12"
        text = series.astype("str")
        text[missing] = np.nan
        return text
    # Arrow's kernels: pandas' .str.strip() costs seconds on ten million values.
    arrow = arrow_text(series)
    stripped = pc.utf8_trim_whitespace(arrow)
    empty = pc.equal(stripped, "")
    clean = not pc.any(empty).as_py() and not pc.any(pc.not_equal(stripped, arrow)).as_py()
    if clean and series.dtype == "str":
        return series  # the usual case: nothing to trim, no copy back to pandas
    stripped = pc.if_else(empty, pa.scalar(None, stripped.type), stripped)
    return pd.Series(stripped.to_pandas(), index=series.index).astype("str")


def arrow_text(series: pd.Series) -> pa.Array | pa.ChunkedArray:
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
    arrow = arrow_text(text)
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
    # pandas takes the words "now" and "today" even with format="ISO8601"; a date begins with
    # a digit (the basic form, 20250105T1000Z, is ISO 8601 too and stays).
    dated = text.str.match("[0-9]").fillna(False).astype(bool)
    parsed = pd.to_datetime(text.where(dated), format="ISO8601", utc=True, errors="coerce")
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
    if not is_text_dtype(raw):
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


def parse_column(
    raw: pd.Series, column: Column, verdicts: RowVerdicts
) -> tuple[pd.Series, np.ndarray]:
    """Parse one column into its canonical type, rejecting bad values.

    Returns the parsed values (for every row) and the missing mask."""
    name = column.name
    if column.kind == "id_list":
        return _parse_id_lists(raw, column, verdicts)
    if column.kind == "text":
        values = raw if is_text_dtype(raw) else stripped_text(raw)
        values = values.astype("str")
        missing = (values.isna() | (values.str.strip() == "")).to_numpy()
        values = values.mask(missing)
    else:
        # Native Parquet values of the right type are parsed as they are, not via text.
        text = raw if _is_native(raw, column) else stripped_text(raw)
        missing = text.isna().to_numpy()
    if column.required:
        verdicts.reject(missing, "missing_value", f"{name} is empty")

    def says(message: str) -> Callable[[np.ndarray], object]:
        return lambda rows: (f"{name} " + _show(raw, rows) + " " + message).to_numpy()

    if column.kind == "id":
        values = text
    elif column.kind in ("int", "float"):
        values = _parse_number_column(raw, text, missing, column, verdicts, says)
    elif column.kind == "timestamp":
        values = _parse_timestamps(raw, text)
        bad = ~missing & values.isna().to_numpy()
        verdicts.reject(
            bad, "bad_timestamp", says("is not an ISO 8601 timestamp from 1678 to 2261")
        )
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


def _id_list(value: object) -> tuple[str, ...] | None:
    """A list of distinct ids as a tuple (hashable, for the duplicate rules), else None."""
    if not isinstance(value, (list, tuple)) or not 0 < len(value) <= MAX_SHOWN_ITEMS:
        return None
    if not all(isinstance(i, str) and 0 < len(i.strip()) <= MAX_ID_LENGTH for i in value):
        return None
    ids = tuple(i.strip() for i in value)
    return ids if len(set(ids)) == len(ids) else None


def _parse_id_lists(
    raw: pd.Series, column: Column, verdicts: RowVerdicts
) -> tuple[pd.Series, np.ndarray]:
    """An `id_list` column (posted JSON lists): each value as a tuple of ids, rejecting an
    empty value (`missing_value`) and anything but 1 to `MAX_SHOWN_ITEMS` distinct ids
    (`bad_item_list`)."""
    missing = np.array([v is None or (isinstance(v, float) and np.isnan(v)) for v in raw])
    if column.required:
        verdicts.reject(missing, "missing_value", f"{column.name} is empty")
    values = pd.Series([None if m else _id_list(v) for v, m in zip(raw, missing, strict=True)])
    bad = ~missing & values.isna().to_numpy()
    verdicts.reject(
        bad,
        "bad_item_list",
        f"{column.name} must list 1 to {MAX_SHOWN_ITEMS} distinct item ids of 1 to "
        f"{MAX_ID_LENGTH} characters",
    )
    return values.astype(object), missing


def _parse_number_column(
    raw: pd.Series,
    text: pd.Series,
    missing: np.ndarray,
    column: Column,
    verdicts: RowVerdicts,
    says: Callable[[str], Callable[[np.ndarray], object]],
) -> pd.Series:
    """The values of an `int` (as Int64) or `float` (as float64) column, rejecting what is no
    number, no whole number for `int`, or out of range."""
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
    if column.kind != "int":
        return values
    if pd.api.types.is_signed_integer_dtype(raw.dtype):
        return raw.astype("Int64")  # exact: float64 would round whole numbers beyond 2**53
    # float64 has no whole numbers between 2**63 - 1024 and int64's largest, 2**63 - 1.
    huge = ~missing & (np.abs(values.to_numpy()) >= 2.0**63)
    verdicts.reject(
        huge, "out_of_range", says(f"is too large to store (above {MAX_INTEGER}, int64)")
    )
    return values.where(np.isfinite(values) & ~huge).round().astype("Int64")


def missing_column(column: Column, size: int) -> pd.Series:
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
