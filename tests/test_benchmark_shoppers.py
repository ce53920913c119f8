"""The live benchmark's simulated shoppers follow the sample shop's planted truths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.shoppers import LINES_PER_ORDER, Shopper, ShopTruth, draw_shoppers


def test_interest_is_the_generators_line_chance_and_unsold_items_get_none(
    sample_shop_dir: Path,
) -> None:
    truth = ShopTruth.read(sample_shop_dir)
    assert np.allclose(truth.line_share.sum(axis=1), 1.0)
    items = pd.read_csv(sample_shop_dir / "items.csv", dtype={"item_id": str})
    unsold = items.loc[~items["available"].astype(bool), "item_id"]
    columns = np.searchsorted(truth.item_ids, unsold.to_numpy(dtype=str))
    assert len(columns) and (truth.line_share[:, columns] == 0).all()
    customer, staple = next(iter(truth.staple_of.items()))
    interest = truth.interest(customer)
    assert np.isclose(interest.sum(), 1.0)
    assert interest[staple] >= truth.repeat_rate[staple] / LINES_PER_ORDER
    # Within a category, the cluster's line chances follow the items' planted popularity.
    planted = pd.read_csv(sample_shop_dir / "_truth" / "items.csv", dtype={"item_id": str})
    planted = planted.sort_values("item_id").reset_index(drop=True)
    sold = planted["item_id"].isin(items.loc[items["available"].astype(bool), "item_id"])
    category = planted["category"].iloc[int(np.flatnonzero(sold)[0])]
    members = np.flatnonzero(sold & (planted["category"] == category))
    ratio = truth.line_share[0, members] / planted["popularity"].to_numpy()[members]
    assert np.allclose(ratio, ratio[0])


def test_a_list_of_what_the_shopper_wants_sells_better_than_one_of_what_they_do_not(
    sample_shop_dir: Path,
) -> None:
    truth = ShopTruth.read(sample_shop_dir)
    shoppers = draw_shoppers(truth, 50, seed=1)
    assert len({s.customer_id for s in shoppers}) == 50
    assert not {s.customer_id for s in shoppers} & truth.leavers
    wanted, unwanted = [], []
    for shopper in shoppers:
        order = np.argsort(-shopper.interest, kind="stable")
        best, worst = order[:10].tolist(), order[-10:].tolist()
        wanted.append(_fresh_copy(shopper).react(truth, best).expected_buy)
        unwanted.append(_fresh_copy(shopper).react(truth, worst).expected_buy)
    assert np.mean(wanted) > 0.1 > np.mean(unwanted) * 10


def test_buying_a_pair_item_makes_its_partner_a_need_about_as_often_as_planted(
    sample_shop_dir: Path,
) -> None:
    truth = ShopTruth.read(sample_shop_dir)
    anchor = int(np.flatnonzero(truth.partner_chance == truth.partner_chance.max())[0])
    partner = int(truth.partner[anchor])
    needs = 0
    for seed in range(600):
        shopper = Shopper("C", np.full(len(truth.item_ids), 1e-4), set(), _rng(seed))
        shopper._bought(truth, anchor)
        needs += partner in shopper.needs
        assert anchor in shopper.bought
    assert abs(needs / 600 - truth.partner_chance[anchor]) < 0.07


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _fresh_copy(shopper: Shopper) -> Shopper:
    """The same shopper before any visit, with their own dice."""
    return Shopper(shopper.customer_id, shopper.interest.copy(), set(shopper.bought), _rng(0))
