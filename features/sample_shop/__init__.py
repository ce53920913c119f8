"""The sample shop: a realistic, deterministic synthetic shop with its planted truths.

`generate_shop` writes the four contract tables (`purchases`, `feedback`, `items`, `customers`)
and, in `_truth/`, what was planted: complementary item pairs, customers who left (with dates),
each customer's taste cluster and hidden rates, each item's popularity and defect rate. The
generative story is told in docs/sample-shop.md. The same arguments give byte-identical files.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

from features.contract import TABLES
from features.sample_shop.catalogue import Catalogue, build_catalogue
from features.sample_shop.feedback import KINDS, TEXTS, Feedback, build_feedback
from features.sample_shop.people import (
    AGE_BANDS,
    CHANNELS,
    GENDERS,
    REGIONS,
    SECONDS_PER_DAY,
    Customers,
    build_customers,
)
from features.sample_shop.simulation import ORDER_COLUMNS, History, simulate
from features.sample_shop.writing import FORMATS, make_ids, take, timestamps, write_table

__all__ = ["GenerationSummary", "generate_shop"]

TRUTH_DIRECTORY = "_truth"
DEFAULT_START = "2025-01-01"
UNAVAILABILITY_STREAM = 1
"""Second seed word of the random stream that dates when unavailable items stopped selling."""


@dataclass(frozen=True)
class GenerationSummary:
    """What `generate_shop` wrote."""

    out_dir: Path
    file_format: str
    start: str  # first day of the period (UTC), ISO date
    end: str  # first day after the period (UTC), ISO date
    customers: int
    items: int
    orders: int
    purchase_lines: int
    feedback_rows: int
    leavers: int
    complementary_pairs: int
    seconds: float

    def describe(self) -> str:
        """A few human-readable lines for the command line."""
        return (
            f"sample shop written to {self.out_dir} ({self.file_format}), "
            f"{self.start} to {self.end} (exclusive, UTC)\n"
            f"  customers {self.customers:,}, items {self.items:,}, orders {self.orders:,}, "
            f"purchase lines {self.purchase_lines:,}, feedback rows {self.feedback_rows:,}\n"
            f"  planted truths in {self.out_dir / TRUTH_DIRECTORY}: "
            f"{self.complementary_pairs:,} complementary pairs, {self.leavers:,} leavers\n"
            f"  took {self.seconds:.1f} s"
        )


def generate_shop(
    out_dir: str | Path,
    customers: int = 5000,
    items: int = 500,
    days: int = 365,
    seed: int = 0,
    start: str | date = DEFAULT_START,
    file_format: str = "csv",
    overwrite: bool = False,
) -> GenerationSummary:
    """Generate a sample shop into `out_dir` (created if missing) and return what was written.

    The period runs from `start` (a date, 00:00 UTC) for `days` days; nothing is dated at or
    after its end. Raises ValueError on bad sizes, an unknown format, a bad start date, or when
    `out_dir` already holds contract tables and `overwrite` is False."""
    began = time.perf_counter()
    start_day = _parse_start(start)
    _check_arguments(customers, items, days, seed, file_format)
    directory = Path(out_dir)
    _prepare_directory(directory, overwrite)

    shop = _simulate_shop(seed, customers, items, days, start_day)
    epoch = int(start_day.astype(np.int64)) * SECONDS_PER_DAY
    ids = _Ids(
        customer=make_ids("C", customers),
        item=make_ids("I", items),
        order=make_ids("O", len(shop.history.order_customer)),
    )
    for name, table in _contract_tables(shop, ids, epoch, file_format).items():
        write_table(table, directory, name, file_format)
    arguments = {
        "customers": customers,
        "items": items,
        "days": days,
        "seed": seed,
        "start": str(start_day),
        "file_format": file_format,
    }
    _write_truth(directory / TRUTH_DIRECTORY, shop, ids, epoch, arguments)
    return GenerationSummary(
        out_dir=directory,
        file_format=file_format,
        start=str(start_day),
        end=str(start_day + np.timedelta64(days, "D")),
        customers=customers,
        items=items,
        orders=len(shop.history.order_customer),
        purchase_lines=len(shop.history.line_item),
        feedback_rows=len(shop.feedback.customer),
        leavers=shop.leavers,
        complementary_pairs=len(shop.catalogue.pairs),
        seconds=time.perf_counter() - began,
    )


@dataclass(frozen=True)
class _SimulatedShop:
    """Everything drawn for one shop, as arrays indexed by number (no ids yet)."""

    catalogue: Catalogue
    people: Customers
    unavailable_from_day: np.ndarray
    history: History
    feedback: Feedback

    @property
    def leavers(self) -> int:
        """How many customers left for good within the period."""
        return int((self.history.left_second >= 0).sum())


@dataclass(frozen=True)
class _Ids:
    """The string ids of customers, items and orders, indexed by number."""

    customer: pa.Array
    item: pa.Array
    order: pa.Array


def _simulate_shop(
    seed: int, customers: int, items: int, days: int, start_day: np.datetime64
) -> _SimulatedShop:
    """Draw the catalogue, the customers, the history and its feedback, in that order from one
    random stream (the dates items stopped selling come from a stream of their own)."""
    rng = np.random.default_rng(seed)
    catalogue = build_catalogue(rng, items)
    people = build_customers(rng, customers, days, len(catalogue.category_names))
    unavailable_from_day = _unavailable_from_day(seed, catalogue.available, days)
    history = _merge_duplicate_lines(
        _chronological(simulate(rng, catalogue, people, start_day, days, unavailable_from_day)),
        items,
    )
    feedback = build_feedback(
        rng,
        history,
        item_consumable=catalogue.category_consumable[catalogue.category],
        vocal=people.vocal,
        days=days,
    )
    return _SimulatedShop(catalogue, people, unavailable_from_day, history, feedback)


def _contract_tables(
    shop: _SimulatedShop, ids: _Ids, epoch: int, file_format: str
) -> dict[str, pa.Table]:
    """The four contract tables, by name; `epoch` is the period's start in Unix seconds."""
    return {
        "purchases": _purchases_table(shop.history, ids, epoch, file_format),
        "feedback": _feedback_table(shop.feedback, ids, epoch, file_format),
        "items": _items_table(shop.catalogue, ids.item),
        "customers": _customers_table(shop.people, ids.customer, epoch, file_format),
    }


