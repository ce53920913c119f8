"""Online metrics from the posted events (the file log or the PostgreSQL event store): how
recommendations did with real shoppers, per model version, route, strategy and variant, with
95% intervals and the difference between variants.

Read by the server (`/v1/models`, the Prometheus counters), the CLI (`patronage online-report`,
`patronage promote --online`) and the tests alike. Definitions (docs/serving.md):

- The unit is one impression (one recommendation answer as shown, `recommendation_id`); the
  same impression, click or purchase line posted again counts once (first kept).
- Click-through rate (CTR): the share of impressions with at least one click on a shown item.
- Buy-through rate (BTR): the share of impressions to which at least one purchase line is
  attributed. A purchase line of item I by customer C at time T is attributed to the
  impression it names (`recommendation_id`) when that impression showed I and T is within
  `ATTRIBUTION_DAYS` (7) after it was shown; otherwise to the last impression shown to C
  (`customer_id`) that listed I, shown at most 7 days before T.
- Revenue: quantity x unit_price of the attributed lines (a line without a price adds 0);
  reported in total and per impression.

Intervals (95%): Wilson score for CTR and BTR; for the difference of two rates (challenger minus
champion) Newcombe's hybrid score interval (method 10 of Newcombe 1998); for revenue per
impression the normal approximation (mean +- 1.96 standard errors), and for its difference
Welch's normal interval. Impressions are taken as independent (a shopper who sees many answers
makes the intervals somewhat optimistic).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from features.event_store import open_event_store
from features.recommendation_ids import Origin, origin_of

ATTRIBUTION_DAYS = 7
Z_95 = 1.959963984540054
"""The standard normal's 97.5% quantile: two-sided 95% intervals."""
ALL_ROUTES = "all"


def _seconds(stamp: Any) -> float:
    """A timestamp (ISO text or datetime; no zone means UTC) as epoch seconds."""
    value = pd.Timestamp(stamp)
    value = value.tz_localize("UTC") if value.tzinfo is None else value
    return float(value.timestamp())


@dataclass(frozen=True)
class Impression:
    """One shown recommendation answer."""

    recommendation_id: str
    customer_id: str | None
    items: tuple[str, ...]
    shown_at: float
    """Epoch seconds (UTC)."""
    origin: Origin


@dataclass(frozen=True)
class PurchaseLine:
    """One posted purchase line, as far as attribution needs it."""

    customer_id: str
    item_id: str
    ordered_at: float
    revenue: float
    recommendation_id: str | None


