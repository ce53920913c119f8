"""The server's recommender over a real bundle: precomputed lists, new customers, and items
posted as unavailable since training (hidden exactly as the bundle's own availability rule
would hide them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.loading import load_shop
from models.recommenders.bundle import RecommenderBundle, fit_recommender_bundle
from serving.mlflow_source import BundleRecommender
from serving.model_store import RecommendationList

AS_OF = pd.Timestamp("2025-12-01", tz="UTC")
DEFAULT = "non-repeatable"


@pytest.fixture(scope="module")
def bundle(sample_shop_dir: Path) -> RecommenderBundle:
    shop = load_shop(sample_shop_dir, as_of=pd.Timestamp("2026-01-01", tz="UTC")).shop
    return fit_recommender_bundle(shop.before(AS_OF), AS_OF, seed=0, time_budget_s=4.0)


def _with_unavailable(
    bundle: RecommenderBundle, items: frozenset[str], directory: Path
) -> RecommenderBundle:
    """The same bundle, saved and loaded with `items` marked unavailable in its catalog: the
    bundle's own rule is the reference answer."""
    bundle.save(directory)
    with np.load(directory / "bundle.npz", allow_pickle=False) as stored:
        arrays = {name: stored[name] for name in stored.files}
    arrays["available"] = arrays["available"] & ~np.isin(arrays["item_ids"], sorted(items))
    np.savez(directory / "bundle.npz", **arrays)  # type: ignore[arg-type]
    return RecommenderBundle.load(directory)


def _same(answer: RecommendationList, reference: RecommendationList) -> None:
    assert answer.item_ids == reference.item_ids
    np.testing.assert_allclose(answer.scores, reference.scores, rtol=1e-6)
    assert (answer.strategy, answer.note) == (reference.strategy, reference.note)


def test_hidden_items_are_hidden_as_the_bundles_own_rule_would(
    bundle: RecommenderBundle, tmp_path: Path
) -> None:
    customers = [str(c) for c in bundle.customer_ids[:40]]
    # Hide what these customers would be shown first, so every answer loses items.
    shown = BundleRecommender(bundle)
    top = {shown.recommend_for(c, 3, None, DEFAULT, []).item_ids[0] for c in customers}
    basket = [str(bundle.item_ids[0]), str(bundle.item_ids[1])]
    top |= set(shown.cross_sell(basket, None, 2).item_ids)
    top |= set(shown.similar(basket[0], 2).item_ids)
    top |= set(shown.recommend_for("someone-new", 2, None, DEFAULT, []).item_ids)
    hidden = frozenset(top) | {"not-in-this-catalog"}
    reference = BundleRecommender(_with_unavailable(bundle, hidden, tmp_path / "ref"))
    served = BundleRecommender(bundle, precompute_k=10, hidden_items=lambda: hidden)
    assert served.precomputed is not None
    served.precomputed._fill()  # as the background thread does after loading

    for k in (1, 5, 10, 20):  # 20: deeper than the precomputed lists
        for customer_id in [*customers, "someone-new"]:
            for exclude in (DEFAULT, "all", "none"):
                _same(
                    served.recommend_for(customer_id, k, None, exclude, []),
                    reference.recommend_for(customer_id, k, None, exclude, []),
                )
        _same(served.cross_sell(basket, None, k), reference.cross_sell(basket, None, k))
        _same(
            served.cross_sell(basket, customers[0], k),
            reference.cross_sell(basket, customers[0], k),
        )
        _same(served.similar(basket[0], k), reference.similar(basket[0], k))
    for answer in (
        served.recommend_for(customers[0], 10, None, DEFAULT, []),
        served.cross_sell(basket, None, 10),
        served.similar(basket[0], 10),
    ):
        assert not hidden & set(answer.item_ids) and len(answer.item_ids) == 10


def test_without_hidden_items_answers_are_the_bundles(bundle: RecommenderBundle) -> None:
    served = BundleRecommender(bundle, precompute_k=10)
    assert served.precomputed is not None
    served.precomputed._fill()
    for customer_id in [str(c) for c in bundle.customer_ids[:20]]:
        _same(
            served.recommend_for(customer_id, 10, None, DEFAULT, []),
            BundleRecommender._convert(bundle.recommend_for(customer_id, k=10)),
        )


def test_known_customer_before_their_list_is_precomputed_gets_their_own_list(
    bundle: RecommenderBundle,
) -> None:
    """Until the background fill reaches a customer, they are scored live; the list every new
    customer shares is never one known customer's personal list."""
    served = BundleRecommender(bundle, precompute_k=10)  # nothing filled yet
    known = str(bundle.customer_ids[0])
    own = served.recommend_for(known, 5, None, DEFAULT, [])
    _same(own, BundleRecommender._convert(bundle.recommend_for(known, k=5)))
    assert own.strategy != "trending"
    new = served.recommend_for("someone-new", 5, None, DEFAULT, [])
    assert (new.strategy, new.note) == ("trending", "new customer")
    _same(new, BundleRecommender._convert(bundle.recommend_for("someone-new", k=5)))


