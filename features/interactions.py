"""Customer x item interaction matrices and item x item co-purchase counts, at `as_of`.

Every function here uses purchases (and feedback) dated strictly before `as_of` (UTC).

Confidence weighting of `build_interactions` (one number per customer and item):

    confidence(c, i) = rating_factor(c, i) * sum over order lines l of (c, i) before as_of of
                       (1 + ln(quantity_l)) * 0.5 ** (age_days_l / half_life_days)

- quantity is log-damped: 1 unit counts 1, 10 units count 3.3 (a case of water is not ten
  separate decisions);
- recency: a line `half_life_days` old counts half as much as one bought just before `as_of`
  (`half_life_days=None` switches the decay off); `age_days` is `(as_of - ordered_at)` in days;
- ratings: the customer's latest rating of the item before `as_of` multiplies the confidence by
  `2 ** ((rating - 3) / 2)`: 1 star -> 0.5, 3 stars -> 1, 5 stars -> 2;
- returns (feedback of kind `return` naming an item): `returns="remove"` (default) drops one
  line's worth of weight per return, never below zero (a pair fully returned disappears);
  `"negative"` makes a returned pair's confidence negative (implicit ALS reads that as dislike);
  `"ignore"` keeps purchases as they are.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from features.purchase_timing import PurchaseTiming, pair_timing
from features.shop import Shop

ReturnsPolicy = Literal["remove", "negative", "ignore"]


@dataclass(frozen=True)
class Interactions:
    """A customers x items matrix (CSR, float32) with the ids of its rows and columns.

    `customer_ids[r]` is the id of row r, `item_ids[j]` the id of column j (numpy arrays of str).
    `timing`: when each pair was bought (same rows and columns; set by `InteractionsBuilder`,
    None for a matrix made another way)."""

    matrix: sp.csr_matrix
    customer_ids: np.ndarray
    item_ids: np.ndarray
    timing: PurchaseTiming | None = None

    @property
    def n_customers(self) -> int:
        """Number of rows (customers)."""
        return int(self.matrix.shape[0])

    @property
    def n_items(self) -> int:
        """Number of columns (items)."""
        return int(self.matrix.shape[1])

    def customer_rows(self, customer_ids: Iterable[str]) -> np.ndarray:
        """Row index of each customer id; -1 for a customer without purchases before `as_of`."""
        return pd.Index(self.customer_ids).get_indexer(pd.Index(list(customer_ids), dtype=object))

    def item_rows(self, item_ids: Iterable[str]) -> np.ndarray:
        """Column index of each item id; -1 for an item unknown to the catalog."""
        return pd.Index(self.item_ids).get_indexer(pd.Index(list(item_ids), dtype=object))

    def user_items(self, customer_rows: np.ndarray) -> sp.csr_matrix:
        """The matrix rows of `customer_rows`; a row of -1 (unknown customer) gives an empty row."""
        rows = np.asarray(customer_rows, dtype=np.int64)
        known = rows >= 0
        if known.all():
            return self.matrix[rows]
        picked = self.matrix[np.where(known, rows, 0)].tocoo()
        keep = known[picked.row]
        return sp.csr_matrix(
            (picked.data[keep], (picked.row[keep], picked.col[keep])),
            shape=(len(rows), self.n_items),
            dtype=np.float32,
        )


def catalog_item_ids(shop: Shop) -> np.ndarray:
    """Every item id of the shop (items table plus any purchased item), sorted, as str."""
    ids = pd.concat([shop.items["item_id"], shop.purchases["item_id"]]).astype(str).unique()
    return np.sort(ids.astype(object)).astype(str)


def _lines_before(shop: Shop, as_of: pd.Timestamp) -> pd.DataFrame:
    purchases = shop.purchases
    return purchases.loc[purchases["ordered_at"] < as_of]


def _item_codes(item_column: pd.Series, item_ids: np.ndarray) -> np.ndarray:
    """The column of each line's item in `item_ids` (-1: not there, or no item id). The
    distinct ids are looked up, not every line (a million lines: 0.5 CPU-s instead of 1.4)."""
    codes, distinct = pd.factorize(item_column)
    found = pd.Index(item_ids).get_indexer(np.asarray(distinct, dtype=object).astype(str))
    return np.append(found, -1)[codes]  # code -1 (a missing id) reads the appended -1


def build_interactions(
    shop: Shop,
    as_of: pd.Timestamp,
    half_life_days: float | None = 90.0,
    returns: ReturnsPolicy = "remove",
    use_ratings: bool = True,
    item_ids: np.ndarray | None = None,
) -> Interactions:
    """The customers x items confidence matrix at `as_of` (weighting in the module docstring).

    Rows: customers with at least one purchase line before `as_of`, sorted by id. Columns:
    `item_ids` when given (lines of other items are dropped), else `catalog_item_ids(shop)`.
    `as_of` must be a timezone-aware UTC timestamp; raises ValueError for a naive one or a
    non-positive half-life. For several half-lives at one `as_of`, use `InteractionsBuilder`."""
    builder = InteractionsBuilder(shop, as_of, returns, use_ratings, item_ids)
    return builder.build(half_life_days)


class InteractionsBuilder:
    """Reads the lines before `as_of` once; `build(half_life_days)` then gives the confidence
    matrix for any half-life without touching ids again (model selection tries several).

    Same arguments and result as `build_interactions`."""

    def __init__(
        self,
        shop: Shop,
        as_of: pd.Timestamp,
        returns: ReturnsPolicy = "remove",
        use_ratings: bool = True,
        item_ids: np.ndarray | None = None,
    ) -> None:
        _check_as_of(as_of)
        self.as_of = as_of
        self.returns = returns
        self.use_ratings = use_ratings
        items = catalog_item_ids(shop) if item_ids is None else np.asarray(item_ids).astype(str)
        self.item_ids = items
        lines = _lines_before(shop, as_of)
        columns = _item_codes(lines["item_id"], items)
        lines = lines.loc[columns >= 0]
        columns = columns[columns >= 0]
        rows, customers = pd.factorize(lines["customer_id"].astype(str), sort=True)
        self.customer_ids = np.asarray(customers, dtype=object).astype(str)
        self._base = 1.0 + np.log(np.maximum(lines["quantity"].to_numpy(dtype=np.float64), 1.0))
        self._age_days = (as_of - lines["ordered_at"]).dt.total_seconds().to_numpy() / 86400.0
        self._rows, self._columns = rows, columns
        self._order_ids = lines["order_id"]
        self._timing: PurchaseTiming | None = None
        # Group the lines by (customer, item) once: a build is then one reduceat.
        order = np.lexsort((columns, rows))
        rows_sorted, cols_sorted = rows[order], columns[order]
        first = np.ones(len(order), dtype=bool)
        first[1:] = (rows_sorted[1:] != rows_sorted[:-1]) | (cols_sorted[1:] != cols_sorted[:-1])
        self._order = order
        self._starts = np.flatnonzero(first)
        self._pair_cols = cols_sorted[self._starts].astype(np.int32)
        pair_rows = rows_sorted[self._starts]
        self._indptr = np.searchsorted(pair_rows, np.arange(len(customers) + 1))
        self._lines_per_pair = np.diff(np.append(self._starts, len(order))).astype(np.float64)
        feedback = shop.feedback.loc[shop.feedback["created_at"] < as_of]
        has_item = "item_id" in feedback
        self._feedback = feedback.loc[feedback["item_id"].notna()] if has_item else feedback[:0]

    def _pairs(self, values: np.ndarray) -> sp.csr_matrix:
        shape = (len(self.customer_ids), len(self.item_ids))
        return sp.csr_matrix((values, self._pair_cols, self._indptr), shape=shape)

    def build(self, half_life_days: float | None = 90.0) -> Interactions:
        """The confidence matrix with this recency half-life (days; None: no decay)."""
        if half_life_days is not None and half_life_days <= 0:
            raise ValueError(f"half_life_days must be positive or None, got {half_life_days}")
        weight = self._base
        if half_life_days is not None:
            weight = weight * np.exp2(-self._age_days / half_life_days)
        if len(self._order):
            sums = np.add.reduceat(weight[self._order], self._starts)
        else:
            sums = np.zeros(0, dtype=np.float64)
        matrix = self._pairs(sums.astype(np.float64))
        if self.use_ratings:
            matrix = _apply_ratings(matrix, self._feedback, self.customer_ids, self.item_ids)
        if self.returns != "ignore":
            matrix = _apply_returns(
                matrix,
                self._feedback,
                self.customer_ids,
                self.item_ids,
                self._pairs(self._lines_per_pair),
                self.returns,
            )
        matrix.eliminate_zeros()
        return Interactions(
            matrix.astype(np.float32).tocsr(), self.customer_ids, self.item_ids, self.timing()
        )

    def timing(self) -> PurchaseTiming:
        """When each pair was bought (`features.purchase_timing`), computed on first use."""
        if self._timing is None:
            order_codes, _ = pd.factorize(self._order_ids.astype(str))
            shape = (len(self.customer_ids), len(self.item_ids))
            self._timing = pair_timing(
                self._rows, self._columns, order_codes, self._age_days, shape
            )
        return self._timing


def _feedback_cells(
    feedback: pd.DataFrame, customer_ids: np.ndarray, item_ids: np.ndarray
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    rows = pd.Index(customer_ids).get_indexer(feedback["customer_id"].astype(str))
    cols = pd.Index(item_ids).get_indexer(feedback["item_id"].astype(str))
    known = (rows >= 0) & (cols >= 0)
    return feedback.loc[known], rows[known], cols[known]


def _apply_ratings(
    matrix: sp.csr_matrix, feedback: pd.DataFrame, customer_ids: np.ndarray, item_ids: np.ndarray
) -> sp.csr_matrix:
    ratings = feedback.loc[(feedback["kind"] == "rating") & feedback["rating"].notna()]
    if ratings.empty:
        return matrix
    ratings, rows, cols = _feedback_cells(ratings, customer_ids, item_ids)
    # The latest rating of a pair wins: a customer who changed their mind counts once.
    latest = (
        pd.DataFrame(
            {
                "row": rows,
                "col": cols,
                "at": ratings["created_at"].to_numpy(),
                "rating": ratings["rating"].astype(float).to_numpy(),
            }
        )
        .sort_values("at")
        .drop_duplicates(["row", "col"], keep="last")
    )
    factor = sp.csr_matrix(
        (np.exp2((latest["rating"].to_numpy() - 3.0) / 2.0) - 1.0, (latest["row"], latest["col"])),
        shape=matrix.shape,
    )
    # confidence * factor == confidence + confidence * (factor - 1), on the stored cells only.
    return (matrix + matrix.multiply(factor)).tocsr()


def _apply_returns(
    matrix: sp.csr_matrix,
    feedback: pd.DataFrame,
    customer_ids: np.ndarray,
    item_ids: np.ndarray,
    lines_per_pair: sp.csr_matrix,
    policy: ReturnsPolicy,
) -> sp.csr_matrix:
    returned = feedback.loc[feedback["kind"] == "return"]
    if returned.empty:
        return matrix
    returned, rows, cols = _feedback_cells(returned, customer_ids, item_ids)
    counts = pd.Series(1.0, index=pd.MultiIndex.from_arrays([rows, cols])).groupby(level=[0, 1])
    counts = counts.sum()
    pair_rows = counts.index.get_level_values(0).to_numpy()
    pair_cols = counts.index.get_level_values(1).to_numpy()
    matrix = matrix.tocsr()
    current = np.asarray(matrix[pair_rows, pair_cols]).ravel()
    if policy == "negative":
        new_values = -np.abs(current)
        new_values[current == 0] = 0.0
    else:
        # One return removes the weight of one average line of that pair.
        n_lines = np.asarray(lines_per_pair[pair_rows, pair_cols], dtype=np.float64).ravel()
        mean_line = np.divide(current, n_lines, out=np.zeros_like(current), where=n_lines > 0)
        new_values = np.maximum(current - counts.to_numpy() * mean_line, 0.0)
        new_values[new_values < 1e-9 * np.maximum(current, 1e-30)] = 0.0
    delta = sp.csr_matrix((new_values - current, (pair_rows, pair_cols)), shape=matrix.shape)
    return (matrix + delta).tocsr()


def purchase_counts(
    shop: Shop, as_of: pd.Timestamp, item_ids: np.ndarray | None = None
) -> Interactions:
    """Customers x items matrix of the number of distinct orders containing the item.

    Unweighted (no recency, quantity, ratings or returns); rows and columns as in
    `build_interactions`. Raises ValueError for a naive `as_of`."""
    _check_as_of(as_of)
    items = catalog_item_ids(shop) if item_ids is None else np.asarray(item_ids).astype(str)
    lines = _lines_before(shop, as_of)
    columns = _item_codes(lines["item_id"], items)
    lines = lines.loc[columns >= 0]
    pairs = pd.DataFrame(
        {"order": lines["order_id"].astype(str).to_numpy(), "col": columns[columns >= 0]}
    )
    pairs["customer"] = lines["customer_id"].astype(str).to_numpy()
    pairs = pairs.drop_duplicates(["order", "col"])
    customer_codes, customers = pd.factorize(pairs["customer"], sort=True)
    matrix = sp.csr_matrix(
        (np.ones(len(pairs), dtype=np.float32), (customer_codes, pairs["col"].to_numpy())),
        shape=(len(customers), len(items)),
        dtype=np.float32,
    )
    matrix.sum_duplicates()
    return Interactions(matrix, np.asarray(customers, dtype=object).astype(str), items)


def order_item_matrix(
    shop: Shop, as_of: pd.Timestamp, item_ids: np.ndarray
) -> tuple[sp.csr_matrix, np.ndarray]:
    """Binary orders x items CSR (1 when the order holds the item) and the order ids (rows).

    Only lines before `as_of` and items in `item_ids`."""
    _check_as_of(as_of)
    lines = _lines_before(shop, as_of)
    columns = _item_codes(lines["item_id"], np.asarray(item_ids).astype(str))
    lines = lines.loc[columns >= 0]
    order_codes, orders = pd.factorize(lines["order_id"].astype(str))
    matrix = sp.csr_matrix(
        (np.ones(len(lines), dtype=np.float32), (order_codes, columns[columns >= 0])),
        shape=(len(orders), len(item_ids)),
        dtype=np.float32,
    )
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix, np.asarray(orders, dtype=object).astype(str)


def co_purchase_counts(shop: Shop, as_of: pd.Timestamp, item_ids: np.ndarray) -> sp.csr_matrix:
    """Items x items CSR (float32): the number of orders before `as_of` containing both items.

    The diagonal holds the number of orders containing the item. Columns follow `item_ids`;
    lines of other items are ignored."""
    baskets, _ = order_item_matrix(shop, as_of, item_ids)
    counts = (baskets.T @ baskets).tocsr()
    counts.sort_indices()
    return counts.astype(np.float32)


def _check_as_of(as_of: pd.Timestamp) -> None:
    if not isinstance(as_of, pd.Timestamp) or as_of.tzinfo is None:
        raise ValueError(f"as_of must be a timezone-aware pandas Timestamp (UTC), got {as_of!r}")
