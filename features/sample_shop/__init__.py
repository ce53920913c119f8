"""The sample shop: a realistic, deterministic synthetic shop with its planted truths.

`generate_shop` writes the four contract tables (`purchases`, `feedback`, `items`, `customers`)
and, in `_truth/`, what was planted: complementary item pairs, customers who left (with dates),
each customer's taste cluster and hidden rates, each item's popularity and defect rate. The
generative story is told in docs/sample-shop.md. The same arguments give byte-identical files.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

from features.contract import TABLES
from features.sample_shop.catalogue import Catalogue, build_catalogue
from features.sample_shop.feedback import KINDS, TEXTS, build_feedback
from features.sample_shop.people import (
    AGE_BANDS,
    CHANNELS,
    GENDERS,
    REGIONS,
    SECONDS_PER_DAY,
    Customers,
    build_customers,
)
from features.sample_shop.simulation import History, simulate
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
        order_customer=history.order_customer,
        order_second=history.order_second,
        order_delivery_problem=history.order_delivery_problem,
        line_order=history.line_order,
        line_item=history.line_item,
        line_defective=history.line_defective,
        item_consumable=catalogue.category_consumable[catalogue.category],
        vocal=people.vocal,
        days=days,
    )

    epoch = int(start_day.astype(np.int64)) * SECONDS_PER_DAY
    customer_ids = make_ids("C", customers)
    item_ids = make_ids("I", items)
    order_ids = make_ids("O", len(history.order_customer))
    order_times = timestamps(epoch + history.order_second, file_format)
    tables = {
        "purchases": pa.table(
            {
                "order_id": take(order_ids, history.line_order),
                "customer_id": take(customer_ids, history.order_customer[history.line_order]),
                "item_id": take(item_ids, history.line_item),
                "quantity": pa.array(history.line_quantity, type=pa.int64()),
                "unit_price": pa.array(history.line_unit_price, type=pa.float64()),
                "ordered_at": take(order_times, history.line_order),
                "channel": take(pa.array(CHANNELS), history.order_channel[history.line_order]),
            }
        ),
        "feedback": pa.table(
            {
                "customer_id": take(customer_ids, feedback.customer),
                "created_at": timestamps(epoch + feedback.second, file_format),
                "kind": take(pa.array(KINDS), feedback.kind),
                "item_id": take(item_ids, np.maximum(feedback.item, 0), feedback.item < 0),
                "order_id": take(order_ids, feedback.order),
                "rating": pa.array(feedback.rating, mask=feedback.rating == 0, type=pa.int64()),
                "text": take(pa.array(TEXTS), np.maximum(feedback.text, 0), feedback.text < 0),
            }
        ),
        "items": _items_table(catalogue, item_ids),
        "customers": _customers_table(people, customer_ids, epoch, file_format),
    }
    for name, table in tables.items():
        write_table(table, directory, name, file_format)

    leavers = _write_truth(
        directory / TRUTH_DIRECTORY,
        catalogue=catalogue,
        people=people,
        history=history,
        customer_ids=customer_ids,
        item_ids=item_ids,
        epoch=epoch,
        unavailable_from_day=unavailable_from_day,
        arguments={
            "customers": customers,
            "items": items,
            "days": days,
            "seed": seed,
            "start": str(start_day),
            "file_format": file_format,
        },
    )
    return GenerationSummary(
        out_dir=directory,
        file_format=file_format,
        start=str(start_day),
        end=str(start_day + np.timedelta64(days, "D")),
        customers=customers,
        items=items,
        orders=len(history.order_customer),
        purchase_lines=len(history.line_item),
        feedback_rows=len(feedback.customer),
        leavers=leavers,
        complementary_pairs=len(catalogue.pairs),
        seconds=time.perf_counter() - began,
    )


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
    return History(
        order_customer=history.order_customer[by_time],
        order_second=history.order_second[by_time],
        order_channel=history.order_channel[by_time],
        order_delivery_problem=history.order_delivery_problem[by_time],
        line_order=rank[history.line_order],
        line_item=history.line_item,
        line_quantity=history.line_quantity,
        line_unit_price=history.line_unit_price,
        line_defective=history.line_defective,
        drifting_second=history.drifting_second,
        left_second=history.left_second,
        bad_experiences=history.bad_experiences,
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
    return History(
        order_customer=history.order_customer,
        order_second=history.order_second,
        order_channel=history.order_channel,
        order_delivery_problem=history.order_delivery_problem,
        line_order=unique_key // items,
        line_item=unique_key % items,
        line_quantity=quantity,
        line_unit_price=history.line_unit_price[first],
        line_defective=defective,
        drifting_second=history.drifting_second,
        left_second=history.left_second,
        bad_experiences=history.bad_experiences,
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
    directory: Path,
    *,
    catalogue: Catalogue,
    people: Customers,
    history: History,
    customer_ids: pa.Array,
    item_ids: pa.Array,
    epoch: int,
    unavailable_from_day: np.ndarray,
    arguments: dict[str, object],
) -> int:
    """Write the planted truths (always CSV) and return the number of leavers."""
    directory.mkdir(exist_ok=True)
    pairs = catalogue.pairs
    write_table(
        pa.table({"item_a": take(item_ids, pairs[:, 0]), "item_b": take(item_ids, pairs[:, 1])}),
        directory,
        "complementary_pairs",
        "csv",
    )
    left = history.left_second >= 0
    drifting = history.drifting_second >= 0
    left_at = take(timestamps(epoch + history.left_second, "csv"), np.arange(people.size), ~left)
    drifting_since = take(
        timestamps(epoch + history.drifting_second, "csv"), np.arange(people.size), ~drifting
    )
    leavers = np.flatnonzero(left)
    write_table(
        pa.table(
            {
                "customer_id": customer_ids.take(pa.array(leavers)),
                "left_at": left_at.take(pa.array(leavers)),
                "drifting_since": drifting_since.take(pa.array(leavers)),
            }
        ),
        directory,
        "leavers",
        "csv",
    )
    write_table(
        pa.table(
            {
                "customer_id": customer_ids,
                "taste_cluster": pa.array(people.taste_cluster, type=pa.int64()),
                "purchase_rate_per_day": np.round(people.purchase_rate, 6),
                "leave_hazard_per_day": np.round(people.leave_hazard, 8),
                "bad_experiences": pa.array(history.bad_experiences, type=pa.int64()),
                "drifting_since": drifting_since,
                "left_at": left_at,
            }
        ),
        directory,
        "customers",
        "csv",
    )
    write_table(
        pa.table(
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
        ),
        directory,
        "items",
        "csv",
    )
    n_clusters, n_categories = people.cluster_preferences.shape
    preference = people.cluster_preferences / people.cluster_preferences.sum(1, keepdims=True)
    write_table(
        pa.table(
            {
                "taste_cluster": np.repeat(np.arange(n_clusters), n_categories),
                "category": take(
                    pa.array(catalogue.category_names), np.tile(np.arange(n_categories), n_clusters)
                ),
                "preference": np.round(preference.ravel(), 6),
            }
        ),
        directory,
        "taste_clusters",
        "csv",
    )
    (directory / "generation.json").write_text(json.dumps(arguments, indent=2) + "\n")
    return int(left.sum())
