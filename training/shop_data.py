"""What training reads: the shop's files validated, the server's posted events merged in, the
content hash and the summary recorded with every version (timestamps UTC).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import pandas as pd

from training.options import TrainOptions

if TYPE_CHECKING:
    from features.shop import Shop


@dataclass(frozen=True)
class DataSummary:
    """What was trained on: where, its content hash, size and time range."""

    source: str
    sha256: str
    rows: dict[str, int]
    first_order_at: pd.Timestamp
    last_order_at: pd.Timestamp
    rejected_rows: int
    notes: tuple[str, ...] = ()
    """What the user should know about the data used (posted events left out, and why)."""


class TrainingData(NamedTuple):
    """What the first stage hands on: the shop's rows before `as_of`, `as_of` itself (UTC,
    exclusive) and the summary recorded with every version."""

    shop: Shop
    as_of: pd.Timestamp
    summary: DataSummary


def load_training_data(options: TrainOptions) -> TrainingData:
    """Load and validate the shop, merge the posted events, and fix `as_of` (default: midnight
    UTC after the last purchase). Raises ValueError when the data is refused or holds no
    purchase before `as_of`."""
    from features.loading import DataRejected, load_shop, to_utc
    from features.postgres_url import is_postgres_url, split_url

    directory: Path | str
    if is_postgres_url(options.directory):
        directory = str(options.directory)
        where = split_url(directory).masked
    else:
        directory = Path(options.directory)
        where = str(directory.resolve())
    try:
        rejects_dir = Path(options.rejects_dir) if options.rejects_dir is not None else None
        loaded = load_shop(
            directory, max_reject_rate=options.max_reject_rate, rejects_dir=rejects_dir
        )
    except DataRejected as error:
        raise ValueError(f"the data in {where} was refused: {error}") from error
    # Events first: the default as_of must see a purchase posted after the files' last order.
    shop, events, notes = merge_events(loaded.shop, options)
    if shop.purchases.empty:
        raise ValueError(f"{where} holds no valid purchases")
    last = shop.purchases["ordered_at"].max()
    as_of = (
        to_utc(options.as_of)
        if options.as_of is not None
        else last.floor("D") + pd.Timedelta(days=1)
    )
    if events and options.extra_purchases is not None and len(options.extra_purchases):
        late = int((options.extra_purchases["ordered_at"] >= as_of).sum())
        if late:
            notes.append(
                f"{late} posted purchase line(s) are dated at or after --as-of "
                f"{as_of.isoformat()} and were not used"
            )
    shop = shop.before(as_of)
    if shop.purchases.empty:
        raise ValueError(f"no purchase before --as-of {as_of.isoformat()}")
    rejected = sum(int(table.rejected) for table in loaded.report.tables.values())
    sha256 = content_hash(loaded.shop)
    if events:
        sha256 = hashlib.sha256(f"{sha256}+{events}".encode()).hexdigest()
    data = DataSummary(
        source=where + (f" + events {options.events_source}" if events else ""),
        sha256=sha256,
        rows={
            "purchases": len(shop.purchases),
            "feedback": len(shop.feedback),
            "items": len(shop.items),
            "customers": len(shop.customers),
        },
        first_order_at=shop.purchases["ordered_at"].min(),
        last_order_at=shop.purchases["ordered_at"].max(),
        rejected_rows=rejected,
        notes=tuple(notes),
    )
    return TrainingData(shop, as_of, data)


def merge_events(shop: Shop, options: TrainOptions) -> tuple[Shop, str, list[str]]:
    """The shop with the event log's item updates applied and its purchases and feedback
    appended; returns (shop, events hash, notes on posted rows not used).

    A purchase already in the files (same order_id and item_id) is kept once; events naming an
    item the catalog does not know (the files' items plus items posted as events) are dropped
    and counted in the notes."""
    from features.shop import Shop

    frames = [
        f
        for f in (options.extra_purchases, options.extra_feedback, options.extra_items)
        if f is not None
    ]
    notes: list[str] = []
    if not any(len(f) for f in frames):
        return shop, "", notes
    items = apply_item_updates(shop.items, options.extra_items)
    purchases, feedback = shop.purchases, shop.feedback
    if options.extra_purchases is not None and len(options.extra_purchases):
        known_items = set(items["item_id"].astype(str))
        known = options.extra_purchases["item_id"].astype(str).isin(known_items)
        extra = options.extra_purchases[known]
        if not known.all():
            notes.append(
                f"{int((~known).sum())} posted purchase line(s) name an item the catalog does "
                "not know and were not used (post the item first)"
            )
        purchases = pd.concat([purchases, extra[purchases.columns.intersection(extra.columns)]])
        purchases = purchases.drop_duplicates(["order_id", "item_id"], keep="first")
        purchases = purchases.sort_values("ordered_at", kind="stable").reset_index(drop=True)
    if options.extra_feedback is not None and len(options.extra_feedback):
        extra_feedback = options.extra_feedback
        feedback = pd.concat(
            [feedback, extra_feedback[feedback.columns.intersection(extra_feedback.columns)]]
        ).reset_index(drop=True)
    digest = hashlib.sha256()
    for frame in frames:
        digest.update(pd.util.hash_pandas_object(frame.astype(str), index=False).values.tobytes())
    merged = Shop(purchases=purchases, feedback=feedback, items=items, customers=shop.customers)
    return merged, digest.hexdigest(), notes


def apply_item_updates(items: pd.DataFrame, updates: pd.DataFrame | None) -> pd.DataFrame:
    """The catalog with posted item rows applied (a new frame; `items` is not modified).

    `updates` holds one row per item (`features.event_log.read_item_updates`: per column the latest
    value posted); its non-empty values replace the catalog's. Items the catalog does not have
    are added (available unless the update says otherwise)."""
    if updates is None or not len(updates):
        return items
    updates = updates.drop_duplicates("item_id", keep="last").set_index(
        updates["item_id"].astype(str).rename(None)
    )
    catalog = items.set_index(items["item_id"].astype(str).rename(None), drop=False)
    new_ids = updates.index.difference(catalog.index)
    if len(new_ids):
        added = pd.DataFrame({"item_id": list(new_ids)}, index=new_ids)
        catalog = pd.concat([catalog, added.reindex(columns=catalog.columns)])
        catalog.loc[new_ids, "available"] = True
    for column in ("available", "name", "category", "price"):
        if column not in updates.columns or column not in catalog.columns:
            continue
        given = updates[column].dropna()
        if len(given):
            catalog.loc[given.index, column] = given.to_numpy()
    return catalog.astype(items.dtypes.to_dict()).reset_index(drop=True)


def content_hash(shop: Shop) -> str:
    """SHA-256 over the validated tables (accepted rows, in canonical types and row order; per
    table its name, column names and types, then every row's hash), so the same data gives the
    same hash whether it came from CSV, Parquet or PostgreSQL. Rejected rows do not count."""
    from features.contract import TABLES

    digest = hashlib.sha256()
    for name in sorted(TABLES):
        frame: pd.DataFrame = getattr(shop, name)
        digest.update(name.encode())
        digest.update(repr([(str(c), str(t)) for c, t in frame.dtypes.items()]).encode())
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()
