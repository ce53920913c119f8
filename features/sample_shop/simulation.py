"""The day-by-day simulation: who orders what, what goes wrong, and who drifts away and leaves.

The loop runs over days (a few hundred steps); every step is vectorised over customers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from features.sample_shop.catalogue import Catalogue
from features.sample_shop.people import (
    CHANNELS,
    REGION_DELIVERY_PROBLEM,
    SECONDS_PER_DAY,
    Customers,
    draw_categorical,
)

EXTRA_LINES_MEAN = 0.7
"""Mean number of freely chosen lines beyond the first in an order (Poisson)."""
FIRST_ORDER_AT_SIGN_UP = 0.45
"""Chance a newcomer orders on the day they sign up."""
BAD_EXPERIENCE_EFFECT = 2.5
"""Each recent bad experience multiplies the hazard of drifting away by exp(2.5) (about 12)."""
BAD_EXPERIENCE_HALF_LIFE_DAYS = 120.0
DRIFTING_RATE_FACTOR = 0.2
"""A customer drifting away orders at 20% of their usual rate (longer gaps before leaving)."""
MEAN_DRIFT_DAYS = 75.0
"""Mean time from starting to drift away to leaving for good."""
NEWCOMER_EXTRA_HAZARD = 2.0
"""Newcomers are three times as likely to drift away; the extra fades over about two months."""
NEWCOMER_DAYS = 60.0
STORE = CHANNELS.index("store")

# Orders per hour of the day (UTC), evening-heavy.
HOURLY_PROFILE = np.array(
    [1, 0.6, 0.4, 0.3, 0.3, 0.5, 1, 2, 3, 3.5, 4, 4.2, 4.5, 4.2, 4, 4, 4.2, 4.8, 5.5, 6.2, 6.5, 5.5]
    + [4, 2.5]
)

ACTIVE, DRIFTING, LEFT = 0, 1, 2


@dataclass(frozen=True)
class History:
    """What happened: orders, order lines and each customer's fate, as parallel arrays."""

    order_customer: np.ndarray  # int per order
    order_second: np.ndarray  # int64 seconds after the start of the period
    order_channel: np.ndarray  # int per order, index into CHANNELS
    order_delivery_problem: np.ndarray  # bool per order
    line_order: np.ndarray  # int per line: index of its order
    line_item: np.ndarray  # int per line
    line_quantity: np.ndarray  # int per line, >= 1
    line_unit_price: np.ndarray  # float per line
    line_defective: np.ndarray  # bool per line
    drifting_second: np.ndarray  # int64 per customer, -1 when never
    left_second: np.ndarray  # int64 per customer, -1 when never (within the period)
    bad_experiences: np.ndarray  # int per customer


ORDER_COLUMNS = ("order_customer", "order_second", "order_channel", "order_delivery_problem")
"""The `History` columns with one value per order (the `line_` columns have one per line)."""


