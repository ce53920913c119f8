"""Cross-sell, similar items and the cold answer ranked on one sparse row give exactly the
answers of the full dense computation (a dense score row over the catalog, the dense rules mask,
`top_k`): same items, order, scores and strategy, for many baskets, including ties, duplicated
and unknown items, blocked and unavailable items, and k larger than what is left."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from features.interactions import Interactions
from models.recommenders.association import CoPurchaseRecommender
from models.recommenders.base import Recommender, top_k, weighted_rows_sum
from models.recommenders.bundle import Recommendation, RecommenderBundle
from models.recommenders.neighbours import ItemKNNRecommender
from models.recommenders.popularity import PopularityRecommender, TrendingRecommender
from models.recommenders.rules import BusinessRules, ExcludePurchased

N_ITEMS = 40
N_CUSTOMERS = 30
KS = (1, 3, 10, 60)  # 60 > every item


def _shop(seed: int) -> tuple[Interactions, sp.csr_matrix, sp.csr_matrix]:
    """Integer purchases (ties everywhere), a few items nobody bought, orders of 1-6 items."""
    rng = np.random.default_rng(seed)
    orders = []
    for _ in range(120):
        size = int(rng.integers(1, 7))
        # Items 0-9 sell a lot, 35-39 never: trending ties among the rest and at 0.
        weights = np.r_[np.full(10, 6.0), np.ones(N_ITEMS - 15), np.zeros(5)]
        items = rng.choice(N_ITEMS, size=size, replace=False, p=weights / weights.sum())
        orders.append((int(rng.integers(N_CUSTOMERS)), items))
    rows = [customer for customer, items in orders for _ in items]
    cols = [item for _, items in orders for item in items]
    matrix = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(N_CUSTOMERS, N_ITEMS)
    )
    order_items = sp.csr_matrix(
        (
            np.ones(len(cols), dtype=np.float32),
            ([i for i, (_, it) in enumerate(orders) for _ in it], cols),
        ),
        shape=(len(orders), N_ITEMS),
    )
    co_purchase = sp.csr_matrix(order_items.T @ order_items)
    customer_ids = np.array([f"c{i:02d}" for i in range(N_CUSTOMERS)])
    item_ids = np.array([f"i{j:02d}" for j in range(N_ITEMS)])
    return Interactions(matrix, customer_ids, item_ids), co_purchase, matrix


def _bundle(
    cross_sell: Recommender,
    similar: Recommender,
    seed: int = 0,
    max_per_category: int | None = None,
    repeatable_categories: dict[str, bool] | None = None,
) -> RecommenderBundle:
    interactions, co_purchase, purchased = _shop(seed)
    rng = np.random.default_rng(seed + 100)
    available = rng.random(N_ITEMS) > 0.2
    available[0] = False  # a best seller out of stock
    rules = BusinessRules(
        categories=np.array([["dairy", "bakery", "fruit", ""][j % 4] for j in range(N_ITEMS)]),
        available=available,
        repeat_rates=rng.random(N_ITEMS).astype(np.float32),
        repeat_threshold=0.5,
        repeatable_categories=dict(repeatable_categories or {}),
        max_per_category=max_per_category,
    )
    return RecommenderBundle(
        as_of=pd.Timestamp("2025-01-01", tz="UTC"),
        item_ids=interactions.item_ids,
        customer_ids=interactions.customer_ids,
        history={"hinf": interactions.matrix},
        purchased=purchased,
        models={
            "cross_sell": cross_sell.fit(interactions, co_purchase),
            "similar": similar.fit(interactions, co_purchase),
            "trending": TrendingRecommender().fit(interactions),
        },
        model_history={},
        strategies={
            "cross_sell": "the-cross-sell-model",
            "similar": "the-similar-model",
            "trending": "trending",
        },
        rules=rules,
    )


def _position(ids: np.ndarray, wanted: str | None) -> int:
    found = np.flatnonzero(ids == wanted)
    return int(found[0]) if len(found) else -1


# --- the full dense computation, as the bundle did it before it ranked sparse rows -----------
def _dense_top(
    bundle: RecommenderBundle, scores: np.ndarray, blocked: np.ndarray, k: int, strategy: str
) -> tuple[list[str], list[float], str]:
    trending = bundle.models["trending"].scores(
        np.array([-1]), sp.csr_matrix((1, N_ITEMS), dtype=np.float32)
    )[0]
    tie_break = trending / max(float(np.abs(trending).max()), 1e-12)
    scores = np.asarray(scores, dtype=np.float32).copy()
    scores = scores + np.float32(1e-6) * tie_break[None, :]
    scores[blocked] = -np.inf
    wanted = k * 3 if bundle.rules.max_per_category else k
    items, values = top_k(scores, wanted)
    if bundle.rules.max_per_category:
        items, values = bundle.rules.diversify(items, values, k)
    keep = items[0] >= 0
    return (
        [str(bundle.item_ids[i]) for i in items[0][keep]][:k],
        [float(s) for s in values[0][keep]][:k],
        strategy,
    )


def _dense_cold(bundle: RecommenderBundle, k: int) -> tuple[list[str], list[float], str]:
    trending = bundle.models["trending"].scores(
        np.array([-1]), sp.csr_matrix((1, N_ITEMS), dtype=np.float32)
    )
    blocked = bundle.rules.blocked(sp.csr_matrix((1, N_ITEMS)), "none")
    return _dense_top(bundle, trending, blocked, k, "trending")


def _dense_cross_sell(
    bundle: RecommenderBundle, item_ids: list[str], customer_id: str | None, k: int
) -> tuple[list[str], list[float], str]:
    columns = np.array([_position(bundle.item_ids, i) for i in item_ids], dtype=np.int64)
    columns = columns[columns >= 0]
    if len(columns) == 0:
        return _dense_cold(bundle, k)
    basket = sp.csr_matrix(
        (np.ones(len(columns), dtype=np.float32), (np.zeros(len(columns)), columns)),
        shape=(1, N_ITEMS),
    )
    row = _position(bundle.customer_ids, customer_id)
    purchased = bundle.purchased[[row]] if row >= 0 else sp.csr_matrix((1, N_ITEMS))
    blocked = bundle.rules.blocked(purchased, "non-repeatable", basket=basket)
    scores = bundle.models["cross_sell"].scores(np.array([-1]), basket)
    return _dense_top(bundle, scores, blocked, k, "the-cross-sell-model")


def _dense_similar(
    bundle: RecommenderBundle, item_id: str, k: int
) -> tuple[list[str], list[float], str]:
    column = np.array([_position(bundle.item_ids, item_id)])
    if column[0] < 0:
        return _dense_cold(bundle, k)
    scores = np.asarray(bundle.models["similar"]._similarity_scores(column), dtype=np.float32)
    blocked = bundle.rules.blocked(sp.csr_matrix((1, N_ITEMS)), "none")
    blocked[0, column[0]] = True
    return _dense_top(bundle, scores, blocked, k, "the-similar-model")


def _triple(answer: Recommendation) -> tuple[list[str], list[float], str]:
    return answer.item_ids, answer.scores, answer.strategy


MODELS: dict[str, Callable[[], Recommender]] = {
    "co_purchase_l0": lambda: CoPurchaseRecommender(lift_exponent=0.0),
    "co_purchase_l1_top3": lambda: CoPurchaseRecommender(lift_exponent=1.0, neighbours=3),
    "knn_cosine": lambda: ItemKNNRecommender("cosine", neighbours=200),
    "knn_bm25_binary": lambda: ItemKNNRecommender("bm25", neighbours=5, binary=True),
    "popularity (dense scores)": PopularityRecommender,
}


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("max_per_category", [None, 1])
def test_cross_sell_and_similar_match_the_dense_computation(
    model: str, max_per_category: int | None
) -> None:
    bundle = _bundle(
        MODELS[model](),
        MODELS[model](),
        max_per_category=max_per_category,
        repeatable_categories={"fruit": False},
    )
    rng = np.random.default_rng(7)
    ids = [*bundle.item_ids, "unknown-1", "unknown-2"]
    customers = [None, "nobody", *bundle.customer_ids]
    for _ in range(80):
        # 1-6 items drawn with replacement: duplicates, unknown and unavailable items included.
        basket = [str(i) for i in rng.choice(ids, size=int(rng.integers(1, 7)))]
        customer = customers[int(rng.integers(len(customers)))]
        for k in KS:
            expected = _dense_cross_sell(bundle, basket, customer, k)
            assert _triple(bundle.cross_sell(basket, customer, k)) == expected, (basket, k)
    for item in ids:
        for k in KS:
            assert _triple(bundle.similar(item, k)) == _dense_similar(bundle, item, k), (item, k)
    for k in (0, *KS):
        assert _triple(bundle.cross_sell(["unknown-1"], None, k)) == _dense_cold(bundle, k)


def test_the_answers_reach_past_the_scored_items_and_stop_at_the_catalog() -> None:
    bundle = _bundle(CoPurchaseRecommender(neighbours=2), ItemKNNRecommender(neighbours=2))
    answer = bundle.cross_sell(["i05"], None, k=60)
    allowed = N_ITEMS - 1 - (~bundle.rules.available).sum() + (not bundle.rules.available[5])
    assert len(answer.item_ids) == allowed  # scored items, then trending, then nothing
    assert "i05" not in answer.item_ids and "i00" not in answer.item_ids  # basket, unavailable
    assert answer.scores == sorted(answer.scores, reverse=True)


def test_weighted_rows_sum_is_scipys_product_bit_for_bit() -> None:
    """Rows that overlap a lot, float32 values whose sum depends on the order of additions,
    and a matrix with duplicated entries (not canonical) like SciPy allows."""
    rng = np.random.default_rng(3)
    dense = rng.random((50, 60)).astype(np.float32) * (rng.random((50, 60)) < 0.5)
    dense *= rng.choice([1e-3, 1.0, 1e3], size=dense.shape).astype(np.float32)
    canonical = sp.csr_matrix(dense)
    coo = canonical.tocoo()
    twice = sp.csr_matrix(
        (
            np.r_[coo.data * np.float32(0.3), coo.data * np.float32(0.7)],
            np.r_[coo.col, coo.col],
            np.r_[0, np.cumsum(2 * np.diff(canonical.indptr))],
        ),
        shape=dense.shape,
    )
    twice.indices = np.concatenate(
        [np.r_[row, row] for row in np.split(coo.col, np.cumsum(np.diff(canonical.indptr)))[:-1]]
    )
    assert not twice.has_canonical_format
    for matrix in (canonical, twice):
        for _ in range(200):
            rows = np.unique(rng.choice(50, size=int(rng.integers(1, 8))))
            weights = rng.choice([1.0, 2.0, 3.0, 0.7], size=len(rows)).astype(np.float32)
            vector = sp.csr_matrix(
                (weights, (np.zeros(len(rows)), rows)), shape=(1, 50), dtype=np.float32
            )
            expected = np.asarray((vector @ matrix).toarray(), dtype=np.float32)[0]
            columns, values = weighted_rows_sum(matrix, rows, weights)
            got = np.zeros(60, dtype=np.float32)
            got[columns] = values
            assert np.array_equal(got.view(np.int32), expected.view(np.int32))
            assert (np.diff(columns) > 0).all()


@pytest.mark.parametrize("exclude", ["all", "non-repeatable", "none"])
def test_blocked_columns_are_the_dense_mask_without_availability(
    exclude: ExcludePurchased,
) -> None:
    bundle = _bundle(
        CoPurchaseRecommender(), ItemKNNRecommender(), repeatable_categories={"dairy": True}
    )
    rules = bundle.rules
    for row in range(N_CUSTOMERS):
        basket = np.array([row % N_ITEMS, (3 * row) % N_ITEMS])
        dense = rules.blocked(
            bundle.purchased[[row]],
            exclude,
            basket=sp.csr_matrix((np.ones(2), ([0, 0], basket)), shape=(1, N_ITEMS)),
        )[0]
        sparse = rules.blocked_columns(
            bundle.purchased[[row]].indices,
            exclude,
            basket_columns=basket,
        )
        assert np.flatnonzero(dense & rules.available).tolist() == [
            c for c in sparse.tolist() if rules.available[c]
        ]
    with pytest.raises(ValueError, match="exclude_purchased"):
        rules.blocked_columns(np.array([1]), "some")  # type: ignore[arg-type]


def test_scores_that_are_not_finite_take_the_dense_path_with_the_same_answers() -> None:
    bundle = _bundle(PopularityRecommender(), PopularityRecommender())
    available = np.flatnonzero(bundle.rules.available)
    holes = np.arange(N_ITEMS, dtype=np.float32) % 7
    holes[available[[1, 2]]], holes[available[-1]], holes[available[3]] = -np.inf, np.inf, np.nan
    infinite = str(bundle.item_ids[available[-1]])

    def with_holes(rows: np.ndarray, *_: object) -> np.ndarray:
        return np.tile(holes, (len(rows), 1))

    for role in ("cross_sell", "similar"):
        setattr(bundle.models[role], "_scores", with_holes)  # noqa: B010 (an instance's method)
        setattr(bundle.models[role], "_similarity_scores", with_holes)  # noqa: B010
    for basket, customer, k in ((["i01"], None, 10), (["i04", "i04", "i09"], "c03", 60)):
        answer = bundle.cross_sell(basket, customer, k)
        assert repr(_triple(answer)) == repr(_dense_cross_sell(bundle, basket, customer, k))
        assert answer.item_ids[0] == infinite
    for item in ("i01", infinite):
        assert repr(_triple(bundle.similar(item, 60))) == repr(_dense_similar(bundle, item, 60))
