"""Ranking metrics against hand-computed values (the peer definitions)."""

from __future__ import annotations

import math

import pytest

from models.recommenders.evaluation import catalog_coverage, ranking_metrics


def test_one_customer_by_hand() -> None:
    # Hits at ranks 1 and 3 of 3 shown; 4 relevant items; K = 3.
    metrics = ranking_metrics({"ann": ["a", "x", "b"]}, {"ann": {"a", "b", "c", "d"}}, k=3)
    assert metrics["precision"] == pytest.approx(2 / 3)
    assert metrics["recall"] == pytest.approx(2 / 4)
    assert metrics["hit_rate"] == 1.0
    dcg = 1 / math.log2(2) + 1 / math.log2(4)
    idcg = 1 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)  # min(4, 3) ideal hits
    assert metrics["ndcg"] == pytest.approx(dcg / idcg)
    assert metrics["map"] == pytest.approx((1 / 1 + 2 / 3) / 3)


def test_average_over_customers_and_missing_lists() -> None:
    recommended = {"ann": ["a"], "bob": ["z"]}
    relevant = {"ann": {"a"}, "bob": {"b"}, "cid": {"c"}, "dan": set()}
    metrics = ranking_metrics(recommended, relevant, k=1)
    # dan has nothing relevant: not evaluated; cid has no list: counts as a miss.
    assert metrics["customers"] == 3
    assert metrics["ndcg"] == pytest.approx(1 / 3)
    assert metrics["hit_rate"] == pytest.approx(1 / 3)
    assert metrics["precision"] == pytest.approx(1 / 3)


def test_only_first_k_count() -> None:
    metrics = ranking_metrics({"ann": ["x", "y", "a"]}, {"ann": {"a"}}, k=2)
    assert metrics["recall"] == 0.0 and metrics["ndcg"] == 0.0


def test_matches_the_peer_script(shared_data) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "recs_peers", shared_data.parent / "peers" / "recs_peers.py"
    )
    peers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(peers)
    recommended = {c: [f"i{(c * 7 + j) % 13}" for j in range(10)] for c in range(40)}
    relevant = {c: {f"i{(c * 3 + j) % 13}" for j in range(1 + c % 5)} for c in range(40)}
    ours = ranking_metrics(recommended, relevant, k=10)
    theirs = peers.metrics(recommended, relevant, 10)
    for name, key in (("ndcg", "ndcg@10"), ("recall", "recall@10"), ("map", "map@10")):
        assert round(ours[name], 4) == theirs[key]
    assert round(ours["precision"], 4) == theirs["precision@10"]
    assert round(ours["hit_rate"], 4) == theirs["hit@10"]


def test_coverage_and_empty_input() -> None:
    assert catalog_coverage({"a": ["x", "y"], "b": ["y"]}, 4) == 0.5
    with pytest.raises(ValueError):
        ranking_metrics({}, {"ann": set()})


def test_blend_guard_rejects_noise_and_accepts_a_consistent_gain() -> None:
    import numpy as np

    from models.recommenders.greedy_blend import significant

    rng = np.random.default_rng(0)
    halves = [np.arange(400) % 2 == 0, np.arange(400) % 2 == 1]
    noise = rng.normal(0.0, 0.2, size=400)
    noise -= noise.mean() - 0.001  # a tiny mean gain, far inside one standard error
    assert not significant(noise, halves)
    consistent = rng.normal(0.05, 0.2, size=400)
    assert significant(consistent, halves)
    one_sided = np.where(halves[0], 0.2, -0.01)  # large on one half, a loss on the other
    assert not significant(one_sided, halves)


def test_blend_trials_equal_the_blends_scored_one_by_one(sample_shop_dir) -> None:
    """The greedy blend's batched trials (the members' total built once per candidate) give
    exactly the per-customer NDCG of each blend scored from scratch, on both protocols."""
    import numpy as np

    from features.interactions import catalog_item_ids
    from features.loading import load_shop
    from models.recommenders.candidates import CandidateSpec
    from models.recommenders.greedy_blend import BLEND_WEIGHTS, _BlendScorer
    from models.recommenders.validation import ValidationData

    shop = load_shop(sample_shop_dir).shop
    as_of = shop.purchases["ordered_at"].max().ceil("D")
    data = ValidationData(shop, as_of, 60.0, catalog_item_ids(shop), 5_000, 0)
    rng = np.random.default_rng(1)
    shape = (len(data.eval_rows), len(data.item_ids))
    specs = [CandidateSpec("popularity", (), None, "baseline")] + [
        CandidateSpec("repeat_purchase", (("popularity_weight", p),), None) for p in (1.0, 3.0)
    ]
    cached = {s.name: rng.random(shape, dtype=np.float32) for s in specs}
    for protocol in ("repeat", "discovery"):
        scorer = _BlendScorer(data, cached, protocol)
        members, weights = specs[:2], [1.0, 0.3]
        trials = scorer.trials(members, weights, specs[2])
        for weight, trial in zip(BLEND_WEIGHTS, trials, strict=True):
            alone = scorer.per_customer(members + [specs[2]], weights + [weight])
            np.testing.assert_array_equal(trial, alone)
        assert len({float(t.mean()) for t in trials}) > 1  # the weights do change the lists
