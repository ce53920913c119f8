"""The shop's catalogue: categories, items, prices, popularity and planted complementary pairs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CategoryTemplate:
    """One kind of product the sample shop may sell.

    `median_price` is in the shop's currency; `peak_day_of_year` (1-366) and `seasonal_strength`
    (0 = flat, 1 = twice the average at the peak) shape demand over the year."""

    name: str
    consumable: bool
    median_price: float
    peak_day_of_year: int = 1
    seasonal_strength: float = 0.0


# Ordered so that even the smallest shop (the first four) mixes consumables and durables and holds
# complementary categories.
CATEGORY_TEMPLATES: tuple[CategoryTemplate, ...] = (
    CategoryTemplate("coffee", True, 11.0),
    CategoryTemplate("kitchen", False, 32.0),
    CategoryTemplate("electronics", False, 110.0, 350, 0.4),
    CategoryTemplate("batteries", True, 9.0, 350, 0.3),
    CategoryTemplate("clothing", False, 38.0),
    CategoryTemplate("shoes", False, 65.0),
    CategoryTemplate("pet food", True, 24.0),
    CategoryTemplate("cleaning", True, 6.0),
    CategoryTemplate("toys", False, 24.0, 350, 0.8),
    CategoryTemplate("snacks", True, 4.0),
    CategoryTemplate("tea", True, 7.0, 15, 0.3),
    CategoryTemplate("books", False, 14.0, 350, 0.2),
    CategoryTemplate("stationery", True, 5.0, 245, 0.5),
    CategoryTemplate("personal care", True, 8.0),
    CategoryTemplate("baby care", True, 16.0),
    CategoryTemplate("beauty", True, 21.0),
    CategoryTemplate("garden", False, 28.0, 160, 0.8),
    CategoryTemplate("outdoor", False, 55.0, 180, 0.6),
    CategoryTemplate("sports", False, 42.0, 20, 0.3),
    CategoryTemplate("phone accessories", False, 18.0),
    CategoryTemplate("wine", True, 14.0, 355, 0.5),
    CategoryTemplate("gifts", False, 27.0, 352, 0.9),
    CategoryTemplate("home decor", False, 29.0, 330, 0.3),
    CategoryTemplate("vitamins", True, 19.0, 10, 0.2),
)

# Category pairs whose items are natural companions in one basket.
COMPLEMENTARY_CATEGORIES: tuple[tuple[str, str], ...] = (
    ("coffee", "kitchen"),
    ("electronics", "batteries"),
    ("clothing", "shoes"),
    ("pet food", "cleaning"),
    ("toys", "batteries"),
    ("coffee", "snacks"),
    ("tea", "snacks"),
    ("books", "stationery"),
    ("baby care", "personal care"),
    ("beauty", "personal care"),
    ("garden", "outdoor"),
    ("sports", "outdoor"),
    ("electronics", "phone accessories"),
    ("wine", "gifts"),
    ("home decor", "gifts"),
    ("kitchen", "cleaning"),
)

ADJECTIVES = ("Classic", "Fresh", "Smart", "Daily", "Premium", "Eco", "Compact", "Bold", "Soft")
POPULARITY_EXPONENT = 1.05
"""Zipf exponent of item popularity: the item at rank r sells about r**-1.05 as often as the top."""
ANCHOR_TO_PARTNER = 0.45
"""Chance that buying a pair's first item adds its partner to the same order."""
PARTNER_TO_ANCHOR = 0.20
"""Chance that buying a pair's second item adds the first one to the same order."""


