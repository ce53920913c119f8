"""Backtest of the recommender bundle on the last window before `as_of`, beside its baselines.

The bundle is fitted on data before `cut = as_of - window` and asked for top-K lists for every
customer who had bought before `cut` and bought again in `[cut, as_of)`. Two protocols, as in
`models/recommenders/evaluation.py` (the same metric code as the peers):
- `repeat` (what the storefront serves by default, `exclude_purchased="non-repeatable"`):
  relevant = every item bought in the window;
- `discovery` (`exclude_purchased="all"`): relevant = window items the customer never bought
  before `cut`.
Baselines (global popularity, and trending: popularity with a recency half-life of the window)
use the same business rules, so the comparison is like for like.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

K_MAX = 20
PROTOCOLS = {"repeat": "non-repeatable", "discovery": "all"}
"""Protocol name -> the `exclude_purchased` rule its lists are made with."""


@dataclass(frozen=True)
class WindowTruth:
    """What the evaluated customers bought in the backtest window."""

    cut: pd.Timestamp
    end: pd.Timestamp
    customer_ids: list[str]
    relevant: dict[str, dict[str, set[str]]]
    """protocol -> customer id -> relevant item ids (customers without any are left out)."""


@dataclass
class RecommendationEvaluation:
    """Metrics at K=10 and metric@K curves (K = 1..K_MAX) of one ranking source."""

    metrics: dict[str, float] = field(default_factory=dict)
    curves: dict[str, Sequence[float]] = field(default_factory=dict)


def window_truth(
    shop: Any,
    known_customer_ids: np.ndarray,
    cut: pd.Timestamp,
    end: pd.Timestamp,
    max_customers: int = 5_000,
    seed: int = 0,
) -> WindowTruth:
    """The evaluated customers (known before `cut`, bought in `[cut, end)`) and their items.

    At most `max_customers` customers, a seeded sample, so large shops stay fast."""
    purchases = shop.purchases
    before = purchases[purchases["ordered_at"] < cut]
    inside = purchases[(purchases["ordered_at"] >= cut) & (purchases["ordered_at"] < end)]
    known = set(map(str, known_customer_ids))
    bought = inside.assign(customer_id=inside["customer_id"].astype(str))
    bought = bought[bought["customer_id"].isin(known)]
    window_items = bought.groupby("customer_id")["item_id"].agg(lambda s: set(map(str, s)))
    customers = sorted(window_items.index)
    if len(customers) > max_customers:
        picked = np.random.default_rng(seed).choice(len(customers), max_customers, replace=False)
        customers = [customers[i] for i in sorted(picked)]
    earlier = before[before["customer_id"].astype(str).isin(set(customers))]
    past_items = earlier.groupby(earlier["customer_id"].astype(str))["item_id"].agg(
        lambda s: set(map(str, s))
    )
    relevant: dict[str, dict[str, set[str]]] = {"repeat": {}, "discovery": {}}
    for customer in customers:
        items = window_items[customer]
        relevant["repeat"][customer] = items
        new = items - past_items.get(customer, set())
        if new:
            relevant["discovery"][customer] = new
    return WindowTruth(cut=cut, end=end, customer_ids=customers, relevant=relevant)


def evaluate_lists(
    lists: Mapping[str, Mapping[str, list[str]]], truth: WindowTruth, catalog_items: int
) -> RecommendationEvaluation:
    """Metrics of ranked lists (protocol -> customer -> item ids, best first) on the window.

    Metric names: `<metric>_at_10` for the repeat protocol (the promotion metrics),
    `discovery_<metric>_at_10` for discovery; curves keyed the same way without `_at_10`."""
    from models.recommenders.evaluation import METRIC_NAMES, catalog_coverage, ranking_metrics

    result = RecommendationEvaluation()
    for protocol, recommended in lists.items():
        relevant = truth.relevant[protocol]
        if not relevant:
            continue
        prefix = "" if protocol == "repeat" else f"{protocol}_"
        by_k = {k: ranking_metrics(recommended, relevant, k) for k in range(1, K_MAX + 1)}
        for name in METRIC_NAMES:
            result.metrics[f"{prefix}{name}_at_10"] = by_k[10][name]
            result.curves[f"{prefix}{name}"] = [by_k[k][name] for k in range(1, K_MAX + 1)]
        result.metrics[f"{prefix}customers"] = by_k[10]["customers"]
        top10 = {c: items[:10] for c, items in recommended.items()}
        result.metrics[f"{prefix}coverage_at_10"] = catalog_coverage(top10, catalog_items)
    return result


def bundle_lists(bundle: Any, truth: WindowTruth) -> dict[str, dict[str, list[str]]]:
    """Top-K_MAX lists of a `RecommenderBundle` for the window's customers, per protocol."""
    lists: dict[str, dict[str, list[str]]] = {}
    for protocol, exclude in PROTOCOLS.items():
        answers = bundle.recommend_many(truth.customer_ids, k=K_MAX, exclude_purchased=exclude)
        lists[protocol] = {
            c: list(a.item_ids) for c, a in zip(truth.customer_ids, answers, strict=True)
        }
    return lists


def baseline_lists(
    bundle: Any, shop: Any, truth: WindowTruth, window_days: float
) -> dict[str, dict[str, dict[str, list[str]]]]:
    """Lists of the popularity and trending baselines under the bundle's business rules."""
    import scipy.sparse as sp

    from features.interactions import InteractionsBuilder
    from models.recommenders.base import top_k
    from models.recommenders.popularity import PopularityRecommender, TrendingRecommender

    item_ids = np.asarray(bundle.item_ids)
    rows = np.array([bundle.customer_row(c) for c in truth.customer_ids], dtype=np.int64)
    purchased = sp.csr_matrix(bundle.purchased)[np.maximum(rows, 0)]
    empty = sp.csr_matrix((1, len(item_ids)), dtype=np.float32)
    sources = {
        "popularity": (PopularityRecommender(), None),
        "trending": (TrendingRecommender(), float(window_days)),
    }
    # The lines are read once for both baselines, each protocol's blocked items found once.
    builder = InteractionsBuilder(shop, truth.cut, item_ids=item_ids)
    scored = {
        name: model.fit(builder.build(half_life)).scores(np.array([-1]), empty)[0]
        for name, (model, half_life) in sources.items()
    }
    out: dict[str, dict[str, dict[str, list[str]]]] = {name: {} for name in sources}
    for protocol, exclude in PROTOCOLS.items():
        blocked = bundle.rules.blocked(purchased, exclude)
        for name, scores in scored.items():
            block = np.broadcast_to(scores, blocked.shape).copy()
            block[blocked] = -np.inf
            columns, _ = top_k(block, K_MAX)
            out[name][protocol] = {
                customer: [str(item_ids[c]) for c in columns[i] if c >= 0]
                for i, customer in enumerate(truth.customer_ids)
            }
    return out
