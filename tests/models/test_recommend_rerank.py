"""The learned re-ranker on the checkerboard: trained on held-out purchases, it keeps the
group structure, survives a save/load round trip and gives the same answer batched."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from features.interactions import Interactions
from models.recommenders import (
    ItemKNNRecommender,
    PopularityRecommender,
    Recommender,
    RerankRecommender,
)

GROUP_SIZE = 100
ITEMS_PER_GROUP = 8


def _held_out_checkerboard() -> tuple[Interactions, sp.csr_matrix, sp.csr_matrix]:
    """Two groups of 100 customers, each buying 5 of its group's 8 items; one purchase per
    customer is held out as the label, the other four are the history."""
    rng = np.random.default_rng(1)
    history = np.zeros((2 * GROUP_SIZE, 2 * ITEMS_PER_GROUP), dtype=np.float32)
    labels = np.zeros_like(history)
    for customer in range(2 * GROUP_SIZE):
        group = customer // GROUP_SIZE
        bought = group * ITEMS_PER_GROUP + rng.choice(ITEMS_PER_GROUP, size=5, replace=False)
        history[customer, bought[1:]] = 1.0
        labels[customer, bought[0]] = 1.0
    customers = np.array([f"c{i:03d}" for i in range(history.shape[0])])
    items = np.array([f"i{j:02d}" for j in range(history.shape[1])])
    matrix = sp.csr_matrix(history)
    co_purchase = sp.csr_matrix(matrix.T @ matrix)
    return Interactions(matrix, customers, items), co_purchase, sp.csr_matrix(labels)


@pytest.fixture(scope="module")
def trained() -> tuple[RerankRecommender, Interactions]:
    history, co_purchase, labels = _held_out_checkerboard()
    members = [
        ItemKNNRecommender("cosine", neighbours=20).fit(history, co_purchase),
        PopularityRecommender().fit(history, co_purchase),
    ]
    model = RerankRecommender(
        members,
        ["knn", "popularity"],
        candidates=8,
        exclude_seen=True,
        min_samples_leaf=20,
        max_iter=30,
    )
    model.fit(
        history,
        labels=sp.csr_matrix(labels),
        repeat_rates=np.zeros(history.n_items, dtype=np.float32),
    )
    return model, history


def test_recommendations_stay_in_the_group(trained) -> None:
    model, history = trained
    rows = np.arange(history.n_customers)
    items, _ = model.recommend(rows, history.matrix, k=2, exclude=history.matrix)
    groups = items // ITEMS_PER_GROUP
    assert (groups == (rows // GROUP_SIZE)[:, None]).all()


def test_round_trip_and_batch(trained, tmp_path: Path) -> None:
    model, history = trained
    rows = np.arange(history.n_customers)
    before = model.recommend(rows, history.matrix, k=4)
    model.save(tmp_path / "rerank")
    loaded = Recommender.load(tmp_path / "rerank")
    after = loaded.recommend(rows, history.matrix, k=4)
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_allclose(before[1], after[1])
    single = model.recommend(rows[3:4], history.matrix[3:4], k=4)
    np.testing.assert_array_equal(single[0][0], before[0][3])


def test_fit_needs_labels_or_a_trained_classifier(trained) -> None:
    model, history = trained
    rates = np.zeros(history.n_items, dtype=np.float32)
    with pytest.raises(ValueError, match="later time window"):
        RerankRecommender(model.members, model.member_names).fit(history, repeat_rates=rates)
    with pytest.raises(ValueError, match="repeat-purchase rate"):
        RerankRecommender(model.members, classifier=model.classifier_).fit(history)


def test_a_trained_classifier_is_reused_as_it_is(trained) -> None:
    model, history = trained
    rates = np.zeros(history.n_items, dtype=np.float32)
    reused = RerankRecommender(
        model.members,
        model.member_names,
        candidates=8,
        exclude_seen=True,
        classifier=model.classifier_,
    ).fit(history, repeat_rates=rates)
    assert reused.classifier_ is model.classifier_
    rows = np.arange(history.n_customers)
    np.testing.assert_array_equal(
        reused.recommend(rows, history.matrix, k=4)[0],
        model.recommend(rows, history.matrix, k=4)[0],
    )
