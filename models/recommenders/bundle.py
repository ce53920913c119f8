"""A fitted, servable set of recommenders for one shop, chosen on validation and saved as one
directory (JSON + npz, no pickle).

Roles: `discovery` (items new to the customer, used with exclude_purchased="all"), `repeat`
(repeats allowed; "none"), `cross_sell` (a basket), `similar` (an item) and `trending` (new or
unknown customers, and the filler when rules leave a list short). The default
"non-repeatable" is answered by the role and repeat threshold the shop's validation window
chose (`default_exclusion`).
Every answer names the strategy that produced it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any, Protocol, cast, runtime_checkable

import numpy as np
import pandas as pd
import scipy.sparse as sp

from features.attributes import customer_attributes
from features.interactions import (
    Interactions,
    InteractionsBuilder,
    catalog_item_ids,
    co_purchase_counts,
    purchase_counts,
)
from features.shop import Shop
from models.recommenders.base import (
    Recommender,
    csr_from_arrays,
    csr_to_arrays,
    top_k,
    weighted_rows_sum,
)
from models.recommenders.candidates import SIMILAR_ITEMS, CandidateSpec
from models.recommenders.fresh_row import fresh_entries, updated_row, with_next_need
from models.recommenders.popularity import TrendingRecommender
from models.recommenders.rules import (
    EXCLUDE_CHOICES,
    BusinessRules,
    ExcludePurchased,
    item_rules,
    repeat_purchase_rates,
)
from models.recommenders.selection import SelectionSettings, select_models
from models.recommenders.session import SessionAnswer, session_recommendation
from models.recommenders.static_ranking import StaticRanking, is_in
from models.recommenders.validation import item_categories, rows_of
from models.recommenders.winners import fit_winner

BUNDLE_FORMAT = 1
ROLES = ("discovery", "repeat", "cross_sell", "similar", "trending")
LIST_ROLES = ("discovery", "repeat", "trending")
"""The roles every bundle has; a lists-only bundle (a backtest's) has no basket models."""


FALLBACK_STRATEGY = "trending"
"""The strategy named when the bundle answers without personal data (a new customer, an unknown
basket or item): recency-weighted best sellers whose half-life was chosen on the validation
window (all-time sales when plain popularity won there); `Recommendation.note` says why."""

NEW_CUSTOMER = "new customer"
"""`Recommendation.note` of an answer for a customer the bundle has no history for."""


BATCH_SCORES = 1_000_000
"""Scores per batch of `recommend_many` (customers x items): batches of a few MB stay in the
CPU caches; 2,048 customers x 50k items at a time (400 MB per array) measured 4x slower."""


def batch_rows(n_items: int) -> int:
    """Customers per batch for a catalog of `n_items`: `BATCH_SCORES` scores, 8 to 2,048 rows."""
    return max(8, min(2048, BATCH_SCORES // max(1, n_items)))


@runtime_checkable
class SparseScorer(Protocol):
    """A model whose basket and similar-item scores reach few items (co-purchase, item kNN):
    `cross_sell` and `similar` then rank only those columns plus the trending filler instead of
    a dense row over the catalog. Other models answer through their dense `scores`.

    Both methods return (item columns, float32 scores): the columns sorted and unique, every
    column not listed scoring 0, the numbers bit for bit those of the dense methods."""

    def basket_scores(
        self, columns: np.ndarray, weights: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """`scores` of one anonymous basket (ascending `columns`, their quantities)."""
        ...

    def similar_scores(self, column: int) -> tuple[np.ndarray, np.ndarray]:
        """`_similarity_scores` of one item column."""
        ...


def _position(index: pd.Index, key: str) -> int:
    """Position of `key` in an index of unique ids, -1 when absent. One id at a time this is
    a hash lookup (~1 µs); `get_indexer` costs 0.1-0.4 ms per call on 50k-1M string ids."""
    try:
        return int(index.get_loc(key))
    except KeyError:
        return -1


@cache
def _scores_sparsely(model_class: type) -> bool:
    """Does the class implement `SparseScorer`? (cached: a Protocol check costs ~20 µs)"""
    return issubclass(model_class, SparseScorer)


@dataclass(frozen=True)
class Recommendation:
    """One answer: item ids best first, their scores, the strategy that produced them, and why
    the fallback answered (`note`, e.g. `new customer`; None for a personal answer)."""

    item_ids: list[str]
    scores: list[float]
    strategy: str
    note: str | None = None


@dataclass
class RecommenderBundle:
    """Fitted models plus what serving needs: id maps, past purchases and business rules."""

    as_of: pd.Timestamp
    item_ids: np.ndarray
    customer_ids: np.ndarray
    history: dict[str, sp.csr_matrix]
    """Customers x items matrices the models read, by key ("h<half-life days>" or "hinf")."""
    purchased: sp.csr_matrix
    """Customers x items number of past orders holding the item (for exclusion)."""
    models: dict[str, Recommender]
    model_history: dict[str, str]
    """Which history matrix each role reads."""
    strategies: dict[str, str]
    rules: BusinessRules
    report: dict[str, Any] = field(default_factory=dict)
    next_need_weights: dict[str, float] = field(default_factory=dict)
    """Per personal role, the weight of what goes with items bought since `as_of` in a fresh
    answer, chosen on the validation window (`next_need`); a role without one: 0."""
    default_role: str = "repeat"
    """The role that answers `exclude_purchased="non-repeatable"` (the default): `discovery`
    when the shop's validation chose `all` (`default_exclusion`), else `repeat`; the bought
    items it keeps are `rules.repeatable`."""

    def __post_init__(self) -> None:
        self._customer_index = pd.Index(self.customer_ids)
        self._item_index = pd.Index(self.item_ids)
        fallback = self.models["trending"].scores(
            np.array([-1]), sp.csr_matrix((1, len(self.item_ids)), dtype=np.float32)
        )[0]
        self._trending_scores = fallback
        # A blocked item can never win; trending breaks ties and fills short lists.
        tie_break = fallback / max(float(np.abs(fallback).max()), 1e-12)
        self._tie_break = np.float32(1e-6) * tie_break
        # The rankings one-row answers merge their few scored columns into. `rules` (and with
        # it availability) are fixed once the bundle is built.
        available = np.asarray(self.rules.available, dtype=bool)
        self._filler = StaticRanking.of(np.zeros_like(fallback), self._tie_break, available)
        self._cold_ranking = StaticRanking.of(fallback, self._tie_break, available)

    # --- lookups ----------------------------------------------------------------------------
    def customer_row(self, customer_id: str) -> int:
        """Row of a customer, -1 when unknown (no purchase before `as_of`)."""
        return _position(self._customer_index, str(customer_id))

    def _column(self, item_id: str) -> int:
        """Column of one item id, -1 when unknown."""
        return _position(self._item_index, str(item_id))

    def item_columns(self, item_ids: Iterable[str]) -> np.ndarray:
        """Columns of item ids, in their order; unknown ids are dropped."""
        found = np.array([_position(self._item_index, str(i)) for i in item_ids], dtype=np.int64)
        return found[found >= 0]

    def _purchased_columns(self, row: int) -> np.ndarray:
        """Item columns a customer row bought before `as_of` (none for -1)."""
        if row < 0:
            return np.empty(0, dtype=np.int64)
        columns, counts = weighted_rows_sum(self.purchased, np.array([row]), np.ones(1))
        return columns[counts != 0]

    def _row_of(self, matrix: sp.csr_matrix, rows: np.ndarray) -> sp.csr_matrix:
        """The matrix's rows of customer `rows` (-1: a row of zeros), float32 or wider."""
        dtype = np.promote_types(matrix.dtype, np.float32)
        if len(rows) == 1:  # one customer (the request path): a slice, no fancy indexing
            row = int(rows[0])
            if row < 0:
                return sp.csr_matrix((1, matrix.shape[1]), dtype=dtype)
            return sp.csr_matrix(matrix[row : row + 1], dtype=dtype)
        known = rows >= 0
        picked = matrix[np.where(known, rows, 0)]
        return sp.csr_matrix(picked.multiply(known[:, None].astype(np.float32)))

    def with_availability(self, available: Mapping[str, bool]) -> RecommenderBundle:
        """The same fitted models with some items' availability changed (item id -> available),
        e.g. from the items posted to the event log since training. Ids the model does not
        know are ignored (a new item needs training). The bundle itself is not modified."""
        columns = self._item_index.get_indexer([str(item) for item in available])
        values = np.array([bool(value) for value in available.values()], dtype=bool)
        known = columns >= 0
        flags = np.asarray(self.rules.available, dtype=bool).copy()
        flags[columns[known]] = values[known]
        return replace(self, rules=replace(self.rules, available=flags))

    def role_for(self, exclude_purchased: ExcludePurchased) -> str:
        """The role that answers an `exclude_purchased` rule: `all` the discovery model, `none`
        the repeat model, the default `non-repeatable` the one the shop's validation chose."""
        if exclude_purchased == "all":
            return "discovery"
        if exclude_purchased == "non-repeatable":
            return self.default_role
        return "repeat"

    # --- serving ----------------------------------------------------------------------------
    def recommend_many(
        self,
        customer_ids: Sequence[str],
        k: int = 10,
        exclude_purchased: ExcludePurchased = "non-repeatable",
        category: str | None = None,
    ) -> list[Recommendation]:
        """`recommend_for` for many customers at once (batched through the model)."""
        if exclude_purchased not in EXCLUDE_CHOICES:
            raise ValueError(
                f"exclude_purchased must be one of {', '.join(EXCLUDE_CHOICES)}, "
                f"got {exclude_purchased!r}"
            )
        rows = self._customer_index.get_indexer([str(c) for c in customer_ids])
        role = self.role_for(exclude_purchased)
        answers: list[Recommendation | None] = [None] * len(rows)
        known = np.flatnonzero(rows >= 0)
        step = batch_rows(len(self.item_ids))
        for start in range(0, len(known), step):
            positions = known[start : start + step]
            items, scores = self._ranked(role, rows[positions], exclude_purchased, category, k)
            for index, position in enumerate(positions):
                answers[position] = self._answer(items[index], scores[index], role, k)
        unknown = np.flatnonzero(rows < 0)
        if len(unknown):
            cold = self._cold(k, category, note=NEW_CUSTOMER)
            for position in unknown:
                answers[position] = cold
        return [a for a in answers if a is not None]

    def recommend_for(
        self,
        customer_id: str,
        k: int = 10,
        category: str | None = None,
        exclude_purchased: ExcludePurchased = "non-repeatable",
        extra_purchased: Sequence[str] = (),
        extra_interactions: Sequence[tuple[str, str]] = (),
        next_need_weight: float | None = None,
    ) -> Recommendation:
        """Personal top-k for one customer; an unknown customer gets trending items.

        `extra_purchased`: items bought since `as_of` (e.g. from the event log), treated as
        history and excluded like past purchases. `extra_interactions`: `(item_id, kind)` of
        views and carts since `as_of`, treated as weaker history (`fresh_row`), not excluded.
        With either, the customer is scored from the updated row (`Recommender.updated_scores`:
        factor models re-solve the customer's vector), and what goes with the items bought since
        is added (`fresh_row.with_next_need`) at `next_need_weight`, by default (None) the weight
        training chose for the role (`next_need_weights`; 0: the champion alone). Unknown item
        ids are ignored."""
        row = self.customer_row(customer_id)
        extra = self.item_columns(extra_purchased)
        known = [(c, kind) for item, kind in extra_interactions if (c := self._column(item)) >= 0]
        role = self.role_for(exclude_purchased)
        if len(extra) or known:
            columns = np.array([c for c, _ in known], dtype=np.int64)
            fresh = fresh_entries(extra, columns, [kind for _, kind in known])
            if next_need_weight is None:
                next_need_weight = self.next_need_weights.get(role, 0.0)
            items, scores = self._fresh_ranked(
                role, row, extra, fresh, exclude_purchased, category, k, next_need_weight
            )
        elif row < 0:
            return self._cold(k, category, note=NEW_CUSTOMER)
        else:
            items, scores = self._ranked(role, np.array([row]), exclude_purchased, category, k)
        return self._answer(items[0], scores[0], role, k)

    def cross_sell(
        self, item_ids: Sequence[str], customer_id: str | None = None, k: int = 10
    ) -> Recommendation:
        """Items that go with a basket (anonymous allowed); basket items never come back.

        A known customer also gets their non-repeatable past purchases excluded. An empty or
        unknown basket gets trending items."""
        columns = self.item_columns(item_ids)
        if len(columns) == 0:
            return self._cold(k, None, note="empty or unknown basket")
        basket, quantities = np.unique(columns, return_counts=True)
        row = self.customer_row(customer_id) if customer_id is not None else -1
        blocked = self.rules.blocked_columns(
            self._purchased_columns(row), "non-repeatable", basket_columns=basket
        )
        scored, scores = self._basket_scores(basket, quantities.astype(np.float32))
        items, values = self._top_of_row(self._filler, scored, scores, blocked, k)
        return self._answer(items, values, "cross_sell", k)

    def similar(self, item_id: str, k: int = 10) -> Recommendation:
        """Items most similar to one item (available ones only); unknown item -> trending."""
        columns = self.item_columns([item_id])
        if len(columns) == 0:
            return self._cold(k, None, note="unknown item")
        scored, scores = self._similar_scores(int(columns[0]))
        items, values = self._top_of_row(self._filler, scored, scores, columns[:1], k)
        return self._answer(items, values, "similar", k)

    def session(self, item_ids: Sequence[str], k: int = 10) -> SessionAnswer:
        """Items for an anonymous session (viewed or carted item ids, oldest first), item-based
        and weighted by recency (`models.recommenders.session`); unknown ids are listed."""
        return session_recommendation(self, item_ids, k)

    # --- internals --------------------------------------------------------------------------
    def basket_model(self, role: str) -> Recommender:
        """The cross-sell or similar-items model; ValueError for a lists-only bundle."""
        if role not in self.models:
            raise ValueError(
                f"this bundle was fitted for personal lists only (a backtest's): it has no "
                f"{role} model; use the bundle fitted on all data"
            )
        return self.models[role]

    def _basket_scores(
        self, basket: np.ndarray, quantities: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The cross-sell model's scores of an anonymous basket (ascending unique columns and
        their float32 quantities) as (columns, scores); columns not listed score 0."""
        model = self.basket_model("cross_sell")
        if _scores_sparsely(type(model)):
            return cast(SparseScorer, model).basket_scores(basket, quantities)
        n_items = len(self.item_ids)
        user_items = sp.csr_matrix(
            (quantities, (np.zeros(len(basket)), basket)), shape=(1, n_items)
        )
        return np.arange(n_items), model.scores(np.array([-1]), user_items)[0]

    def _similar_scores(self, column: int) -> tuple[np.ndarray, np.ndarray]:
        """The similar-items model's scores of one item as (columns, scores); others score 0."""
        model = self.basket_model("similar")
        if _scores_sparsely(type(model)):
            return cast(SparseScorer, model).similar_scores(column)
        dense = np.asarray(model._similarity_scores(np.array([column])), dtype=np.float32)
        return np.arange(len(self.item_ids)), dense[0]

    def _ranked(
        self,
        role: str,
        rows: np.ndarray,
        exclude_purchased: ExcludePurchased,
        category: str | None,
        k: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k of customer `rows` (known customers) from their rows as of `as_of`."""
        history = self._row_of(self.history[self.model_history[role]], rows)
        purchased = self._row_of(self.purchased, rows)
        blocked = self.rules.blocked(purchased, exclude_purchased, category=category)
        scores = self.models[role].scores(rows, history)
        return self._top(scores, blocked, k)

    def _fresh_ranked(
        self,
        role: str,
        row: int,
        extra: np.ndarray,
        fresh: tuple[np.ndarray, np.ndarray],
        exclude_purchased: ExcludePurchased,
        category: str | None,
        k: int,
        next_need_weight: float,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (one row) of customer `row` (-1: none before `as_of`) with events since: the
        model scores the history row plus `fresh` (`fresh_row.fresh_entries`), `extra` (columns
        bought since) join the purchases, and what goes with them is added at
        `next_need_weight`. One row, built with numpy (`fresh_row.updated_row`,
        `BusinessRules.blocked_row`): the request path of a customer with fresh events."""
        history = updated_row(self.history[self.model_history[role]], row, *fresh)
        bought = np.union1d(self._purchased_columns(row), extra)
        blocked = self.rules.blocked_row(bought, exclude_purchased, category)
        scores = self.models[role].updated_scores(np.array([row]), history)
        if next_need_weight > 0 and len(extra):
            scores = self._with_next_need(scores, blocked, extra, next_need_weight)
        return self._top(scores, blocked, k)

    def _with_next_need(
        self, scores: np.ndarray, blocked: np.ndarray, bought: np.ndarray, weight: float
    ) -> np.ndarray:
        """One row's updated `scores` plus `weight` x what goes with the `bought` columns, the
        champion's places counted among the items it may show, in `_top`'s order."""
        shown_order = scores + self._tie_break[None, :]
        shown_order[blocked] = -np.inf
        basket = np.unique(bought)
        columns, values = self._basket_scores(basket, np.ones(len(basket), np.float32))
        return with_next_need(shown_order, columns, values, weight)

    def _top(
        self, scores: np.ndarray, blocked: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        scores = np.asarray(scores, dtype=np.float32) + self._tie_break[None, :]
        scores[blocked] = -np.inf
        wanted = k * 3 if self.rules.max_per_category else k
        items, values = top_k(scores, wanted)
        if self.rules.max_per_category:
            items, values = self.rules.diversify(items, values, k)
        return items, values

    def _top_of_row(
        self,
        ranking: StaticRanking,
        scored: np.ndarray,
        scores: np.ndarray,
        blocked: np.ndarray,
        k: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        """`_top` of one row that is `scores` at the `scored` columns (sorted, unique) and
        `ranking.base` elsewhere, where `blocked` (sorted, unique columns) and the unavailable
        items are blocked; the same items, order and scores, padded with -1 / -inf.

        Instead of a dense row, the scored columns compete with the first unblocked columns of
        the static `ranking`: any other column has that many above it. Cost O(scored + k)."""
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        scores = np.asarray(scores, dtype=np.float32)
        if not (ranking.finite and np.isfinite(scores).all()):
            # -inf/NaN follow `top_k`'s own rules: take the dense path.
            dense = ranking.base.copy()
            dense[scored] = scores
            mask = ~np.asarray(self.rules.available, dtype=bool)
            mask[blocked] = True
            items, values = self._top(dense[None, :], mask[None, :], k)
            return items[0], values[0]
        wanted = k * 3 if self.rules.max_per_category else k
        scores = scores + self._tie_break[scored]
        allowed = self.rules.available[scored] & ~is_in(scored, blocked)
        filler = ranking.first(wanted, scored, blocked)
        pool = np.concatenate([scored[allowed], filler])
        pool_scores = np.concatenate([scores[allowed], ranking.scores[filler]])
        best = np.lexsort((pool, -pool_scores))[:wanted]  # score descending, lower column first
        items = np.full(wanted, -1, dtype=np.int64)
        values = np.full(wanted, -np.inf, dtype=np.float32)
        items[: len(best)] = pool[best]
        values[: len(best)] = pool_scores[best]
        if self.rules.max_per_category:
            diverse_items, diverse_values = self.rules.diversify(items[None], values[None], k)
            return diverse_items[0], diverse_values[0]
        return items, values

    def _answer(self, items: np.ndarray, scores: np.ndarray, role: str, k: int) -> Recommendation:
        keep = items >= 0
        return Recommendation(
            [str(i) for i in self.item_ids[items[keep][:k]].tolist()],
            scores[keep][:k].astype(np.float32).tolist(),
            self.strategies[role],
        )

    def _cold(self, k: int, category: str | None, note: str) -> Recommendation:
        if category is None:
            nothing = np.empty(0, dtype=np.int64)
            items, scores = self._top_of_row(
                self._cold_ranking, nothing, np.empty(0, np.float32), nothing, k
            )
        else:
            blocked = self.rules.blocked(
                sp.csr_matrix((1, len(self.item_ids))), "none", category=category
            )
            top_items, top_scores = self._top(self._trending_scores[None, :], blocked, k)
            items, scores = top_items[0], top_scores[0]
        answer = self._answer(items, scores, "trending", k)
        return replace(answer, strategy=FALLBACK_STRATEGY, note=note)

    # --- persistence ------------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        """Write the bundle into `directory` (created if missing): JSON, npz and one
        sub-directory per model. Pickle-free."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {
            "item_ids": self.item_ids.astype(str),
            "customer_ids": self.customer_ids.astype(str),
            "categories": self.rules.categories.astype(str),
            "available": self.rules.available.astype(bool),
            "repeat_rates": self.rules.repeat_rates.astype(np.float32),
        }
        arrays.update(csr_to_arrays("purchased", self.purchased))
        for key, matrix in self.history.items():
            arrays.update(csr_to_arrays(f"history_{key}", matrix))
        np.savez(directory / "bundle.npz", **arrays)  # type: ignore[arg-type]
        for role, model in self.models.items():
            model.save(directory / "models" / role)
        meta = {
            "format_version": BUNDLE_FORMAT,
            "as_of": self.as_of.isoformat(),
            "history_keys": sorted(self.history),
            "model_history": self.model_history,
            "strategies": self.strategies,
            "rules": {
                "repeat_threshold": self.rules.repeat_threshold,
                "repeatable_categories": self.rules.repeatable_categories,
                "max_per_category": self.rules.max_per_category,
            },
            "report": self.report,
            "next_need_weights": self.next_need_weights,
            "default_role": self.default_role,
        }
        (directory / "bundle.json").write_text(json.dumps(meta, indent=1, default=str))

    @classmethod
    def load(cls, directory: str | Path) -> RecommenderBundle:
        """Read a bundle written by `save`; FileNotFoundError / ValueError when unreadable."""
        directory = Path(directory)
        meta_path = directory / "bundle.json"
        if not meta_path.exists():
            raise FileNotFoundError(
                f"no recommender bundle in {directory} (bundle.json missing): fit one with "
                "models.recommenders.bundle.fit_recommender_bundle"
            )
        meta = json.loads(meta_path.read_text())
        if meta.get("format_version") != BUNDLE_FORMAT:
            raise ValueError(f"{meta_path}: unsupported bundle format {meta.get('format_version')}")
        with np.load(directory / "bundle.npz", allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files}
        rules = BusinessRules(
            categories=arrays["categories"],
            available=arrays["available"],
            repeat_rates=arrays["repeat_rates"],
            repeat_threshold=meta["rules"]["repeat_threshold"],
            repeatable_categories=dict(meta["rules"]["repeatable_categories"]),
            max_per_category=meta["rules"]["max_per_category"],
        )
        return cls(
            as_of=pd.Timestamp(meta["as_of"]),
            item_ids=arrays["item_ids"],
            customer_ids=arrays["customer_ids"],
            history={
                key: csr_from_arrays(f"history_{key}", arrays) for key in meta["history_keys"]
            },
            purchased=csr_from_arrays("purchased", arrays),
            models={
                role: Recommender.load(directory / "models" / role)
                for role in ROLES
                if role in LIST_ROLES or (directory / "models" / role).exists()
            },
            model_history=dict(meta["model_history"]),
            strategies=dict(meta["strategies"]),
            rules=rules,
            report=meta["report"],
            # A bundle saved before the weights were chosen in training has none: weight 0.
            next_need_weights=dict(meta.get("next_need_weights", {})),
            default_role=str(meta.get("default_role", "repeat")),
        )


def fallback_half_life(best_baseline: CandidateSpec) -> float | None:
    """The half-life (multiples of W) of the fallback trending model: the best baseline's, to
    the two significant digits its name shows (trending_h0.33 -> 0.33, not 1/3; None, i.e.
    all-time sales, for popularity). The served bundles and the benchmark figures were made
    with the rounded value, which a name-parsing version of this code read back."""
    if best_baseline.half_life is None:
        return None
    return float(f"{best_baseline.half_life:.2g}")


def _history_key(half_life_days: float | None) -> str:
    return "hinf" if half_life_days is None else f"h{half_life_days:.6g}"


def fit_recommender_bundle(
    shop: Shop,
    as_of: pd.Timestamp,
    seed: int = 0,
    time_budget_s: float = 300.0,
    horizon_days: float = 90.0,
    max_per_category: int | None = None,
    log: Callable[[str], None] | None = None,
    lists_only: bool = False,
) -> RecommenderBundle:
    """Select models on the validation window before `as_of`, refit the winners on all data
    before `as_of`, and return the servable bundle (its `report` says why each winner won).

    `as_of` is a timezone-aware UTC timestamp; `time_budget_s` bounds the candidate search
    (the final refit comes on top). `lists_only` leaves out the basket models (cross-sell and
    similar items: neither chosen nor fitted), for a backtest that judges personal lists only;
    such a bundle answers `recommend_for` / `recommend_many` and refuses baskets, similar
    items and sessions. Raises ValueError when there is too little history."""
    started = time.perf_counter()
    item_ids = catalog_item_ids(shop)
    settings = SelectionSettings(seed, time_budget_s, horizon_days, cross_sell=not lists_only)
    selection = select_models(shop, as_of, settings, item_ids=item_ids, log=log)
    window = selection.window_days
    matrices: dict[float | None, Interactions] = {}
    builder = InteractionsBuilder(shop, as_of, item_ids=item_ids)

    def matrix_at(half_life: float | None) -> Interactions:
        if half_life not in matrices:
            matrices[half_life] = builder.build(None if half_life is None else half_life * window)
        return matrices[half_life]

    co_purchase = co_purchase_counts(shop, as_of, item_ids)
    categories = item_categories(shop, item_ids)
    reference = matrix_at(None)
    models: dict[str, Recommender] = {}
    model_history: dict[str, str] = {}
    strategies: dict[str, str] = {}
    history: dict[str, sp.csr_matrix] = {}
    counts = purchase_counts(shop, as_of, item_ids)
    purchased = rows_of(counts, reference.customer_ids)
    repeat_rates = repeat_purchase_rates(purchased)
    attributes = customer_attributes(shop, builder.customer_ids)
    for role in ("discovery", "repeat"):
        winner = selection.winners[role]
        model, half_life = fit_winner(
            winner,
            matrix_at,
            co_purchase,
            categories,
            seed,
            ranker=selection.rankers.get(role),
            repeat_rates=repeat_rates,
            customer_attributes=attributes,
        )
        models[role] = model
        key = _history_key(None if half_life is None else half_life * window)
        history[key] = matrix_at(half_life).matrix
        model_history[role] = key
        strategies[role] = winner.label
    basket_models = {"cross_sell": selection.cross_sell_winner, "similar": SIMILAR_ITEMS}
    for role, candidate in basket_models.items():
        if candidate is not None and not lists_only:
            models[role] = candidate.make().fit(matrix_at(candidate.half_life), co_purchase)
            strategies[role] = candidate.name
    trending_half_life = fallback_half_life(selection.trending)
    models["trending"] = TrendingRecommender().fit(matrix_at(trending_half_life))
    strategies["trending"] = "trending"
    for role in ("cross_sell", "similar", "trending"):
        if role in models:
            model_history[role] = "hinf"
    history["hinf"] = reference.matrix
    rules = item_rules(shop, item_ids, counts.matrix, max_per_category=max_per_category)
    default = selection.default_exclusion
    rules = replace(rules, repeat_threshold=default.threshold(rules.repeat_rates))
    # Models that share a category's demand among its items are told which are sold at
    # `as_of` (saved so; later availability changes, `with_availability`, only mask items).
    sold = np.asarray(rules.available, dtype=bool)
    models = {role: model.for_available(sold) for role, model in models.items()}
    report = dict(selection.report)
    report["fit_seconds"] = round(time.perf_counter() - started, 2)
    report["trending_model"] = selection.trending.name
    report["default_exclusion"]["repeat_threshold"] = rules.repeat_threshold
    return RecommenderBundle(
        as_of=as_of,
        item_ids=item_ids,
        customer_ids=reference.customer_ids,
        history=history,
        purchased=sp.csr_matrix(purchased),
        models=models,
        model_history=model_history,
        strategies=strategies,
        rules=rules,
        report=report,
        next_need_weights=dict(selection.next_need_weights),
        default_role=default.role,
    )
