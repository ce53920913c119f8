"""Benchmark the live storefront: simulated shoppers visit a real `patronage serve`, and the
online report must rank champion and challenger as the shoppers' true buy-through does.

One run: generate the default sample shop (5,000 customers, 500 items, 365 days, seed 0), train
it with the training pipeline into a temporary MLflow store, register a plain popularity
recommender as `@champion` and the trained one as `@challenger` (`benchmarks/live_versions.py`),
and start `patronage serve --workers 2` with `PATRONAGE_CHALLENGER_SHARE=0.5`. Shoppers drawn
from the shop's planted truths (`benchmarks/shoppers.py`: taste, staples, complementary pairs)
visit a few times each, in a few client threads: ask for their top 10, post the impression,
click and buy by their true preferences (a click also posts a view; a purchase through the
list names its `recommendation_id`), and sometimes order on their own. Then
`patronage online-report --json` reads the event log, and its buy-through difference
(challenger minus champion, all routes, 95% Newcombe interval) is compared with the
simulation's own count of purchases made through a list: same sign, interval excluding zero.

Also measured on the same traffic: the chain effect (a purchase of a planted pair's item by a
shopper who had bought neither item, the partner not in the list shown: is the partner in the
next answer, asked right after the 201 and arriving within 1 s), per variant; answer latency for
customers with and without fresh events; and `patronage promote recommender --online`.
Usage: python -m benchmarks.live [--shoppers N] [--visits V] [--threads T] [--workdir DIR]
Writes benchmarks/results/live.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.chain_effect import start_two_workers, wait_all_workers
from benchmarks.live_versions import LiveVersions, register_live_versions
from benchmarks.report import write_result
from benchmarks.serving import KEYS, SHOP, _stop, prepare
from benchmarks.shoppers import Shopper, ShopTruth, draw_shoppers

RESULT_PATH = Path(__file__).resolve().parent / "results" / "live.json"
CHALLENGER_SHARE = 0.5
WITHIN_SECONDS = 1.0


@dataclass(frozen=True)
class Shown:
    """One impression as the simulation saw it."""

    variant: str
    model_version: str
    clicked: bool
    bought_through: bool
    expected_buy: float
    revenue: float


@dataclass(frozen=True)
class ChainTry:
    """A purchase of a pair's item (neither bought before, partner not shown) and the next
    answer: did it hold the partner, and how long after the purchase's 201 did it arrive."""

    variant: str
    bought: str
    partner: str
    in_top10: bool
    seconds: float


@dataclass
class Traffic:
    """Everything the shoppers saw and did (appended to from several threads)."""

    shown: list[Shown] = field(default_factory=list)
    chain: list[ChainTry] = field(default_factory=list)
    fresh_ms: list[float] = field(default_factory=list)
    """Answer times for customers with purchases or views posted earlier in the run."""
    plain_ms: list[float] = field(default_factory=list)
    post_ms: list[float] = field(default_factory=list)
    """Times of `POST /v1/events` (each fsynced before its 201)."""
    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _now() -> str:
    return datetime.now(UTC).isoformat()


