"""Feedback driven by each order's experience: what went wrong shows up as complaints, returns and
low ratings; what went well as good ratings and reviews."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from features.sample_shop.people import SECONDS_PER_DAY
from features.sample_shop.simulation import History

KINDS = ("rating", "review", "complaint", "return")
RATING, REVIEW, COMPLAINT, RETURN = range(4)
TEXTS = (
    "Arrived damaged",  # 0: defective item
    "Not as described",
    "Stopped working after a week",
    "Parcel arrived late",  # 3: delivery problem
    "Parcel never arrived",
    "Courier left it in the rain",
    "Great value, would buy again",  # 6: review of a good line
    "Does exactly what it says",
    "Good quality, fast delivery",
    "Changed my mind",  # 9: return of a fine item
    "Returned: faulty",  # 10: return of a defective item
)
DEFECT_TEXTS = np.array([0, 1, 2])
DELIVERY_TEXTS = np.array([3, 4, 5])
REVIEW_TEXTS = np.array([6, 7, 8])


@dataclass(frozen=True)
class Feedback:
    """Feedback rows as parallel arrays, sorted by time; -1 / 0 mean "none" for ids / rating."""

    customer: np.ndarray
    second: np.ndarray  # int64 seconds after the start of the period
    kind: np.ndarray  # index into KINDS
    item: np.ndarray  # -1 when the row is about a whole order
    order: np.ndarray  # index of the order the row is about (always set here)
    rating: np.ndarray  # 1-5, 0 when none
    text: np.ndarray  # index into TEXTS, -1 when none


def build_feedback(
    rng: np.random.Generator,
    history: History,
    *,
    item_consumable: np.ndarray,
    vocal: np.ndarray,
    days: int,
) -> Feedback:
    """Draw the feedback rows for the orders and lines of `history`; rows after the period are
    dropped.

    Every row refers to an existing order (and item of that order), dated 1 minute to 20 days
    after the order."""
    order_second, line_order = history.order_second, history.line_order
    line_item, line_defective = history.line_item, history.line_defective
    line_customer = history.order_customer[line_order]
    line_vocal = vocal[line_customer]
    line_count = len(line_item)
    first_line = np.ones(line_count, dtype=bool)
    first_line[1:] = line_order[1:] != line_order[:-1]
    delivery_line = history.order_delivery_problem[line_order]
    good_line = ~line_defective & ~delivery_line
    pieces: list[tuple[np.ndarray, ...]] = []

    def add(
        mask: np.ndarray,
        kind: int,
        rating: np.ndarray,
        text: np.ndarray,
        delay_days: tuple[float, float],
        about_item: bool = True,
    ) -> None:
        lines = np.flatnonzero(mask)
        low, high = (int(d * SECONDS_PER_DAY) for d in delay_days)
        wait = rng.integers(max(low, 60), high, size=len(lines))  # never before the order
        pieces.append(
            (
                line_customer[lines],
                order_second[line_order[lines]] + wait,
                np.full(len(lines), kind),
                line_item[lines] if about_item else np.full(len(lines), -1),
                line_order[lines],
                rating[lines],
                text[lines],
            )
        )

    def chance(p: float) -> np.ndarray:
        return rng.random(line_count) < np.minimum(p * line_vocal, 0.95)

    no_rating = np.zeros(line_count, dtype=np.int64)
    no_text = np.full(line_count, -1)
    low_rating = rng.choice([1, 2], p=[0.6, 0.4], size=line_count)
    good_rating = rng.choice([3, 4, 5], p=[0.15, 0.35, 0.5], size=line_count)
    happy_rating = rng.choice([4, 5], p=[0.3, 0.7], size=line_count)
    defect_text = rng.choice(DEFECT_TEXTS, size=line_count)
    delivery_text = rng.choice(DELIVERY_TEXTS, size=line_count)
    review_text = rng.choice(REVIEW_TEXTS, size=line_count)

    # A defective item: returns, low ratings and complaints about that item.
    faulty = np.full(line_count, 10)
    add(line_defective & chance(0.45), RETURN, no_rating, faulty, (2, 20))
    add(line_defective & chance(0.40), RATING, low_rating, defect_text, (1, 10))
    add(line_defective & chance(0.30), COMPLAINT, no_rating, defect_text, (0, 3))
    # A delivery problem: a complaint about the whole order, sometimes a low rating.
    delivery = delivery_line & first_line
    add(delivery & chance(0.60), COMPLAINT, no_rating, delivery_text, (0, 2), about_item=False)
    add(delivery & chance(0.25), RATING, low_rating, no_text, (1, 10))
    # A good line: sometimes a rating, rarely a review, and a few returns of durables.
    add(good_line & chance(0.06), RATING, good_rating, no_text, (1, 14))
    add(good_line & chance(0.015), REVIEW, happy_rating, review_text, (2, 20))
    changed_mind = good_line & ~item_consumable[line_item] & chance(0.02)
    add(changed_mind, RETURN, no_rating, np.full(line_count, 9), (1, 14))

    columns = [np.concatenate(parts) for parts in zip(*pieces, strict=True)]
    customer, second, kind, item, order, rating, text = columns
    keep = second < days * SECONDS_PER_DAY
    order_by = np.lexsort((item[keep], kind[keep], order[keep], second[keep]))
    return Feedback(
        *(column[keep][order_by] for column in (customer, second, kind, item, order, rating, text))
    )
