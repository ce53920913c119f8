"""Turning simulated arrays into contract tables (string ids, UTC timestamps) and files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

FORMATS = ("csv", "parquet")


def make_ids(prefix: str, count: int) -> pa.Array:
    """Ids `prefix` + 1-based number, zero-padded to one width so they sort like numbers."""
    width = len(str(max(count, 1)))
    numbers = pc.cast(pa.array(np.arange(1, count + 1, dtype=np.int64)), pa.string())
    return pc.binary_join_element_wise(prefix, pc.utf8_lpad(numbers, width, "0"), "")


def take(values: pa.Array, index: np.ndarray, missing: np.ndarray | None = None) -> pa.Array:
    """`values[index]`, null where `missing` is True."""
    return values.take(pa.array(index, mask=missing))


def timestamps(epoch_seconds: np.ndarray, file_format: str) -> pa.Array:
    """UTC timestamps: ISO 8601 strings ending in Z for CSV, timestamp[us, UTC] for Parquet."""
    stamps = pa.array(epoch_seconds.astype(np.int64), type=pa.timestamp("s", tz="UTC"))
    if file_format == "csv":
        return pc.strftime(stamps, format="%Y-%m-%dT%H:%M:%SZ")
    return stamps.cast(pa.timestamp("us", tz="UTC"))


def write_table(table: pa.Table, directory: Path, name: str, file_format: str) -> Path:
    """Write `table` as `directory/name.csv` or `.parquet`; byte-identical for identical tables."""
    path = directory / f"{name}.{file_format}"
    if file_format == "csv":
        pa_csv.write_csv(table, path, write_options=pa_csv.WriteOptions(quoting_style="needed"))
    else:
        pq.write_table(table, path, compression="zstd")
    return path
