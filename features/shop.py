"""A shop's validated tables in memory, in canonical types.

Canonical types (every layer relies on them):
- ids (`order_id`, `customer_id`, `item_id`): Python `str` values (pandas object/str dtype);
- timestamps (`ordered_at`, `created_at`, `signed_up_at`): `datetime64[ns, UTC]`;
- `quantity`, `rating`: int64 (`rating` is nullable `Int64`); `unit_price`, `price`: float64,
  NaN when unknown; `available`: bool;
- optional text columns: str or missing (None/NaN).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class Shop:
    """The four contract tables of one shop, validated. `items` is never empty of purchased ids:
    when the shop has no items table it is inferred from purchases."""

    purchases: pd.DataFrame
    feedback: pd.DataFrame
    items: pd.DataFrame
    customers: pd.DataFrame

    def before(self, as_of: pd.Timestamp) -> Shop:
        """The shop as it was strictly before `as_of` (UTC): rows dated at or after are dropped.

        Items and customers are kept whole (they carry no event date)."""
        return Shop(
            purchases=self.purchases[self.purchases["ordered_at"] < as_of],
            feedback=self.feedback[self.feedback["created_at"] < as_of],
            items=self.items,
            customers=self.customers,
        )
