"""Groceries (Kaggle "Groceries dataset"): one line = one item bought by a member on a day.

Mapping (docs/data-contract.md, "Importers"): a member's lines on one date form one order,
`order_id` = `<member>-<YYYYMMDD>`; identical lines (same member, date and item) are merged into
one purchase line whose `quantity` is their count, so no line is lost and none is a duplicate;
`item_id` = a slug of the description, the item's `name` = the description; `ordered_at` = the
date at 00:00 UTC; no price. The feedback table is written empty (header only). Dates are ISO
8601 or numeric day and month (`21-07-2015` in the Kaggle file; day first unless the column shows
otherwise, see `features.importers.dates`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from features.importers.base import (
    ConvertedShop,
    ImportSummary,
    first_reasons,
    import_converted,
    read_source_csv,
    require_columns,
    slug,
    source_rejects,
)
from features.importers.dates import parse_dates, unreadable_date

COLUMNS = ["Member_number", "Date", "itemDescription"]


def groceries_tables(
    src: Path, date_format: str | None = None, day_first: bool | None = None
) -> ConvertedShop:
    """Convert `Groceries_dataset.csv` into contract tables (see the module docstring).

    Dates may be ISO (2015-07-21) or numeric day and month (21-07-2015, the original Kaggle
    file): day first when `day_first` is True, month first when False; when None, in the order
    the column shows, else day first with a warning. `date_format` (strftime codes) reads every
    date with that format only. Lines with an empty member or description or an unreadable
    date are rejected at the source."""
    src = Path(src)
    csv = read_source_csv(src)
    raw = csv.frame
    require_columns(src, raw, COLUMNS)
    lines = np.arange(2, len(raw) + 2)
    member = raw["Member_number"].str.strip()
    description = raw["itemDescription"].str.strip()
    dates = parse_dates(
        raw["Date"],
        "Date",
        day_first=day_first,
        date_format=date_format,
        default_day_first=True,
        default_reason="the Kaggle file's order",
    )
    date = dates.values

    reasons, details = first_reasons(
        len(raw),
        [
            (member == "", "missing_value", "Member_number is empty"),
            (description == "", "missing_value", "itemDescription is empty"),
            (
                date.isna(),
                "bad_timestamp",
                "Date '" + raw["Date"] + "' " + unreadable_date(date_format),
            ),
        ],
    )
    keep = pd.isna(reasons)

    lines_kept = pd.DataFrame(
        {
            "order_id": member[keep] + "-" + date[keep].dt.strftime("%Y%m%d"),
            "customer_id": member[keep],
            "item_id": slug(description[keep]),
            "ordered_at": date[keep],
            "name": description[keep],
        }
    )
    grouped = lines_kept.groupby(["order_id", "item_id"], sort=False)
    purchases = grouped.agg(
        customer_id=("customer_id", "first"),
        quantity=("customer_id", "size"),
        ordered_at=("ordered_at", "first"),
    ).reset_index()
    purchases = purchases.assign(unit_price=np.nan, channel=pd.Series(dtype="str"))
    purchases = purchases.sort_values(["ordered_at", "order_id", "item_id"], kind="stable")
    purchases = purchases[
        ["order_id", "customer_id", "item_id", "quantity", "unit_price", "ordered_at", "channel"]
    ].reset_index(drop=True)
    items = (
        lines_kept.drop_duplicates("item_id")[["item_id", "name"]]
        .sort_values("item_id")
        .assign(category=pd.Series(dtype="str"), price=np.nan, available=True)
        .reset_index(drop=True)
    )
    feedback = pd.DataFrame(
        columns=["customer_id", "created_at", "kind", "item_id", "order_id", "rating", "text"]
    )
    merged = int(len(lines_kept) - len(purchases))
    return ConvertedShop(
        tables={"purchases": purchases, "feedback": feedback, "items": items},
        source_rows=len(raw),
        rows_behind={
            "purchases": purchases["quantity"].to_numpy(dtype=np.int64),
            "feedback": np.zeros(0, dtype=np.int64),
        },
        source_rejects=source_rejects(raw, lines, reasons, details),
        notes=[
            *(f"{src.name}: {note}" for note in csv.notes()),
            *dates.notes,
            f"{merged:,} repeated lines (same member, day and item) counted as quantity",
        ],
        warnings=dates.warnings,
    )


def import_groceries(
    src: Path,
    out_dir: Path,
    date_format: str | None = None,
    day_first: bool | None = None,
    **options: object,
) -> ImportSummary:
    """Convert the Groceries CSV into contract tables in `out_dir`, validate them and account
    for every line. Options as for `features.importers.import_converted`."""
    converted = groceries_tables(src, date_format=date_format, day_first=day_first)
    return import_converted(converted, src, out_dir, **options)  # type: ignore[arg-type]
