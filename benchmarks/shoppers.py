"""Simulated shoppers drawn from the sample shop's planted truths: what each one wants, and how
they react to a list of recommendations.

The truths are the generator's own (`DIR/_truth/`, docs/sample-shop.md): a customer's taste
cluster, each cluster's category preferences, each item's share of demand within its category,
its repeat rate, and the planted complementary pairs with their chances. A shopper's
`interest` in an item is the chance that one line of their next order is that item, as the
generator draws lines: a category from the cluster's preferences, then an item by popularity
among the items still sold, the first line replaced by the customer's staple (the last
consumable they bought) with its repeat rate. Seasons are left out (the simulation happens on
one day).

Reactions (the constants below, stated, not fitted to any model's answers): a shown item at
rank r is examined with chance 1 / log2(r + 1); an examined item is clicked with chance
`CLICK_SCALE` x interest (at most `MAX_CLICK`); a clicked item is bought with chance
`BUY_AFTER_CLICK`. Buying an item of a planted pair makes its partner a *need* with the pair's
chance (0.45 from the pair's first item, 0.20 from the second: the generator's chance that the
partner joins the order); a shown need is clicked and bought with `NEED_CLICK` and `NEED_BUY`.
Independently of the list, each visit ends in an order of the shopper's own with chance
`OWN_ORDER_CHANCE` (one line: a need half of the time when there is one, else an item drawn by
interest): the purchases a shop sees that no recommendation caused. A bought item's interest
is multiplied by its repeat rate (a durable is not bought twice).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from features.sample_shop.catalogue import ANCHOR_TO_PARTNER, PARTNER_TO_ANCHOR
from features.sample_shop.simulation import EXTRA_LINES_MEAN

CLICK_SCALE = 4.0
"""Click chance of an examined item per unit of interest (interest 0.05 -> 0.2)."""
MAX_CLICK = 0.8
BUY_AFTER_CLICK = 0.5
NEED_CLICK = 0.8
NEED_BUY = 0.8
OWN_ORDER_CHANCE = 0.25
"""Chance that a visit ends in an order the shopper would have placed anyway."""
LINES_PER_ORDER = 1.0 + EXTRA_LINES_MEAN


@dataclass(frozen=True)
class ShopTruth:
    """The planted truths of one generated shop, as arrays over its item columns."""

    item_ids: np.ndarray
    """str per column, sorted."""
    line_share: np.ndarray
    """clusters x items: chance that a line of a cluster's order is the item (items not sold
    today 0; rows sum to 1)."""
    repeat_rate: np.ndarray
    partner: np.ndarray
    """int per column: the planted partner's column, -1 for none."""
    partner_chance: np.ndarray
    price: np.ndarray
    cluster_of: dict[str, int]
    staple_of: dict[str, int]
    """Customer -> column of the last consumable they bought (customers with one)."""
    bought_before: dict[str, frozenset[int]]
    """Customer -> columns bought in the shop's history."""
    leavers: frozenset[str]

    @classmethod
    def read(cls, shop_dir: Path) -> ShopTruth:
        """Read `shop_dir/_truth/` and the shop's items and purchases (CSV or Parquet)."""
        truth = shop_dir / "_truth"
        items = pd.read_csv(truth / "items.csv", dtype={"item_id": str, "partner": str})
        items = items.sort_values("item_id").reset_index(drop=True)
        ids = items["item_id"].to_numpy(dtype=str)
        column = {item: index for index, item in enumerate(ids)}
        catalog = _table(shop_dir, "items").astype({"item_id": str}).set_index("item_id")
        sold = catalog["available"].reindex(ids).fillna(True).astype(bool).to_numpy()
        price = catalog["price"].reindex(ids).fillna(0.0).to_numpy(dtype=float)
        pairs = pd.read_csv(truth / "complementary_pairs.csv", dtype=str)
        partner = np.full(len(ids), -1, dtype=np.int64)
        chance = np.zeros(len(ids))
        for first, second in zip(pairs["item_a"], pairs["item_b"], strict=True):
            partner[column[first]], partner[column[second]] = column[second], column[first]
            chance[column[first]], chance[column[second]] = ANCHOR_TO_PARTNER, PARTNER_TO_ANCHOR
        customers = pd.read_csv(truth / "customers.csv", dtype={"customer_id": str})
        preferences = pd.read_csv(truth / "taste_clusters.csv")
        repeat_rate = items["repeat_rate"].to_numpy(dtype=float)
        purchases = _table(shop_dir, "purchases")[["customer_id", "item_id", "ordered_at"]]
        purchases = purchases.astype({"customer_id": str, "item_id": str})
        purchases["column"] = purchases["item_id"].map(column)
        return cls(
            item_ids=ids,
            line_share=_line_share(items, preferences, sold),
            repeat_rate=repeat_rate,
            partner=partner,
            partner_chance=chance,
            price=price,
            cluster_of=dict(zip(customers["customer_id"], customers["taste_cluster"], strict=True)),
            staple_of=_staples(purchases, repeat_rate),
            bought_before={
                customer: frozenset(group.tolist())
                for customer, group in purchases.groupby("customer_id")["column"]
            },
            leavers=frozenset(customers.loc[customers["left_at"].notna(), "customer_id"]),
        )

    def interest(self, customer_id: str) -> np.ndarray:
        """Chance per item that one line of the customer's next order is that item."""
        share = self.line_share[self.cluster_of[customer_id]].copy()
        staple = self.staple_of.get(customer_id)
        if staple is None:
            return share
        rebuy = self.repeat_rate[staple] / LINES_PER_ORDER
        share *= 1.0 - rebuy
        share[staple] += rebuy
        return share