class Storefront:
    """One client thread's storefront: asks for lists and posts what the shopper did."""

    def __init__(self, base: str, truth: ShopTruth, traffic: Traffic) -> None:
        import httpx

        self.client = httpx.Client(base_url=base, timeout=30)
        self.truth = truth
        self.traffic = traffic
        self.column = {item: index for index, item in enumerate(truth.item_ids.tolist())}

    def top10(self, customer: str, fresh: bool) -> dict[str, Any]:
        """The customer's top 10 (timed, as a fresh or a plain answer)."""
        started = time.perf_counter()
        answer = self.client.get(
            f"/v1/customers/{customer}/recommendations?k=10",
            headers={"X-API-Key": KEYS["storefront"]},
        )
        elapsed = (time.perf_counter() - started) * 1000
        answer.raise_for_status()
        with self.traffic.lock:
            (self.traffic.fresh_ms if fresh else self.traffic.plain_ms).append(elapsed)
            self.traffic.requests += 1
        body: dict[str, Any] = answer.json()
        return body

    def post(self, rows: dict[str, list[dict[str, Any]]]) -> float:
        """Post events; the perf_counter time of the 201."""
        started = time.perf_counter()
        answer = self.client.post("/v1/events", json=rows, headers={"X-API-Key": KEYS["crm"]})
        answered = time.perf_counter()
        if answer.status_code != 201:
            raise RuntimeError(f"events refused ({answer.status_code}): {answer.text[:500]}")
        with self.traffic.lock:
            self.traffic.requests += 1
            self.traffic.post_ms.append((answered - started) * 1000)
        return answered

    def visit_all(self, shopper: Shopper, visits: int) -> None:
        """The shopper's visits, one after the other; a chain try left open by the last visit
        is settled with one more answer (not shown, so no impression)."""
        pending: tuple[str, str, float] | None = None  # (bought, partner, time of the 201)
        fresh = False
        for visit in range(visits):
            answer = self.top10(shopper.customer_id, fresh)
            items = [item["item_id"] for item in answer["items"]]
            if pending is not None:
                self._settle(answer["variant"], pending, items)
            pending, posted = self._one_visit(shopper, visit, answer, items)
            fresh = fresh or posted
        if pending is not None:
            answer = self.top10(shopper.customer_id, fresh)
            self._settle(answer["variant"], pending, [i["item_id"] for i in answer["items"]])

    def _settle(self, variant: str, pending: tuple[str, str, float], items: list[str]) -> None:
        bought, partner, posted_at = pending
        seconds = time.perf_counter() - posted_at
        with self.traffic.lock:
            self.traffic.chain.append(ChainTry(variant, bought, partner, partner in items, seconds))

    def _one_visit(
        self, shopper: Shopper, visit: int, answer: dict[str, Any], items: list[str]
    ) -> tuple[tuple[str, str, float] | None, bool]:
        """Post the impression, react, post clicks, views and purchases; returns the chain try
        this visit opened (or None) and whether it posted purchases or views."""
        customer, rid = shopper.customer_id, answer["recommendation_id"]
        self.post(
            {
                "impressions": [
                    {"recommendation_id": rid, "customer_id": customer, "items": items,
                     "shown_at": _now()}
                ]
            }
        )  # fmt: skip
        bought_before = set(shopper.bought)
        shown = [self.column[item] for item in items]
        reaction = shopper.react(self.truth, shown)
        ids = self.truth.item_ids
        revenue = float(sum(self.truth.price[c] for c in reaction.bought))
        with self.traffic.lock:
            self.traffic.shown.append(
                Shown(answer["variant"], answer["model_version"], bool(reaction.clicked),
                      bool(reaction.bought), reaction.expected_buy, revenue)
            )  # fmt: skip
        if not (reaction.clicked or reaction.own_order):
            return None, False
        at = _now()
        lines = [(c, rid) for c in reaction.bought] + [(c, None) for c in reaction.own_order]
        rows: dict[str, list[dict[str, Any]]] = {
            "clicks": [
                {"recommendation_id": rid, "item_id": str(ids[c]), "clicked_at": at}
                for c in reaction.clicked
            ],
            "interactions": [
                {"customer_id": customer, "item_id": str(ids[c]), "kind": "view", "occurred_at": at}
                for c in reaction.clicked
            ],
            "purchases": [
                {"order_id": f"live-{customer}-{visit}", "customer_id": customer,
                 "item_id": str(ids[c]), "quantity": 1, "unit_price": float(self.truth.price[c]),
                 "ordered_at": at, **({"recommendation_id": r} if r else {})}
                for c, r in lines
            ],
        }  # fmt: skip
        posted_at = self.post({name: table for name, table in rows.items() if table})
        return self._chain_try(lines, bought_before, set(shown), posted_at), True

    def _chain_try(
        self,
        lines: list[tuple[int, str | None]],
        bought_before: set[int],
        shown: set[int],
        posted_at: float,
    ) -> tuple[str, str, float] | None:
        """The first bought pair item whose pair the shopper had never bought and whose partner
        was not in the list shown."""
        for column, _ in lines:
            partner = int(self.truth.partner[column])
            if partner < 0 or {column, partner} & bought_before or partner in shown:
                continue
            return str(self.truth.item_ids[column]), str(self.truth.item_ids[partner]), posted_at
        return None