@dataclass
class OnlineEvents:
    """The impressions, clicks and purchase lines of an event log, each counted once."""

    impressions: dict[str, Impression] = field(default_factory=dict)
    clicks: set[tuple[str, str]] = field(default_factory=set)
    purchases: dict[tuple[str, str], PurchaseLine] = field(default_factory=dict)

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]]) -> OnlineEvents:
        """The online events among event records (`add`)."""
        events = cls()
        events.add(records)
        return events

    def add(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Take event-log records (other kinds are ignored); a repeated key keeps the first."""
        for record in records:
            kind = record.get("event")
            if kind == "impression":
                rid = str(record["recommendation_id"])
                if rid not in self.impressions:
                    customer = record.get("customer_id")
                    self.impressions[rid] = Impression(
                        rid,
                        None if customer is None else str(customer),
                        tuple(str(i) for i in record["items"]),
                        _seconds(record["shown_at"]),
                        origin_of(rid),
                    )
            elif kind == "click":
                self.clicks.add((str(record["recommendation_id"]), str(record["item_id"])))
            elif kind == "purchase":
                key = (str(record["order_id"]), str(record["item_id"]))
                if key not in self.purchases:
                    self.purchases[key] = _purchase_line(record)


def _purchase_line(record: Mapping[str, Any]) -> PurchaseLine:
    price = record.get("unit_price")
    revenue = 0.0 if price is None or not math.isfinite(float(price)) else float(price)
    named = record.get("recommendation_id")
    return PurchaseLine(
        str(record["customer_id"]),
        str(record["item_id"]),
        _seconds(record["ordered_at"]),
        revenue * int(record["quantity"]),
        None if named is None else str(named),
    )


def read_online_events(location: Path | str) -> OnlineEvents:
    """The online events of the event store at `location`: a log directory (a missing one:
    none) or a `postgresql://` URL (`features.event_store.open_event_store`). Raises OSError
    when the database cannot be read."""
    store = open_event_store(location)
    try:
        return OnlineEvents.from_records(store.read_records())
    finally:
        store.close()


@dataclass
class Outcome:
    """What one impression led to."""

    clicked: bool = False
    bought: bool = False
    revenue: float = 0.0


def _attributed_to(
    line: PurchaseLine, events: OnlineEvents, shown: Mapping[str, list[Impression]]
) -> str | None:
    """The impression a purchase line is attributed to (rules in the module docstring)."""
    window = ATTRIBUTION_DAYS * 86400.0
    named = events.impressions.get(line.recommendation_id or "")
    if named is not None and line.item_id in named.items:
        if 0 <= line.ordered_at - named.shown_at <= window:
            return named.recommendation_id
    best: Impression | None = None
    for impression in shown.get(line.customer_id, ()):
        if impression.shown_at > line.ordered_at:
            break  # sorted by time
        if line.ordered_at - impression.shown_at <= window and line.item_id in impression.items:
            best = impression
    return None if best is None else best.recommendation_id


def impression_outcomes(events: OnlineEvents) -> dict[str, Outcome]:
    """Per impression (by `recommendation_id`), whether it was clicked and bought through and
    the revenue attributed to it."""
    outcomes = {rid: Outcome() for rid in events.impressions}
    for rid, item in events.clicks:
        impression = events.impressions.get(rid)
        if impression is not None and item in impression.items:
            outcomes[rid].clicked = True
    shown: dict[str, list[Impression]] = {}
    for impression in sorted(events.impressions.values(), key=lambda i: i.shown_at):
        if impression.customer_id is not None:
            shown.setdefault(impression.customer_id, []).append(impression)
    for line in events.purchases.values():
        target = _attributed_to(line, events, shown)
        if target is not None:
            outcomes[target].bought = True
            outcomes[target].revenue += line.revenue
    return outcomes


def wilson_interval(successes: int, trials: int) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion; (0, 1) for no trials."""
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    z2 = Z_95 * Z_95
    centre = (p + z2 / (2 * trials)) / (1 + z2 / trials)
    half = Z_95 * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / (1 + z2 / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class Tally:
    """Counts and sums of a set of impressions."""

    impressions: int = 0
    clicked: int = 0
    bought: int = 0
    revenue: float = 0.0
    revenue_squares: float = 0.0
    """Sum over impressions of the squared revenue (for the variance)."""

    def add(self, outcome: Outcome) -> None:
        """Count one impression's outcome."""
        self.impressions += 1
        self.clicked += outcome.clicked
        self.bought += outcome.bought
        self.revenue += outcome.revenue
        self.revenue_squares += outcome.revenue * outcome.revenue

    def merge(self, other: Tally) -> None:
        """Add another tally's counts."""
        self.impressions += other.impressions
        self.clicked += other.clicked
        self.bought += other.bought
        self.revenue += other.revenue
        self.revenue_squares += other.revenue_squares

    def mean_revenue(self) -> tuple[float, float]:
        """Revenue per impression and the variance of that mean (0, 0 without impressions)."""
        n = self.impressions
        if n == 0:
            return 0.0, 0.0
        mean = self.revenue / n
        spread = max(0.0, self.revenue_squares - n * mean * mean) / (n - 1) if n > 1 else 0.0
        return mean, spread / n

    def to_json(self) -> dict[str, Any]:
        """Counts, rates and revenue with their 95% intervals."""
        n = self.impressions
        mean, variance = self.mean_revenue()
        half = Z_95 * math.sqrt(variance)
        return {
            "impressions": n,
            "clicked": self.clicked,
            "bought": self.bought,
            "click_through_rate": self.clicked / n if n else None,
            "click_through_interval": list(wilson_interval(self.clicked, n)),
            "buy_through_rate": self.bought / n if n else None,
            "buy_through_interval": list(wilson_interval(self.bought, n)),
            "revenue": round(self.revenue, 6),
            "revenue_per_impression": mean if n else None,
            "revenue_per_impression_interval": [mean - half, mean + half],
        }


def rate_difference(
    champion: tuple[int, int], challenger: tuple[int, int]
) -> tuple[float, float, float]:
    """Challenger's rate minus the champion's, (successes, trials) each, with the 95%
    Newcombe hybrid score interval: (difference, low, high)."""
    (x1, n1), (x2, n2) = champion, challenger
    p1, p2 = (x1 / n1 if n1 else 0.0), (x2 / n2 if n2 else 0.0)
    l1, u1 = wilson_interval(x1, n1)
    l2, u2 = wilson_interval(x2, n2)
    d = p2 - p1
    return (
        d,
        d - math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2),
        d + math.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2),
    )


