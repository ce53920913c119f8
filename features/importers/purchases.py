"""The contract's purchases table from source lines an importer has summed per order and item."""

from __future__ import annotations

import numpy as np
import pandas as pd


def purchases_from_groups(
    grouped: pd.DataFrame,
    order_column: str,
    spend_column: str,
    channel: str,
    price_decimals: int | None = None,
) -> tuple[pd.DataFrame, np.ndarray]:
    """The purchases table from source lines summed per (order, item): `grouped` is indexed by
    `order_column` and `item_id` (and possibly more) with columns `customer_id`, `quantity`,
    `spend_column` (the line value), `ordered_at` and `lines` (source lines behind each row).

    Sorted by time, then order; `unit_price` is spend / quantity (rounded to `price_decimals`
    when given). Returns the table and the source lines behind each of its rows."""
    grouped = grouped.reset_index().sort_values(["ordered_at", order_column], kind="stable")
    unit_price = grouped[spend_column] / grouped["quantity"]
    if price_decimals is not None:
        unit_price = unit_price.round(price_decimals)
    purchases = pd.DataFrame(
        {
            "order_id": grouped[order_column],
            "customer_id": grouped["customer_id"],
            "item_id": grouped["item_id"],
            "quantity": grouped["quantity"].astype("int64"),
            "unit_price": unit_price,
            "ordered_at": grouped["ordered_at"],
            "channel": channel,
        }
    ).reset_index(drop=True)
    return purchases, grouped["lines"].to_numpy(dtype=np.int64)