def _simulate(base: str, truth: ShopTruth, shoppers: list[Shopper], visits: int, threads: int
              ) -> Traffic:  # fmt: skip
    """Run every shopper's visits over `threads` client threads (one storefront each)."""
    traffic = Traffic()
    local = threading.local()
    fronts: list[Storefront] = []

    def one(shopper: Shopper) -> None:
        if not hasattr(local, "front"):
            local.front = Storefront(base, truth, traffic)
            fronts.append(local.front)
        local.front.visit_all(shopper, visits)

    with ThreadPoolExecutor(threads) as pool:
        for done in pool.map(one, shoppers):
            del done
    for front in fronts:
        front.client.close()
    return traffic


def _cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a `patronage` command as a shopkeeper would."""
    return subprocess.run(
        [sys.executable, "-m", "patronage", *args],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def _true_rates(traffic: Traffic) -> dict[str, dict[str, Any]]:
    """Per variant: impressions, true clicks and purchases through the list, expected buy."""
    rates: dict[str, dict[str, Any]] = {}
    for variant in ("champion", "challenger"):
        mine = [s for s in traffic.shown if s.variant == variant]
        rates[variant] = {
            "model_version": mine[0].model_version if mine else None,
            "impressions": len(mine),
            "clicked": sum(s.clicked for s in mine),
            "bought_through": sum(s.bought_through for s in mine),
            "buy_through_rate": _ratio(sum(s.bought_through for s in mine), len(mine)),
            "expected_buy_through_rate": (
                round(float(np.mean([s.expected_buy for s in mine])), 4) if mine else None
            ),
            "revenue_per_impression": (
                round(float(np.mean([s.revenue for s in mine])), 3) if mine else None
            ),
        }
    return rates


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _reported(report: dict[str, Any]) -> tuple[dict[str, dict[str, int]], list[float] | None]:
    """From `online-report --json`: counts per variant, and the all-routes buy-through
    difference [challenger - champion, low, high] (None when one variant is missing)."""
    counts: dict[str, dict[str, int]] = {}
    for group in report["groups"]:
        tally = counts.setdefault(group["variant"], {"impressions": 0, "clicked": 0, "bought": 0})
        for key in tally:
            tally[key] += group[key]
    overall = [d for d in report["differences"] if d["route"] == "all"]
    return counts, (overall[0]["buy_through_difference"] if overall else None)


def _comparison(traffic: Traffic, report: dict[str, Any]) -> dict[str, Any]:
    """The online report against the simulation's truth."""
    from features.online_metrics import rate_difference

    true = _true_rates(traffic)
    counts, reported = _reported(report)
    champion, challenger = true["champion"], true["challenger"]
    true_diff = rate_difference(
        (champion["bought_through"], champion["impressions"]),
        (challenger["bought_through"], challenger["impressions"]),
    )
    agree = reported is not None and np.sign(reported[0]) == np.sign(true_diff[0]) != 0
    excludes_zero = reported is not None and (reported[1] > 0 or reported[2] < 0)
    return {
        "true": true,
        "true_buy_through_difference": [round(v, 4) for v in true_diff],
        "reported": counts,
        "reported_buy_through_difference": (
            None if reported is None else [round(v, 4) for v in reported]
        ),
        "ranks_agree": bool(agree),
        "interval_excludes_zero": bool(excludes_zero),
        "meets": bool(agree and excludes_zero),
        "reported_clicks_match_simulation": all(
            counts.get(v, {}).get("clicked") == true[v]["clicked"] for v in true
        ),
        "reported_bought_minus_true": {
            v: counts.get(v, {}).get("bought", 0) - true[v]["bought_through"] for v in true
        },
        "unmatched_clicks": report.get("unmatched_clicks"),
    }


