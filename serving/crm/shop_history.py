"""What the console shows beside the scores: each customer's orders and feedback, item names,
and the shop's monthly history (cohort retention, satisfaction over time).

Read from the shop's data directory (`Settings.crm_data_dir`, else the directory the served
loyalty or churn champion was trained on, from its `patronage.data_source` tag) with the
project's one loader (`features.loading.load_shop`), once per directory and `as_of`, by the
first console request that needs it (in a worker thread; that request waits); rejected rows go
to a temporary directory, never
into the shop's files. Only rows before the scores' `as_of` are kept, so the pages describe
the same past the scores do. All times are UTC.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from serving.model_store import ServingModels

logger = logging.getLogger("patronage.serving")


class HistoryUnavailable(LookupError):
    """The shop's data directory is unknown or unreadable; the message says what to set."""


@dataclass(frozen=True)
class CustomerHistory:
    """One customer's orders (one row per order line, newest first) and feedback."""

    order_lines: pd.DataFrame
    """Columns: order_id, ordered_at, item_id, item_name, quantity, unit_price, line_total."""
    feedback: pd.DataFrame
    """Columns: created_at, kind, rating, item_id, item_name, text (newest first)."""

    def orders(self) -> pd.DataFrame:
        """One row per order, newest first: order_id, ordered_at, lines, items, total."""
        lines = self.order_lines
        if lines.empty:
            return pd.DataFrame(columns=["order_id", "ordered_at", "lines", "items", "total"])
        grouped = lines.groupby("order_id", sort=False)
        orders = grouped.agg(
            ordered_at=("ordered_at", "min"),
            lines=("item_id", "size"),
            items=("item_name", lambda names: ", ".join(names)),
            total=("line_total", "sum"),
        )
        return orders.reset_index().sort_values("ordered_at", ascending=False)


@dataclass(frozen=True)
class ShopHistory:
    """The shop's purchases and feedback before `as_of`, grouped for fast lookups."""

    directory: Path
    as_of: pd.Timestamp
    purchases: pd.DataFrame
    """Sorted by customer_id; with item_name and line_total (quantity x unit price)."""
    feedback: pd.DataFrame
    """Sorted by customer_id; with item_name."""
    item_names: dict[str, str]

    @classmethod
    def load(cls, directory: Path, as_of: pd.Timestamp) -> ShopHistory:
        """Load and index the shop in `directory`, keeping rows strictly before `as_of`.

        Raises `HistoryUnavailable` when the directory is missing or cannot be read."""
        from features.loading import load_shop

        if not directory.is_dir():
            raise HistoryUnavailable(
                f"the shop's data directory {directory} does not exist on this server: set "
                "PATRONAGE_CRM_DATA_DIR to the shop's data directory"
            )
        rejects = Path(tempfile.mkdtemp(prefix="patronage-crm-rejects-"))
        try:
            shop = load_shop(directory, max_reject_rate=1.0, rejects_dir=rejects).shop
        except Exception as error:
            raise HistoryUnavailable(
                f"could not read the shop's data in {directory}: {type(error).__name__}: {error}"
            ) from error
        finally:
            shutil.rmtree(rejects, ignore_errors=True)
        shop = shop.before(as_of)
        items = shop.items
        names = items["name"] if "name" in items.columns else pd.Series(dtype=object)
        item_names = {
            str(item): str(name)
            for item, name in zip(items["item_id"], names.reindex(items.index), strict=True)
            if isinstance(name, str) and name
        }
        purchases = shop.purchases.sort_values(["customer_id", "ordered_at"], kind="stable")
        named = purchases["item_id"].map(item_names).fillna(purchases["item_id"])
        price = (
            purchases["unit_price"]
            if "unit_price" in purchases.columns
            else pd.Series(np.nan, index=purchases.index)
        )
        purchases = purchases.assign(
            item_name=named, line_total=purchases["quantity"] * price.astype("float64")
        ).reset_index(drop=True)
        feedback = shop.feedback.sort_values(["customer_id", "created_at"], kind="stable")
        feedback_items = feedback.get("item_id", pd.Series(index=feedback.index, dtype=object))
        feedback = feedback.assign(
            item_name=feedback_items.map(item_names).fillna(feedback_items)
        ).reset_index(drop=True)
        return cls(directory, as_of, purchases, feedback, item_names)

    def item_name(self, item_id: str) -> str:
        """The item's name, or its id when the shop gave none."""
        return self.item_names.get(item_id, item_id)

    def customer(self, customer_id: str) -> CustomerHistory:
        """One customer's order lines and feedback, newest first (empty when none)."""
        lines = _rows_of(self.purchases, customer_id)
        columns = ["order_id", "ordered_at", "item_id", "item_name", "quantity"]
        columns += ["unit_price", "line_total"]
        lines = lines.reindex(columns=columns).sort_values("ordered_at", ascending=False)
        said = _rows_of(self.feedback, customer_id)
        said = said.reindex(
            columns=["created_at", "kind", "rating", "item_id", "item_name", "text"]
        ).sort_values("created_at", ascending=False)
        return CustomerHistory(order_lines=lines, feedback=said)

    def last_order_items(self, customer_id: str) -> list[str]:
        """The item ids of the customer's latest order (for cross-sell), in order."""
        lines = _rows_of(self.purchases, customer_id)
        if lines.empty:
            return []
        latest = lines.loc[lines["ordered_at"] == lines["ordered_at"].max(), "order_id"].iloc[0]
        return lines.loc[lines["order_id"] == latest, "item_id"].astype(str).tolist()

    def orders_per_customer(self) -> pd.Series:
        """Number of distinct orders of each customer (index: customer_id)."""
        return self.purchases.groupby("customer_id", sort=False)["order_id"].nunique()


def _rows_of(table: pd.DataFrame, customer_id: str) -> pd.DataFrame:
    """The rows of one customer in a table sorted by customer_id (binary search, no scan)."""
    ids = table["customer_id"].to_numpy()
    start = int(np.searchsorted(ids, customer_id, side="left"))
    end = int(np.searchsorted(ids, customer_id, side="right"))
    return table.iloc[start:end]


def data_directory(models: ServingModels, configured: Path | None) -> Path:
    """The shop's data directory: the configured one, else where the served loyalty (or churn)
    champion was trained from. Raises `HistoryUnavailable` when neither is known."""
    if configured is not None:
        return configured
    for role in ("loyalty", "churn", "recommender"):
        loaded = models.versions.get(role)  # type: ignore[call-overload]
        if loaded is not None and loaded.data_source:
            return Path(loaded.data_source.split(" + events ")[0])
    raise HistoryUnavailable(
        "the served models do not say which data they were trained on: set "
        "PATRONAGE_CRM_DATA_DIR to the shop's data directory"
    )


class HistoryCache:
    """One `ShopHistory` per (directory, as_of), loaded once; a failure is kept and reported
    until the served snapshot changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[Path, pd.Timestamp] | None = None
        self._history: ShopHistory | HistoryUnavailable | None = None

    def history(self, models: ServingModels, configured: Path | None) -> ShopHistory:
        """The history for the served snapshot; raises `HistoryUnavailable` saying why not."""
        directory = data_directory(models, configured)
        as_of = models.loyalty.as_of if "loyalty" in models.versions else models.churn.as_of
        key = (directory, as_of)
        with self._lock:
            if self._key != key or self._history is None:
                try:
                    self._history = ShopHistory.load(directory, as_of)
                except HistoryUnavailable as error:
                    logger.error("CRM console: %s", error)
                    self._history = error
                self._key = key
            found = self._history
        if isinstance(found, HistoryUnavailable):
            raise found
        return found
