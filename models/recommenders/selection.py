"""Model selection on a time-based validation window carved from the data before `as_of`.

The same code runs for every shop; nothing here knows a data set:
1. the validation window is the last W days before `as_of`, with W = `horizon_days` (the
   serving horizon) capped at a quarter of the shop's history, so there is always history to
   learn from; models are fitted on data before `as_of - W` and judged on purchases in
   `[as_of - W, as_of)`, never on anything at or after `as_of`;
2. candidates (popularity, trending at several half-lives, own-history repeat purchase,
   implicit item kNN, co-purchase, latent taste classes, EASE where the catalog is small,
   implicit ALS and BPR with sampled hyper-parameters) are fitted in a seeded order until the
   time budget is used; the grids are expressed in multiples of W, not in days picked for one
   shop;
3. a greedy blend over the best candidates adds a member only when it improves validation
   NDCG on both halves of the validation customers and by more than one standard error of the
   paired per-customer gain (guards against tuning noise);
4. two protocols are selected separately: "discovery" (items the customer never bought;
   bought items excluded) and "repeat" (all items, repeats allowed);
5. the winners are refitted on all data before `as_of`. A winner never loses to trending on
   validation, because trending is itself a candidate; the report records every candidate's
   validation metrics and why the winner won.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from features.attributes import CustomerAttributes, customer_attributes
from features.interactions import (
    Interactions,
    InteractionsBuilder,
    catalog_item_ids,
    co_purchase_counts,
    purchase_counts,
)
from features.shop import Shop
from models.recommenders.association import CoPurchaseRecommender
from models.recommenders.base import Recommender, row_normalise, top_k
from models.recommenders.blend import BlendRecommender
from models.recommenders.ease import EASERecommender
from models.recommenders.evaluation import metrics_from_columns
from models.recommenders.factorization import ALSRecommender, BPRRecommender
from models.recommenders.latent import LatentClassRecommender
from models.recommenders.neighbours import ItemKNNRecommender
from models.recommenders.popularity import (
    CategoryAffinityRecommender,
    PopularityRecommender,
    RepeatPurchaseRecommender,
    TrendingRecommender,
)

PROTOCOLS = ("discovery", "repeat")
K = 10
SCORE_CACHE_CELLS = 30_000_000
"""At most this many validation score cells are cached per candidate (120 MB float32)."""
EASE_MAX_ITEMS = 5_000
"""EASE inverts a dense items x items matrix: above this many items it is too slow to tune."""


@dataclass(frozen=True)
class CandidateSpec:
    """One candidate: a name, how to build it, and the half-life of the matrix it reads.

    `half_life` is a multiple of the validation window W (None: no recency decay)."""

    name: str
    make: Callable[[], Recommender]
    half_life: float | None
    personalised: bool = True


@dataclass(frozen=True)
class WinnerSpec:
    """A selected model: member candidate names and blend weights (or a re-ranker over them)."""

    members: tuple[str, ...]
    weights: tuple[float, ...]
    rerank: bool = False
    exclude_seen: bool = False
    """For a re-ranker: candidates leave out items the customer already bought (discovery)."""

    @property
    def label(self) -> str:
        """e.g. "trending_h0.33" or "blend(trending_h0.33*1+repeat_purchase_p1_hW*0.1)"."""
        if self.rerank:
            return "rerank(" + "+".join(self.members) + ")"
        if len(self.members) == 1:
            return self.members[0]
        parts = [f"{m}*{w:g}" for m, w in zip(self.members, self.weights, strict=True)]
        return "blend(" + "+".join(parts) + ")"


@dataclass
class SelectionResult:
    """What selection chose and why: validation metrics per candidate and per protocol."""

    window_days: float
    validation_cut: pd.Timestamp
    winners: dict[str, WinnerSpec]
    cross_sell_winner: str
    report: dict[str, Any] = field(default_factory=dict)
    rankers: dict[str, Any] = field(default_factory=dict)
    """Per protocol whose winner is a re-ranker: the classifier trained on the latest window."""


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


def candidate_specs(n_items: int, seed: int, with_attributes: bool = False) -> list[CandidateSpec]:
    """Every candidate: baselines, then own-history/category/co-purchase models, then item
    neighbours and EASE, then matrix factorisation; a seeded order within each tier.
    `with_attributes` (the shop's customers table describes its customers) adds latent-class
    variants that also read the customers' attributes."""
    rng = np.random.default_rng(seed)
    baselines = [CandidateSpec("popularity", PopularityRecommender, None, personalised=False)]
    for fraction in (1 / 6, 1 / 3, 2 / 3, 1.0, 2.0, 4.0):
        baselines.append(
            CandidateSpec(f"trending_h{fraction:.2g}", TrendingRecommender, fraction, False)
        )
    cheap: list[CandidateSpec] = []
    for half_life in (1.0, None):
        tag = "hW" if half_life else "hinf"
        for weight in (0.3, 3.0, 30.0):
            cheap.append(
                CandidateSpec(
                    f"repeat_purchase_p{weight:g}_{tag}",
                    partial(RepeatPurchaseRecommender, popularity_weight=weight),
                    half_life,
                )
            )
        for neighbours in (50, 200):
            cheap.append(
                CandidateSpec(
                    f"item_knn_cosine_k{neighbours}_{tag}",
                    partial(ItemKNNRecommender, "cosine", neighbours=neighbours),
                    half_life,
                )
            )
        cheap.append(
            CandidateSpec(
                f"item_knn_bm25_k100_{tag}",
                partial(ItemKNNRecommender, "bm25", neighbours=100),
                half_life,
            )
        )
        for smoothing in (1.0, 5.0):
            cheap.append(
                CandidateSpec(
                    f"category_affinity_s{smoothing:g}_{tag}",
                    partial(CategoryAffinityRecommender, smoothing=smoothing),
                    half_life,
                )
            )
        for exponent in (0.0, 0.5):
            cheap.append(
                CandidateSpec(
                    f"co_purchase_l{exponent:g}_{tag}",
                    partial(CoPurchaseRecommender, lift_exponent=exponent),
                    half_life,
                )
            )
    for neighbours in (50, 200):
        cheap.append(
            CandidateSpec(
                f"item_knn_cosine_k{neighbours}_binary",
                partial(ItemKNNRecommender, "cosine", neighbours=neighbours, binary=True),
                None,
            )
        )
    for n_classes in (10, 30):
        for level in ("item", "category"):
            for attributes in (False, True) if with_attributes else (False,):
                cheap.append(
                    CandidateSpec(
                        f"latent_class_k{n_classes}_{level}" + ("_attributes" * attributes),
                        partial(
                            LatentClassRecommender,
                            n_classes=n_classes,
                            level=level,
                            random_state=seed,
                            use_customer_attributes=attributes,
                        ),
                        None,
                    )
                )
    if n_items <= EASE_MAX_ITEMS:
        for l2 in (100.0, 500.0, 2000.0):
            cheap.append(CandidateSpec(f"ease_l{l2:g}", partial(EASERecommender, l2=l2), None))
    factor_models: list[CandidateSpec] = []
    grid = [
        (factors, reg, alpha)
        for factors in (16, 32, 64, 128)
        for reg in (0.01, 0.1, 1.0)
        for alpha in (1.0, 5.0, 20.0)
    ]
    for index in rng.permutation(len(grid))[:4]:
        factors, reg, alpha = grid[index]
        factor_models.append(
            CandidateSpec(
                f"als_f{factors}_r{reg:g}_a{alpha:g}",
                partial(
                    ALSRecommender,
                    factors=factors,
                    regularization=reg,
                    alpha=alpha,
                    iterations=15,
                    random_state=seed,
                ),
                1.0,
            )
        )
    for factors in rng.permutation([32, 64])[:1]:
        factor_models.append(
            CandidateSpec(
                f"bpr_f{factors}",
                partial(BPRRecommender, factors=int(factors), iterations=100, random_state=seed),
                None,
            )
        )
    # Within the cheap tier, models that are a sparse product or less (own history, category
    # shares, co-purchase, latent classes fitted on a capped sample) go before the neighbour
    # models, so a tight budget keeps them.
    instant = [c for c in cheap if _family(c.name) in {"repeat", "category", "co", "latent"}]
    neighbour = [c for c in cheap if c not in instant]
    ordered = [instant[i] for i in rng.permutation(len(instant))]
    ordered += [neighbour[i] for i in rng.permutation(len(neighbour))]
    return baselines + ordered + factor_models


class ValidationData:
    """Everything a candidate needs at the validation cut, built once and cached."""

    def __init__(
        self,
        shop: Shop,
        as_of: pd.Timestamp,
        window_days: float,
        item_ids: np.ndarray,
        max_customers: int,
        seed: int,
    ) -> None:
        self.shop = shop
        self.as_of = as_of
        self.window_days = window_days
        self.cut = as_of - pd.Timedelta(days=window_days)
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
        counts = purchase_counts(shop, self.cut, item_ids)
        rows = pd.Index(counts.customer_ids).get_indexer(self.customer_ids)
        self.bought = counts.matrix[np.maximum(rows, 0)]
        window = shop.purchases.loc[
            (shop.purchases["ordered_at"] >= self.cut) & (shop.purchases["ordered_at"] < as_of)
        ]
        window_rows = pd.Index(self.customer_ids).get_indexer(window["customer_id"].astype(str))
        window_cols = pd.Index(item_ids).get_indexer(window["item_id"].astype(str))
        known = (window_rows >= 0) & (window_cols >= 0)
        truth = pd.DataFrame({"row": window_rows[known], "col": window_cols[known]})
        truth = truth.drop_duplicates()
        truth_rows = truth["row"].unique()
        rng = np.random.default_rng(seed)
        limit = max(50, min(max_customers, SCORE_CACHE_CELLS // max(len(item_ids), 1)))
        if len(truth_rows) > limit:
            truth_rows = np.sort(rng.choice(truth_rows, size=limit, replace=False))
        self.eval_rows = np.sort(truth_rows)
        truth = truth.loc[truth["row"].isin(self.eval_rows)]
        position = {row: index for index, row in enumerate(self.eval_rows)}
        repeat: dict[int, set[int]] = {i: set() for i in range(len(self.eval_rows))}
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
        scores = np.asarray(scores, dtype=np.float32)[rows]
        exclude = self.exclude[protocol]
        if exclude is not None:
            scores = np.where(exclude[rows], -np.inf, scores)
        items, _ = top_k(scores, K)
        relevant = self._relevance(protocol)[rows]
        hits = np.take_along_axis(relevant, np.maximum(items, 0), axis=1) & (items >= 0)
        discounts = 1.0 / np.log2(np.arange(K) + 2.0)
        ideal = np.cumsum(discounts)[np.minimum(relevant.sum(axis=1), K) - 1]
        return (hits @ discounts) / ideal

    def _relevance(self, protocol: str) -> np.ndarray:
        """Dense bool (eval rows, items): the protocol's relevant items (built once)."""
        cache = self.__dict__.setdefault("_relevance_cache", {})
        if protocol not in cache:
            dense = np.zeros((len(self.eval_rows), len(self.item_ids)), dtype=bool)
            for row, columns in self.relevant[protocol].items():
                dense[row, list(columns)] = True
            cache[protocol] = dense
        return cache[protocol]

    def ndcg(self, scores: np.ndarray, protocol: str, subset: np.ndarray | None = None) -> dict:
        """Validation metrics at K of a dense score block over `eval_rows` (optionally a subset)."""
        scores = scores.copy()
        exclude = self.exclude[protocol]
        if exclude is not None:
            scores[exclude] = -np.inf
        items, _ = top_k(scores, K)
        relevant = self.relevant[protocol]
        if subset is not None:
            keep = set(subset.tolist())
            relevant = {r: c for r, c in relevant.items() if r in keep}
        return metrics_from_columns(items, relevant, K)


def _score_block(model: Recommender, data: ValidationData, matrix: Interactions) -> np.ndarray:
    rows = data.eval_rows
    blocks = []
    step = max(1, (1 << 22) // max(matrix.n_items, 1))
    for start in range(0, len(rows), step):
        chunk = rows[start : start + step]
        blocks.append(row_normalise(model.scores(chunk, matrix.matrix[chunk])))
    return np.vstack(blocks)


def select_models(
    shop: Shop,
    as_of: pd.Timestamp,
    seed: int = 0,
    time_budget_s: float = 300.0,
    horizon_days: float = 90.0,
    max_customers: int = 5_000,
    item_ids: np.ndarray | None = None,
    log: Callable[[str], None] | None = None,
) -> SelectionResult:
    """Choose the personal and cross-sell models on the validation window before `as_of`.

    Deterministic for a given seed and budget (the budget can only cut the candidate list
    short). Raises ValueError when the window holds no purchases of known customers."""
    started = time.perf_counter()
    say = log or (lambda message: None)
    items = catalog_item_ids(shop) if item_ids is None else item_ids
    window = validation_window_days(shop, as_of, horizon_days)
    data = ValidationData(shop, as_of, window, items, max_customers, seed)
    if len(data.eval_rows) == 0:
        raise ValueError(
            f"no customer with history bought in the validation window [{data.cut}, {as_of}): "
            "pass an earlier-starting shop or a shorter horizon_days"
        )
    say(f"validation window {window:.1f} days from {data.cut}, {len(data.eval_rows)} customers")
    specs = candidate_specs(len(items), seed, bool(data.customer_attributes.names))
    cached: dict[str, np.ndarray] = {}
    fitted: dict[str, Recommender] = {}
    by_name = {spec.name: spec for spec in specs}
    report: dict[str, Any] = {"candidates": {}, "skipped": []}
    for spec in specs:
        if time.perf_counter() - started > 0.6 * time_budget_s and spec.personalised:
            report["skipped"].append(spec.name)
            continue
        fit_started = time.perf_counter()
        matrix = data.matrix(spec.half_life)
        try:
            model = spec.make().fit(
                matrix, data.co_purchase, data.item_categories, data.customer_attributes
            )
        except (ValueError, MemoryError) as error:
            report["skipped"].append(f"{spec.name}: {error}")
            continue
        cached[spec.name] = _score_block(model, data, matrix)
        fitted[spec.name] = model
        entry: dict[str, Any] = {"fit_seconds": round(time.perf_counter() - fit_started, 3)}
        if getattr(model, "use_customer_attributes", False):
            entry["attributes_used"] = list(getattr(model, "attributes_used_", []))
        for protocol in PROTOCOLS:
            entry[protocol] = _rounded(data.ndcg(cached[spec.name], protocol))
        report["candidates"][spec.name] = entry
        say(
            f"  {spec.name}: discovery ndcg {entry['discovery']['ndcg']:.4f}, "
            f"repeat ndcg {entry['repeat']['ndcg']:.4f} ({entry['fit_seconds']} s)"
        )
    winners: dict[str, WinnerSpec] = {}
    rankers: dict[str, Any] = {}
    for protocol in PROTOCOLS:
        winners[protocol], why = _greedy_blend(data, cached, by_name, protocol, report)
        remaining = time_budget_s - (time.perf_counter() - started)
        if _rerank_cost(data, report, protocol) < remaining:
            outcome = _try_reranker(data, fitted, by_name, protocol, report, why, seed)
            if outcome is not None:
                winners[protocol], rankers[protocol], why = outcome
        report[f"{protocol}_winner"] = {"model": winners[protocol].label, **why}
        say(f"{protocol} winner: {winners[protocol].label} ({why['reason']})")
    cross_sell, cross_report = _select_cross_sell(shop, data, seed)
    report["cross_sell"] = cross_report
    report["validation_window_days"] = round(window, 3)
    report["validation_cut"] = data.cut.isoformat()
    report["validation_customers"] = int(len(data.eval_rows))
    report["selection_seconds"] = round(time.perf_counter() - started, 2)
    return SelectionResult(window, data.cut, winners, cross_sell, report, rankers)


def _rounded(metrics: dict[str, float]) -> dict[str, float]:
    return {name: round(float(value), 5) for name, value in metrics.items()}


def _greedy_blend(
    data: ValidationData,
    cached: dict[str, np.ndarray],
    specs: dict[str, CandidateSpec],
    protocol: str,
    report: dict[str, Any],
) -> tuple[WinnerSpec, dict[str, Any]]:
    def score(members: list[str], weights: list[float], subset: np.ndarray | None) -> float:
        total = sum(w * cached[m] for m, w in zip(members, weights, strict=True))
        return data.ndcg(np.asarray(total, dtype=np.float32), protocol, subset)["ndcg"]

    def per_customer(members: list[str], weights: list[float]) -> np.ndarray:
        total = sum(w * cached[m] for m, w in zip(members, weights, strict=True))
        return data.per_customer_ndcg(np.asarray(total, dtype=np.float32), protocol)

    ranked = sorted(cached, key=lambda name: -report["candidates"][name][protocol]["ndcg"])
    trending = [n for n in ranked if n.startswith("trending") or n == "popularity"]
    best_baseline = trending[0]
    members, weights = [ranked[0]], [1.0]
    positions = np.fromiter(sorted(data.relevant[protocol]), dtype=np.int64)
    in_half = [np.isin(positions, half) for half in data.halves]
    current = per_customer(members, weights)
    history_half_life = {specs[m].half_life for m in members if specs[m].personalised}
    pool = _blend_pool(ranked)
    for _ in range(2):  # at most three members
        best: tuple[float, str, float, np.ndarray] | None = None
        for name in pool:
            if name in members:
                continue
            spec = specs[name]
            if spec.personalised and history_half_life and spec.half_life not in history_half_life:
                continue  # personal members must read the same serving matrix
            for weight in (0.03, 0.1, 0.3, 1.0, 3.0):
                trial = per_customer(members + [name], weights + [weight])
                gain = trial - current
                if _significant(gain, in_half) and (best is None or gain.mean() > best[0]):
                    best = (float(gain.mean()), name, weight, trial)
        if best is None:
            break
        _, name, weight, current = best
        members.append(name)
        weights.append(weight)
        if specs[name].personalised:
            history_half_life.add(specs[name].half_life)
    winner = WinnerSpec(tuple(members), tuple(weights))
    winner_ndcg = score(members, weights, None)
    baseline_ndcg = report["candidates"][best_baseline][protocol]["ndcg"]
    if winner_ndcg < baseline_ndcg:  # cannot happen (the baseline is a candidate); kept as a guard
        winner, winner_ndcg = WinnerSpec((best_baseline,), (1.0,)), baseline_ndcg
    reason = (
        f"validation NDCG@{K} {winner_ndcg:.4f} vs best single {ranked[0]} "
        f"{report['candidates'][ranked[0]][protocol]['ndcg']:.4f} and best popularity/trending "
        f"{best_baseline} {baseline_ndcg:.4f}"
    )
    return winner, {
        "validation_ndcg": round(winner_ndcg, 5),
        "validation_halves": [
            score(list(winner.members), list(winner.weights), h) for h in data.halves
        ],
        "best_single": ranked[0],
        "best_baseline": best_baseline,
        "baseline_ndcg": baseline_ndcg,
        "reason": reason,
    }


BLEND_POOL = 8
BLEND_POOL_PER_FAMILY = 2


def _blend_pool(ranked: list[str]) -> list[str]:
    """The candidates a blend may add: the best `BLEND_POOL`, at most `BLEND_POOL_PER_FAMILY`
    of one model family, so near-twins (latent classes with and without attributes, one model
    at two settings) do not crowd out the different models a blend gains most from (at 1M
    customers, without this cap the repeat-purchase blend lost ALS and category affinity to
    latent-class variants: validation NDCG@10 0.2890 instead of 0.2938)."""
    pool: list[str] = []
    for name in ranked:
        if sum(_family(n) == _family(name) for n in pool) < BLEND_POOL_PER_FAMILY:
            pool.append(name)
        if len(pool) == BLEND_POOL:
            break
    return pool


BLEND_MIN_STANDARD_ERRORS = 1.0
"""A blend member must raise validation NDCG by at least this many standard errors of the
paired per-customer gain (and on both halves of the customers): tiny gains are tuning noise."""


def _significant(gain: np.ndarray, in_half: list[np.ndarray]) -> bool:
    """True when the per-customer NDCG gain is positive on both halves and its mean exceeds
    `BLEND_MIN_STANDARD_ERRORS` standard errors."""
    if len(gain) < 2 or not all(gain[half].mean() > 0 for half in in_half if half.any()):
        return False
    standard_error = gain.std(ddof=1) / np.sqrt(len(gain))
    return bool(gain.mean() > BLEND_MIN_STANDARD_ERRORS * standard_error)


def _select_cross_sell(shop: Shop, data: ValidationData, seed: int) -> tuple[str, dict[str, Any]]:
    """Leave-one-out on validation-window orders: hide one item, score the rest as a basket."""
    window = shop.purchases.loc[
        (shop.purchases["ordered_at"] >= data.cut) & (shop.purchases["ordered_at"] < data.as_of)
    ]
    cols = pd.Index(data.item_ids).get_indexer(window["item_id"].astype(str))
    lines = pd.DataFrame({"order": window["order_id"].astype(str).to_numpy(), "col": cols})
    lines = lines.loc[lines["col"] >= 0].drop_duplicates()
    sizes = lines.groupby("order")["col"].transform("size")
    lines = lines.loc[(sizes >= 2) & (sizes <= 30)]
    rng = np.random.default_rng(seed)
    orders = lines["order"].unique()
    if len(orders) == 0:
        return "co_purchase_l0.5", {"reason": "no multi-item orders in the window; default kept"}
    orders = rng.choice(orders, size=min(2000, len(orders)), replace=False)
    lines = lines.loc[lines["order"].isin(orders)].sample(frac=1.0, random_state=seed)
    hidden = lines.drop_duplicates("order")
    rest = lines.drop(hidden.index)
    order_index = pd.Index(hidden["order"])
    basket = sp.csr_matrix(
        (
            np.ones(len(rest), dtype=np.float32),
            (order_index.get_indexer(rest["order"]), rest["col"].to_numpy()),
        ),
        shape=(len(hidden), len(data.item_ids)),
    )
    relevant = {i: {int(c)} for i, c in enumerate(hidden["col"].to_numpy())}
    unweighted = data.matrix(None)
    candidates: dict[str, Recommender] = {
        f"co_purchase_l{e:g}": CoPurchaseRecommender(lift_exponent=e) for e in (0.0, 0.5, 1.0)
    }
    candidates["item_knn_cosine_k200"] = ItemKNNRecommender("cosine", neighbours=200)
    candidates["trending_h0.33"] = TrendingRecommender()
    results: dict[str, dict[str, float]] = {}
    for name, model in candidates.items():
        matrix = data.matrix(1 / 3) if name.startswith("trending") else unweighted
        model.fit(matrix, data.co_purchase)
        items, _ = model.recommend(np.full(len(hidden), -1), basket, k=K, exclude=basket)
        results[name] = _rounded(metrics_from_columns(items, relevant, K))
    winner = max(results, key=lambda name: (results[name]["ndcg"], name))
    return winner, {
        "winner": winner,
        "baskets": len(hidden),
        "candidates": results,
        "reason": f"best leave-one-out NDCG@{K} on validation-window orders",
    }


def build_candidate(name: str, n_items: int, seed: int) -> tuple[Recommender, CandidateSpec]:
    """A fresh (unfitted) candidate by name, with its spec; KeyError for an unknown name."""
    for spec in candidate_specs(n_items, seed, with_attributes=True):
        if spec.name == name:
            return spec.make(), spec
    cross: dict[str, Callable[[], Recommender]] = {
        f"co_purchase_l{e:g}": partial(CoPurchaseRecommender, lift_exponent=e)
        for e in (0.0, 0.5, 1.0)
    }
    cross["item_knn_cosine_k200"] = partial(ItemKNNRecommender, "cosine", neighbours=200)
    cross["trending_h0.33"] = TrendingRecommender
    if name in cross:
        half_life = 1 / 3 if name.startswith("trending") else None
        return cross[name](), CandidateSpec(name, cross[name], half_life)
    raise KeyError(f"unknown candidate {name!r}")


def fit_winner(
    winner: WinnerSpec,
    matrices: Callable[[float | None], Interactions],
    co_purchase: sp.csr_matrix,
    categories: np.ndarray,
    seed: int,
    ranker: Any = None,
    repeat_rates: np.ndarray | None = None,
    customer_attributes: CustomerAttributes | None = None,
) -> tuple[Recommender, float | None]:
    """Fit the winner's members on the full data; returns the model and its serving half-life
    (the half-life of its personal members, in multiples of W; None when they use no decay).
    `customer_attributes` are those of the matrices' customers, in row order.

    A re-ranker winner needs `ranker` (the classifier selection trained on the latest window)
    and `repeat_rates` (per item, at the same `as_of` as the matrices); it reads history with
    a half-life of W."""
    if winner.rerank:
        members = []
        for name in winner.members:
            model, spec = build_candidate(name, len(categories), seed)
            members.append(
                model.fit(matrices(spec.half_life), co_purchase, categories, customer_attributes)
            )
        reranker = _reranker(members, list(winner.members), winner.exclude_seen, seed)
        reranker.classifier_ = ranker
        reranker.repeat_rates_ = np.asarray(repeat_rates, dtype=np.float32)
        reranker.n_items_ = len(categories)
        return reranker, RERANK_HALF_LIFE
    fitted: list[Recommender] = []
    serving_half_life: float | None = None
    for name in winner.members:
        model, spec = build_candidate(name, len(categories), seed)
        model.fit(matrices(spec.half_life), co_purchase, categories, customer_attributes)
        fitted.append(model)
        if spec.personalised:
            serving_half_life = spec.half_life
    if len(fitted) == 1:
        return fitted[0], serving_half_life
    return BlendRecommender.from_fitted(fitted, list(winner.weights)), serving_half_life


RERANK_HALF_LIFE = 1.0
"""Re-rankers read customer history with a half-life of W (train and serve alike)."""
RERANK_TRAIN_CUSTOMERS = 3_000


def _rerank_members(fitted: list[str], report: dict[str, Any], protocol: str) -> list[str]:
    """The best candidate of each of the five best model families on this protocol."""
    ranked = sorted(fitted, key=lambda name: -report["candidates"][name][protocol]["ndcg"])
    names: list[str] = []
    for name in ranked:
        if _family(name) not in {_family(n) for n in names}:
            names.append(name)
        if len(names) == 5:
            break
    return names


def _rerank_cost(data: ValidationData, report: dict[str, Any], protocol: str) -> float:
    """Seconds a re-ranker trial is expected to take: members fitted twice more, their
    matrices built again, and two classifier fits (a generous guess, so the budget holds)."""
    names = _rerank_members(list(report["candidates"]), report, protocol)
    fits = sum(report["candidates"][name]["fit_seconds"] for name in names)
    return 2.0 * fits + 2 * data.prepare_seconds + (len(names) + 3) * data.build_seconds + 30.0


def _family(name: str) -> str:
    return name.split("_")[0]


def _reranker(members: list[Recommender], names: list[str], exclude_seen: bool, seed: int) -> Any:
    from models.recommenders.rerank import RerankRecommender

    return RerankRecommender(members, names, exclude_seen=exclude_seen, random_state=seed)


def window_labels(
    shop: Shop,
    start: pd.Timestamp,
    end: pd.Timestamp,
    customer_ids: np.ndarray,
    item_ids: np.ndarray,
) -> sp.csr_matrix:
    """Binary customers x items: 1 when the customer bought the item in [start, end)."""
    purchases = shop.purchases
    window = purchases.loc[(purchases["ordered_at"] >= start) & (purchases["ordered_at"] < end)]
    rows = pd.Index(customer_ids).get_indexer(window["customer_id"].astype(str))
    cols = pd.Index(item_ids).get_indexer(window["item_id"].astype(str))
    known = (rows >= 0) & (cols >= 0)
    labels = sp.csr_matrix(
        (np.ones(int(known.sum()), dtype=np.float32), (rows[known], cols[known])),
        shape=(len(customer_ids), len(item_ids)),
    )
    labels.sum_duplicates()
    labels.data[:] = 1.0
    return labels


def _train_classifier(
    reranker: Any,
    history: Interactions,
    labels: sp.csr_matrix,
    exclude_seen: bool,
    seed: int,
) -> Any:
    """Fit the re-ranker's classifier on (customer, candidate) pairs of one time window."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    if exclude_seen:
        seen = sp.csr_matrix(history.matrix != 0, dtype=np.float32)
        positives = labels - labels.multiply(seen)
    else:
        positives = labels
    positives = sp.csr_matrix(positives)
    rows = np.flatnonzero(np.diff(positives.indptr) > 0)
    rng = np.random.default_rng(seed)
    if len(rows) > RERANK_TRAIN_CUSTOMERS:
        rows = np.sort(rng.choice(rows, RERANK_TRAIN_CUSTOMERS, replace=False))
    if len(rows) < 20:
        raise ValueError("too few customers bought in the window to train a re-ranker")
    tables, targets = [], []
    for start in range(0, len(rows), 500):
        chunk = rows[start : start + 500]
        columns, table, _ = reranker.candidate_features(chunk, history.matrix[chunk])
        truth = positives[chunk].toarray() > 0
        safe = np.maximum(columns, 0)
        target = np.take_along_axis(truth, safe, axis=1) & (columns >= 0)
        keep = (columns >= 0).reshape(-1)
        tables.append(table[keep])
        targets.append(target.reshape(-1)[keep])
    y = np.concatenate(targets)
    if y.all() or not y.any():
        raise ValueError("re-ranker labels are all equal in the window")
    classifier = HistGradientBoostingClassifier(
        max_iter=reranker.max_iter,
        learning_rate=reranker.learning_rate,
        max_leaf_nodes=reranker.max_leaf_nodes,
        min_samples_leaf=reranker.min_samples_leaf,
        early_stopping=False,
        random_state=reranker.random_state,
    )
    with threadpool_limits(1):  # HistGradientBoosting uses OpenMP; the machine is shared
        return classifier.fit(np.vstack(tables), y)


def _try_reranker(
    data: ValidationData,
    fitted: dict[str, Recommender],
    specs: dict[str, CandidateSpec],
    protocol: str,
    report: dict[str, Any],
    blend_why: dict[str, Any],
    seed: int,
) -> tuple[WinnerSpec, Any, dict[str, Any]] | None:
    """Train a re-ranker one window earlier, judge it on the validation window; when it beats
    the blend there (on both halves), retrain its classifier on the validation window."""
    from features.interactions import purchase_counts as counts_at
    from models.recommenders.rules import repeat_purchase_rates

    names = _rerank_members(list(fitted), report, protocol)
    exclude_seen = protocol == "discovery"
    entry: dict[str, Any] = {"members": names}
    report.setdefault("rerank", {})[protocol] = entry
    earlier_cut = data.cut - pd.Timedelta(days=data.window_days)
    shop_before = data.shop.before(data.cut)
    try:
        started = time.perf_counter()
        # 1. Members and history one window earlier; labels = the window before validation.
        earlier_members = []
        builder = InteractionsBuilder(shop_before, earlier_cut, item_ids=data.item_ids)
        earlier_co_purchase = co_purchase_counts(shop_before, earlier_cut, data.item_ids)
        earlier_attributes = customer_attributes(shop_before, builder.customer_ids)
        for name in names:
            spec = specs[name]
            days = None if spec.half_life is None else spec.half_life * data.window_days
            earlier_members.append(
                spec.make().fit(
                    builder.build(days),
                    earlier_co_purchase,
                    data.item_categories,
                    earlier_attributes,
                )
            )
        history = builder.build(RERANK_HALF_LIFE * data.window_days)
        reranker = _reranker(earlier_members, names, exclude_seen, seed)
        reranker.repeat_rates_ = repeat_purchase_rates(
            _aligned(counts_at(shop_before, earlier_cut, data.item_ids), history.customer_ids)
        )
        reranker.n_items_ = len(data.item_ids)
        labels = window_labels(
            data.shop, earlier_cut, data.cut, history.customer_ids, data.item_ids
        )
        classifier = _train_classifier(reranker, history, labels, exclude_seen, seed)
        # 2. The same classifier on validation-time members and history.
        validation_history = data.matrix(RERANK_HALF_LIFE)
        judged = _reranker([fitted[n] for n in names], names, exclude_seen, seed)
        judged.classifier_ = classifier
        judged.repeat_rates_ = repeat_purchase_rates(data.bought)
        judged.n_items_ = len(data.item_ids)
        scores = _score_block(judged, data, validation_history)
        halves = [data.ndcg(scores, protocol, h)["ndcg"] for h in data.halves]
        blend_halves = blend_why["validation_halves"]
        overall = data.ndcg(scores, protocol)["ndcg"]
        entry.update(
            validation_ndcg=round(overall, 5),
            validation_halves=[round(h, 5) for h in halves],
            blend_validation_ndcg=blend_why["validation_ndcg"],
        )
        if not all(r > b for r, b in zip(halves, blend_halves, strict=True)):
            entry["chosen"] = False
            entry["seconds"] = round(time.perf_counter() - started, 2)
            return None
        # 3. Retrain the classifier on the latest window (validation) for serving.
        final_labels = window_labels(
            data.shop, data.cut, data.as_of, validation_history.customer_ids, data.item_ids
        )
        final_classifier = _train_classifier(
            judged, validation_history, final_labels, exclude_seen, seed
        )
        entry["chosen"] = True
        entry["seconds"] = round(time.perf_counter() - started, 2)
    except ValueError as error:
        entry["error"] = str(error)
        return None
    winner = WinnerSpec(tuple(names), (1.0,) * len(names), True, exclude_seen)
    why = dict(blend_why)
    why.update(
        validation_ndcg=round(overall, 5),
        validation_halves=[round(h, 5) for h in halves],
        reason=(
            f"re-ranker validation NDCG@{K} {overall:.4f} beats the blend "
            f"{blend_why['validation_ndcg']:.4f} on both halves of the validation customers "
            f"(best popularity/trending {blend_why['best_baseline']} "
            f"{blend_why['baseline_ndcg']:.4f})"
        ),
    )
    return winner, final_classifier, why


def _aligned(counts: Interactions, customer_ids: np.ndarray) -> sp.csr_matrix:
    rows = pd.Index(counts.customer_ids).get_indexer(customer_ids)
    return counts.matrix[np.maximum(rows, 0)]