def daily_demand(start_day: np.datetime64, days: int) -> np.ndarray:
    """Relative order volume per day: weekly rhythm, winter peak, Black Friday to Cyber Monday."""
    dates = start_day + np.arange(days)
    weekday = (dates.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    weekly = np.array([0.95, 0.9, 0.92, 0.97, 1.05, 1.12, 1.09])[weekday]
    day_of_year = (dates - dates.astype("datetime64[Y]")).astype(np.int64) + 1
    annual = 1.0 + 0.15 * np.cos(2 * np.pi * (day_of_year - 355) / 365.25)
    return weekly * annual * (1.0 + 0.8 * promotion_days(dates))


def promotion_days(dates: np.ndarray) -> np.ndarray:
    """True from Black Friday (fourth Friday of November) to the following Cyber Monday."""
    month = dates.astype("datetime64[M]").astype(np.int64) % 12 + 1
    day_of_month = (dates - dates.astype("datetime64[M]")).astype(np.int64) + 1
    weekday = (dates.astype(np.int64) + 3) % 7
    black_friday = (month == 11) & (weekday == 4) & (day_of_month >= 22) & (day_of_month <= 28)
    promotion = black_friday.copy()
    for shift in (1, 2, 3):
        promotion[shift:] |= black_friday[:-shift]
    return promotion


def category_season(catalogue: Catalogue, start_day: np.datetime64, days: int) -> np.ndarray:
    """(days, n_categories) demand multiplier of each category on each day."""
    dates = start_day + np.arange(days)
    day_of_year = (dates - dates.astype("datetime64[Y]")).astype(np.int64) + 1
    phase = 2 * np.pi * (day_of_year[:, None] - catalogue.category_peak_day[None, :]) / 365.25
    return 1.0 + catalogue.category_seasonal_strength[None, :] * np.cos(phase)


def substitutes(catalogue: Catalogue, gone: np.ndarray) -> np.ndarray:
    """Per item, the item a customer buys instead: itself while it sells, else the next less
    popular item of its category that still sells (after the least popular, the most popular);
    itself when its whole category is gone."""
    result = np.arange(len(catalogue.category))
    for c in np.unique(catalogue.category[gone]):
        members = np.flatnonzero(catalogue.category == c)
        order = members[np.argsort(-catalogue.popularity[members], kind="stable")]
        selling = np.flatnonzero(~gone[order])
        if len(selling) == 0:
            continue
        following = np.searchsorted(selling, np.arange(len(order)))
        result[order] = order[selling[np.where(following == len(selling), 0, following)]]
    return result


def simulate(
    rng: np.random.Generator,
    catalogue: Catalogue,
    customers: Customers,
    start_day: np.datetime64,
    days: int,
    unavailable_from_day: np.ndarray | None = None,
) -> History:
    """Run the shop for `days` days from `start_day` (a UTC date) and return its history.

    `unavailable_from_day` (int per item, day index; `days` or more: never) is when an item
    stops selling: from that day a line that would be that item is its substitute instead
    (`substitutes`), so the catalogue's `available` flag and the sales agree."""
    if unavailable_from_day is None:
        unavailable_from_day = np.full(len(catalogue.category), days, dtype=np.int64)
    run = _Simulation(rng, catalogue, customers, start_day, days)
    substitute = np.arange(len(catalogue.category))
    parts: dict[str, list[np.ndarray]] = {}
    order_count = 0
    for day in range(days):
        if (unavailable_from_day == day).any():
            substitute = substitutes(catalogue, unavailable_from_day <= day)
        here = np.flatnonzero((run.sign_up_day <= day) & (run.state != LEFT))
        buyer = run.buyers(day, here)
        orders, bad_order = run.orders(day, buyer, substitute)
        orders["line_order"] = orders["line_order"] + order_count
        _append(parts, **orders)
        order_count += len(buyer)
        run.advance_fates(day, here, buyer[bad_order])
    return run.history(parts)


class _Simulation:
    """The shop's fixed calendar and catalogue lookups, and each customer's changing fate
    (active, drifting, left; recent bad experiences; the staple they re-buy).

    The steps draw from `rng` in a fixed order (buyers, order times, lines, channels and
    problems, quantities, then fates): the same seed gives the same shop."""

    def __init__(
        self,
        rng: np.random.Generator,
        catalogue: Catalogue,
        customers: Customers,
        start_day: np.datetime64,
        days: int,
    ) -> None:
        self.rng, self.catalogue, self.customers, self.days = rng, catalogue, customers, days
        self.demand = daily_demand(start_day, days)
        self.season = category_season(catalogue, start_day, days)
        self.promotion = promotion_days(start_day + np.arange(days))
        self.items_sorted, within_cumulative, category_starts = catalogue.items_by_category()
        self.flat_within = within_cumulative + np.repeat(
            np.arange(len(catalogue.category_names)), np.diff(category_starts)
        )
        self.hourly_cumulative = np.cumsum(HOURLY_PROFILE)[None, :]
        self.consumable_item = catalogue.category_consumable[catalogue.category]
        self.sign_up_day = np.floor_divide(customers.signed_up_second, SECONDS_PER_DAY)
        self.sign_up_second_of_day = customers.signed_up_second - self.sign_up_day * SECONDS_PER_DAY
        self.delivery_risk = REGION_DELIVERY_PROBLEM[customers.region]
        self.decay = 0.5 ** (1.0 / BAD_EXPERIENCE_HALF_LIFE_DAYS)

        n = customers.size
        self.state = np.zeros(n, dtype=np.int8)
        self.recent_bad = np.zeros(n)
        self.bad_experiences = np.zeros(n, dtype=np.int64)
        self.drifting_second = np.full(n, -1, dtype=np.int64)
        self.left_second = np.full(n, -1, dtype=np.int64)
        self.staple = np.full(n, -1, dtype=np.int64)  # the consumable each customer re-buys

    def buyers(self, day: int, here: np.ndarray) -> np.ndarray:
        """Who of the customers `here` (signed up, not left) orders on `day`."""
        chance = self.customers.purchase_rate[here] * self.demand[day]
        chance[self.state[here] == DRIFTING] *= DRIFTING_RATE_FACTOR
        joined_today = self.sign_up_day[here] == day
        chance[joined_today] = np.maximum(chance[joined_today], FIRST_ORDER_AT_SIGN_UP)
        return here[self.rng.random(len(here)) < chance]

    def orders(
        self, day: int, buyer: np.ndarray, substitute: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The day's orders (one per buyer) and their lines as `History` columns (`line_order`
        counting from 0 this day), and which orders went badly (delivery or a defect)."""
        rng, catalogue = self.rng, self.catalogue
        second_of_day = self._seconds_of_day(day, buyer)
        line_order, line_item = _order_lines(
            rng,
            catalogue,
            self.customers,
            buyer,
            self.season[day],
            self.items_sorted,
            self.flat_within,
            self.staple,
            substitute,
        )
        consumable_line = self.consumable_item[line_item]
        self.staple[buyer[line_order[consumable_line]]] = line_item[consumable_line]

        channel = np.where(
            rng.random(len(buyer)) < 0.85,
            self.customers.channel[buyer],
            rng.integers(0, len(CHANNELS), size=len(buyer)),
        )
        delivery_problem = (channel != STORE) & (rng.random(len(buyer)) < self.delivery_risk[buyer])
        defective = rng.random(len(line_item)) < catalogue.defect_rate[line_item]
        bad_order = delivery_problem | (
            np.bincount(line_order[defective], minlength=len(buyer)) > 0
        )
        quantity = np.where(
            consumable_line,
            1 + rng.poisson(0.6, size=len(line_item)),
            1 + (rng.random(len(line_item)) < 0.05),
        )
        unit_price = catalogue.price[line_item]
        if self.promotion[day]:
            unit_price = np.round(unit_price * 0.8, 2)
        columns = {
            "order_customer": buyer,
            "order_second": day * SECONDS_PER_DAY + second_of_day,
            "order_channel": channel,
            "order_delivery_problem": delivery_problem,
            "line_order": line_order,
            "line_item": line_item,
            "line_quantity": quantity,
            "line_unit_price": unit_price,
            "line_defective": defective,
        }
        return columns, bad_order

    def _seconds_of_day(self, day: int, buyer: np.ndarray) -> np.ndarray:
        """When in the day each buyer orders; a customer who signed up today orders after."""
        second_of_day = _order_seconds(self.rng, self.hourly_cumulative, len(buyer))
        same_day = self.sign_up_day[buyer] == day
        earliest = self.sign_up_second_of_day[buyer][same_day] + 1
        second_of_day[same_day] = earliest + (
            self.rng.random(same_day.sum()) * (SECONDS_PER_DAY - earliest)
        ).astype(np.int64)
        return second_of_day

    def advance_fates(self, day: int, here: np.ndarray, had_bad_order: np.ndarray) -> None:
        """After the day's orders: remember bad experiences, and let content customers start
        drifting away and drifting ones leave."""
        # Bad experiences raise the hazard of drifting away; their memory fades.
        self.recent_bad *= self.decay
        self.recent_bad[had_bad_order] += 1.0
        self.bad_experiences[had_bad_order] += 1
        content = here[self.state[here] == ACTIVE]
        tenure_days = day - self.sign_up_day[content]
        hazard = (
            self.customers.leave_hazard[content]
            * np.exp(BAD_EXPERIENCE_EFFECT * self.recent_bad[content])
            * (1.0 + NEWCOMER_EXTRA_HAZARD * np.exp(-tenure_days / NEWCOMER_DAYS))
        )
        starts_drifting = content[self.rng.random(len(content)) < hazard]
        drifting = here[self.state[here] == DRIFTING]
        leaves = drifting[self.rng.random(len(drifting)) < 1.0 / MEAN_DRIFT_DAYS]
        self.state[starts_drifting] = DRIFTING
        self.drifting_second[starts_drifting] = (day + 1) * SECONDS_PER_DAY
        # Leaving takes effect after the day's orders: some time during the next day.
        self.state[leaves] = LEFT
        self.left_second[leaves] = (day + 1) * SECONDS_PER_DAY + self.rng.integers(
            0, SECONDS_PER_DAY, size=len(leaves)
        )

    def history(self, parts: dict[str, list[np.ndarray]]) -> History:
        """The collected days as one `History`; fates after the period read as never."""
        end = self.days * SECONDS_PER_DAY
        self.left_second[self.left_second >= end] = -1
        self.drifting_second[self.drifting_second >= end] = -1
        joined = {name: np.concatenate(chunks) for name, chunks in parts.items()}
        return History(
            **joined,
            drifting_second=self.drifting_second,
            left_second=self.left_second,
            bad_experiences=self.bad_experiences,
        )


def _order_seconds(rng: np.random.Generator, hourly_cumulative: np.ndarray, n: int) -> np.ndarray:
    """Seconds after midnight (UTC) for `n` orders, following the hourly profile."""
    hour = draw_categorical(rng, hourly_cumulative, np.zeros(n, dtype=np.int64))
    return hour * 3600 + rng.integers(0, 3600, size=n)


def _order_lines(
    rng: np.random.Generator,
    catalogue: Catalogue,
    customers: Customers,
    buyer: np.ndarray,
    category_season: np.ndarray,
    items_sorted: np.ndarray,
    flat_within: np.ndarray,
    staple: np.ndarray,
    substitute: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The lines of today's orders (one order per buyer): (order index, item) per line.

    Lines come from the buyer's taste cluster and item popularity; the first line may be the
    buyer's staple consumable; planted partners join their pair's item; an item no longer sold
    is replaced by its `substitute` (the same number of random draws either way). Lines may
    repeat an item within an order (merged later)."""
    n_orders = len(buyer)
    n_lines = 1 + rng.poisson(EXTRA_LINES_MEAN, size=n_orders)
    line_order = np.repeat(np.arange(n_orders), n_lines)
    cluster = customers.taste_cluster[buyer][line_order]
    preferences = np.cumsum(customers.cluster_preferences * category_season[None, :], axis=1)
    category = draw_categorical(rng, preferences, cluster)
    position = np.searchsorted(flat_within, category + rng.random(len(category)), side="right")
    line_item = items_sorted[np.minimum(position, len(items_sorted) - 1)]

    first_line = np.concatenate([[0], np.cumsum(n_lines)[:-1]])
    own_staple = staple[buyer]
    rebuy = (own_staple >= 0) & (
        rng.random(n_orders) < catalogue.repeat_rate[np.maximum(own_staple, 0)]
    )
    line_item[first_line[rebuy]] = own_staple[rebuy]
    line_item = substitute[line_item]

    partner = catalogue.partner[line_item]
    adds_partner = (partner >= 0) & (
        rng.random(len(line_item)) < catalogue.partner_chance[line_item]
    )
    line_order = np.concatenate([line_order, line_order[adds_partner]])
    line_item = np.concatenate([line_item, substitute[partner[adds_partner]]])
    return line_order, line_item


def _append(parts: dict[str, list[np.ndarray]], **columns: np.ndarray) -> None:
    """Collect one day's arrays per column."""
    for name, values in columns.items():
        parts.setdefault(name, []).append(values)