def _parse_start(start: str | date) -> np.datetime64:
    """The first day of the period as a numpy day; accepts a date or an ISO date string."""
    if isinstance(start, datetime):
        raise ValueError(f"start must be a date without a time of day, got {start!r}")
    if isinstance(start, date):
        return np.datetime64(start.isoformat(), "D")
    try:
        return np.datetime64(date.fromisoformat(str(start)).isoformat(), "D")
    except ValueError:
        raise ValueError(f"start must be an ISO date like 2025-01-01, got {start!r}") from None


def _check_arguments(customers: int, items: int, days: int, seed: int, file_format: str) -> None:
    """Raise ValueError naming the first argument that is out of range."""
    if customers < 1:
        raise ValueError(f"customers must be at least 1, got {customers}")
    if items < 10:
        raise ValueError(f"items must be at least 10, got {items}")
    if not 1 <= days <= 3660:
        raise ValueError(f"days must be between 1 and 3660, got {days}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    if file_format not in FORMATS:
        raise ValueError(f"file format must be one of {', '.join(FORMATS)}, got {file_format!r}")


def _prepare_directory(directory: Path, overwrite: bool) -> None:
    """Create `directory`; refuse to write over contract tables unless `overwrite`."""
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"{directory} exists and is not a directory")
    existing = sorted(
        path
        for name in TABLES
        for suffix in FORMATS
        if (path := directory / f"{name}.{suffix}").exists()
    )
    if existing and not overwrite:
        raise ValueError(
            f"{directory} already holds {', '.join(p.name for p in existing)}; "
            "choose an empty directory or pass overwrite (--overwrite)"
        )
    for path in existing:  # a table left in the other format would shadow the new one
        path.unlink()
    directory.mkdir(parents=True, exist_ok=True)


def _chronological(history: History) -> History:
    """Renumber orders by time (ties by customer), so order ids follow the clock."""
    by_time = np.lexsort((history.order_customer, history.order_second))
    rank = np.empty_like(by_time)
    rank[by_time] = np.arange(len(by_time))
    return replace(
        history,
        **{name: getattr(history, name)[by_time] for name in ORDER_COLUMNS},
        line_order=rank[history.line_order],
    )


