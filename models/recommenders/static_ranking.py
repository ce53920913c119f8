"""Every available item ordered once by a score that does not depend on the request, so that a
one-row answer merges its few scored columns into it instead of ranking the whole catalog
(`RecommenderBundle._top_of_row`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class StaticRanking:
    """Every available item ordered by a score that does not depend on the request: what a
    column scores in `RecommenderBundle._top` when the model gives it `base`."""

    base: np.ndarray
    """float32 per item column, the model's score before the tie-break."""
    scores: np.ndarray
    """float32 per item column: `base` plus the trending tie-break, exactly as `_top` adds it."""
    order: np.ndarray
    """The available item columns by `scores` descending, the lower column first on ties."""
    finite: bool
    """False when some available item's score is infinite or NaN (then rank densely)."""

    @classmethod
    def of(cls, base: np.ndarray, tie_break: np.ndarray, available: np.ndarray) -> StaticRanking:
        """The ranking of `base` (float32 per column) for the `available` items (bool)."""
        scores = np.asarray(base, dtype=np.float32) + tie_break
        order = np.argsort(-scores, kind="stable")
        order = order[available[order]]
        finite = bool(np.isfinite(scores[order]).all())
        return cls(np.asarray(base, dtype=np.float32), scores, order, finite)

    def first(self, n: int, *skip: np.ndarray) -> np.ndarray:
        """The first `n` columns of `order` in none of the `skip` arrays (each sorted, unique)."""
        # The skipped columns can take at most as many places in the head as they are many.
        head = self.order[: n + sum(len(columns) for columns in skip)]
        keep = np.ones(len(head), dtype=bool)
        for columns in skip:
            keep &= ~is_in(head, columns)
        return head[keep][:n]


def is_in(columns: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """bool per column: is it in `sorted_set` (ascending, unique)? For few columns, no sort."""
    if len(sorted_set) == 0:
        return np.zeros(len(columns), dtype=bool)
    place = np.minimum(np.searchsorted(sorted_set, columns), len(sorted_set) - 1)
    return sorted_set[place] == columns
