"""Apply the data contract to tables: every row of every table accepted or rejected with a reason.

Pure functions over DataFrames (no I/O): `features.loading` reads a shop's files and calls
`validate_tables`; `features.posted_rows` hands rows posted to the server to `check_tables`, so
files and posted events pass one validator. A rejected row gets the first reason that applies,
in this order: the CSV line could not be split (`bad_row`); per column in contract order
(`features.column_parsing`): required value empty, value does not parse, value out of range;
then table rules (rating required for `kind=rating`, timestamp after `as_of`, order consistency
and duplicates: `features.row_rules`) and last the references between tables, which only ever
point at rows that were themselves accepted. `docs/data-contract.md` documents every reason
code (`features.validation_results.REASONS`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.column_parsing import (
    arrow_text,
    is_text_dtype,
    missing_column,
    parse_column,
    stripped_text,
)
from features.contract import POSTED_ONLY_TABLES, TABLES, Table
from features.row_rules import number_orders, reject_duplicates, reject_order_conflicts
from features.validation_results import (
    REASONS,
    RawTable,
    RowVerdicts,
    TableReport,
    TableVerdict,
    ValidationReport,
)

__all__ = [
    "REASONS",
    "RawTable",
    "TableReport",
    "TableVerdict",
    "ValidationReport",
    "check_tables",
    "infer_customers",
    "infer_items",
    "validate_tables",
]


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
    verdicts: RowVerdicts,
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
) -> tuple[pd.DataFrame, RowVerdicts, list[str]]:
    """Per-row rules of one table (no references yet): parsed values and verdicts."""
    frame = raw.frame
    verdicts = RowVerdicts(len(frame))
    notes: list[str] = []
    if raw.preset_reasons is not None:
        preset = pd.notna(raw.preset_reasons)
        details = raw.preset_details if raw.preset_details is not None else raw.preset_reasons
        for reason in pd.unique(raw.preset_reasons[preset]):
            verdicts.reject(raw.preset_reasons == reason, str(reason), lambda r: details[r])
    parsed: dict[str, pd.Series] = {}
    for column in table.columns:
        if column.name in frame.columns:
            parsed[column.name], _ = parse_column(frame[column.name], column, verdicts)
        else:
            parsed[column.name] = missing_column(column, len(frame))
    extra = [c for c in frame.columns if c not in table.columns_by_name]
    if extra and table.extra_columns_allowed:
        for name in extra:
            text = frame[name] if is_text_dtype(frame[name]) else stripped_text(frame[name])
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
        order_numbers[accepted_so_far] = number_orders(result["order_id"].iloc[accepted_so_far])
        reject_order_conflicts(result, raw.line_numbers, verdicts, order_numbers, raw.row_name)
        reject_duplicates(table, result, raw.line_numbers, verdicts, order_numbers, raw.row_name)
    else:
        reject_duplicates(table, result, raw.line_numbers, verdicts, row_name=raw.row_name)
    return result, verdicts, notes


def _canonical(table: Table, parsed: pd.DataFrame, verdicts: RowVerdicts) -> pd.DataFrame:
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


def check_tables(raw_tables: dict[str, RawTable], as_of: pd.Timestamp) -> dict[str, TableVerdict]:
    """Apply the rules of each table on its own to the given tables: every contract rule but the
    references between tables; nothing is inferred.

    For rows that arrive without the rest of the shop (`features.posted_rows`): their
    references are checked when they meet the shop's tables (`validate_tables`, at the next
    training). `raw_tables` holds any of purchases, feedback, items, customers and the posted
    interactions (views and carts). `as_of`
    (tz-aware UTC): rows dated after it are rejected. Never raises on bad rows."""
    verdicts: dict[str, TableVerdict] = {}
    for name, raw in raw_tables.items():
        parsed, table_verdicts, notes = _check_table(raw, _table(name), as_of)
        verdicts[name] = _verdict(name, parsed, table_verdicts, notes)
    return verdicts


def validate_tables(
    raw_tables: dict[str, RawTable], as_of: pd.Timestamp
) -> dict[str, TableVerdict]:
    """Apply every contract rule to the tables read from one directory.

    `raw_tables` must contain `purchases`; absent `feedback` counts as empty, absent `items` and
    `customers` are inferred from the accepted purchases. `as_of` (tz-aware UTC): rows dated
    after it are rejected. Never raises on bad rows: each one gets a reason."""
    checked = {name: _check_table(raw, TABLES[name], as_of) for name, raw in raw_tables.items()}
    verdicts: dict[str, TableVerdict] = {}

    def finish(name: str) -> pd.DataFrame:
        verdicts[name] = _verdict(name, *checked[name])
        return verdicts[name].accepted

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
        _reject_feedback_references(parsed, feedback_verdicts, purchases, items, customers)
        finish("feedback")
    else:
        verdicts["feedback"] = TableVerdict(
            "feedback",
            _canonical(TABLES["feedback"], _empty_parsed(TABLES["feedback"]), RowVerdicts(0)),
            np.empty(0, dtype=object),
            np.empty(0, dtype=object),
        )
    return {name: verdicts[name] for name in TABLES}


def _table(name: str) -> Table:
    """The contract table of a name: a shop's table, or one only posted (`interactions`)."""
    return TABLES[name] if name in TABLES else POSTED_ONLY_TABLES[name]