def _unavailable_from_day(seed: int, available: np.ndarray, days: int) -> np.ndarray:
    """The day each item flagged unavailable stopped selling, uniform over the period (`days`
    for the items still sold). Its own random stream, so the rest of the shop is drawn as
    before."""
    stream = np.random.default_rng([seed, UNAVAILABILITY_STREAM])
    day = stream.integers(0, days, size=len(available))
    return np.where(available, days, day).astype(np.int64)


def _merge_duplicate_lines(history: History, items: int) -> History:
    """One line per (order, item), quantities added; lines sorted by order, then item."""
    key = history.line_order.astype(np.int64) * items + history.line_item
    unique_key, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    quantity = np.bincount(inverse, weights=history.line_quantity).astype(np.int64)
    defective = np.bincount(inverse, weights=history.line_defective) > 0
    return replace(
        history,
        line_order=unique_key // items,
        line_item=unique_key % items,
        line_quantity=quantity,
        line_unit_price=history.line_unit_price[first],
        line_defective=defective,
    )


def _purchases_table(history: History, ids: _Ids, epoch: int, file_format: str) -> pa.Table:
    """The contract's purchases table: one row per order line."""
    order_times = timestamps(epoch + history.order_second, file_format)
    return pa.table(
        {
            "order_id": take(ids.order, history.line_order),
            "customer_id": take(ids.customer, history.order_customer[history.line_order]),
            "item_id": take(ids.item, history.line_item),
            "quantity": pa.array(history.line_quantity, type=pa.int64()),
            "unit_price": pa.array(history.line_unit_price, type=pa.float64()),
            "ordered_at": take(order_times, history.line_order),
            "channel": take(pa.array(CHANNELS), history.order_channel[history.line_order]),
        }
    )


def _feedback_table(feedback: Feedback, ids: _Ids, epoch: int, file_format: str) -> pa.Table:
    """The contract's feedback table: ratings, reviews, complaints and returns."""
    return pa.table(
        {
            "customer_id": take(ids.customer, feedback.customer),
            "created_at": timestamps(epoch + feedback.second, file_format),
            "kind": take(pa.array(KINDS), feedback.kind),
            "item_id": take(ids.item, np.maximum(feedback.item, 0), feedback.item < 0),
            "order_id": take(ids.order, feedback.order),
            "rating": pa.array(feedback.rating, mask=feedback.rating == 0, type=pa.int64()),
            "text": take(pa.array(TEXTS), np.maximum(feedback.text, 0), feedback.text < 0),
        }
    )


def _items_table(catalogue: Catalogue, item_ids: pa.Array) -> pa.Table:
    """The contract's items table."""
    return pa.table(
        {
            "item_id": item_ids,
            "name": pa.array(catalogue.names),
            "category": take(pa.array(catalogue.category_names), catalogue.category),
            "price": pa.array(catalogue.price, type=pa.float64()),
            "available": pa.array(catalogue.available, type=pa.bool_()),
        }
    )


def _customers_table(
    people: Customers, customer_ids: pa.Array, epoch: int, file_format: str
) -> pa.Table:
    """The contract's customers table with attributes gender, age_band and region."""
    return pa.table(
        {
            "customer_id": customer_ids,
            "signed_up_at": timestamps(epoch + people.signed_up_second, file_format),
            "gender": take(pa.array(GENDERS), people.gender),
            "age_band": take(pa.array(AGE_BANDS), people.age_band),
            "region": take(pa.array(REGIONS), people.region),
        }
    )


def _write_truth(
    directory: Path, shop: _SimulatedShop, ids: _Ids, epoch: int, arguments: dict[str, object]
) -> None:
    """Write the planted truths (always CSV) and the arguments that generated the shop."""
    directory.mkdir(exist_ok=True)
    fates = _Fates.of(shop.history, epoch)
    truths = {
        "complementary_pairs": _pairs_truth(shop.catalogue, ids.item),
        "leavers": _leavers_truth(fates, ids.customer),
        "customers": _customers_truth(shop, fates, ids.customer),
        "items": _items_truth(shop, ids.item, epoch),
        "taste_clusters": _taste_clusters_truth(shop.people, shop.catalogue),
    }
    for name, table in truths.items():
        write_table(table, directory, name, "csv")
    (directory / "generation.json").write_text(json.dumps(arguments, indent=2) + "\n")


