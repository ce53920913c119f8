"""The validation window before `as_of`, and everything a candidate is judged on there.

The window is the last W days before `as_of`, with W = the serving horizon capped at a quarter
of the shop's history. Candidates are fitted on data before `as_of - W` (the cut) and judged on
purchases in `[cut, as_of)`; `ValidationData` builds what they need once and caches it. When that
window is thin, `validation_scheme` widens it or holds out each customer's last order instead;
`ValidationData` then reads the scheme's history, cut and judged lines.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import scipy.sparse as sp

from features.attributes import customer_attributes
from features.interactions import (
    Interactions,
    InteractionsBuilder,
    co_purchase_counts,
    purchase_counts,
)
from features.shop import Shop
from models.recommenders.base import Recommender, row_normalise, top_k
from models.recommenders.evaluation import metrics_from_columns, ndcg_per_customer
from models.recommenders.validation_scheme import ValidationScheme, window_scheme

K = 10
"""Every validation metric is taken at K."""
SCORE_CACHE_CELLS = 30_000_000
"""At most this many validation score cells are cached per candidate (120 MB float32)."""


def item_categories(shop: Shop, item_ids: np.ndarray) -> np.ndarray:
    """Category per item column as str ("" when the shop does not say)."""
    items = shop.items
    if "category" not in items:
        return np.full(len(item_ids), "", dtype=object).astype(str)
    categories = (
        items.assign(item_id=items["item_id"].astype(str))
        .drop_duplicates("item_id")
        .set_index("item_id")["category"]
        .reindex(item_ids)
    )
    return categories.fillna("").astype(str).to_numpy()


def validation_window_days(shop: Shop, as_of: pd.Timestamp, horizon_days: float = 90.0) -> float:
    """W: the serving horizon, capped at a quarter of the history before `as_of` (days)."""
    purchases = shop.purchases.loc[shop.purchases["ordered_at"] < as_of, "ordered_at"]
    if purchases.empty:
        raise ValueError(f"no purchases before as_of={as_of}: nothing to learn from")
    history_days = (as_of - purchases.min()).total_seconds() / 86400.0
    return float(max(min(horizon_days, history_days / 4.0), 1.0))


def purchases_between(shop: Shop, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """The shop's purchase lines ordered in [start, end)."""
    ordered_at = shop.purchases["ordered_at"]
    return shop.purchases.loc[(ordered_at >= start) & (ordered_at < end)]


def rows_of(counts: Interactions, customer_ids: np.ndarray) -> sp.csr_matrix:
    """The rows of `counts` for `customer_ids`, in that order (an unknown customer gets the
    first row: every caller's customers come from a matrix with the same rows)."""
    rows = pd.Index(counts.customer_ids).get_indexer(customer_ids)
    return counts.matrix[np.maximum(rows, 0)]