def _table(shop_dir: Path, name: str) -> pd.DataFrame:
    """One of the shop's tables, Parquet or CSV."""
    parquet = shop_dir / f"{name}.parquet"
    return pd.read_parquet(parquet) if parquet.exists() else pd.read_csv(shop_dir / f"{name}.csv")


def _line_share(items: pd.DataFrame, preferences: pd.DataFrame, sold: np.ndarray) -> np.ndarray:
    """clusters x items: category preference x the item's share of its category's popularity
    among the items sold today, rows normalised to 1."""
    weights = items["popularity"].to_numpy(dtype=float) * sold
    category = items["category"].to_numpy(dtype=str)
    within = weights / pd.Series(weights).groupby(category).transform("sum").to_numpy()
    within = np.nan_to_num(within)
    table = preferences.pivot(index="taste_cluster", columns="category", values="preference")
    table = table.reindex(columns=sorted(set(category))).fillna(0.0).sort_index()
    share = table.to_numpy(dtype=float)[:, pd.Index(table.columns).get_indexer(category)] * within
    return share / share.sum(axis=1, keepdims=True)


def _staples(purchases: pd.DataFrame, repeat_rate: np.ndarray) -> dict[str, int]:
    """The last consumable (repeat rate above 0) each customer bought."""
    consumable = purchases[repeat_rate[purchases["column"].to_numpy()] > 0]
    last = consumable.sort_values("ordered_at").groupby("customer_id")["column"].last()
    return {str(customer): int(column) for customer, column in last.items()}


@dataclass
class Visit:
    """What a shopper did with one list: items clicked and bought through it, their own order."""

    clicked: list[int]
    bought: list[int]
    own_order: list[int]
    expected_buy: float
    """The true chance that this list led to a purchase through it (before the dice)."""


@dataclass
class Shopper:
    """One simulated customer: their interest, needs and purchases so far."""

    customer_id: str
    interest: np.ndarray
    bought: set[int]
    rng: np.random.Generator
    needs: set[int] = field(default_factory=set)

    def react(self, truth: ShopTruth, shown: list[int]) -> Visit:
        """Examine, click and buy from the shown columns (best first), then maybe order on
        their own; updates interest, needs and purchases."""
        click_chance = np.array([self._click_chance(column) for column in shown])
        buy_chance = np.array(
            [NEED_BUY if column in self.needs else BUY_AFTER_CLICK for column in shown]
        )
        examine = 1.0 / np.log2(np.arange(2, len(shown) + 2))
        through = examine * click_chance * buy_chance
        expected = 1.0 - float(np.prod(1.0 - through))
        clicked = [c for c, p in zip(shown, examine * click_chance, strict=True) if self._dice(p)]
        bought = [
            c for c in clicked if self._dice(NEED_BUY if c in self.needs else BUY_AFTER_CLICK)
        ]
        own = self._own_order(set(bought))
        for column in bought + own:
            self._bought(truth, column)
        return Visit(clicked, bought, own, expected)

    def _click_chance(self, column: int) -> float:
        if column in self.needs:
            return NEED_CLICK
        return min(MAX_CLICK, CLICK_SCALE * float(self.interest[column]))

    def _dice(self, chance: float) -> bool:
        return bool(self.rng.random() < chance)

    def _own_order(self, taken: set[int]) -> list[int]:
        """An order the shopper places without the list (one line), or none."""
        if not self._dice(OWN_ORDER_CHANCE):
            return []
        if self.needs and self._dice(0.5):
            column = int(self.rng.choice(sorted(self.needs)))
        else:
            weights = self.interest / self.interest.sum()
            column = int(self.rng.choice(len(weights), p=weights))
        return [] if column in taken else [column]

    def _bought(self, truth: ShopTruth, column: int) -> None:
        """A purchase: the item is (mostly) wanted no more, its partner may become a need."""
        self.needs.discard(column)
        self.interest[column] *= truth.repeat_rate[column]
        partner = int(truth.partner[column])
        if partner >= 0 and partner not in self.bought and partner not in self.needs:
            if self._dice(float(truth.partner_chance[column])):
                self.needs.add(partner)
        self.bought.add(column)


def draw_shoppers(truth: ShopTruth, count: int, seed: int) -> list[Shopper]:
    """`count` customers with a purchase history who have not left the shop, at random (each
    with a random stream of their own, so a shopper's dice do not depend on the others)."""
    known = sorted(c for c in truth.bought_before if c not in truth.leavers)
    if count > len(known):
        raise ValueError(f"asked for {count} shoppers; the shop has {len(known)} active buyers")
    rng = np.random.default_rng(seed)
    chosen = rng.choice(known, size=count, replace=False)
    streams = rng.spawn(count)
    return [
        Shopper(str(c), truth.interest(str(c)), set(truth.bought_before[str(c)]), stream)
        for c, stream in zip(chosen, streams, strict=True)
    ]
