"""Remembers the answers of customers with events since the model's data, per question and events.

A customer with purchases, views or carts posted since the recommender's `as_of` is scored live
from their updated row (`RecommenderBundle.recommend_for`), and a storefront asks again for the
same customer on every page until the next event. That answer is a pure function of the served
bundle, the question (`k`, category, `exclude_purchased`, next-need weight) and the customer's
events since `as_of`, so the key holds all of them: a new event is a new key and is scored
afresh, never answered from an older one. `FreshAnswers` keeps the latest `CAPACITY` answers
(least recently used out) and is emptied when the bundle it answers for changes. An
`OrderedDict` rather than `functools.lru_cache` (or cachetools): the caller scores outside the
lock and puts the answer afterwards, and the whole memory goes with the bundle.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

from serving.model_store import RecommendationList

CAPACITY = 4096
"""Answers kept per worker (a top-k list each: about 2 MB for 4,096 lists of 10)."""


class FreshAnswers:
    """Answers of customers with fresh events, keyed by `question_key`, one bundle at a time.

    Thread-safe (one lock around each dictionary step; the request path holds it for about a
    microsecond)."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._answers: OrderedDict[Hashable, RecommendationList] = OrderedDict()
        self._bundle: Any = None
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, bundle: Any, key: Hashable) -> RecommendationList | None:
        """The answer remembered for `key` from `bundle`, or None (then the caller scores and
        calls `put`). A bundle other than the last one's forgets every answer."""
        with self._lock:
            if bundle is not self._bundle:
                self._answers.clear()
                self._bundle = bundle  # held, so its id is never another bundle's
            answer = self._answers.get(key)
            if answer is None:
                self.misses += 1
                return None
            self._answers.move_to_end(key)
            self.hits += 1
            return answer

    def put(self, bundle: Any, key: Hashable, answer: RecommendationList) -> None:
        """Remember `bundle`'s `answer` for `key`, dropping the least recently used beyond
        `capacity` (ignored when the bundle changed meanwhile)."""
        with self._lock:
            if bundle is not self._bundle:
                return
            self._answers[key] = answer
            self._answers.move_to_end(key)
            while len(self._answers) > self.capacity:
                self._answers.popitem(last=False)

    def status(self) -> dict[str, int]:
        """Answers remembered now, and lookups that found one or not since start."""
        return {"remembered": len(self._answers), "hits": self.hits, "misses": self.misses}


def question_key(
    customer_id: str,
    k: int,
    category: str | None,
    exclude_purchased: str,
    extra_purchased: tuple[str, ...],
    extra_interactions: tuple[tuple[str, str], ...],
    next_need_weight: float | None,
) -> Hashable:
    """The key of one fresh question: everything the bundle's answer depends on besides the
    bundle itself."""
    return (
        customer_id,
        k,
        category,
        exclude_purchased,
        extra_purchased,
        extra_interactions,
        next_need_weight,
    )
