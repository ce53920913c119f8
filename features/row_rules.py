"""The rules between the rows of one table: repeated rows, and orders that contradict themselves.

A later copy of a row is `duplicate_line`, a later row with the same key the table's duplicate
reason (e.g. `duplicate_order_item`); an order line naming another customer or time than the
order's first line is `order_conflict`. Only rows still accepted take part.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.column_parsing import arrow_text
from features.contract import Table
from features.validation_results import RowVerdicts

KEY_DUPLICATE_REASON = {
    "purchases": "duplicate_order_item",
    "items": "duplicate_item",
    "customers": "duplicate_customer",
    "impressions": "duplicate_impression",
    "clicks": "duplicate_click",
}


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


def reject_duplicates(
    table: Table,
    parsed: pd.DataFrame,
    line_numbers: np.ndarray,
    verdicts: RowVerdicts,
    order_numbers: np.ndarray | None = None,
    row_name: str = "line",
) -> None:
    """Later copies of a row are rejected: `duplicate_line` when every value is equal, the
    table's key reason (e.g. `duplicate_order_item`) when only the key is equal.

    `order_numbers` (purchases): an integer per row standing for its order_id, so that the
    (order_id, item_id) key is hashed as integers rather than as two text columns. `row_name`
    names a row in the details ("line" of a file, "row" of a request; see `RawTable`)."""
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
    details.iloc[positions] = [f"same values as {row_name} {line}" for line in first_exact]
    verdicts.reject(mask, "duplicate_line", lambda r: details.iloc[r].to_numpy())
    if not table.key:
        return
    later = group.duplicated(subset=key, keep="first").to_numpy()
    first_key = _first_line_of_group(group, key, group_lines)
    key_text = " and ".join(key)
    details.iloc[positions] = [f"{key_text} already on {row_name} {line}" for line in first_key]
    mask[:] = False
    mask[positions[later]] = True
    verdicts.reject(mask, KEY_DUPLICATE_REASON[table.name], lambda r: details.iloc[r].to_numpy())


def _codes_by_first_appearance(values: pd.Series) -> np.ndarray:
    """Integer codes of text values, numbered 0, 1, ... in order of first appearance (Arrow's
    dictionary encoding: about twice as fast as pandas.factorize on Arrow strings)."""
    encoded = pc.dictionary_encode(arrow_text(values))
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


def number_orders(order_ids: pd.Series) -> np.ndarray:
    """An integer per row for its order, numbered 0, 1, ... by first appearance.

    When every order's lines are contiguous (the usual export) these are run numbers, found
    without hashing ten million strings; otherwise Arrow's dictionary codes."""
    if len(order_ids) == 0:
        return np.zeros(0, dtype=np.int64)
    arrow = arrow_text(order_ids)
    same_as_previous = pc.equal(arrow[1:], arrow[:-1]).to_numpy(zero_copy_only=False)
    starts = np.concatenate(([True], ~same_as_previous))
    first_ids = arrow.filter(pa.array(starts))
    if pc.count_distinct(first_ids).as_py() == len(first_ids):  # no order_id in two runs
        return np.cumsum(starts) - 1
    return _codes_by_first_appearance(order_ids)


def reject_order_conflicts(
    parsed: pd.DataFrame,
    line_numbers: np.ndarray,
    verdicts: RowVerdicts,
    order_numbers: np.ndarray,
    row_name: str = "line",
) -> None:
    """An order belongs to one customer at one time: the first accepted line of an order
    defines both; later lines that disagree are rejected as `order_conflict`.

    `order_numbers`: `number_orders` of the rows still accepted (by position in `parsed`);
    `row_name` as for `reject_duplicates`."""
    candidates = np.flatnonzero(verdicts.ok)
    rows = parsed.iloc[candidates]
    first = _first_row_of_code(order_numbers[candidates])
    customers = arrow_text(rows["customer_id"])
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
            f"order {o} is on {row_name} {hl} for customer {hc} at {ht.isoformat()}; "
            f"this {row_name} says customer {c} at {t.isoformat()}"
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