class ValidationData:
    """Everything a candidate needs at the validation cut, built once and cached.

    `scheme` says what candidates are fitted and judged on (default: the last `window_days`
    days before `as_of`); `shop` and `cut` are then the scheme's history and cut, and
    `window_lines` the purchase lines judged. Half-lives stay in multiples of `window_days`."""

    def __init__(
        self,
        shop: Shop,
        as_of: pd.Timestamp,
        window_days: float,
        item_ids: np.ndarray,
        max_customers: int,
        seed: int,
        scheme: ValidationScheme | None = None,
    ) -> None:
        self.scheme = scheme or window_scheme(shop, as_of, window_days)
        self.shop = self.scheme.history
        shop = self.shop
        self.as_of = as_of
        self.window_days = window_days
        self.cut = self.scheme.cut
        self.window_lines = self.scheme.truth
        """The purchase lines judged (the window's, or the held-out orders)."""
        self.item_ids = item_ids
        self.item_categories = item_categories(shop, item_ids)
        self._matrices: dict[float | None, Interactions] = {}
        started = time.perf_counter()
        self._builder = InteractionsBuilder(shop, self.cut, item_ids=item_ids)
        self.prepare_seconds = time.perf_counter() - started
        self.customer_attributes = customer_attributes(shop, self._builder.customer_ids)
        """Attributes of the matrices' customers (every matrix here has the same rows)."""
        self.co_purchase = co_purchase_counts(shop, self.cut, item_ids)
        reference = self.matrix(None)
        self.customer_ids = reference.customer_ids
        self.bought = rows_of(purchase_counts(shop, self.cut, item_ids), self.customer_ids)
        rng = np.random.default_rng(seed)
        truth = self._window_truth(max_customers, rng)
        repeat: dict[int, set[int]] = {i: set() for i in range(len(self.eval_rows))}
        position = {row: index for index, row in enumerate(self.eval_rows)}
        for row, col in zip(truth["row"].to_numpy(), truth["col"].to_numpy(), strict=True):
            repeat[position[row]].add(int(col))
        bought_eval = self.bought[self.eval_rows]
        discovery = {
            i: cols - set(bought_eval.indices[bought_eval.indptr[i] : bought_eval.indptr[i + 1]])
            for i, cols in repeat.items()
        }
        self.relevant = {"repeat": repeat, "discovery": {i: c for i, c in discovery.items() if c}}
        self.exclude = {"repeat": None, "discovery": bought_eval.toarray() != 0}
        halves = rng.permutation(len(self.eval_rows)) % 2
        self.halves = [np.flatnonzero(halves == h) for h in (0, 1)]

    def _window_truth(self, max_customers: int, rng: np.random.Generator) -> pd.DataFrame:
        """(row, col) pairs bought in the window by the evaluated customers; sets `eval_rows`
        (customers with history who bought in the window, a seeded sample when too many)."""
        window = self.window_lines
        window_rows = pd.Index(self.customer_ids).get_indexer(window["customer_id"].astype(str))
        window_cols = pd.Index(self.item_ids).get_indexer(window["item_id"].astype(str))
        known = (window_rows >= 0) & (window_cols >= 0)
        truth = pd.DataFrame({"row": window_rows[known], "col": window_cols[known]})
        truth = truth.drop_duplicates()
        truth_rows = truth["row"].unique()
        limit = max(50, min(max_customers, SCORE_CACHE_CELLS // max(len(self.item_ids), 1)))
        if len(truth_rows) > limit:
            truth_rows = np.sort(rng.choice(truth_rows, size=limit, replace=False))
        self.eval_rows = np.sort(truth_rows)
        return truth.loc[truth["row"].isin(self.eval_rows)]

    def matrix(self, half_life: float | None) -> Interactions:
        """Interactions at the cut with a half-life of `half_life` x W (None: no decay)."""
        if half_life not in self._matrices:
            days = None if half_life is None else half_life * self.window_days
            started = time.perf_counter()
            self._matrices[half_life] = self._builder.build(days)
            self.build_seconds = time.perf_counter() - started
        return self._matrices[half_life]

    def per_customer_ndcg(self, scores: np.ndarray, protocol: str) -> np.ndarray:
        """NDCG@K of each evaluated customer of `protocol` (rows with relevant items, in
        `eval_rows` order), as `ndcg` averages it; for paired comparisons of two score blocks."""
        rows = np.fromiter(sorted(self.relevant[protocol]), dtype=np.int64)
        every_row = len(rows) == len(scores)  # rows are sorted and unique: then all of them
        scores = np.asarray(scores, dtype=np.float32)
        scores = scores if every_row else scores[rows]
        exclude = self.exclude[protocol]
        if exclude is not None:
            scores = np.where(exclude if every_row else exclude[rows], -np.inf, scores)
        return self.per_customer_ndcg_of_rows(scores, protocol)

    def per_customer_ndcg_of_rows(self, scores: np.ndarray, protocol: str) -> np.ndarray:
        """`per_customer_ndcg` of a block already cut to the protocol's rows (in order) and with
        its excluded items at -inf."""
        rows = np.fromiter(sorted(self.relevant[protocol]), dtype=np.int64)
        items, _ = top_k(scores, K)
        relevant = self._relevance(protocol)[rows]
        hits = np.take_along_axis(relevant, np.maximum(items, 0), axis=1) & (items >= 0)
        return ndcg_per_customer(hits, relevant.sum(axis=1), K)

    def _relevance(self, protocol: str) -> np.ndarray:
        """Dense bool (eval rows, items): the protocol's relevant items (built once)."""
        cache = self.__dict__.setdefault("_relevance_cache", {})
        if protocol not in cache:
            dense = np.zeros((len(self.eval_rows), len(self.item_ids)), dtype=bool)
            for row, columns in self.relevant[protocol].items():
                dense[row, list(columns)] = True
            cache[protocol] = dense
        return cache[protocol]

    def judged(self, protocol: str) -> bool:
        """True when some evaluated customer has a relevant item under `protocol` (discovery
        has none in a shop whose customers only bought again what they had bought before)."""
        return bool(self.relevant[protocol])

    def ndcg(self, scores: np.ndarray, protocol: str, subset: np.ndarray | None = None) -> dict:
        """Validation metrics at K of a dense score block over `eval_rows` (optionally a subset)."""
        exclude = self.exclude[protocol]
        if exclude is not None:
            scores = np.where(exclude, np.float32(-np.inf), scores)
        items, _ = top_k(scores, K)
        relevant = self.relevant[protocol]
        if subset is not None:
            keep = set(subset.tolist())
            relevant = {r: c for r, c in relevant.items() if r in keep}
        return metrics_from_columns(items, relevant, K)


def score_block(model: Recommender, data: ValidationData, matrix: Interactions) -> np.ndarray:
    """Row-normalised scores of `model` for every evaluated customer (rows of `eval_rows`)."""
    rows = data.eval_rows
    block = np.empty((len(rows), matrix.n_items), dtype=np.float32)
    step = max(1, (1 << 22) // max(matrix.n_items, 1))
    for start in range(0, len(rows), step):
        chunk = rows[start : start + step]
        block[start : start + len(chunk)] = row_normalise(model.scores(chunk, matrix.matrix[chunk]))
    return block


def rounded(metrics: dict[str, float]) -> dict[str, float]:
    """Metrics rounded to 5 decimals, as the report records (and selection compares) them."""
    return {name: round(float(value), 5) for name, value in metrics.items()}