@dataclass(frozen=True)
class VariantDifference:
    """Challenger minus champion on one route (or `all`), for the three metrics."""

    route: str
    champion: Tally
    challenger: Tally

    def buy_through(self) -> tuple[float, float, float]:
        """BTR difference with its 95% interval: (difference, low, high)."""
        return rate_difference(
            (self.champion.bought, self.champion.impressions),
            (self.challenger.bought, self.challenger.impressions),
        )

    def click_through(self) -> tuple[float, float, float]:
        """CTR difference with its 95% interval: (difference, low, high)."""
        return rate_difference(
            (self.champion.clicked, self.champion.impressions),
            (self.challenger.clicked, self.challenger.impressions),
        )

    def revenue_per_impression(self) -> tuple[float, float, float]:
        """Revenue per impression difference with Welch's 95% normal interval."""
        m1, v1 = self.champion.mean_revenue()
        m2, v2 = self.challenger.mean_revenue()
        half = Z_95 * math.sqrt(v1 + v2)
        return m2 - m1, m2 - m1 - half, m2 - m1 + half

    def to_json(self) -> dict[str, Any]:
        """The three differences, each `[difference, low, high]`."""
        return {
            "route": self.route,
            "champion_impressions": self.champion.impressions,
            "challenger_impressions": self.challenger.impressions,
            "click_through_difference": list(self.click_through()),
            "buy_through_difference": list(self.buy_through()),
            "revenue_per_impression_difference": list(self.revenue_per_impression()),
        }


GroupKey = tuple[str, str, str, str]
"""(model_version, route, strategy, variant)."""


@dataclass
class OnlineReport:
    """Per group of impressions their tally, and the variants compared per route."""

    since: pd.Timestamp | None
    groups: dict[GroupKey, Tally]
    differences: list[VariantDifference]
    unmatched_clicks: int
    """Clicks naming an unknown impression or an item it did not show (not counted)."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (what `/v1/models` shows under `online`)."""
        return {
            "since": None if self.since is None else self.since.isoformat(),
            "attribution_days": ATTRIBUTION_DAYS,
            "intervals": "95%: Wilson (rates), Newcombe hybrid score (rate differences), "
            "normal (revenue per impression), Welch normal (its difference)",
            "groups": [
                {
                    "model_version": key[0],
                    "route": key[1],
                    "strategy": key[2],
                    "variant": key[3],
                    **tally.to_json(),
                }
                for key, tally in sorted(self.groups.items())
            ],
            "differences": [d.to_json() for d in self.differences],
            "unmatched_clicks": self.unmatched_clicks,
        }

    def by_version(self) -> dict[str, Tally]:
        """Every version's impressions pooled over routes, strategies and variants."""
        pooled: dict[str, Tally] = {}
        for key, tally in self.groups.items():
            pooled.setdefault(key[0], Tally()).merge(tally)
        return pooled


def online_report(
    events: OnlineEvents,
    since: pd.Timestamp | None = None,
    versions: Mapping[str, str] | None = None,
) -> OnlineReport:
    """Tally the impressions shown at or after `since` (UTC; None: all) by model version,
    route, strategy and variant, and compare the variants per route and over all routes.

    Purchases are attributed over the whole log first, so `since` only selects impressions.
    `versions` (`{"champion": "name/1", "challenger": "name/2"}`) restricts the comparison to
    those two model versions (what `patronage promote --online` compares)."""
    outcomes = impression_outcomes(events)
    cutoff = None if since is None else since.timestamp()
    groups: dict[GroupKey, Tally] = {}
    for rid, impression in events.impressions.items():
        if cutoff is not None and impression.shown_at < cutoff:
            continue
        o = impression.origin
        groups.setdefault((o.model_version, o.route, o.strategy, o.variant), Tally()).add(
            outcomes[rid]
        )
    unmatched = sum(
        1
        for rid, item in events.clicks
        if rid not in events.impressions or item not in events.impressions[rid].items
    )
    return OnlineReport(since, groups, _differences(groups, versions), unmatched)


def _differences(
    groups: Mapping[GroupKey, Tally], versions: Mapping[str, str] | None
) -> list[VariantDifference]:
    """Per route with both variants (and over all routes), challenger minus champion."""
    pooled: dict[tuple[str, str], Tally] = {}
    for (version, route, _, variant), tally in groups.items():
        if versions is not None and versions.get(variant) != version:
            continue
        for where in (route, ALL_ROUTES):
            pooled.setdefault((where, variant), Tally()).merge(tally)
    routes = sorted({route for route, _ in pooled}, key=lambda r: (r == ALL_ROUTES, r))
    return [
        VariantDifference(route, pooled[(route, "champion")], pooled[(route, "challenger")])
        for route in routes
        if (route, "champion") in pooled and (route, "challenger") in pooled
    ]
