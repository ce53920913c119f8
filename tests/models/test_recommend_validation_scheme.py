"""Selection holds on a thin, unrepresentative validation window: it widens the window (or
holds out each customer's last order) until it has enough validation customers, and a shared
list starts a blend only when it beats the best personal candidate significantly.

The shop: 240 customers, each with a strong taste (one of 8 item clusters, 12 items each,
clusters as popular as 1/rank), ordering every 7-13 days until they stop, between days 60 and
140 of 200. Only 10 customers still order in the last window (W = 50 days), and they are
unlike the rest: no taste before it (uniform draws over the catalogue), the shop's best sellers
in it. On that window alone a shared list wins (issue #21: "a non-personal list won there");
on the history before it, the customers' own tastes do.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.interactions import catalog_item_ids
from features.shop import Shop
from models.recommenders.candidates import CandidateSpec, spec
from models.recommenders.greedy_blend import greedy_blend
from models.recommenders.selection import SelectionSettings, select_models
from models.recommenders.validation import (
    ValidationData,
    rounded,
    score_block,
    validation_window_days,
)
from models.recommenders.validation_scheme import (
    CUSTOMER_HOLDOUT,
    LAST_WINDOW,
    MIN_VALIDATION_CUSTOMERS,
    WIDENED_WINDOW,
    choose_scheme,
)

START = pd.Timestamp("2025-01-06 10:00", tz="UTC")
DAYS = 200
AS_OF = START + pd.Timedelta(days=DAYS)
CLUSTERS, PER_CLUSTER = 8, 12
LATE = 10
"""Customers who still order in the last window."""
SHOP_SEED = 2


def _feedback() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": pd.Series(dtype=str),
            "created_at": pd.Series(dtype="datetime64[ns, UTC]"),
            "kind": pd.Series(dtype=str),
            "item_id": pd.Series(dtype=str),
            "rating": pd.Series(dtype="Int64"),
        }
    )


def _shop(lines: list[dict], items: int) -> Shop:
    purchases = pd.DataFrame(lines)
    catalogue = pd.DataFrame({"item_id": [f"i{i:02d}" for i in range(items)], "available": True})
    customers = pd.DataFrame({"customer_id": sorted(purchases["customer_id"].unique())})
    return Shop(purchases, _feedback(), catalogue, customers)


def _line(customer: int, order: int, item: int, day: float) -> dict:
    return {
        "order_id": f"c{customer}-{order}",
        "customer_id": f"c{customer:03d}",
        "item_id": f"i{item:02d}",
        "quantity": 1,
        "unit_price": 2.0,
        "ordered_at": START + pd.Timedelta(days=day),
    }


def thin_window_shop(seed: int = SHOP_SEED, customers: int = 240, first_stop: float = 60.0) -> Shop:
    """The module docstring's shop (customers stop between day `first_stop` and 140)."""
    rng = np.random.default_rng(seed)
    shares = 1.0 / np.arange(1, CLUSTERS + 1)
    shares /= shares.sum()
    within = 1.0 / np.arange(1, PER_CLUSTER + 1)
    within /= within.sum()
    best_sellers = np.outer(shares, within).ravel()
    items = CLUSTERS * PER_CLUSTER
    lines = []
    for customer in range(customers):
        late = customer < LATE
        cluster = 0 if late else rng.choice(CLUSTERS, p=shares)
        end = DAYS if late else float(rng.uniform(first_stop, 140))
        day, order = float(rng.uniform(0, 10)), 0
        while day < end:
            if late and day < DAYS - 50:
                picked = rng.choice(items, size=2, replace=False)
            elif late:
                picked = rng.choice(items, size=2, replace=False, p=best_sellers)
            else:
                picked = cluster * PER_CLUSTER + rng.choice(PER_CLUSTER, 2, False, p=within)
            lines += [_line(customer, order, int(item), day) for item in picked]
            order += 1
            day += float(rng.uniform(7, 13))
    return _shop(lines, items)