def test_items_trained_unavailable_come_back_when_posted_available(
    bundle: RecommenderBundle, tmp_path: Path
) -> None:
    """A restock: the model was trained with some top items unavailable; once they are posted
    `available: true`, answers are exactly those of the bundle with them available, scored live
    at first and then from new precomputed lists (the old ones never considered those items)."""
    customers = [str(c) for c in bundle.customer_ids[:25]]
    first = BundleRecommender(bundle)
    top = {first.recommend_for(c, 2, None, DEFAULT, []).item_ids[0] for c in customers}
    basket = [str(bundle.item_ids[0]), str(bundle.item_ids[1])]
    top |= set(first.cross_sell(basket, None, 2).item_ids)
    trained_without = _with_unavailable(bundle, frozenset(top), tmp_path / "without")
    restocked = frozenset(sorted(top)[: len(top) // 2])
    still_out = frozenset(top) - restocked
    posted = {"shown": frozenset[str]()}
    served = BundleRecommender(
        trained_without, precompute_k=10, shown_items=lambda: posted["shown"]
    )
    assert served.precomputed is not None
    served.precomputed._fill()

    def answers(recommender: BundleRecommender) -> list[RecommendationList]:
        out = [recommender.recommend_for(c, 5, None, DEFAULT, []) for c in customers]
        out.append(recommender.recommend_for("someone-new", 5, None, DEFAULT, []))
        out.append(recommender.cross_sell(basket, None, 5))
        out.append(recommender.similar(basket[0], 5))
        return out

    for answer, reference in zip(answers(served), answers(BundleRecommender(trained_without)),
                                 strict=True):  # fmt: skip
        _same(answer, reference)  # nothing posted: the trained catalog
    posted["shown"] = restocked | {"not-in-this-catalog"}
    reference = answers(BundleRecommender(_with_unavailable(bundle, still_out, tmp_path / "r")))
    served_now = answers(served)  # live: the new lists are not filled yet
    for answer, expected in zip(served_now, reference, strict=True):
        _same(answer, expected)
    assert restocked & {item for answer in served_now for item in answer.item_ids}
    assert not still_out & {item for answer in served_now for item in answer.item_ids}
    live_bundle, lists = served._current()
    assert lists is not None and lists is not served.precomputed and lists.filled == 0
    lists._fill()  # as the background thread does
    for answer, expected in zip(answers(served), reference, strict=True):
        _same(answer, expected)
    assert served.status()["precomputed"]["done"] and served.status()["restocked_items"] == len(
        restocked
    )
    posted["shown"] = posted["shown"] | {str(bundle.item_ids[0])}  # an item sold all along
    now_bundle, now_lists = served._current()
    assert now_bundle is live_bundle and now_lists is lists  # nothing rebuilt
    posted["shown"] = frozenset()
    now_bundle, now_lists = served._current()
    assert now_bundle is trained_without and now_lists is served.precomputed


def test_fresh_answers_are_scored_once_per_question_and_events(bundle: RecommenderBundle) -> None:
    """A customer with events since `as_of` asking again gets the answer scored the first
    time (any k up to the precomputed depth: the first k of one list); another event, another
    question, a deeper k or items hidden since are answered anew, each exactly as the bundle
    (and the availability rule) would answer it."""
    hidden: dict[str, frozenset[str]] = {"now": frozenset()}
    served = BundleRecommender(bundle, precompute_k=10, hidden_items=lambda: hidden["now"])
    customer, items = str(bundle.customer_ids[3]), [str(i) for i in bundle.item_ids[:4]]
    views = [(items[2], "view")]

    def live(k: int, bought: list[str], exclude: str = DEFAULT) -> RecommendationList:
        return BundleRecommender._convert(
            bundle.recommend_for(
                customer, k=k, exclude_purchased=exclude, extra_purchased=bought,  # type: ignore[arg-type]
                extra_interactions=views,
            )
        )  # fmt: skip

    first = served.recommend_for(customer, 10, None, DEFAULT, items[:1], views)
    _same(first, live(10, items[:1]))
    again = served.recommend_for(customer, 10, None, DEFAULT, items[:1], views)
    assert again is first
    assert served.status()["fresh_answers"] == {"remembered": 1, "hits": 1, "misses": 1}
    _same(served.recommend_for(customer, 10, None, DEFAULT, items[:2], views), live(10, items[:2]))
    _same(
        served.recommend_for(customer, 10, None, "all", items[:1], views),
        live(10, items[:1], "all"),
    )
    # every k up to the precomputed depth (10) is the first k of the one scoring at that depth
    _same(served.recommend_for(customer, 4, None, DEFAULT, items[:1], views), live(4, items[:1]))
    assert served.status()["fresh_answers"] == {"remembered": 3, "hits": 2, "misses": 3}
    _same(served.recommend_for(customer, 15, None, DEFAULT, items[:1], views), live(15, items[:1]))
    assert served.status()["fresh_answers"]["misses"] == 4
    hidden["now"] = frozenset(first.item_ids[:2])  # posted unavailable since
    after = served.recommend_for(customer, 10, None, DEFAULT, items[:1], views)
    _same(after, BundleRecommender._shown(live(12, items[:1]), hidden["now"], 10))
    assert not hidden["now"] & set(after.item_ids) and len(after.item_ids) == 10


def test_left_out_when_bought_follows_the_rule(bundle: RecommenderBundle) -> None:
    """The items a rule drops from a customer's answers once bought: none for `none`, every
    known one for `all`, the non-repeatable ones for the default; unknown ids never."""
    served = BundleRecommender(bundle)
    items = [str(i) for i in bundle.item_ids]
    repeatable = bundle.rules.repeatable
    bought = [*items[:30], "not-in-this-catalog"]
    assert served.left_out_when_bought(bought, "none") == frozenset()
    assert served.left_out_when_bought(bought, "all") == frozenset(items[:30])
    kept = {item for item, again in zip(items[:30], repeatable[:30], strict=True) if again}
    assert served.left_out_when_bought(bought, DEFAULT) == frozenset(items[:30]) - kept
