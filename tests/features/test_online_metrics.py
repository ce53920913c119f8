"""The online metrics equal a hand count on a fixed event file, and the interval methods match
published values (issue 23, Build 4).

The fixture `fixtures/online_events/events-20260111.jsonl`, counted by hand:

- A (v1, personal, champion), shown to u1 on 01-01 10:00: i1 clicked (twice: counts once);
  i3 bought 01-04 (2 x 5.00).
- B (v1, personal, champion), u1 on 01-03 10:00: i2 bought 01-04 (10.00); B is the last
  impression to show i2 (A did too).
- C (v2, personal, challenger), u2 on 01-01 12:00: i5 clicked; i1 bought 01-05 (4.00); i5
  bought 9 days later: not attributed.
- D (v2, cross_sell, challenger), session s9 on 01-02: i6 clicked; order o4 names D and buys i6
  (8.00).
- E (v1, cross_sell, champion), u3 on 01-01: i1 bought 3 times without a price: bought, 0.00.
- X (an id the server did not make), u4 on 01-05: i8 bought (2.00): counted as `unknown`.

A posted again (other items) counts once; o1/i2 posted twice counts once; o6 (before every
impression) and o7 (i4 an hour before B showed it) are nobody's. Unmatched clicks: A/i9 (not
shown) and one naming an unknown impression. The torn last line is skipped.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from features.contract import MAX_ID_LENGTH
from features.online_metrics import (
    ALL_ROUTES,
    online_report,
    rate_difference,
    read_online_events,
    wilson_interval,
)
from features.recommendation_ids import UNKNOWN, new_recommendation_id, origin_of

EVENTS = Path(__file__).parent / "fixtures" / "online_events"
V1, V2 = "patronage.shop.recommender/1", "patronage.shop.recommender/2"

HAND_COUNT = {
    # (model_version, route, strategy, variant): (impressions, clicked, bought, revenue)
    (V1, "personal", "discovery", "champion"): (2, 1, 2, 20.0),
    (V2, "personal", "discovery", "challenger"): (1, 1, 1, 4.0),
    (V2, "cross_sell", "cross_sell", "challenger"): (1, 1, 1, 8.0),
    (V1, "cross_sell", "cross_sell", "champion"): (1, 0, 1, 0.0),
    (UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN): (1, 0, 1, 2.0),
}


def test_the_report_equals_the_hand_count() -> None:
    report = online_report(read_online_events(EVENTS))
    counted = {
        key: (t.impressions, t.clicked, t.bought, t.revenue) for key, t in report.groups.items()
    }
    assert counted == HAND_COUNT
    assert report.unmatched_clicks == 2
    champion_personal = report.to_json()["groups"][1]
    assert champion_personal["variant"] == "champion"
    assert champion_personal["route"] == "personal"
    assert champion_personal["click_through_rate"] == 0.5
    assert champion_personal["buy_through_rate"] == 1.0
    assert champion_personal["revenue_per_impression"] == 10.0


def test_variants_are_compared_per_route_and_over_all_routes() -> None:
    report = online_report(read_online_events(EVENTS))
    by_route = {d.route: d for d in report.differences}
    assert list(by_route) == ["cross_sell", "personal", ALL_ROUTES]
    overall = by_route[ALL_ROUTES]
    # champion: A, B, E (3 impressions, 1 clicked, 3 bought, 20.00); challenger: C, D.
    assert (overall.champion.impressions, overall.champion.clicked) == (3, 1)
    assert (overall.champion.bought, overall.champion.revenue) == (3, 20.0)
    assert (overall.challenger.impressions, overall.challenger.clicked) == (2, 2)
    assert (overall.challenger.bought, overall.challenger.revenue) == (2, 12.0)
    click_diff, low, high = overall.click_through()
    assert click_diff == pytest.approx(1 - 1 / 3)
    assert low < click_diff < high
    revenue_diff, low, high = overall.revenue_per_impression()
    assert revenue_diff == pytest.approx(12.0 / 2 - 20.0 / 3)
    # Welch: champion values 10, 10, 0 (sample variance 100/3, of the mean 100/9);
    # challenger 4, 8 (sample variance 8, of the mean 4).
    half = 1.959963984540054 * (100 / 9 + 4) ** 0.5
    assert (low, high) == pytest.approx((revenue_diff - half, revenue_diff + half))


def test_since_selects_impressions_but_attribution_sees_the_whole_log() -> None:
    since = pd.Timestamp("2026-01-02T00:00:00Z")
    report = online_report(read_online_events(EVENTS), since=since)
    counted = {
        key: (t.impressions, t.clicked, t.bought, t.revenue) for key, t in report.groups.items()
    }
    assert counted == {
        (V1, "personal", "discovery", "champion"): (1, 0, 1, 10.0),  # B only
        (V2, "cross_sell", "cross_sell", "challenger"): (1, 1, 1, 8.0),  # D
        (UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN): (1, 0, 1, 2.0),  # X
    }


def test_interval_methods_match_published_values() -> None:
    # Wilson score intervals (Newcombe 1998, table I): 0/10 -> (0, 0.2775); 1/2 -> (0.0945, 0.9055)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=5e-5)
    assert wilson_interval(1, 2) == pytest.approx((0.0945, 0.9055), abs=5e-5)
    # Newcombe 1998 (method 10), example (a): 56/70 - 48/80 = 0.2000, 95% CI 0.0524 to 0.3339.
    difference, low, high = rate_difference((48, 80), (56, 70))
    assert (difference, low, high) == pytest.approx((0.2, 0.0524, 0.3339), abs=5e-5)


def test_a_recommendation_id_names_its_origin() -> None:
    made = new_recommendation_id("challenger", "similar", "patronage.s.recommender/7", "a~b")
    origin = origin_of(made)
    assert (origin.variant, origin.route) == ("challenger", "similar")
    assert (origin.model_version, origin.strategy) == ("patronage.s.recommender/7", "a~b")
    assert made != new_recommendation_id("challenger", "similar", "x/1", "a~b")
    assert origin_of("anything~else").model_version == UNKNOWN
    long_blend = "blend(" + "+".join(f"repeat_purchase_p{n}_hW*0.1" for n in range(30)) + ")"
    cut = new_recommendation_id("champion", "personal", "patronage.s.recommender/7", long_blend)
    assert len(cut) == MAX_ID_LENGTH  # postable back as an impression's id
    assert long_blend.startswith(origin_of(cut).strategy)