def test_a_thin_window_with_personal_signal_picks_a_personal_model() -> None:
    """Issue #21's acceptance test. Before the validation schemes, selection judged on the last
    window alone (10 customers) and picked trending_h0.17 (repeat) and trending_h1 (discovery)
    for this shop at this seed and budget."""
    shop = thin_window_shop()
    window = validation_window_days(shop, AS_OF)
    last = choose_scheme(shop, AS_OF, window, 5_000, 0, min_customers=1)
    assert last.name == LAST_WINDOW and last.customers == LATE  # the window is thin
    settings = SelectionSettings(seed=0, time_budget_s=10.0, cross_sell=False)
    result = select_models(shop, AS_OF, settings)
    scheme = result.report["validation_scheme"]
    assert scheme["scheme"] in (WIDENED_WINDOW, CUSTOMER_HOLDOUT), scheme
    assert scheme["customers"] >= MIN_VALIDATION_CUSTOMERS, scheme
    assert result.report["validation_customers"] >= MIN_VALIDATION_CUSTOMERS
    for protocol in ("repeat", "discovery"):
        winner = result.winners[protocol]
        assert winner.members[0].personalised, (protocol, winner.label)
        entry = result.report[f"{protocol}_winner"]
        assert entry["validation_ndcg"] > entry["baseline_ndcg"], entry


def test_every_window_thin_holds_out_each_customers_last_order() -> None:
    """A shop whose every window is thin (60 customers, some of whom stop before the widest
    window starts): each customer with two or more orders has their last order held out,
    whatever its date, and the history lacks it."""
    shop = thin_window_shop(seed=3, customers=60, first_stop=20.0)
    scheme = choose_scheme(shop, AS_OF, validation_window_days(shop, AS_OF), 5_000, 0)
    assert scheme.name == CUSTOMER_HOLDOUT, scheme.reason
    purchases = shop.purchases
    last_orders = purchases.sort_values("ordered_at").drop_duplicates("customer_id", keep="last")
    assert set(scheme.truth["order_id"]) == set(last_orders["order_id"])
    assert scheme.customers == 60
    assert not scheme.history.purchases["order_id"].isin(scheme.truth["order_id"]).any()
    assert len(scheme.history.purchases) + len(scheme.truth) == len(purchases)
    assert scheme.cut == AS_OF
    assert "last order of each customer held out: 60" in scheme.reason


def _judged(data: ValidationData, specs: list[CandidateSpec]) -> tuple[dict, dict]:
    """Validation score blocks and the report entries `greedy_blend` reads, per candidate."""
    cached, report = {}, {"candidates": {}}
    for candidate in specs:
        matrix = data.matrix(candidate.half_life)
        model = candidate.make().fit(matrix, data.co_purchase, data.item_categories)
        cached[candidate.name] = score_block(model, data, matrix)
        report["candidates"][candidate.name] = {
            "repeat": rounded(data.ndcg(cached[candidate.name], "repeat"))
        }
    return cached, report


@pytest.mark.parametrize(
    ("personal", "both_halves"),
    [
        (spec("repeat_purchase", None, popularity_weight=30.0), False),
        (spec("co_purchase", None, lift_exponent=0.0), True),
    ],
    ids=["within noise", "beaten on both halves"],
)
def test_a_shared_list_starts_the_blend_only_when_it_wins_on_both_halves(
    personal: CandidateSpec, both_halves: bool
) -> None:
    """On the thin last window alone (10 customers), popularity scores above both personal
    candidates: above repeat purchase on one half only (within noise: the personal one starts
    the blend), above co-purchase on both halves (popularity stays)."""
    shop = thin_window_shop(seed=1)
    window = validation_window_days(shop, AS_OF)
    data = ValidationData(shop, AS_OF, window, catalog_item_ids(shop), 5_000, 0)
    popularity = spec("popularity", None, "baseline")
    cached, report = _judged(data, [popularity, personal])
    gain = data.per_customer_ndcg(cached["popularity"], "repeat") - data.per_customer_ndcg(
        cached[personal.name], "repeat"
    )
    assert gain.mean() > 0  # popularity is the best single candidate
    positions = np.fromiter(sorted(data.relevant["repeat"]), dtype=np.int64)
    halves = [np.isin(positions, half) for half in data.halves]
    assert all(gain[half].mean() > 0 for half in halves) == both_halves
    specs = {c.name: c for c in (popularity, personal)}
    winner, why = greedy_blend(data, cached, specs, "repeat", report)
    expected = popularity if both_halves else personal
    assert winner.members[0] == expected, why
    assert why["first_member"] == expected.name
    assert why["best_single"] == "popularity"


def test_an_own_item_model_is_not_personal_for_discovery() -> None:
    """With bought items left out, a model of the customer's own items lists popular items:
    it does not displace a shared list as the personal candidate of discovery."""
    own = spec("repeat_purchase", 1.0, popularity_weight=3.0)
    assert own.personal_for("repeat") and not own.personal_for("discovery")
    assert spec("co_purchase", None, lift_exponent=0.0).personal_for("discovery")
    assert not spec("popularity", None, "baseline").personal_for("repeat")