def _verdict(
    name: str, parsed: pd.DataFrame, verdicts: RowVerdicts, notes: list[str]
) -> TableVerdict:
    """The verdict of one checked table: its accepted rows in canonical types, reasons, notes."""
    accepted = _canonical(_table(name), parsed, verdicts)
    return TableVerdict(name, accepted, verdicts.reasons, verdicts.details, notes=notes)


def _reject_feedback_references(
    parsed: pd.DataFrame,
    verdicts: RowVerdicts,
    purchases: pd.DataFrame,
    items: pd.DataFrame,
    customers: pd.DataFrame,
) -> None:
    """Feedback must name known customers, items and accepted orders, and an order of the
    customer who gives the feedback."""
    _reject_unknown(
        parsed,
        "customer_id",
        customers["customer_id"],
        "unknown_customer",
        "in the purchases or the customers table",
        verdicts,
    )
    _reject_unknown(parsed, "item_id", items["item_id"], "unknown_item", "a known item", verdicts)
    _reject_unknown(
        parsed,
        "order_id",
        purchases["order_id"],
        "unknown_order",
        "among the accepted purchases",
        verdicts,
    )
    order_owner = _order_owner(parsed["order_id"], purchases)
    mismatch = (order_owner.notna() & (order_owner != parsed["customer_id"])).to_numpy()
    verdicts.reject(
        mismatch,
        "order_customer_mismatch",
        lambda rows: (
            "order "
            + parsed["order_id"].iloc[rows].astype("str")
            + " belongs to customer "
            + order_owner.iloc[rows].astype("str")
        ).to_numpy(),
    )


def _order_owner(order_ids: pd.Series, purchases: pd.DataFrame) -> pd.Series:
    """The customer of each order id (NaN when not an accepted order), looked up by Arrow."""
    position = pc.index_in(arrow_text(order_ids), value_set=arrow_text(purchases["order_id"]))
    owners = arrow_text(purchases["customer_id"]).take(position)
    return pd.Series(owners.to_pandas(), index=order_ids.index).astype("str")


def _empty_parsed(table: Table) -> pd.DataFrame:
    return pd.DataFrame({c.name: missing_column(c, 0) for c in table.columns})


def _inferred(name: str, accepted: pd.DataFrame) -> TableVerdict:
    return TableVerdict(
        name, accepted, np.empty(0, dtype=object), np.empty(0, dtype=object), inferred=True
    )