def _chain_summary(traffic: Traffic) -> dict[str, Any]:
    """Per variant: tries, share of partners in the next top 10 within 1 s of the 201."""
    summary: dict[str, Any] = {}
    for variant in ("champion", "challenger"):
        tries = [t for t in traffic.chain if t.variant == variant]
        hits = [t for t in tries if t.in_top10 and t.seconds <= WITHIN_SECONDS]
        summary[variant] = {
            "tries": len(tries),
            "partner_in_top10_within_1s": len(hits),
            "share_within_1s": _ratio(len(hits), len(tries)),
            "median_seconds_to_next_answer": (
                round(float(np.median([t.seconds for t in tries])), 3) if tries else None
            ),
        }
    return summary


def _latency(traffic: Traffic) -> dict[str, Any]:
    """p50 / p99 (ms, client side) of answers with and without fresh events, and of posts."""
    figures: dict[str, Any] = {}
    kinds = (("fresh", traffic.fresh_ms), ("plain", traffic.plain_ms), ("post", traffic.post_ms))
    for label, times in kinds:
        values = np.array(times or [float("nan")])
        figures[f"{label}_requests"] = len(times)
        figures[f"{label}_p50_ms"] = round(float(np.percentile(values, 50)), 2)
        figures[f"{label}_p99_ms"] = round(float(np.percentile(values, 99)), 2)
    return figures


def _notes(
    args: argparse.Namespace, versions: LiveVersions, load: tuple[float, float]
) -> list[str]:
    """The sentences BENCHMARKS.md shows above the figures."""
    return [
        f"Sample shop {args.customers:,} customers x {args.items} items x 365 days (seed 0), "
        f"trained by the training pipeline (search budget {args.time_budget:.0f} s); "
        f"`@champion` = version {versions.champion}, plain popularity (the trained bundle with "
        "popularity in its personal, repeat and cross-sell roles), `@challenger` = version "
        f"{versions.challenger}, the trained model; served by `patronage serve --workers 2` with "
        f"`PATRONAGE_CHALLENGER_SHARE={CHALLENGER_SHARE}` on the 2-core machine.",
        f"{args.shoppers:,} shoppers (customers with a history who had not left, at random, "
        f"seed {args.seed}), {args.visits} visits each, {args.threads} client threads: top 10, "
        "impression posted, clicks (each also a view) and purchases posted, purchases through "
        "the list naming its recommendation_id; shopper behaviour and its constants in "
        "`benchmarks/shoppers.py` (interest = the generator's own line probabilities: taste "
        "cluster x category x popularity, the staple's repeat rate; planted partners become "
        "needs after a purchase; an own order without the list in a quarter of the visits).",
        "`true`: purchases made through a clicked item of that list, counted by the simulation "
        "(`expected_buy_through_rate`: the true chance before the dice). `reported`: "
        "`patronage online-report --json` on the event log (7-day last-impression attribution, "
        "so an own order of an item the list showed counts too: `reported_bought_minus_true`). "
        "Target: the report's buy-through difference (challenger - champion, 95% Newcombe "
        "interval) has the sign of the true one and excludes zero.",
        "Chain effect: a purchase of a planted pair's item by a shopper who had bought neither "
        "item, the partner not in the list shown; a hit when the shopper's next answer (asked "
        "at once on the same keep-alive connection, so the worker that took the post) holds "
        "the partner and arrives within 1 s of the 201.",
        f"Machine load average (1 min) before / after the visits: {load[0]:.1f} / {load[1]:.1f} "
        "(other jobs share the 2 cores; latency depends on it).",
    ]


