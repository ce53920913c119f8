"""UCI Online Retail (I: 2010-2011) and Online Retail II (2009-2011): one line = one invoice line.

Mapping (docs/data-contract.md, "Importers"):
- a line without a customer is rejected at the source as `no_customer` (the contract needs one);
- a cancellation (invoice starting with C) or a line with a negative quantity becomes `return`
  feedback: one row per (invoice, stock code), item = stock code, text says how many came back;
- any other line is a purchase: `order_id` = invoice, `item_id` = stock code; lines of the same
  invoice and stock code are merged (quantity summed, `unit_price` = amount / quantity, so the
  spend is kept); an invoice's time is its earliest line's (a few invoices straddle a minute);
- a line with quantity 0 is rejected as `zero_quantity`; a negative price (bad-debt
  adjustments) is kept and the validator rejects it as `out_of_range`;
- `items`: one row per stock code (name = its most common description, price = median unit
  price of its sales); `customers`: one row per customer with `region` = Country.
Timestamps carry no zone in the source (UK local time) and are taken as UTC, like the contract
says for any timestamp without a zone. InvoiceDate may be ISO 8601 or numeric day and month in
either order (`12/1/10 8:26`, `01.12.2010 08:26:00`); `features.importers.dates` decides the
order for the whole column and says which it used. A `;`-separated CSV may write UnitPrice with
a decimal comma (`2,55`).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from features.importers.base import (
    ConvertedShop,
    ImportSummary,
    first_reasons,
    ids_from_numbers,
    import_converted,
    read_source_csv,
    source_rejects,
)
from features.importers.dates import parse_dates, unreadable_date
from features.importers.purchases import purchases_from_groups

# Canonical name -> the names it has in Online Retail I and II.
COLUMN_NAMES = {
    "invoice": ("InvoiceNo", "Invoice"),
    "stock_code": ("StockCode",),
    "description": ("Description",),
    "quantity": ("Quantity",),
    "invoice_date": ("InvoiceDate",),
    "price": ("UnitPrice", "Price"),
    "customer": ("CustomerID", "Customer ID"),
    "country": ("Country",),
}


def _read(src: Path) -> tuple[pd.DataFrame, np.ndarray, list[str], str]:
    """The source lines as text, their line numbers (CSV: header = 1; Excel: the sheet's row),
    notes on how the file was read, and the CSV separator (',' for Excel)."""
    notes: list[str] = []
    if src.suffix.lower() == ".xls":
        raise ValueError(f"{src}: old Excel format; save it as .xlsx or CSV and import that")
    if src.suffix.lower() in (".xlsx", ".xlsm"):
        try:
            from openpyxl.utils.exceptions import InvalidFileException
        except ModuleNotFoundError as error:
            raise ValueError(
                f"{src}: reading Excel files needs openpyxl (pip install openpyxl); "
                "or save the sheet(s) as CSV and import that"
            ) from error
        try:
            sheets = pd.read_excel(
                src, sheet_name=None, dtype=str, keep_default_na=False, engine="openpyxl"
            )
        except (zipfile.BadZipFile, InvalidFileException) as error:
            raise ValueError(f"{src}: not a readable .xlsx file ({error})") from error
        frames = list(sheets.values())
        raw = pd.concat(frames, ignore_index=True)
        lines = np.concatenate([np.arange(2, len(f) + 2) for f in frames])
        if len(frames) > 1:
            notes.append(f"read {len(frames)} sheets; line numbers are rows within each sheet")
        return raw, lines, notes, ","
    csv = read_source_csv(src)
    notes.extend(f"{src.name}: {note}" for note in csv.notes())
    return csv.frame, np.arange(2, len(csv.frame) + 2), notes, csv.separator


def _columns(src: Path, raw: pd.DataFrame) -> dict[str, pd.Series]:
    found: dict[str, pd.Series] = {}
    for name, candidates in COLUMN_NAMES.items():
        present = [c for c in candidates if c in raw.columns]
        if not present:
            raise ValueError(
                f"{src}: no column {' or '.join(candidates)}; expected the UCI Online Retail "
                f"columns ({', '.join(c[0] for c in COLUMN_NAMES.values())})"
            )
        found[name] = raw[present[0]].astype("str").str.strip()
    return found


def _prices(text: pd.Series, separator: str, notes: list[str]) -> pd.Series:
    """UnitPrice as numbers; in a `;`-separated file `2,55` (and `1.234,50`) is a decimal comma."""
    if separator == ";":
        comma = text.str.contains(",", regex=False)
        if comma.any():
            decimal = text.str.replace(".", "", regex=False).str.replace(",", ".", regex=False)
            text = text.mask(comma, decimal)
            notes.append(
                f"UnitPrice: {int(comma.sum()):,} values with a decimal comma (2,55 = 2.55)"
            )
    return pd.to_numeric(text, errors="coerce")


def online_retail_tables(
    src: Path, date_format: str | None = None, day_first: bool | None = None
) -> ConvertedShop:
    """Convert an Online Retail (I or II) CSV or .xlsx into contract tables (see the module
    docstring). InvoiceDate: ISO 8601, else numeric day and month: day first when `day_first`
    is True, month first when False; when None, in the order the column shows, else month first
    with a warning. `date_format` (strftime codes) reads every value with that format only.
    Unreadable values are rejected at the source with their line."""
    src = Path(src)
    raw, lines, notes, separator = _read(src)
    column = _columns(src, raw)
    customer = ids_from_numbers(column["customer"])
    quantity = pd.to_numeric(column["quantity"], errors="coerce")
    price = _prices(column["price"], separator, notes)
    dates = parse_dates(
        column["invoice_date"],
        "InvoiceDate",
        day_first=day_first,
        date_format=date_format,
        default_reason="the UCI export's order",
    )
    when = dates.values
    invoice = column["invoice"]

    reasons, details = first_reasons(
        len(raw),
        [
            (customer == "", "no_customer", "the line has no customer id"),
            (invoice == "", "missing_value", "the invoice number is empty"),
            (column["stock_code"] == "", "missing_value", "the stock code is empty"),
            (
                quantity.isna() | (quantity != quantity.round()),
                "bad_number",
                "Quantity '" + column["quantity"] + "' is not a whole number",
            ),
            (quantity == 0, "zero_quantity", "Quantity is 0"),
            (price.isna(), "bad_number", "UnitPrice '" + column["price"] + "' is not a number"),
            (
                when.isna(),
                "bad_timestamp",
                "InvoiceDate '" + column["invoice_date"] + "' " + unreadable_date(date_format),
            ),
        ],
    )
    keep = pd.isna(reasons)

    lines_kept = pd.DataFrame(
        {
            "invoice": invoice[keep],
            "item_id": column["stock_code"][keep],
            "description": column["description"][keep],
            "customer_id": customer[keep],
            "quantity": quantity[keep].astype("int64"),
            "price": price[keep],
            "at": when[keep],
            "country": column["country"][keep],
        }
    )
    is_return = (lines_kept["invoice"].str.upper().str.startswith("C")) | (
        lines_kept["quantity"] < 0
    )
    sales = lines_kept[~is_return]
    returns = lines_kept[is_return]
    purchases, purchase_rows = _purchases(sales)
    feedback, feedback_rows = _returns(returns)
    return ConvertedShop(
        tables={
            "purchases": purchases,
            "feedback": feedback,
            "items": _items(lines_kept, sales),
            "customers": _customers(lines_kept),
        },
        source_rows=len(raw),
        rows_behind={"purchases": purchase_rows, "feedback": feedback_rows},
        source_rejects=source_rejects(raw, lines, reasons, details),
        notes=notes + dates.notes,
        warnings=dates.warnings,
    )


def _purchases(sales: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """One purchase line per (invoice, stock code); the invoice's earliest time."""
    sales = sales.assign(
        amount=sales["quantity"] * sales["price"],
        at=sales.groupby("invoice")["at"].transform("min"),
    )
    grouped = sales.groupby(["invoice", "item_id"], sort=False).agg(
        customer_id=("customer_id", "first"),
        quantity=("quantity", "sum"),
        amount=("amount", "sum"),
        ordered_at=("at", "first"),
        lines=("quantity", "size"),
    )
    return purchases_from_groups(grouped, "invoice", "amount", channel="web", price_decimals=6)


def _returns(returns: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """One `return` feedback row per (invoice, stock code) of cancellations and negative lines."""
    returns = returns.assign(
        at=returns.groupby("invoice")["at"].transform("min"), quantity=returns["quantity"].abs()
    )
    grouped = (
        returns.groupby(["invoice", "item_id"], sort=False)
        .agg(
            customer_id=("customer_id", "first"),
            quantity=("quantity", "sum"),
            description=("description", "first"),
            created_at=("at", "first"),
            lines=("quantity", "size"),
        )
        .reset_index()
        .sort_values(["created_at", "invoice"], kind="stable")
    )
    text = (
        "returned "
        + grouped["quantity"].astype("str")
        + " x "
        + grouped["description"].astype("str")
        + " (invoice "
        + grouped["invoice"].astype("str")
        + ")"
    )
    feedback = pd.DataFrame(
        {
            "customer_id": grouped["customer_id"],
            "created_at": grouped["created_at"],
            "kind": "return",
            "item_id": grouped["item_id"],
            "order_id": pd.Series(np.nan, index=grouped.index, dtype="str"),
            "rating": pd.array([pd.NA] * len(grouped), dtype="Int64"),
            "text": text,
        }
    ).reset_index(drop=True)
    return feedback, grouped["lines"].to_numpy(dtype=np.int64)


def _items(lines: pd.DataFrame, sales: pd.DataFrame) -> pd.DataFrame:
    """One item per stock code: most common description, median sales price, available."""
    named = lines[lines["description"] != ""]
    names = (
        named.groupby(["item_id", "description"])
        .size()
        .rename("n")
        .reset_index()
        .sort_values(["item_id", "n", "description"], ascending=[True, False, True])
        .drop_duplicates("item_id")
        .set_index("item_id")["description"]
    )
    prices = sales[sales["price"] >= 0].groupby("item_id")["price"].median()
    item_ids = pd.Index(np.sort(lines["item_id"].unique()))
    return pd.DataFrame(
        {
            "item_id": item_ids.astype("str"),
            "name": names.reindex(item_ids).to_numpy(),
            "category": pd.Series(np.nan, index=range(len(item_ids)), dtype="str"),
            "price": prices.reindex(item_ids).to_numpy(dtype="float64"),
            "available": True,
        }
    )


def _customers(lines: pd.DataFrame) -> pd.DataFrame:
    """One row per customer; `region` = the country of their first line."""
    first = lines.sort_values("at", kind="stable").drop_duplicates("customer_id")
    return (
        pd.DataFrame({"customer_id": first["customer_id"], "region": first["country"]})
        .sort_values("customer_id")
        .reset_index(drop=True)
    )


def import_online_retail(
    src: Path,
    out_dir: Path,
    date_format: str | None = None,
    day_first: bool | None = None,
    **options: object,
) -> ImportSummary:
    """Convert an Online Retail (I or II) file into contract tables in `out_dir`, validate them
    and account for every line. Options as for `features.importers.import_converted`."""
    converted = online_retail_tables(src, date_format=date_format, day_first=day_first)
    return import_converted(converted, src, out_dir, **options)  # type: ignore[arg-type]
