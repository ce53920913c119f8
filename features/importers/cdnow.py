"""CDNOW (Fader & Hardie): one line = one purchase by a customer on a day.

Mapping (docs/data-contract.md, "Importers"): one order per line, `order_id` =
`<customer>-<YYYYMMDD>-<n>` (n counts the customer's lines on that day from 1); one generic item
`cd`; `quantity` = number of CDs, `unit_price` = dollars / CDs; `ordered_at` = the date at 00:00
UTC. A line with 0 CDs but a positive amount (none in the published files) becomes quantity 1 at
that amount, with a note; a line with 0 CDs and $0 is rejected as `empty_purchase`.
Customer ids keep their leading zeros ("00001").
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
    source_rejects,
)

MASTER_COLUMNS = ["customer_id", "date", "number_of_cds", "dollar_value"]
SAMPLE_COLUMNS = ["customer_id", "sample_id", "date", "number_of_cds", "dollar_value"]


def _read(src: Path) -> tuple[pd.DataFrame, int]:
    """The CDNOW file as text columns and the line of its first row (2 with a header)."""
    # utf-8-sig: a byte-order mark before the header is not part of its first name.
    with open(src, encoding="utf-8-sig", errors="replace") as handle:
        first = handle.readline().split()
    read = {"sep": r"\s+", "dtype": str, "keep_default_na": False, "encoding": "utf-8-sig"}
    if first and first[0] == "customer_id":
        raw = pd.read_csv(src, **read)
        missing = [c for c in MASTER_COLUMNS if c not in raw.columns]
        if missing:
            raise ValueError(f"{src}: missing column(s) {', '.join(missing)}")
        return raw, 2
    names = SAMPLE_COLUMNS if len(first) == 5 else MASTER_COLUMNS
    if len(first) not in (4, 5):
        raise ValueError(f"{src}: expected whitespace-separated columns {' '.join(MASTER_COLUMNS)}")
    return pd.read_csv(src, names=names, **read), 1


def cdnow_tables(src: Path) -> ConvertedShop:
    """Convert `CDNOW_master.txt` (or `CDNOW_sample.txt`) into contract tables (see the module
    docstring). Unreadable numbers or dates are rejected at the source with their line."""
    src = Path(src)
    raw, first_line = _read(src)
    lines = np.arange(first_line, first_line + len(raw))
    customer = raw["customer_id"].str.strip()
    date = pd.to_datetime(raw["date"].str.strip(), format="%Y%m%d", utc=True, errors="coerce")
    cds = pd.to_numeric(raw["number_of_cds"], errors="coerce")
    dollars = pd.to_numeric(raw["dollar_value"], errors="coerce")

    whole_cds = cds.notna() & (cds >= 0) & (cds == cds.round())
    reasons, details = first_reasons(
        len(raw),
        [
            (customer == "", "missing_value", "customer_id is empty"),
            (date.isna(), "bad_timestamp", "date '" + raw["date"] + "' is not YYYYMMDD"),
            (~whole_cds, "bad_number", "number_of_cds is not a whole number >= 0"),
            (dollars.isna() | (dollars < 0), "bad_number", "dollar_value is not a number >= 0"),
            ((cds == 0) & (dollars == 0), "empty_purchase", "0 CDs for $0"),
        ],
    )
    keep = pd.isna(reasons)

    quantity = cds[keep].astype("int64")
    no_cds = (quantity == 0).to_numpy()
    quantity = quantity.mask(no_cds, 1)
    day = date[keep].astype("datetime64[ns, UTC]")
    nth = customer[keep].to_frame("c").assign(d=day).groupby(["c", "d"]).cumcount() + 1
    purchases = pd.DataFrame(
        {
            "order_id": customer[keep] + "-" + day.dt.strftime("%Y%m%d") + "-" + nth.astype("str"),
            "customer_id": customer[keep],
            "item_id": "cd",
            "quantity": quantity,
            "unit_price": dollars[keep] / quantity,
            "ordered_at": day,
            "channel": pd.Series(dtype="str"),
        }
    ).reset_index(drop=True)
    items = pd.DataFrame(
        {"item_id": ["cd"], "name": ["CD"], "category": ["music"], "price": [np.nan]}
    ).assign(available=True)
    feedback = pd.DataFrame(
        columns=["customer_id", "created_at", "kind", "item_id", "order_id", "rating", "text"]
    )
    notes = []
    if no_cds.any():
        notes.append(f"{int(no_cds.sum()):,} lines with 0 CDs but an amount: quantity 1")
    return ConvertedShop(
        tables={"purchases": purchases, "feedback": feedback, "items": items},
        source_rows=len(raw),
        rows_behind={
            "purchases": np.ones(len(purchases), dtype=np.int64),
            "feedback": np.zeros(0, dtype=np.int64),
        },
        source_rejects=source_rejects(raw, lines, reasons, details),
        notes=notes,
    )


def import_cdnow(src: Path, out_dir: Path, **options: object) -> ImportSummary:
    """Convert a CDNOW file into contract tables in `out_dir`, validate them and account for
    every line. Options as for `features.importers.import_converted`."""
    return import_converted(cdnow_tables(src), src, out_dir, **options)  # type: ignore[arg-type]