def _variant_table(comparison: dict[str, Any], chain: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per variant: truth beside the report."""
    rows = []
    for variant in ("champion", "challenger"):
        true, reported = comparison["true"][variant], comparison["reported"].get(variant, {})
        shown = reported.get("impressions", 0)
        rows.append(
            {
                "variant": variant,
                "model_version": true["model_version"],
                "impressions": true["impressions"],
                "true_buy_through": true["buy_through_rate"],
                "expected_buy_through": true["expected_buy_through_rate"],
                "reported_impressions": shown,
                "reported_click_through": _ratio(reported.get("clicked", 0), shown),
                "reported_buy_through": _ratio(reported.get("bought", 0), shown),
                "chain_share_within_1s": chain[variant]["share_within_1s"],
            }
        )
    return rows


def _run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Prepare, serve, simulate, report; the result JSON."""
    shop_dir, uri, setup = prepare(workdir, args.customers, args.items, args.time_budget)
    versions = register_live_versions(uri, SHOP)
    truth = ShopTruth.read(shop_dir)
    shoppers = draw_shoppers(truth, args.shoppers, args.seed)
    events = workdir / f"events-{int(time.time())}"
    server, base, env = start_two_workers(
        workdir, uri, events, PATRONAGE_CHALLENGER_SHARE=str(CHALLENGER_SHARE)
    )
    try:
        wait_all_workers(base, server, 600, challenger=True)
        load_before = os.getloadavg()[0]
        started = time.perf_counter()
        traffic = _simulate(base, truth, shoppers, args.visits, args.threads)
        seconds = time.perf_counter() - started
        load_after = os.getloadavg()[0]
    finally:
        _stop(server)
    report = _cli(["online-report", "--events", str(events), "--json"], env, workdir)
    if report.returncode != 0:
        raise RuntimeError(f"online-report failed: {report.stderr[-2000:]}")
    comparison = _comparison(traffic, json.loads(report.stdout))
    promoted = _cli(
        ["promote", "recommender", "--online", "--events", str(events), "--shop", SHOP],
        env, workdir,
    )  # fmt: skip
    chain = _chain_summary(traffic)
    return {
        "title": "Live storefront: simulated shoppers, champion and challenger on real traffic",
        "command": "python -m benchmarks.live",
        "notes": _notes(args, versions, (load_before, load_after)),
        "tables": {"variants": _variant_table(comparison, chain)},
        "summary": {
            "ranks_agree": comparison["ranks_agree"],
            "interval_excludes_zero": comparison["interval_excludes_zero"],
            "meets": comparison["meets"],
            "true_buy_through_difference": comparison["true_buy_through_difference"],
            "reported_buy_through_difference": comparison["reported_buy_through_difference"],
            "promote_online_exit": promoted.returncode,
            "promote_online_said": (promoted.stdout + promoted.stderr).strip()[-600:],
        },
        "comparison": comparison,
        "chain_effect": chain,
        "latency": _latency(traffic),
        "traffic": {
            "shoppers": args.shoppers,
            "visits_per_shopper": args.visits,
            "threads": args.threads,
            "requests": traffic.requests,
            "requests_per_second": round(traffic.requests / seconds, 1),
        },
        "setup_seconds": setup,
        "measure_seconds": round(seconds, 1),
    }


def main() -> int:
    """Run the benchmark; exit 1 when the server or a command fails (the target is reported,
    not enforced)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--shoppers", type=int, default=500)
    parser.add_argument("--visits", type=int, default=3, help="visits per shopper")
    parser.add_argument("--threads", type=int, default=4, help="client threads")
    parser.add_argument("--seed", type=int, default=0, help="which shoppers, and their dice")
    parser.add_argument("--time-budget", type=float, default=30.0, help="model search, s")
    parser.add_argument("--workdir", type=Path, default=None, help="reuse a trained shop")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-live-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        result = _run(args, workdir)
    write_result(RESULT_PATH, result)
    summary = result["summary"]
    print(
        f"live: true buy-through difference {summary['true_buy_through_difference']}, "
        f"reported {summary['reported_buy_through_difference']}: ranks agree "
        f"{summary['ranks_agree']}, interval excludes zero {summary['interval_excludes_zero']}; "
        f"chain {result['chain_effect']}; wrote {RESULT_PATH}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
