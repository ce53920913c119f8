"""Applies the availability posted since training to a recommender bundle's answers.

`BundleRecommender` hides items posted unavailable, shows again items it was trained on as
unavailable once they are posted available (restocked), answers from the precomputed lists
(`serving.precompute`) where they hold the answer, and remembers the live answers of customers
with fresh events per question and events (`serving.fresh_answers`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from serving.fresh_answers import FreshAnswers, question_key
from serving.model_store import RecommendationList, SessionList
from serving.precompute import EXCLUDE_DEFAULT, PrecomputedLists

HiddenItems = Callable[[], frozenset[str]]
"""Items no answer may show right now (posted `available: false` since training)."""
ShownItems = Callable[[], frozenset[str]]
"""Items posted `available: true` since training (a restocked item comes back)."""


def no_posted_items() -> frozenset[str]:
    """The default: the catalog as the model was trained on it."""
    return frozenset()


class BundleRecommender:
    """A `RecommenderBundle` as the routes need it: the bundle's own answers; its fallback for a
    new customer, an unknown basket or an unknown item is strategy `trending` with why in
    `note` (e.g. `new customer`), exactly as `patronage recommend` writes it."""

    def __init__(
        self,
        bundle: Any,
        precompute_k: int = 0,
        hidden_items: HiddenItems = no_posted_items,
        shown_items: ShownItems = no_posted_items,
        next_need_weight: float | None = None,
    ) -> None:
        self.bundle = bundle
        self.next_need_weight = next_need_weight
        """What goes with items bought since training weighs this much in a customer's answer
        (`models.recommenders.fresh_row.with_next_need`; `PATRONAGE_NEXT_NEED_WEIGHT`); None:
        the weight training chose, stored with the bundle."""
        self.hidden_items = hidden_items
        self.shown_items = shown_items
        self.precomputed: PrecomputedLists | None = None
        if precompute_k > 0:
            self.precomputed = PrecomputedLists(bundle, precompute_k)
        self._catalog = frozenset(str(i) for i in bundle.item_ids)
        self._hidden_depth: tuple[frozenset[str], int] = (frozenset(), 0)
        self._trained_unavailable = frozenset(
            str(i) for i in np.asarray(bundle.item_ids)[~np.asarray(bundle.rules.available, bool)]
        )
        # (the posted shown set it was built for, the trained-unavailable items shown again, the
        # bundle with them available, its precomputed lists): replaced as a whole, under the lock.
        self._restock: tuple[frozenset[str] | None, frozenset[str], Any, PrecomputedLists | None]
        self._restock = (None, frozenset(), bundle, self.precomputed)
        self._restock_lock = threading.Lock()
        self._serving = False
        self.fresh_answers = FreshAnswers()

    def on_serving(self) -> None:
        """Called by the model store once this recommender serves: start precomputing."""
        self._serving = True
        for lists in (self.precomputed, self._restock[3]):
            if lists is not None:
                lists.start()

    def on_retired(self) -> None:
        """Called when a swap replaced this recommender: stop precomputing."""
        self._serving = False
        for lists in (self.precomputed, self._restock[3]):
            if lists is not None:
                lists.stop()

    def status(self) -> dict[str, Any]:
        """What `/v1/models` shows about the recommender's fast path (the lists in use)."""
        _, restocked, _, lists = self._restock
        trained = dict(getattr(self.bundle, "next_need_weights", {}))
        return {
            "precomputed": None if lists is None else lists.progress(),
            "restocked_items": len(restocked),
            "next_need_weights": (
                trained
                if self.next_need_weight is None
                else dict.fromkeys(("discovery", "repeat"), self.next_need_weight)
            ),
            "next_need_weights_from": "training" if self.next_need_weight is None else "setting",
            "fresh_answers": self.fresh_answers.status(),
        }

    @staticmethod
    def _convert(answer: Any) -> RecommendationList:
        return RecommendationList(
            tuple(answer.item_ids), tuple(answer.scores), str(answer.strategy), answer.note
        )

    def _hidden(self) -> tuple[frozenset[str], int]:
        """(items hidden now, how many of them this model knows): asking for k + that many,
        then dropping the hidden ones, gives exactly the top-k of the items still shown."""
        hidden = self.hidden_items()
        if not hidden:
            return hidden, 0
        seen, count = self._hidden_depth
        if hidden is not seen:  # the overlay hands out a new set only when it changes
            count = len(hidden & self._catalog)
            self._hidden_depth = (hidden, count)
        return hidden, count

    def _current(self) -> tuple[Any, PrecomputedLists | None]:
        """The bundle to answer with and its precomputed lists: the trained ones, or, once items
        it was trained as unavailable are posted `available: true`, the same models with those
        items shown again and new lists for them, filled in the background (the old lists never
        considered those items; until a row is filled, that customer is scored live)."""
        shown = self.shown_items()
        state = self._restock
        if shown is state[0]:  # the overlay hands out a new set only when it changes
            return state[2], state[3]
        with self._restock_lock:
            state = self._restock
            if shown is not state[0]:
                back = frozenset(shown & self._trained_unavailable)
                if back == state[1]:  # another item's post: nothing to rebuild
                    state = (shown, *state[1:])
                else:
                    previous = state[3]
                    bundle, lists = self.bundle, self.precomputed
                    if back:
                        bundle = self.bundle.with_availability(dict.fromkeys(back, True))
                        lists = None
                        if self.precomputed is not None:
                            lists = PrecomputedLists(bundle, self.precomputed.depth)
                            if self._serving:
                                lists.start()
                    state = (shown, back, bundle, lists)
                    if previous is not None and previous is not self.precomputed:
                        previous.stop()
                self._restock = state
            return state[2], state[3]

    @staticmethod
    def _shown(answer: RecommendationList, hidden: frozenset[str], k: int) -> RecommendationList:
        """The first k items of `answer` that are not hidden."""
        if not hidden:
            if len(answer.item_ids) <= k:
                return answer
            keep = list(range(k))
        else:
            keep = [i for i, item in enumerate(answer.item_ids) if item not in hidden][:k]
        return RecommendationList(
            tuple(answer.item_ids[i] for i in keep),
            tuple(answer.scores[i] for i in keep),
            answer.strategy,
            answer.note,
        )

    @classmethod
    def _from_list(
        cls, answer: RecommendationList, hidden: frozenset[str], k: int, depth: int
    ) -> RecommendationList | None:
        """The top k of a list computed `depth` deep, or None when hiding left fewer than k
        items and the list may not have held every candidate (then score live, deeper)."""
        shown = cls._shown(answer, hidden, k)
        if len(shown.item_ids) == k or len(answer.item_ids) < depth:
            return shown
        return None

    def recommend_for(
        self,
        customer_id: str,
        k: int,
        category: str | None,
        exclude_purchased: str,
        extra_purchased: Sequence[str],
        extra_interactions: Sequence[tuple[str, str]] = (),
    ) -> RecommendationList:
        """Top-k for one customer (new customers: trending). The default question (no category,
        `non-repeatable`, nothing bought, viewed or carted since `as_of`, k within the
        precomputed depth) is answered from the lists computed at load time: the same numbers,
        no scoring. A customer with events since `as_of` is scored live from the updated row,
        once per question and events (`serving.fresh_answers`). Items posted as unavailable
        since training never appear."""
        hidden, extra = self._hidden()
        bundle, precomputed = self._current()
        if (
            precomputed is not None
            and category is None
            and exclude_purchased == PrecomputedLists.EXCLUDE
            and not extra_purchased
            and not extra_interactions
            and k <= precomputed.depth
        ):
            if customer_id in precomputed.index:
                answer = precomputed.lookup(customer_id, precomputed.depth if extra else k)
                # None: this customer's row is not filled yet (then scored live below).
                shown = (
                    None
                    if answer is None
                    else self._from_list(answer, hidden, k, precomputed.depth)
                )
            else:
                # Every new customer gets the same list for this question: computed once.
                if precomputed.cold is None:
                    precomputed.cold = self._convert(
                        bundle.recommend_for(
                            customer_id, k=precomputed.depth, exclude_purchased=EXCLUDE_DEFAULT
                        )
                    )
                shown = self._from_list(precomputed.cold, hidden, k, precomputed.depth)
            if shown is not None:
                return shown
        depth, key = k + extra, None
        if extra_purchased or extra_interactions:
            if precomputed is not None and bundle.rules.max_per_category is None:
                # A top-k is the first k of a deeper top list (one order: score, then column;
                # not so once `max_per_category` diversifies): every k up to the lists' depth
                # shares one scoring, as the precomputed lists do.
                depth = max(depth, precomputed.depth)
            key = question_key(
                customer_id,
                depth,
                category,
                exclude_purchased,
                tuple(extra_purchased),
                tuple(extra_interactions),
                self.next_need_weight,
            )
            remembered = self.fresh_answers.get(bundle, key)
            if remembered is not None:
                return self._shown(remembered, hidden, k)
        answer = self._convert(
            bundle.recommend_for(
                customer_id,
                k=depth,
                category=category,
                exclude_purchased=exclude_purchased,
                extra_purchased=extra_purchased,
                extra_interactions=extra_interactions,
                next_need_weight=self.next_need_weight,
            )
        )
        if key is not None:
            self.fresh_answers.put(bundle, key, answer)
        return self._shown(answer, hidden, k)

    def left_out_when_bought(
        self, item_ids: Sequence[str], exclude_purchased: str
    ) -> frozenset[str]:
        """The items of `item_ids` that `exclude_purchased` leaves out of a customer's answers
        once the customer bought them (none for `none`; for the default, those the shop's
        learned rule does not keep); ids the model does not know are not listed (no answer
        shows them). Raises ValueError for an unknown rule."""
        bundle = self._current()[0]
        columns = bundle.rules.blocked_columns(bundle.item_columns(item_ids), exclude_purchased)
        return frozenset(str(item) for item in np.asarray(bundle.item_ids)[columns])

    def session(self, item_ids: Sequence[str], k: int) -> SessionList:
        """Top-k for an anonymous session; items posted as unavailable never appear."""
        hidden, extra = self._hidden()
        found = self._current()[0].session(item_ids, k=k + extra)
        answer = self._shown(self._convert(found.recommendation), hidden, k)
        return SessionList(answer, tuple(found.unknown_items))

    def cross_sell(
        self, item_ids: Sequence[str], customer_id: str | None, k: int
    ) -> RecommendationList:
        """Top-k for a basket; items posted as unavailable since training never appear."""
        hidden, extra = self._hidden()
        answer = self._convert(
            self._current()[0].cross_sell(item_ids, customer_id=customer_id, k=k + extra)
        )
        return self._shown(answer, hidden, k)

    def similar(self, item_id: str, k: int) -> RecommendationList:
        """Top-k similar items (an unknown item: trending); items posted as unavailable since
        training never appear."""
        hidden, extra = self._hidden()
        answer = self._convert(self._current()[0].similar(item_id, k=k + extra))
        return self._shown(answer, hidden, k)
