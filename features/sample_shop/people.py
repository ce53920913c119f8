"""The shop's customers: when they sign up, who they are, what they like and how often they buy."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SECONDS_PER_DAY = 86_400
GENDERS = ("female", "male", "unspecified")
AGE_BANDS = ("18-24", "25-34", "35-44", "45-54", "55-64", "65+")
REGIONS = ("north", "south", "east", "west", "central", "islands")
REGION_SHARES = np.array([0.2, 0.22, 0.18, 0.18, 0.16, 0.06])
REGION_DELIVERY_PROBLEM = np.array([0.03, 0.03, 0.04, 0.03, 0.02, 0.10])
"""Chance a delivered order arrives late or lost, by region: the islands are hard to reach."""
CHANNELS = ("web", "app", "store")
CHANNEL_SHARES = np.array([0.55, 0.35, 0.10])

EXISTING_SHARE = 0.3
"""Share of customers who signed up during the year before the period starts."""
MEAN_ORDERS_PER_DAY = 0.03
"""Mean purchase rate over customers while engaged (about 11 orders a year)."""
RATE_SHAPE = 0.9
"""Gamma shape of the purchase rate across customers (small = very uneven, as in BG/NBD)."""
MEAN_LEAVE_HAZARD = 1.0 / 2500.0
"""Mean daily chance that a settled, content customer of average rate starts drifting away."""


@dataclass(frozen=True)
class Customers:
    """Every customer as parallel arrays indexed by customer number (0..n-1)."""

    signed_up_second: np.ndarray  # int64 seconds after the start of the period (may be < 0)
    taste_cluster: np.ndarray  # int per customer
    cluster_preferences: np.ndarray  # (n_clusters, n_categories) category probabilities
    purchase_rate: np.ndarray  # orders per day while engaged
    leave_hazard: np.ndarray  # daily chance of starting to drift away, before bad experiences
    vocal: np.ndarray  # how readily the customer leaves feedback (mean 1)
    gender: np.ndarray
    age_band: np.ndarray
    region: np.ndarray
    channel: np.ndarray  # preferred channel

    @property
    def size(self) -> int:
        """Number of customers."""
        return len(self.taste_cluster)


def build_customers(
    rng: np.random.Generator, customers: int, days: int, n_categories: int
) -> Customers:
    """Draw `customers` customers for a period of `days` days with `n_categories` categories."""
    n_clusters = int(np.clip(n_categories // 2, 3, 10))
    category_base = rng.dirichlet(np.full(n_categories, 3.0))
    # Each taste cluster leans on a few categories but still browses everything a little.
    cluster_preferences = 0.75 * rng.dirichlet(np.full(n_categories, 0.35), size=n_clusters)
    cluster_preferences += 0.25 * category_base
    cluster_share = rng.dirichlet(np.full(n_clusters, 4.0))
    taste_cluster = rng.choice(n_clusters, size=customers, p=cluster_share)

    existing = rng.random(customers) < EXISTING_SHARE
    # Newcomers arrive faster as the shop grows: density rising linearly to twice the start.
    arrival_fraction = np.sqrt(1.0 + 3.0 * rng.random(customers)) - 1.0
    new_second = (arrival_fraction * days * SECONDS_PER_DAY).astype(np.int64)
    old_second = -rng.integers(1, 365 * SECONDS_PER_DAY, size=customers)
    signed_up_second = np.where(existing, old_second, new_second)

    purchase_rate = rng.gamma(RATE_SHAPE, MEAN_ORDERS_PER_DAY / RATE_SHAPE, size=customers)
    purchase_rate = np.minimum(purchase_rate, 0.5)
    # Frequent buyers are more attached to the shop: hazard falls with the purchase rate.
    attachment = np.clip((purchase_rate / MEAN_ORDERS_PER_DAY) ** -0.4, 0.3, 4.0)
    leave_hazard = rng.gamma(2.0, MEAN_LEAVE_HAZARD / 2.0, size=customers) * attachment
    vocal = rng.gamma(2.0, 0.5, size=customers)

    # Demographics lean on the taste cluster, so attributes carry some (not all) of the taste.
    age_by_cluster = rng.dirichlet(np.full(len(AGE_BANDS), 1.5), size=n_clusters)
    gender_by_cluster = 0.5 * rng.dirichlet(np.full(2, 2.0), size=n_clusters)
    gender_by_cluster = np.column_stack(
        [gender_by_cluster + 0.24, np.full(n_clusters, 0.04)]
    )  # 4% unspecified, the rest split unevenly per cluster
    age_band = _draw_rows(rng, age_by_cluster, taste_cluster)
    gender = _draw_rows(rng, gender_by_cluster, taste_cluster)
    region = rng.choice(len(REGIONS), size=customers, p=REGION_SHARES)
    channel = rng.choice(len(CHANNELS), size=customers, p=CHANNEL_SHARES)

    return Customers(
        signed_up_second=signed_up_second,
        taste_cluster=taste_cluster,
        cluster_preferences=cluster_preferences,
        purchase_rate=purchase_rate,
        leave_hazard=leave_hazard,
        vocal=vocal,
        gender=gender,
        age_band=age_band,
        region=region,
        channel=channel,
    )


def _draw_rows(rng: np.random.Generator, probabilities: np.ndarray, row: np.ndarray) -> np.ndarray:
    """One draw per entry of `row` from the categorical distribution `probabilities[row]`."""
    return draw_categorical(rng, np.cumsum(probabilities, axis=1), row)


def draw_categorical(
    rng: np.random.Generator, cumulative: np.ndarray, row: np.ndarray
) -> np.ndarray:
    """Vectorised categorical draws: for each entry of `row`, an index into `cumulative[row]`.

    `cumulative` is (n_rows, n_choices), each row non-decreasing; rows are renormalised."""
    n_rows, n_choices = cumulative.shape
    normalised = cumulative / cumulative[:, -1:]
    normalised[:, -1] = 1.0
    # Shift row k into [k, k+1] so one searchsorted serves every row at once.
    flat = (normalised + np.arange(n_rows)[:, None]).ravel()
    position = np.searchsorted(flat, row + rng.random(len(row)), side="right")
    return np.minimum(position - row * n_choices, n_choices - 1)
