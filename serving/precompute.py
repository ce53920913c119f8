"""Precomputed top-K recommendation lists of every known customer, filled in the background.

The fast path of the default question (no category, `non-repeatable`, nothing bought since
`as_of`): a request slices an array row instead of scoring. Nothing here touches MLflow or disk.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import numpy as np

from serving.model_store import RecommendationList

logger = logging.getLogger("patronage.serving")
EXCLUDE_DEFAULT = "non-repeatable"
"""The `exclude_purchased` rule of the default question (the one precomputed)."""


class PrecomputedLists:
    """Top-K items of every known customer for the default question, as arrays.

    Filled by a background thread once the recommender is serving (`start`), in chunks, with
    the bundle's own batched `recommend_many`; until a customer's row is filled, that customer
    is scored live. A request only slices a filled row. `stop` ends the filling when the
    recommender is retired by a swap."""

    EXCLUDE = EXCLUDE_DEFAULT
    CHUNK = 256

    def __init__(self, bundle: Any, depth: int) -> None:
        self.bundle = bundle
        self.customer_ids = [str(c) for c in bundle.customer_ids]
        self.item_ids = [str(i) for i in bundle.item_ids]
        self.index = {customer_id: row for row, customer_id in enumerate(self.customer_ids)}
        self.depth = depth
        self.items = np.full((len(self.customer_ids), depth), -1, dtype=np.int32)
        self.scores = np.zeros((len(self.customer_ids), depth), dtype=np.float32)
        self.lengths = np.full(len(self.customer_ids), -1, dtype=np.int32)  # -1: not yet
        self.filled = 0
        self.strategy = ""
        self.seconds = 0.0
        self.cold: RecommendationList | None = None
        """The answer for any new customer, filled on first use."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Begin filling in a daemon thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._fill, name="patronage-precompute", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Stop filling (the lists already filled stay valid)."""
        self._stop.set()

    def _fill(self) -> None:
        started = time.perf_counter()
        column = {item: position for position, item in enumerate(self.item_ids)}
        try:
            for start in range(0, len(self.customer_ids), self.CHUNK):
                if self._stop.is_set():
                    return
                chunk = self.customer_ids[start : start + self.CHUNK]
                answers = self.bundle.recommend_many(
                    chunk, k=self.depth, exclude_purchased=self.EXCLUDE
                )
                for offset, answer in enumerate(answers):
                    row = start + offset
                    n = len(answer.item_ids)
                    self.items[row, :n] = [column[i] for i in answer.item_ids]
                    self.scores[row, :n] = answer.scores
                    self.strategy = answer.strategy
                    self.lengths[row] = n  # last: a reader trusts a row once its length is set
                self.filled = min(start + self.CHUNK, len(self.customer_ids))
                time.sleep(0)  # let request threads in between chunks
        except Exception:  # the live path still answers; say why the fast path stopped
            logger.exception("precomputing recommendations stopped")
        finally:
            self.seconds = time.perf_counter() - started

    def progress(self) -> dict[str, Any]:
        """Customers filled so far, of how many, and the seconds it took (when done)."""
        done = self.filled >= len(self.customer_ids)
        return {
            "customers": self.filled,
            "of": len(self.customer_ids),
            "depth": self.depth,
            "done": done,
            "seconds": round(self.seconds, 1) if done else None,
        }

    def lookup(self, customer_id: str, k: int) -> RecommendationList | None:
        """The precomputed top-k, or None (unknown customer, row not filled yet, k too deep)."""
        row = self.index.get(customer_id)
        if row is None or k > self.depth:
            return None
        length = int(self.lengths[row])
        if length < 0:
            return None
        n = min(k, length)
        item_ids = self.item_ids
        return RecommendationList(
            tuple(item_ids[i] for i in self.items[row, :n].tolist()),
            tuple(self.scores[row, :n].tolist()),
            self.strategy,
        )
