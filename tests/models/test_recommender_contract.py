"""The contract every recommender honours, on a tiny checkerboard with obvious answers.

Two groups of customers buy from two disjoint groups of items (like implicit's
`tests/recommender_base_test.py`). A model that learns item-item or customer-item structure must
keep recommendations and similar items inside the customer's (or item's) group; every model
must save and load to identical answers and give the same answer in a batch as one by one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from features.attributes import CustomerAttributes
from features.interactions import Interactions
from features.purchase_timing import pair_timing
from models.recommenders import (
    ALSRecommender,
    BlendRecommender,
    BPRRecommender,
    CategoryAffinityRecommender,
    CoPurchaseRecommender,
    EASERecommender,
    ItemKNNRecommender,
    LatentClassRecommender,
    PopularityRecommender,
    Recommender,
    RepeatPurchaseRecommender,
    RerankRecommender,
    TrendingRecommender,
)
from models.recommenders.repeat_cycle import RepeatCycleRecommender, RepeatFrequencyRecommender

GROUP_SIZE = 12  # customers per group
ITEMS_PER_GROUP = 8


def checkerboard() -> tuple[Interactions, sp.csr_matrix]:
    """Customers 0..11 buy items 0..7, customers 12..23 buy items 8..15; each skips a few."""
    rng = np.random.default_rng(0)
    rows, cols = [], []
    for customer in range(2 * GROUP_SIZE):
        group = customer // GROUP_SIZE
        items = group * ITEMS_PER_GROUP + rng.choice(ITEMS_PER_GROUP, size=4, replace=False)
        rows += [customer] * len(items)
        cols += list(items)
    matrix = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, cols)),
        shape=(2 * GROUP_SIZE, 2 * ITEMS_PER_GROUP),
    )
    customer_ids = np.array([f"c{i:02d}" for i in range(matrix.shape[0])])
    item_ids = np.array([f"i{j:02d}" for j in range(matrix.shape[1])])
    # Each customer's purchases form one order, so co-purchase counts = X^T X.
    binary = (matrix > 0).astype(np.float32)
    co_purchase = sp.csr_matrix(binary.T @ binary)
    return Interactions(matrix, customer_ids, item_ids), co_purchase


def _group_of_item(item: int) -> int:
    return item // ITEMS_PER_GROUP


MODELS: dict[str, Callable[[], Recommender]] = {
    "popularity": PopularityRecommender,
    "trending": TrendingRecommender,
    "repeat_purchase": lambda: RepeatPurchaseRecommender(popularity_weight=0.1),
    "item_knn_cosine": lambda: ItemKNNRecommender("cosine", neighbours=20),
    "item_knn_bm25": lambda: ItemKNNRecommender("bm25", neighbours=20),
    "als": lambda: ALSRecommender(factors=2, regularization=0.1, iterations=15, alpha=10.0),
    "bpr": lambda: BPRRecommender(factors=8, learning_rate=0.01, iterations=1000),
    "co_purchase": lambda: CoPurchaseRecommender(min_orders=1),
    "ease": lambda: EASERecommender(l2=10.0),
    "category_affinity": lambda: CategoryAffinityRecommender(smoothing=0.1),
    "latent_class_item": lambda: LatentClassRecommender(n_classes=2, smoothing=0.1),
    "latent_class_category": lambda: LatentClassRecommender(
        n_classes=2, level="category", smoothing=0.1
    ),
    "latent_class_category_attributes": lambda: LatentClassRecommender(
        n_classes=2, level="category", smoothing=0.1, use_customer_attributes=True
    ),
    "blend": lambda: BlendRecommender(
        [ItemKNNRecommender("cosine", neighbours=20), TrendingRecommender()], [1.0, 0.1]
    ),
}


def _fitted_reranker(interactions: Interactions, co_purchase: sp.csr_matrix) -> Recommender:
    """A re-ranker over item kNN and popularity: members fitted on every purchase but one
    random purchase per customer, the classifier trained to find that held-out purchase."""
    matrix = interactions.matrix.tocsr()
    rng = np.random.default_rng(0)
    held_out = np.array([rng.choice(matrix[row].indices) for row in range(matrix.shape[0])])
    rows = np.arange(matrix.shape[0])
    labels = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, held_out)), matrix.shape)
    history = Interactions(
        sp.csr_matrix(matrix - matrix.multiply(labels)),
        interactions.customer_ids,
        interactions.item_ids,
    )
    members = [
        ItemKNNRecommender("cosine", neighbours=20).fit(history, co_purchase),
        PopularityRecommender().fit(history, co_purchase),
    ]
    model = RerankRecommender(
        members, ["knn", "popularity"], exclude_seen=True, max_iter=30, min_samples_leaf=5
    )
    rates = np.zeros(interactions.n_items, dtype=np.float32)
    return model.fit(history, labels=labels, repeat_rates=rates)


def _timed(interactions: Interactions) -> Interactions:
    """The checkerboard with timing: each customer bought their items in one order,
    `customer + 1` days before `as_of`."""
    matrix = interactions.matrix.tocoo()
    timing = pair_timing(
        matrix.row, matrix.col, matrix.row, matrix.row + 1.0, interactions.matrix.shape
    )
    return Interactions(
        interactions.matrix, interactions.customer_ids, interactions.item_ids, timing
    )


def _fitted_repeat_cycle(interactions: Interactions, co_purchase: sp.csr_matrix) -> Recommender:
    """The time-aware re-purchase model on the timed checkerboard."""
    model = RepeatCycleRecommender(shape=2.0, next_order_due=True)
    return model.fit(_timed(interactions), co_purchase)


def _fitted_repeat_frequency(interactions: Interactions, co_purchase: sp.csr_matrix) -> Recommender:
    """The decayed own-order frequency on the timed checkerboard."""
    return RepeatFrequencyRecommender(half_life_orders=10.0).fit(_timed(interactions), co_purchase)


FITTED_BY_HAND: dict[str, Callable[[Interactions, sp.csr_matrix], Recommender]] = {
    "rerank": _fitted_reranker,
    "repeat_cycle": _fitted_repeat_cycle,
    "repeat_frequency": _fitted_repeat_frequency,
}
"""Models whose `fit` needs more than the checkerboard (the re-ranker learns from a later
window, the re-purchase cycle from purchase times): fitted here, then held to the same
contract."""
LEARNS_STRUCTURE = {"item_knn_cosine", "item_knn_bm25", "als", "bpr", "co_purchase", "ease"}
LEARNS_STRUCTURE |= {"blend", "category_affinity", "latent_class_item", "latent_class_category"}
LEARNS_STRUCTURE |= {"latent_class_category_attributes"}
# The re-ranker is not held to the group test here: 24 held-out purchases are too few for its
# classifier; tests/models/test_recommend_rerank.py checks it on 200 customers.
CATEGORIES = np.array(["left"] * ITEMS_PER_GROUP + ["right"] * ITEMS_PER_GROUP)
ATTRIBUTES = CustomerAttributes(
    names=("segment",),
    values=("a", "b"),
    offsets=np.array([0, 2]),
    codes=(np.arange(2 * GROUP_SIZE) // GROUP_SIZE).reshape(-1, 1).astype(np.int32),
)
"""Every model is fitted with a customer attribute that follows the group (most ignore it)."""


@pytest.fixture(scope="module")
def data() -> tuple[Interactions, sp.csr_matrix]:
    return checkerboard()


@pytest.fixture(scope="module", params=sorted(MODELS) + sorted(FITTED_BY_HAND))
def fitted(request: pytest.FixtureRequest, data) -> tuple[str, Recommender]:
    interactions, co_purchase = data
    if request.param in FITTED_BY_HAND:
        return request.param, FITTED_BY_HAND[request.param](interactions, co_purchase)
    model = MODELS[request.param]().fit(
        interactions, co_purchase, item_categories=CATEGORIES, customer_attributes=ATTRIBUTES
    )
    return request.param, model


def _all_rows(interactions: Interactions) -> np.ndarray:
    return np.arange(interactions.n_customers)


def test_recommendations_stay_in_the_customer_group(fitted, data) -> None:
    name, model = fitted
    interactions, _ = data
    rows = _all_rows(interactions)
    items, scores = model.recommend(rows, interactions.matrix, k=2, exclude=interactions.matrix)
    assert items.shape == (len(rows), 2) and scores.shape == (len(rows), 2)
    bought = interactions.matrix.toarray() > 0
    # Bought items are never returned when excluded; scores are sorted best first.
    assert not bought[rows[:, None], np.maximum(items, 0)][items >= 0].any()
    assert (np.diff(scores, axis=1) <= 1e-6).all()
    if name in LEARNS_STRUCTURE:
        groups = np.vectorize(_group_of_item)(items)
        assert (groups == (rows // GROUP_SIZE)[:, None]).all(), f"{name} crossed groups"
    elif not model.personalised:
        # A baseline gives everyone the same order of the items they have not bought.
        full, _ = model.recommend(rows, interactions.matrix, k=interactions.n_items)
        assert (full == full[0]).all()


def test_repeat_purchase_puts_own_history_first_without_exclusion(data) -> None:
    interactions, co_purchase = data
    model = MODELS["repeat_purchase"]().fit(interactions, co_purchase)
    items, _ = model.recommend(_all_rows(interactions), interactions.matrix, k=4)
    bought = interactions.matrix.toarray() > 0
    assert bought[np.arange(interactions.n_customers)[:, None], items].all()


def test_similar_items_stay_in_the_item_group(fitted, data) -> None:
    name, model = fitted
    interactions, _ = data
    item_rows = np.arange(interactions.n_items)
    similar, scores = model.similar_items(item_rows, k=3)
    assert similar.shape == (interactions.n_items, 3)
    assert not (similar == item_rows[:, None]).any(), "an item is not similar to itself"
    if model.knows_similar_items and name in LEARNS_STRUCTURE:
        groups = np.vectorize(_group_of_item)(similar)
        assert (groups == (item_rows // ITEMS_PER_GROUP)[:, None]).all()


def test_anonymous_basket_gets_items_of_its_group(fitted, data) -> None:
    name, model = fitted
    interactions, _ = data
    basket = sp.csr_matrix(
        (np.ones(3, dtype=np.float32), ([0, 0, 0], ITEMS_PER_GROUP + np.arange(3))),
        shape=(1, interactions.n_items),
    )
    items, _ = model.recommend(np.array([-1]), basket, k=2, exclude=basket)
    assert not set(items[0]) & set(ITEMS_PER_GROUP + np.arange(3))
    if name in LEARNS_STRUCTURE:
        assert all(_group_of_item(i) == 1 for i in items[0])


def test_batch_equals_one_by_one(fitted, data) -> None:
    _, model = fitted
    interactions, _ = data
    rows = _all_rows(interactions)
    batch_items, batch_scores = model.recommend(rows, interactions.matrix, k=4)
    for row in rows[::5]:
        single_items, single_scores = model.recommend(
            np.array([row]), interactions.matrix[[row]], k=4
        )
        np.testing.assert_array_equal(single_items[0], batch_items[row])
        np.testing.assert_allclose(single_scores[0], batch_scores[row], rtol=1e-5)


def test_save_load_round_trip_gives_identical_answers(fitted, data, tmp_path: Path) -> None:
    _, model = fitted
    interactions, _ = data
    model.save(tmp_path / "model")
    loaded = Recommender.load(tmp_path / "model")
    assert type(loaded) is type(model)
    rows = _all_rows(interactions)
    before = model.recommend(rows, interactions.matrix, k=5, exclude=interactions.matrix)
    after = loaded.recommend(rows, interactions.matrix, k=5, exclude=interactions.matrix)
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_array_equal(before[1], after[1])
    np.testing.assert_array_equal(
        model.similar_items(np.arange(4), 3)[0], loaded.similar_items(np.arange(4), 3)[0]
    )


def test_short_catalog_pads_with_minus_one(fitted, data) -> None:
    _, model = fitted
    interactions, _ = data
    exclude = np.ones((1, interactions.n_items), dtype=bool)
    exclude[0, :2] = False
    items, scores = model.recommend(np.array([0]), interactions.matrix[[0]], k=4, exclude=exclude)
    assert sorted(items[0, :2]) == [0, 1]
    assert (items[0, 2:] == -1).all() and np.isneginf(scores[0, 2:]).all()


def test_wrong_user_items_shape_is_refused(fitted, data) -> None:
    _, model = fitted
    interactions, _ = data
    with pytest.raises(ValueError, match="user_items"):
        model.recommend(np.array([0, 1]), interactions.matrix[[0]], k=3)


def test_latent_classes_recover_the_two_groups(data) -> None:
    interactions, co_purchase = data
    model = LatentClassRecommender(n_classes=2, smoothing=0.1).fit(interactions, co_purchase)
    posterior = model.posterior(interactions.matrix)
    classes = posterior.argmax(axis=1)
    assert (posterior.max(axis=1) > 0.99).all()
    # The two groups of customers land in different classes, each group in one.
    assert len(set(classes[:GROUP_SIZE])) == 1 and len(set(classes[GROUP_SIZE:])) == 1
    assert classes[0] != classes[-1]


def test_category_level_latent_classes_need_categories(data) -> None:
    interactions, co_purchase = data
    model = LatentClassRecommender(n_classes=2, level="category")
    with pytest.raises(ValueError, match="two item categories"):
        model.fit(interactions, co_purchase, item_categories=np.full(interactions.n_items, "x"))


def _with_other_group(interactions: Interactions, row: int) -> sp.csr_matrix:
    """Customer `row`'s history plus, at triple weight, four items of the other group (as if
    bought since the fit): the updated row `updated_scores` reads."""
    other = 1 - row // GROUP_SIZE
    added = other * ITEMS_PER_GROUP + np.arange(4)
    bump = sp.csr_matrix(
        (np.full(4, 3.0, dtype=np.float32), (np.zeros(4, dtype=np.int64), added)),
        shape=(1, interactions.n_items),
    )
    return sp.csr_matrix(interactions.matrix[[row]] + bump)


def test_updated_row_moves_scores_towards_what_was_added(fitted, data) -> None:
    """`updated_scores`: a customer whose row gained items of the other group since the fit
    is scored from that row; a model that learns structure ranks the other group's items not
    in the row higher against the own group's than it did before."""
    name, model = fitted
    interactions, _ = data
    rows = np.array([0, GROUP_SIZE])
    for row in rows:
        updated = _with_other_group(interactions, int(row))
        before = model.scores(np.array([row]), interactions.matrix[[row]])[0]
        after = model.updated_scores(np.array([row]), updated)[0]
        assert after.shape == (interactions.n_items,) and np.isfinite(after).all()
        if name not in LEARNS_STRUCTURE:
            continue
        unseen = updated.toarray()[0] == 0
        other = (np.arange(interactions.n_items) // ITEMS_PER_GROUP) != int(row) // GROUP_SIZE
        margins = [
            float(s[unseen & other].max() - s[unseen & ~other].max()) / float(np.abs(s).max())
            for s in (before, after)
        ]
        assert margins[1] > margins[0], f"{name} ignored the updated row"
    with pytest.raises(ValueError, match="user_items"):
        model.updated_scores(np.array([0, 1]), interactions.matrix[[0]])


def test_unchanged_row_scores_as_before_without_per_customer_state(fitted, data) -> None:
    """Models that keep nothing per customer score an unchanged row exactly as `scores`."""
    name, model = fitted
    interactions, _ = data
    if name in {"als", "bpr"}:
        return  # factor vectors are re-solved (tests/models/test_fold_in.py)
    rows = _all_rows(interactions)[::5]
    np.testing.assert_array_equal(
        model.updated_scores(rows, interactions.matrix[rows]),
        model.scores(rows, interactions.matrix[rows]),
    )
