"""The next-need weight: how much what goes with a purchase posted since training counts in
that customer's next answer, chosen per protocol on the shop's own validation window.

Serving answers a customer with purchases posted since training from the champion's scores of
the updated row plus the cross-sell model's answer for the items just bought, times a weight
(`fresh_row.with_next_need`). Which weight is right depends on the shop: in one, a purchase
says what the customer needs next (a printer, then its ink); in another, nothing more than the
customer's history already does. So training asks the validation window, as it asks it which
models win (`selection`), and nothing at or after `as_of` is read:

- cases: customers with history before the cut who ordered in the window, a seeded sample of
  at most `MAX_CASES`; one item of each one's first order in the window, drawn at random, plays
  the purchase just posted; the truth is what they bought after it: the rest of that order
  (the data hold no time within an order; a storefront may post an order line by line, or the
  customer comes back for what goes with it) and their next order in the window, the posted
  item left out;
- each case is answered as serving would: the winner as fitted at the cut scores the
  customer's row at the cut with the item folded in (`updated_scores`), the cross-sell winner
  at the cut scores the item as a basket, and the two are summed by `with_next_need`'s rule at
  each weight of `NEXT_NEED_WEIGHTS`; the posted item (and, for discovery, every item bought
  before the cut) cannot be shown;
- the weight with the best mean NDCG@10 wins only when its gain over weight 0 is positive on
  both halves of the cases and larger than one standard error of the paired per-case gain
  (`greedy_blend.significant`, the blend's rule against tuning noise); otherwise 0, the
  champion alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from models.recommenders.base import Recommender, row_normalise, top_k
from models.recommenders.evaluation import ndcg_per_customer
from models.recommenders.fresh_row import PURCHASE_WEIGHT, rank_scaled
from models.recommenders.greedy_blend import significant
from models.recommenders.validation import K, ValidationData

NEXT_NEED_WEIGHTS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0)
"""The weights tried: 0 (the champion alone) to 2 (the basket's best item above the champion's
first place). On `rank_scaled`'s scale, where the first place is worth 1, the basket's best
item from far down the champion's list reaches about the 11th place at 0.5, the 5th at 0.75
and the 2nd at 1."""
MAX_CASES = 2_000
"""At most this many validation customers are cases (a seeded sample)."""
MIN_CASES = 20
"""Fewer cases than this: no weight is chosen (0)."""


@dataclass(frozen=True)
class NextNeedCases:
    """Validation cases: per case the customer's row at the cut, the item column played as just
    bought, and the item columns bought after it."""

    rows: np.ndarray
    posted: np.ndarray
    relevant: list[set[int]]


def next_need_cases(data: ValidationData, seed: int, max_cases: int = MAX_CASES) -> NextNeedCases:
    """The cases of the validation window (module docstring); empty when no customer with
    history ordered there or nobody bought anything after the drawn item."""
    window = data.window_lines
    lines = pd.DataFrame(
        {
            "row": pd.Index(data.customer_ids).get_indexer(window["customer_id"].astype(str)),
            "col": pd.Index(data.item_ids).get_indexer(window["item_id"].astype(str)),
            "order": window["order_id"].astype(str).to_numpy(),
            "at": window["ordered_at"].to_numpy(),
        }
    )
    lines = lines.loc[(lines["row"] >= 0) & (lines["col"] >= 0)]
    orders = lines.groupby("order", sort=False).agg(row=("row", "first"), at=("at", "min"))
    orders = orders.reset_index().sort_values(["row", "at", "order"], kind="stable")
    orders["place"] = orders.groupby("row").cumcount()
    orders = orders.loc[orders["place"] < 2]
    items = lines.groupby("order")["col"].agg(lambda cols: sorted(set(cols.tolist())))
    rng = np.random.default_rng(seed)
    customers = orders["row"].unique()
    if len(customers) > max_cases:
        customers = np.sort(rng.choice(customers, size=max_cases, replace=False))
    by_customer = orders.loc[orders["row"].isin(customers)].groupby("row")["order"].agg(list)
    rows: list[int] = []
    posted: list[int] = []
    relevant: list[set[int]] = []
    for row, placed in by_customer.items():
        first = items[placed[0]]
        item = int(first[rng.integers(len(first))])
        after = set(first) | (set(items[placed[1]]) if len(placed) > 1 else set())
        after.discard(item)
        if after:
            rows.append(int(row))  # type: ignore[call-overload]
            posted.append(item)
            relevant.append(after)
    return NextNeedCases(np.array(rows, dtype=np.int64), np.array(posted, np.int64), relevant)


def _case_ndcg(
    data: ValidationData,
    cases: NextNeedCases,
    champion: Recommender,
    history: sp.csr_matrix,
    cross_sell: Recommender,
    protocol: str,
) -> np.ndarray:
    """NDCG@K of every case (rows) at every weight of `NEXT_NEED_WEIGHTS` (columns)."""
    n_items = len(data.item_ids)
    result = np.empty((len(cases.rows), len(NEXT_NEED_WEIGHTS)))
    step = max(1, (1 << 21) // max(n_items, 1))
    for start in range(0, len(cases.rows), step):
        rows = cases.rows[start : start + step]
        posted = cases.posted[start : start + step]
        n = len(rows)
        just_bought = sp.csr_matrix(
            (np.full(n, PURCHASE_WEIGHT, np.float32), (np.arange(n), posted)), shape=(n, n_items)
        )
        updated = sp.csr_matrix(history[rows] + just_bought, dtype=np.float32)
        champion_scores = champion.updated_scores(rows, updated)
        blocked = just_bought.toarray() != 0
        if protocol == "discovery":
            blocked |= data.bought[rows].toarray() != 0
        champion_scores[blocked] = -np.inf
        basket = row_normalise(cross_sell.scores(np.full(n, -1), just_bought))
        places = rank_scaled(champion_scores)  # as `fresh_row.with_next_need` sums them
        truth = np.zeros((n, n_items), dtype=bool)
        for index, columns in enumerate(cases.relevant[start : start + step]):
            truth[index, list(columns)] = True
        if protocol == "discovery":
            truth &= ~blocked
        trial = np.empty_like(places)  # one block for every weight: w x basket + places
        for column, weight in enumerate(NEXT_NEED_WEIGHTS):
            total = champion_scores
            if weight != 0:
                total = np.multiply(basket, np.float32(weight), out=trial, dtype=np.float32)
                np.add(total, places, out=total)
                np.putmask(total, blocked, np.float32(-np.inf))
            items, _ = top_k(total, K)
            hits = np.take_along_axis(truth, np.maximum(items, 0), axis=1) & (items >= 0)
            result[start : start + n, column] = ndcg_per_customer(
                hits, np.maximum(truth.sum(axis=1), 1), K
            )
        keep = truth.any(axis=1)  # discovery: a case whose truth was all bought before
        result[start : start + n][~keep] = np.nan
    return result


def choose_next_need_weight(
    data: ValidationData,
    cases: NextNeedCases,
    champion: Recommender,
    history: sp.csr_matrix,
    cross_sell: Recommender,
    protocol: str,
    seed: int,
) -> tuple[float, dict[str, Any]]:
    """The weight for `protocol`'s winner (`champion`, fitted at the cut, reading `history`,
    the matrix at the cut it is served with) and why, with every weight's validation NDCG."""
    ndcg = _case_ndcg(data, cases, champion, history, cross_sell, protocol)
    ndcg = ndcg[~np.isnan(ndcg).any(axis=1)]
    entry: dict[str, Any] = {"cases": len(ndcg)}
    if len(ndcg) < MIN_CASES:
        entry["reason"] = f"fewer than {MIN_CASES} validation cases: the champion alone"
        return 0.0, entry | {"weight": 0.0}
    means = ndcg.mean(axis=0)
    entry["ndcg_by_weight"] = {
        f"{w:g}": round(float(m), 5) for w, m in zip(NEXT_NEED_WEIGHTS, means, strict=True)
    }
    best = int(np.argmax(means))  # the smallest weight among equals
    gain = ndcg[:, best] - ndcg[:, 0]
    halves = np.random.default_rng(seed).permutation(len(gain)) % 2
    if best == 0 or not significant(gain, [np.flatnonzero(halves == h) for h in (0, 1)]):
        entry["reason"] = (
            f"no weight raises NDCG@{K} of what the cases bought next significantly over the "
            "champion alone (both halves, one standard error)"
        )
        return 0.0, entry | {"weight": 0.0}
    weight = float(NEXT_NEED_WEIGHTS[best])
    entry["reason"] = (
        f"weight {weight:g} raises NDCG@{K} of what the cases bought next from "
        f"{means[0]:.4f} (champion alone) to {means[best]:.4f}, on both halves of the cases"
    )
    return weight, entry | {"weight": weight}