@dataclass(frozen=True)
class Catalogue:
    """Every item of the shop, as parallel arrays indexed by item number (0..n-1)."""

    category_names: tuple[str, ...]
    category_consumable: np.ndarray  # bool per category
    category_peak_day: np.ndarray  # int per category
    category_seasonal_strength: np.ndarray  # float per category
    category: np.ndarray  # int32 per item
    names: list[str]
    price: np.ndarray  # float64, x.99
    popularity: np.ndarray  # float64 Zipf weight (not normalised)
    repeat_rate: np.ndarray  # chance a customer re-buys it as their staple, 0 for durables
    defect_rate: np.ndarray  # chance one line of it goes wrong (damaged, not as described)
    available: np.ndarray  # bool
    pairs: np.ndarray  # (n_pairs, 2) int: planted complementary pairs (first, second)
    partner: np.ndarray  # int per item: the other item of its pair, -1 when none
    partner_chance: np.ndarray  # chance its partner is added to the same order

    @property
    def size(self) -> int:
        """Number of items."""
        return len(self.category)

    def items_by_category(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Items sorted by category, their within-category cumulative popularity, and the start of
        each category in that order (length n_categories + 1)."""
        order = np.argsort(self.category, kind="stable")
        counts = np.bincount(self.category, minlength=len(self.category_names))
        starts = np.concatenate([[0], np.cumsum(counts)])
        weights = self.popularity[order]
        cumulative = np.empty_like(weights)
        for c in range(len(self.category_names)):
            lo, hi = starts[c], starts[c + 1]
            cumulative[lo:hi] = np.cumsum(weights[lo:hi]) / weights[lo:hi].sum()
            cumulative[hi - 1] = 1.0  # exact, so a uniform draw below 1 always lands inside
        return order, cumulative, starts


def category_count(items: int) -> int:
    """How many categories a shop with `items` items has (4 to 24, about 20 items each)."""
    return int(np.clip(items // 20, 4, len(CATEGORY_TEMPLATES)))


def build_catalogue(rng: np.random.Generator, items: int) -> Catalogue:
    """Draw the catalogue of a shop with `items` items (at least 2 per category)."""
    templates = CATEGORY_TEMPLATES[: category_count(items)]
    n_categories = len(templates)
    if items < 2 * n_categories:
        raise ValueError(f"items must be at least {2 * n_categories}, got {items}")
    # Every category gets two items, the rest follow uneven category sizes.
    shares = rng.dirichlet(np.full(n_categories, 3.0))
    category = np.concatenate(
        [
            np.repeat(np.arange(n_categories), 2),
            rng.choice(n_categories, size=items - 2 * n_categories, p=shares),
        ]
    ).astype(np.int32)
    rng.shuffle(category)

    rank = rng.permutation(items) + 1
    popularity = rank.astype(np.float64) ** -POPULARITY_EXPONENT

    median = np.array([t.median_price for t in templates])[category]
    raw_price = median * rng.lognormal(0.0, 0.45, size=items)
    price = np.floor(raw_price) + 0.99

    consumable_category = np.array([t.consumable for t in templates])
    consumable = consumable_category[category]
    repeat_rate = np.where(consumable, rng.beta(2.5, 3.0, size=items), 0.0)

    defect_rate = rng.beta(1.2, 80.0, size=items)
    lemon = rng.random(items) < 0.04  # a few items that often disappoint
    defect_rate = np.where(lemon, rng.uniform(0.12, 0.30, size=items), defect_rate)
    available = rng.random(items) >= 0.04

    adjective = rng.integers(0, len(ADJECTIVES), size=items)
    names = [
        f"{ADJECTIVES[a]} {templates[c].name} {n + 1}"
        for n, (a, c) in enumerate(zip(adjective.tolist(), category.tolist(), strict=True))
    ]

    pairs = _plant_pairs(rng, templates, category, popularity)
    partner = np.full(items, -1, dtype=np.int64)
    partner_chance = np.zeros(items)
    if len(pairs):
        partner[pairs[:, 0]] = pairs[:, 1]
        partner[pairs[:, 1]] = pairs[:, 0]
        partner_chance[pairs[:, 0]] = ANCHOR_TO_PARTNER
        partner_chance[pairs[:, 1]] = PARTNER_TO_ANCHOR

    return Catalogue(
        category_names=tuple(t.name for t in templates),
        category_consumable=consumable_category,
        category_peak_day=np.array([t.peak_day_of_year for t in templates]),
        category_seasonal_strength=np.array([t.seasonal_strength for t in templates]),
        category=category,
        names=names,
        price=price,
        popularity=popularity,
        repeat_rate=repeat_rate,
        defect_rate=defect_rate,
        available=available,
        pairs=pairs,
        partner=partner,
        partner_chance=partner_chance,
    )


def _plant_pairs(
    rng: np.random.Generator,
    templates: tuple[CategoryTemplate, ...],
    category: np.ndarray,
    popularity: np.ndarray,
) -> np.ndarray:
    """Pick about one pair per 25 items, each item in at most one pair.

    The first item of a pair is from the popular 60% of its category (so the pair shows up in
    data of any size); the second is any item of the complementary category."""
    index = {t.name: i for i, t in enumerate(templates)}
    category_pairs = [
        (index[a], index[b]) for a, b in COMPLEMENTARY_CATEGORIES if a in index and b in index
    ]
    n_pairs = max(2, len(category) // 25)
    anchors: dict[int, list[int]] = {}
    partners: dict[int, list[int]] = {}
    for c in range(len(templates)):
        members = np.flatnonzero(category == c)
        by_popularity = members[np.argsort(-popularity[members], kind="stable")]
        popular = by_popularity[: max(1, int(np.ceil(0.6 * len(members))))]
        anchors[c] = rng.permutation(popular).tolist()
        partners[c] = rng.permutation(members).tolist()
    used = np.zeros(len(category), dtype=bool)
    chosen: list[tuple[int, int]] = []
    for p in range(n_pairs * 3):  # a few spare rounds for categories that run dry
        if len(chosen) == n_pairs:
            break
        first_category, second_category = category_pairs[p % len(category_pairs)]
        first = _next_unused(anchors[first_category], used)
        second = _next_unused(partners[second_category], used, reserve=first)
        if first is None or second is None:
            continue
        used[first] = used[second] = True
        chosen.append((first, second))
    return np.array(sorted(chosen), dtype=np.int64).reshape(-1, 2)


def _next_unused(candidates: list[int], used: np.ndarray, reserve: int | None = None) -> int | None:
    """Pop the next candidate not yet in a pair (and not `reserve`); None when none is left."""
    while candidates:
        item = candidates.pop()
        if not used[item] and item != reserve:
            return item
    return None
