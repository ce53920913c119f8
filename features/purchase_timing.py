"""When each customer bought each item before `as_of`: the timing a re-purchase model reads.

Per (customer, item) pair: in how many orders the customer bought the item, and how many days
before `as_of` the first and the last of those orders were placed. Per customer: their number
of orders and the days from their first to their last order. Every figure counts order lines
dated strictly before `as_of` (UTC); ages are `(as_of - ordered_at)` in days (float), so a
line bought one hour before `as_of` is 1/24 day old. Rows and columns are those of the
`Interactions` built from the same lines (`features.interactions.InteractionsBuilder`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True)
class PurchaseTiming:
    """Customers x items timing (CSR float32, one stored cell per pair ever bought) and the
    customers' own order rhythm (float64 per row)."""

    orders: sp.csr_matrix
    """Number of distinct orders holding the item."""
    first_age_days: sp.csr_matrix
    """Days from the first order holding the item to `as_of`."""
    last_age_days: sp.csr_matrix
    """Days from the last order holding the item to `as_of` (> 0: lines are before `as_of`)."""
    customer_orders: np.ndarray
    """Distinct orders per customer row."""
    customer_span_days: np.ndarray
    """Days from the customer's first to their last order (0 with one order)."""

    @property
    def n_customers(self) -> int:
        """Number of customer rows."""
        return int(self.orders.shape[0])


def pair_timing(
    rows: np.ndarray,
    columns: np.ndarray,
    orders: np.ndarray,
    age_days: np.ndarray,
    shape: tuple[int, int],
) -> PurchaseTiming:
    """`PurchaseTiming` of order lines given as customer row, item column, order code and age
    (days before `as_of`) per line; `shape` = (customers, items). Several lines of one order
    and item count as one order."""
    rows = np.asarray(rows, dtype=np.int64)
    columns = np.asarray(columns, dtype=np.int64)
    orders = np.asarray(orders, dtype=np.int64)
    age_days = np.asarray(age_days, dtype=np.float64)
    order = np.lexsort((orders, columns, rows))
    r, c, o, age = rows[order], columns[order], orders[order], age_days[order]
    new_pair = np.ones(len(r), dtype=bool)
    new_pair[1:] = (r[1:] != r[:-1]) | (c[1:] != c[:-1])
    new_order = new_pair.copy()
    new_order[1:] |= o[1:] != o[:-1]
    starts = np.flatnonzero(new_pair)
    if len(starts):
        pair_orders = np.add.reduceat(new_order.astype(np.float64), starts)
        first_age = np.maximum.reduceat(age, starts)
        last_age = np.minimum.reduceat(age, starts)
    else:
        pair_orders = first_age = last_age = np.zeros(0)
    pair_rows, pair_cols = r[starts], c[starts]

    def cells(values: np.ndarray) -> sp.csr_matrix:
        matrix = sp.csr_matrix(
            (values.astype(np.float32), (pair_rows, pair_cols)), shape=shape, dtype=np.float32
        )
        matrix.sort_indices()
        return matrix

    customer_orders, customer_span = _customer_rhythm(r, o, age, shape[0])
    return PurchaseTiming(
        orders=cells(pair_orders),
        first_age_days=cells(first_age),
        last_age_days=cells(last_age),
        customer_orders=customer_orders,
        customer_span_days=customer_span,
    )


def _customer_rhythm(
    rows: np.ndarray, orders: np.ndarray, age_days: np.ndarray, n_customers: int
) -> tuple[np.ndarray, np.ndarray]:
    """Distinct orders per customer row and the days between their first and last order (an
    order belongs to one customer: validation rejects an order naming two)."""
    _, first_line = np.unique(orders, return_index=True)
    customer_orders = np.bincount(rows[first_line], minlength=n_customers)
    oldest = np.full(n_customers, -np.inf)
    newest = np.full(n_customers, np.inf)
    np.maximum.at(oldest, rows, age_days)
    np.minimum.at(newest, rows, age_days)
    span = np.where(customer_orders > 0, oldest - newest, 0.0)
    return customer_orders.astype(np.float64), np.maximum(span, 0.0)
