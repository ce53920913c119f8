"""The next-need weight is chosen on the shop's own validation window: the sample shop, whose
planted partners join their pair's item in the same order, gets a positive weight; the same
shop with those partner lines taken out gets none. The bundle keeps the weight and answers a
customer with a posted purchase with it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.interactions import catalog_item_ids
from features.loading import load_shop
from features.shop import Shop
from models.recommenders import (
    BlendRecommender,
    LatentClassRecommender,
    Recommender,
    RepeatPurchaseRecommender,
)
from models.recommenders.bundle import RecommenderBundle
from models.recommenders.candidates import DEFAULT_CROSS_SELL
from models.recommenders.next_need import (
    NEXT_NEED_WEIGHTS,
    NextNeedCases,
    choose_next_need_weight,
    next_need_cases,
)
from models.recommenders.validation import ValidationData, validation_window_days
from tests.serving.checkerboard_bundle import checkerboard_bundle


def _without_partners(shop: Shop, shop_dir: Path) -> Shop:
    """The shop with every planted partner line that joined its pair's item taken out (per
    order holding both items of a pair, the pair's second item's line)."""
    pairs = pd.read_csv(shop_dir / "_truth" / "complementary_pairs.csv", dtype=str)
    purchases = shop.purchases
    lines = purchases.assign(item_id=purchases["item_id"].astype(str))
    in_order = lines.groupby("order_id")["item_id"].agg(set)
    partner_of = dict(zip(pairs["item_b"], pairs["item_a"], strict=True))
    joined = [
        item in partner_of and partner_of[item] in in_order[order]
        for order, item in zip(lines["order_id"], lines["item_id"], strict=True)
    ]
    assert sum(joined) > 100  # the planted signal is there to take out
    return Shop(purchases.loc[~np.array(joined)], shop.feedback, shop.items, shop.customers)


def _champions(data: ValidationData) -> dict[str, Recommender]:
    """Two kinds of winner as fitted at the cut: latent classes alone (a flat top ten), and
    own items blended with them (what the sample shop's search picks)."""
    matrix = data.matrix(None)
    latent = LatentClassRecommender(n_classes=10, level="category").fit(
        matrix, data.co_purchase, data.item_categories
    )
    own = RepeatPurchaseRecommender().fit(matrix, data.co_purchase)
    return {"latent_class": latent, "blend": BlendRecommender.from_fitted([own, latent], [1, 1])}


@dataclass(frozen=True)
class _Validation:
    """One shop's validation window, its cross-sell model at the cut and its next-need cases."""

    data: ValidationData
    cross_sell: Recommender
    cases: NextNeedCases


@pytest.fixture(scope="module")
def validations(sample_shop_dir: Path) -> dict[str, _Validation]:
    planted = load_shop(sample_shop_dir).shop
    shops = {"planted": planted, "plain": _without_partners(planted, sample_shop_dir)}
    found = {}
    for name, shop in shops.items():
        as_of = shop.purchases["ordered_at"].max().normalize() + pd.Timedelta(days=1)
        items = catalog_item_ids(shop)
        data = ValidationData(shop, as_of, validation_window_days(shop, as_of), items, 5000, 0)
        cross_sell = DEFAULT_CROSS_SELL.make().fit(data.matrix(None), data.co_purchase)
        found[name] = _Validation(data, cross_sell, next_need_cases(data, seed=0))
    return found


def test_cases_are_customers_with_history_and_what_they_bought_after_the_posted_item(
    validations: dict[str, _Validation],
) -> None:
    validation = validations["planted"]
    cases, data = validation.cases, validation.data
    assert len(cases.rows) > 200
    assert len(set(cases.rows.tolist())) == len(cases.rows)  # one case per customer
    assert all(cases.posted[i] not in cases.relevant[i] for i in range(len(cases.rows)))
    window = data.shop.purchases.loc[data.shop.purchases["ordered_at"] >= data.cut]
    bought = window.groupby("customer_id")["item_id"].agg(lambda items: set(items.astype(str)))
    for index in range(0, len(cases.rows), 25):
        customer = str(data.customer_ids[cases.rows[index]])
        items = {str(data.item_ids[c]) for c in cases.relevant[index]}
        assert data.item_ids[cases.posted[index]] in bought[customer]
        assert items <= bought[customer]


@pytest.mark.parametrize("champion", ["latent_class", "blend"])
def test_weight_is_chosen_on_validation_where_a_purchase_says_what_comes_next(
    validations: dict[str, _Validation], champion: str
) -> None:
    chosen = {}
    for name, validation in validations.items():
        data = validation.data
        weight, entry = choose_next_need_weight(
            data,
            validation.cases,
            _champions(data)[champion],
            data.matrix(None).matrix,
            validation.cross_sell,
            "repeat",
            seed=0,
        )
        assert weight in NEXT_NEED_WEIGHTS and entry["weight"] == weight
        assert set(entry["ndcg_by_weight"]) == {f"{w:g}" for w in NEXT_NEED_WEIGHTS}
        chosen[name] = weight
    assert chosen["planted"] >= 0.3, chosen
    assert chosen["plain"] <= 0.05, chosen


def test_too_few_cases_keep_the_champion_alone(validations: dict[str, _Validation]) -> None:
    validation = validations["planted"]
    cases, data = validation.cases, validation.data
    few = NextNeedCases(cases.rows[:5], cases.posted[:5], cases.relevant[:5])
    champion = _champions(data)["latent_class"]
    weight, entry = choose_next_need_weight(
        data, few, champion, data.matrix(None).matrix, validation.cross_sell, "repeat", seed=0
    )
    assert weight == 0.0 and entry["cases"] == 5 and "fewer than" in entry["reason"]


def test_the_bundle_keeps_its_weight_and_answers_fresh_purchases_with_it(tmp_path: Path) -> None:
    """Checkerboard: c06 buys i00..i07; one purchase of i08 brings up its kNN neighbours
    (i09..i15) only with a next-need weight, by default the one stored with the bundle."""
    bundle = checkerboard_bundle()
    bundle.next_need_weights = {"repeat": 1.0, "discovery": 0.0}
    bundle.save(tmp_path / "bundle")
    loaded = RecommenderBundle.load(tmp_path / "bundle")
    assert loaded.next_need_weights == {"repeat": 1.0, "discovery": 0.0}
    right = {f"i{n:02d}" for n in range(9, 16)}

    def fresh(**question: object) -> set[str]:
        answer = loaded.recommend_for("c06", 4, extra_purchased=["i08"], **question)  # type: ignore[arg-type]
        return right & set(answer.item_ids)

    assert len(fresh()) >= 3  # the stored weight of the repeat role
    assert fresh() == fresh(next_need_weight=1.0)
    assert len(fresh(next_need_weight=0.0)) < 3
    assert len(fresh(exclude_purchased="all")) < 3  # discovery's stored weight is 0
    loaded.next_need_weights = {}
    assert len(fresh()) < 3  # a bundle saved without weights: the champion alone
