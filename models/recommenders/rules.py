"""Business rules applied to model scores before the top-k is taken.

- bought items are excluded unless repeatable (`exclude_purchased`: "all", "non-repeatable",
  "none"); an item is repeatable when its learned repeat-purchase rate (share of its buyers who
  bought it in two or more orders, shrunk towards the shop-wide rate) reaches
  `repeat_threshold` (learned per shop, `default_exclusion`), or when its category is
  overridden in `repeatable_categories`;
- only available items; optional category filter; basket items are never recommended back;
- diversity: at most `max_per_category` items of one category in a list;
- `item_rules` builds them for a catalogue from the shop and its order counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import scipy.sparse as sp

from features.shop import Shop
from models.recommenders.validation import item_categories

ExcludePurchased = Literal["all", "non-repeatable", "none"]
EXCLUDE_CHOICES: tuple[str, ...] = ("all", "non-repeatable", "none")


def repeat_purchase_rates(order_counts: sp.csr_matrix, prior_strength: float = 5.0) -> np.ndarray:
    """Per item: share of its buyers who bought it in 2+ orders, shrunk to the shop-wide share.

    `order_counts` is customers x items (number of orders holding the item, as from
    `features.interactions.purchase_counts`). An item nobody bought gets the shop-wide share."""
    counts = sp.csr_matrix(order_counts)
    buyers = np.bincount(counts.indices[counts.data > 0], minlength=counts.shape[1])
    repeaters = np.bincount(counts.indices[counts.data >= 2], minlength=counts.shape[1])
    overall = repeaters.sum() / max(buyers.sum(), 1)
    weight = buyers + prior_strength
    rates = np.divide(
        repeaters + prior_strength * overall,
        weight,
        out=np.full(len(buyers), overall),
        where=weight > 0,
    )
    return rates.astype(np.float32)


@dataclass
class BusinessRules:
    """Item-level facts and the rule settings; arrays follow the model's item columns."""

    categories: np.ndarray
    """Category per item column ("" when unknown)."""
    available: np.ndarray
    """bool per item column."""
    repeat_rates: np.ndarray
    """Learned repeat-purchase rate per item column (see `repeat_purchase_rates`)."""
    repeat_threshold: float = 0.25
    repeatable_categories: dict[str, bool] = field(default_factory=dict)
    """Per-category override of repeatability (True: always repeatable, False: never)."""
    max_per_category: int | None = None

    @property
    def repeatable(self) -> np.ndarray:
        """bool per item column: may be recommended again to a customer who bought it."""
        return self.repeatable_at(np.arange(len(self.repeat_rates)))

    def repeatable_at(self, columns: np.ndarray) -> np.ndarray:
        """`repeatable` of the given item columns only (as cheap as they are few)."""
        repeatable = self.repeat_rates[columns] >= self.repeat_threshold
        if self.repeatable_categories:
            categories = self.categories[columns]
            for category, allowed in self.repeatable_categories.items():
                repeatable = np.where(categories == category, bool(allowed), repeatable)
        return repeatable

    def blocked(
        self,
        purchased: sp.csr_matrix,
        exclude_purchased: ExcludePurchased = "non-repeatable",
        basket: sp.csr_matrix | None = None,
        category: str | None = None,
    ) -> np.ndarray:
        """Dense bool (n, n_items): True where an item must not be recommended.

        `purchased` holds the customers' past purchases (rows), `basket` the items in their
        current basket. Raises ValueError on an unknown `exclude_purchased`."""
        if exclude_purchased not in EXCLUDE_CHOICES:
            raise ValueError(
                f"exclude_purchased must be one of {', '.join(EXCLUDE_CHOICES)}, "
                f"got {exclude_purchased!r}"
            )
        n_rows = purchased.shape[0]
        blocked = np.broadcast_to(~self.available.astype(bool), (n_rows, len(self.available)))
        blocked = blocked.copy()
        if category is not None:
            blocked |= (self.categories != category)[None, :]
        if exclude_purchased != "none":
            rows, columns = _stored_cells(purchased)
            if exclude_purchased == "non-repeatable":
                keep = ~self.repeatable[columns]
                rows, columns = rows[keep], columns[keep]
            blocked[rows, columns] = True
        if basket is not None:
            blocked[_stored_cells(basket)] = True
        return blocked

    def blocked_row(
        self,
        bought_columns: np.ndarray,
        exclude_purchased: ExcludePurchased = "non-repeatable",
        category: str | None = None,
    ) -> np.ndarray:
        """`blocked` of one customer who bought the items in `bought_columns`: a dense bool
        (1, n_items), the same cells, from the few columns bought instead of a sparse matrix
        (a request's cost). Raises ValueError on an unknown `exclude_purchased`."""
        blocked = ~np.asarray(self.available, dtype=bool)
        if category is not None:
            blocked |= self.categories != category
        blocked[self.blocked_columns(bought_columns, exclude_purchased)] = True
        return blocked[None, :]

    def blocked_columns(
        self,
        purchased_columns: np.ndarray,
        exclude_purchased: ExcludePurchased = "non-repeatable",
        basket_columns: np.ndarray | None = None,
    ) -> np.ndarray:
        """Sorted item columns one customer must not get for their purchases and basket: the
        one-row sparse counterpart of `blocked`, without the unavailable items (`available`
        stays the caller's to apply) and without a category filter.

        `purchased_columns` are the columns the customer bought. Raises ValueError on an
        unknown `exclude_purchased`."""
        if exclude_purchased not in EXCLUDE_CHOICES:
            raise ValueError(
                f"exclude_purchased must be one of {', '.join(EXCLUDE_CHOICES)}, "
                f"got {exclude_purchased!r}"
            )
        parts = [np.empty(0, dtype=np.int64)]
        if basket_columns is not None:
            parts.append(np.asarray(basket_columns, dtype=np.int64))
        if exclude_purchased != "none":
            bought = np.asarray(purchased_columns, dtype=np.int64)
            if exclude_purchased == "non-repeatable":
                bought = bought[~self.repeatable_at(bought)]
            parts.append(bought)
        return np.unique(np.concatenate(parts))

    def diversify(
        self, items: np.ndarray, scores: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Keep, in order, at most `max_per_category` items per category; first k per row.

        `items`/`scores` are ranked candidate lists (n, m >= k) padded with -1; an unknown
        category ("") is not limited. Rows with too few candidates are padded with -1/-inf."""
        n_rows = items.shape[0]
        out_items = np.full((n_rows, k), -1, dtype=np.int64)
        out_scores = np.full((n_rows, k), -np.inf, dtype=np.float32)
        for row in range(n_rows):
            taken: dict[str, int] = {}
            position = 0
            for item, score in zip(items[row], scores[row], strict=True):
                if item < 0 or position == k:
                    break
                category = str(self.categories[item])
                if self.max_per_category is not None and category:
                    if taken.get(category, 0) >= self.max_per_category:
                        continue
                    taken[category] = taken.get(category, 0) + 1
                out_items[row, position] = item
                out_scores[row, position] = score
                position += 1
        return out_items, out_scores


def item_rules(
    shop: Shop,
    item_ids: np.ndarray,
    order_counts: sp.csr_matrix,
    repeat_threshold: float = 0.25,
    repeatable_categories: dict[str, bool] | None = None,
    max_per_category: int | None = None,
) -> BusinessRules:
    """Business rules for the catalog: categories, availability, learned repeat rates."""
    items = shop.items.copy()
    items["item_id"] = items["item_id"].astype(str)
    items = items.drop_duplicates("item_id").set_index("item_id").reindex(item_ids)
    categories = item_categories(shop, item_ids)
    if "available" in items:
        available = items["available"].fillna(True).astype(bool).to_numpy()
    else:
        available = np.ones(len(item_ids), dtype=bool)
    return BusinessRules(
        categories=categories.astype(str),
        available=available,
        repeat_rates=repeat_purchase_rates(order_counts),
        repeat_threshold=repeat_threshold,
        repeatable_categories=dict(repeatable_categories or {}),
        max_per_category=max_per_category,
    )


def _stored_cells(matrix: sp.spmatrix) -> tuple[np.ndarray, np.ndarray]:
    """(rows, columns) of the non-zero cells of a sparse matrix (no dense copy of it)."""
    coo = sp.csr_matrix(matrix).tocoo()
    coo.sum_duplicates()  # as a dense copy would add them up
    nonzero = coo.data != 0
    return coo.row[nonzero].astype(np.int64), coo.col[nonzero].astype(np.int64)
