"""Time-aware re-purchase: the customer's own items, weighed by whether each is due again
(`RepeatCycleRecommender`) or by how often it was bought lately (`RepeatFrequencyRecommender`,
at the end of this module).

For customer c and an item i they bought, at the fit's `as_of` (all durations in days):
- how often and how recently: `own(c, i)`, the customer's recency-weighted confidence (the
  history matrix the candidate reads, divided by the customer's largest, as
  `RepeatPurchaseRecommender` does);
- the pair's re-purchase cycle `tau(c, i)`: the customer's own mean gap between orders holding
  the item, shrunk towards the item's cycle (the median own gap of its repeat buyers; the
  shop's median when no one re-bought it) by `prior_gaps` pseudo-gaps; a single purchase gives
  the item's cycle;
- the customer's own cycle `h(c)`: the mean days between their orders (the shop's median for a
  customer with one order): how far away their next order is;
- gaps between purchases are taken as Gamma with mean `tau` and shape `shape` (1: memoryless,
  only the rate counts; larger: ever more regular cycles). With `a` the days since the last
  purchase, the chance the next purchase falls before the customer's next order is
  due = (F(a + h) - F(a)) / (1 - F(a)), and the chance the customer still buys the item at all
  after `n` purchases and `a` silent days is taken as n / (n + 1) weighted by the Gamma
  survival: alive = p S(a) / (p S(a) + 1 - p) with p = n / (n + 1).
score(c, i) = own * alive * due + popularity_weight * (item sales / the best seller's) with
`next_order_due` (regular cycles: an item bought every 7 days by a customer who orders every
few days ranks low the day after a purchase and first a week later), or own * alive without it
(items are bought again whenever the customer still buys them: on a grocery panel the time to
the next order told less than whether the customer still buys the item). Selection tries both
and keeps what wins on the shop's validation window. The timing is that of the fitted history
(`Interactions.timing`, at its `as_of`); a customer asked about later is scored as at `as_of`,
and items posted as bought since (`user_items` cells without timing) count as due.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.special import gammainc

from features.interactions import Interactions
from features.purchase_timing import PurchaseTiming
from models.recommenders.popularity import RepeatPurchaseRecommender, own_shares

MIN_PROBABILITY = 1e-6
"""The due chance of a pair never drops below this: the customer's own items stay ahead of
items they never bought when the popularity weight is small."""


def _timing_of(interactions: Interactions, model: str) -> PurchaseTiming:
    """The purchase timing `interactions` carries; ValueError (naming `model`) when none."""
    if interactions.timing is None:
        raise ValueError(
            f"{model} needs purchase timing: build the interactions with "
            "features.interactions.InteractionsBuilder"
        )
    return interactions.timing


class _TimedRepeatRecommender(RepeatPurchaseRecommender):
    """What the two time-aware families share: `RepeatPurchaseRecommender` (the customer's own
    items, the shop's best sellers after them) whose own items are weighed by one customers x
    items matrix learned from the fitted history's purchase timing (`_fit_timing`).

    `fit` raises ValueError when `interactions` carries no timing (build it with
    `features.interactions.InteractionsBuilder`) or a parameter is out of range
    (`_check_parameters`), in that order, before the checks every recommender makes."""

    def _check_parameters(self) -> None:
        """ValueError naming the parameter that is out of range."""
        raise NotImplementedError

    def _fit_timing(self, timing: PurchaseTiming) -> None:
        """Learn the pair weights from the purchase timing (after the best-seller shares)."""
        raise NotImplementedError

    def _read_interactions(self, interactions: Interactions) -> None:
        timing = _timing_of(interactions, self.strategy)
        self._check_parameters()
        self._timing = timing

    def _fit(
        self,
        matrix: sp.csr_matrix,
        co_purchase: sp.csr_matrix | None,
        item_categories: np.ndarray | None,
    ) -> None:
        super()._fit(matrix, co_purchase, item_categories)
        timing = self._timing
        del self._timing
        self._fit_timing(timing)


class RepeatCycleRecommender(_TimedRepeatRecommender):
    """The customer's own items ranked by how often, how recently and how due they are.

    Parameters: `shape` of the Gamma gap distribution (> 0), `popularity_weight` of the
    shop's best sellers (the fill for items never bought), `next_order_due` (weigh each item by
    its chance to fall due before the customer's next order, besides whether they still buy
    it), `prior_gaps` (pseudo-gaps pulling a customer's cycle for an item towards the item's
    cycle)."""

    strategy = "repeat_cycle"
    _array_names = ("item_scores_", "due_")

    def __init__(
        self,
        shape: float = 1.0,
        popularity_weight: float = 0.1,
        next_order_due: bool = False,
        prior_gaps: float = 1.0,
    ) -> None:
        self.shape = shape
        self.popularity_weight = popularity_weight
        self.next_order_due = next_order_due
        self.prior_gaps = prior_gaps

    def _check_parameters(self) -> None:
        if not self.shape > 0:
            raise ValueError(f"shape must be positive, got {self.shape}")

    def _fit_timing(self, timing: PurchaseTiming) -> None:
        """Every pair's due chance at the history's `as_of` (the item cycles learned here)."""
        self.due_ = due_probabilities(timing, self.shape, self.prior_gaps, self.next_order_due)

    def _scores(self, customer_rows: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        own = own_shares(user_items)
        factor = np.ones_like(own)
        known = customer_rows >= 0
        if known.any():
            due = self.due_[customer_rows[known]].tocoo()
            factor[np.flatnonzero(known)[due.row], due.col] = due.data
        return own * factor + np.float32(self.popularity_weight) * self.item_scores_[None, :]


def _pair_cells(timing: PurchaseTiming) -> tuple[sp.coo_matrix, np.ndarray, np.ndarray]:
    """The orders matrix as COO and, aligned with its cells, the first and last ages (days):
    the three matrices of `PurchaseTiming` hold the same cells in the same order."""
    orders = timing.orders.tocoo()
    first = timing.first_age_days.tocoo()
    last = timing.last_age_days.tocoo()
    same = [
        np.array_equal(orders.row, m.row) and np.array_equal(orders.col, m.col)
        for m in (first, last)
    ]
    if not all(same):
        raise ValueError("purchase timing matrices must hold the same cells")
    return orders, first.data.astype(np.float64), last.data.astype(np.float64)


def item_cycles(timing: PurchaseTiming) -> tuple[np.ndarray, float]:
    """Per item column: the median own gap (days) of the customers who bought it in 2+
    orders, and the shop's median over every such pair (what an item nobody re-bought gets)."""
    orders, first, last = _pair_cells(timing)
    span = first - last
    repeat = orders.data >= 2
    gaps = span[repeat] / (orders.data[repeat] - 1.0)
    columns = orders.col[repeat]
    shop_median = float(np.median(gaps)) if len(gaps) else 30.0
    cycles = np.full(timing.orders.shape[1], shop_median)
    if len(gaps):
        order = np.lexsort((gaps, columns))
        columns, gaps = columns[order], gaps[order]
        starts = np.flatnonzero(np.r_[True, columns[1:] != columns[:-1]])
        counts = np.diff(np.r_[starts, len(columns)])
        low = gaps[starts + (counts - 1) // 2]
        high = gaps[starts + counts // 2]
        cycles[columns[starts]] = (low + high) / 2.0
    return np.maximum(cycles, 1.0 / 24.0), shop_median


def customer_cycles(timing: PurchaseTiming, fallback_days: float) -> np.ndarray:
    """Per customer row: mean days between their orders (`fallback_days` with one order)."""
    orders = timing.customer_orders
    gaps = np.divide(
        timing.customer_span_days,
        orders - 1.0,
        out=np.full(len(orders), fallback_days),
        where=orders > 1,
    )
    known = orders > 1
    if known.any():
        gaps[~known] = float(np.median(gaps[known]))
    return np.maximum(gaps, 1.0 / 24.0)


def due_probabilities(
    timing: PurchaseTiming, shape: float, prior_gaps: float, next_order_due: bool = True
) -> sp.csr_matrix:
    """Customers x items CSR (float32, the pairs of `timing`): alive x due of the module
    docstring (alive alone without `next_order_due`), at least `MIN_PROBABILITY`."""
    item_cycle, shop_median = item_cycles(timing)
    horizon = customer_cycles(timing, shop_median)
    orders, first, last = _pair_cells(timing)
    rows, cols, n = orders.row, orders.col, orders.data.astype(np.float64)
    own_gap = np.divide(first - last, n - 1.0, out=np.zeros_like(n), where=n > 1)
    repeats = np.maximum(n - 1.0, 0.0)
    tau = (repeats * own_gap + prior_gaps * item_cycle[cols]) / (repeats + prior_gaps)
    tau = np.maximum(tau, 1.0 / 24.0)
    scale = tau / shape

    def cdf(days: np.ndarray) -> np.ndarray:
        return np.asarray(gammainc(shape, days / scale))

    survival = np.maximum(1.0 - cdf(last), 1e-12)
    due = (cdf(last + horizon[rows]) - cdf(last)) / survival if next_order_due else 1.0
    keeps_buying = n / (n + 1.0)
    alive = keeps_buying * survival / (keeps_buying * survival + 1.0 - keeps_buying)
    probability = np.clip(alive * due, MIN_PROBABILITY, 1.0)
    matrix = sp.csr_matrix(
        (probability.astype(np.float32), (rows, cols)), shape=timing.orders.shape
    )
    matrix.sort_indices()
    return matrix


class RepeatFrequencyRecommender(_TimedRepeatRecommender):
    """The customer's own items ranked by how often they bought them lately: time-aware item
    weighting, each order holding the item weighed 2^(-k / `half_life_orders`) where k is the
    number of the customer's own orders since it (the literature's decayed item frequency for
    next-basket lists, counted in the customer's orders rather than in days, so no shop's
    calendar is built in). Orders count once whatever the quantity (a tank of fuel is one
    purchase, not 10,000). Ties and never-bought items go by `popularity_weight` x the shop's
    best-seller share.

    The order positions come from the fit's timing (`Interactions.timing`): a pair's orders
    are taken as evenly spaced between its first and last purchase, and the days since each
    are divided by the customer's own mean days between orders (module docstring). Items a
    customer is asked about with, but which have no timing at the fit (bought since), count
    as one order placed just now."""

    strategy = "repeat_frequency"
    _array_names = ("item_scores_", "frequency_")

    def __init__(self, half_life_orders: float = 20.0, popularity_weight: float = 0.1) -> None:
        self.half_life_orders = half_life_orders
        self.popularity_weight = popularity_weight

    def _check_parameters(self) -> None:
        if not self.half_life_orders > 0:
            raise ValueError(f"half_life_orders must be positive, got {self.half_life_orders}")

    def _fit_timing(self, timing: PurchaseTiming) -> None:
        """Every pair's decayed order frequency at the history's `as_of`."""
        self.frequency_ = decayed_order_frequency(timing, self.half_life_orders)

    def _scores(self, customer_rows: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        bought = user_items.toarray() > 0
        frequency = np.zeros(bought.shape, dtype=np.float32)
        known = customer_rows >= 0
        if known.any():
            frequency[known] = self.frequency_[customer_rows[known]].toarray()
        frequency[bought & (frequency == 0)] = 1.0
        scale = frequency.max(axis=1, keepdims=True)
        own = np.divide(frequency, scale, out=np.zeros_like(frequency), where=scale > 0)
        return own + np.float32(self.popularity_weight) * self.item_scores_[None, :]


def decayed_order_frequency(timing: PurchaseTiming, half_life_orders: float) -> sp.csr_matrix:
    """Customers x items CSR (float32, the pairs of `timing`): the sum over the pair's n orders
    of 2^(-k / `half_life_orders`), k = the customer's orders since each (days since it over
    the customer's mean days between orders); the n orders are taken as evenly spaced from the
    first to the last purchase, which makes the sum a geometric series."""
    _, shop_median = item_cycles(timing)
    cycle = customer_cycles(timing, shop_median)
    orders, first, last = _pair_cells(timing)
    n = orders.data.astype(np.float64)
    per_order = np.log(2.0) / (half_life_orders * cycle[orders.row])
    spacing = np.divide(first - last, n - 1.0, out=np.zeros_like(n), where=n > 1)
    ratio = np.exp(-spacing * per_order)
    series = np.divide(
        -np.expm1(n * np.log(np.maximum(ratio, 1e-300))),
        -np.expm1(-spacing * per_order),
        out=n.copy(),
        where=spacing * per_order > 1e-9,
    )
    frequency = np.exp(-last * per_order) * series
    matrix = sp.csr_matrix(
        (np.maximum(frequency, MIN_PROBABILITY).astype(np.float32), (orders.row, orders.col)),
        shape=timing.orders.shape,
    )
    matrix.sort_indices()
    return matrix