@dataclass(frozen=True)
class _Fates:
    """Per customer: whether they left, and when they left and started drifting (CSV
    timestamps, null when never)."""

    left: np.ndarray
    left_at: pa.Array
    drifting_since: pa.Array

    @classmethod
    def of(cls, history: History, epoch: int) -> _Fates:
        """The fates recorded in `history`, dated from `epoch` (Unix seconds)."""
        customers = np.arange(len(history.left_second))
        left = history.left_second >= 0
        drifting = history.drifting_second >= 0
        return cls(
            left=left,
            left_at=take(timestamps(epoch + history.left_second, "csv"), customers, ~left),
            drifting_since=take(
                timestamps(epoch + history.drifting_second, "csv"), customers, ~drifting
            ),
        )


def _pairs_truth(catalogue: Catalogue, item_ids: pa.Array) -> pa.Table:
    """The planted complementary item pairs."""
    pairs = catalogue.pairs
    return pa.table({"item_a": take(item_ids, pairs[:, 0]), "item_b": take(item_ids, pairs[:, 1])})


def _leavers_truth(fates: _Fates, customer_ids: pa.Array) -> pa.Table:
    """The customers who left within the period, when, and since when they drifted."""
    leavers = pa.array(np.flatnonzero(fates.left))
    return pa.table(
        {
            "customer_id": customer_ids.take(leavers),
            "left_at": fates.left_at.take(leavers),
            "drifting_since": fates.drifting_since.take(leavers),
        }
    )


def _customers_truth(shop: _SimulatedShop, fates: _Fates, customer_ids: pa.Array) -> pa.Table:
    """Every customer's taste cluster, hidden rates, bad experiences and fate."""
    people = shop.people
    return pa.table(
        {
            "customer_id": customer_ids,
            "taste_cluster": pa.array(people.taste_cluster, type=pa.int64()),
            "purchase_rate_per_day": np.round(people.purchase_rate, 6),
            "leave_hazard_per_day": np.round(people.leave_hazard, 8),
            "bad_experiences": pa.array(shop.history.bad_experiences, type=pa.int64()),
            "drifting_since": fates.drifting_since,
            "left_at": fates.left_at,
        }
    )


def _items_truth(shop: _SimulatedShop, item_ids: pa.Array, epoch: int) -> pa.Table:
    """Every item's popularity, repeat and defect rates, partner, and when it stopped selling."""
    catalogue, unavailable_from_day = shop.catalogue, shop.unavailable_from_day
    return pa.table(
        {
            "item_id": item_ids,
            "category": take(pa.array(catalogue.category_names), catalogue.category),
            "popularity": np.round(catalogue.popularity / catalogue.popularity.sum(), 10),
            "repeat_rate": np.round(catalogue.repeat_rate, 6),
            "defect_rate": np.round(catalogue.defect_rate, 6),
            "partner": take(item_ids, np.maximum(catalogue.partner, 0), catalogue.partner < 0),
            # When an item flagged unavailable stopped selling (empty: still sold).
            "unavailable_from": take(
                timestamps(epoch + unavailable_from_day * SECONDS_PER_DAY, "csv"),
                np.arange(len(unavailable_from_day)),
                catalogue.available,
            ),
        }
    )


def _taste_clusters_truth(people: Customers, catalogue: Catalogue) -> pa.Table:
    """Each taste cluster's preference for each category (rows sum to 1 per cluster)."""
    n_clusters, n_categories = people.cluster_preferences.shape
    preference = people.cluster_preferences / people.cluster_preferences.sum(1, keepdims=True)
    return pa.table(
        {
            "taste_cluster": np.repeat(np.arange(n_clusters), n_categories),
            "category": take(
                pa.array(catalogue.category_names), np.tile(np.arange(n_categories), n_clusters)
            ),
            "preference": np.round(preference.ravel(), 6),
        }
    )
