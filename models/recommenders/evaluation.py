"""Ranking metrics at K, defined exactly as the peers of `../shared/peers/recs_peers.py`.

For each evaluated customer (one with at least one relevant item), with h_j = 1 when the item
at rank j (0-based) is relevant:
- precision@K = hits / K; recall@K = hits / |relevant|; hit rate = 1 when hits > 0;
- NDCG@K = sum_j h_j / log2(j + 2) divided by sum_{j < min(|relevant|, K)} 1 / log2(j + 2);
- MAP@K: average precision = sum over hits of (hits so far / (j + 1)), / min(|relevant|, K);
each averaged over customers. Catalog coverage = distinct items recommended / catalog size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

METRIC_NAMES = ("precision", "recall", "ndcg", "map", "hit_rate")


def ranking_metrics(
    recommended: Mapping[Any, Sequence[Any]],
    relevant: Mapping[Any, set],
    k: int = 10,
) -> dict[str, float]:
    """Mean precision, recall, NDCG, MAP and hit rate at `k` over customers with relevant items.

    `recommended[c]` lists item ids best first (only the first k count; a customer missing
    from `recommended` counts as an empty list); `relevant[c]` is a set of item ids. Returns
    also `customers` (how many were evaluated). Raises ValueError when no customer has a
    relevant item."""
    totals = dict.fromkeys(METRIC_NAMES, 0.0)
    hit_rows: list[np.ndarray] = []
    n_relevant: list[int] = []
    for customer, truth in relevant.items():
        if not truth:
            continue
        ranked = list(recommended.get(customer, ()))[:k]
        hits = np.array([1.0 if item in truth else 0.0 for item in ranked])
        hit_rows.append(hits)
        n_relevant.append(len(truth))
        n_hits = float(hits.sum())
        totals["precision"] += n_hits / k
        totals["recall"] += n_hits / len(truth)
        totals["hit_rate"] += 1.0 if n_hits > 0 else 0.0
        precision_at_hits = np.cumsum(hits) / np.arange(1, len(hits) + 1)
        totals["map"] += float((precision_at_hits * hits).sum()) / min(len(truth), k)
    customers = len(hit_rows)
    if customers == 0:
        raise ValueError("no customer has a relevant item: nothing to evaluate")
    hit_matrix = np.zeros((customers, k), dtype=bool)
    for row, hits in enumerate(hit_rows):
        hit_matrix[row, : len(hits)] = hits > 0
    # Summed in customer order, as the other metrics are.
    totals["ndcg"] = sum(ndcg_per_customer(hit_matrix, np.array(n_relevant), k).tolist())
    result = {name: value / customers for name, value in totals.items()}
    result["customers"] = float(customers)
    return result


def ndcg_per_customer(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """NDCG@k of each customer (float64): `hits` is bool (customers, k), True where the item at
    rank j is relevant; `n_relevant` is each customer's number of relevant items (at least 1).

    The one NDCG of the project: `ranking_metrics` (backtests, benchmarks) and model selection
    (per-customer paired comparisons) both read it."""
    discounts = 1.0 / np.log2(np.arange(k) + 2.0)
    ideal = np.cumsum(discounts)[np.minimum(n_relevant, k) - 1]
    return (hits @ discounts) / ideal


def catalog_coverage(recommended: Mapping[Any, Sequence[Any]], n_items: int) -> float:
    """Share of the catalog (n_items items) that appears in at least one recommendation list."""
    if n_items <= 0:
        raise ValueError(f"n_items must be positive, got {n_items}")
    shown = {item for items in recommended.values() for item in items}
    return len(shown) / n_items


def metrics_from_columns(
    recommended_columns: np.ndarray, relevant: Mapping[int, set], k: int = 10
) -> dict[str, float]:
    """`ranking_metrics` for an (n, >=k) array of item columns whose row r is customer r.

    `relevant` maps row -> set of item columns; -1 entries (padding) never hit."""
    recommended = {r: [int(c) for c in recommended_columns[r] if c >= 0] for r in relevant}
    return ranking_metrics(recommended, relevant, k)
