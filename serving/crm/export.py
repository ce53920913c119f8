"""The customers CSV: the filtered, sorted list, streamed in chunks, with reasons and the top 3
win-back items of each customer.

The first columns are exactly `patronage score`'s (`SCORE_COLUMNS`, written the way pandas
writes that command's table: reasons joined by "; ", times as `YYYY-MM-DD HH:MM:SS+00:00`),
so an export of the whole list equals that command's output on the same model. Then:
`days_since_last_order` (to `as_of`, days), `value_at_risk` (churn probability x predicted
365-day value, shop currency; both to 2 decimals) and the win-back items (the recommender's
top 3 for the customer, ids and names, "; "-joined). Memory stays bounded: one chunk of
`CHUNK_ROWS` customers at a time.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd

from models.score_columns import SCORE_COLUMNS
from serving.crm.customer_frame import CustomerFrame
from serving.model_store import Recommender, RoleNotTrained

CHUNK_ROWS = 5_000
WINBACK_ITEMS = 3
REASON_SEPARATOR = "; "
"""As `models.customer_scores` joins reasons in the score table."""
EXTRA_COLUMNS = (
    "days_since_last_order",
    "value_at_risk",
    "winback_item_ids",
    "winback_item_names",
)
EXPORT_COLUMNS = (*SCORE_COLUMNS, *EXTRA_COLUMNS)


def winback_items(recommender: Recommender, customer_id: str) -> list[str]:
    """The recommender's top 3 items for a customer (bought items excluded unless
    repeatable); empty when the shop has no recommender."""
    try:
        answer = recommender.recommend_for(customer_id, WINBACK_ITEMS, None, "non-repeatable", ())
    except RoleNotTrained:
        return []
    return list(answer.item_ids)


def _chunk_frame(
    frame: CustomerFrame,
    rows: np.ndarray,
    recommender: Recommender,
    item_name: Callable[[str], str],
) -> pd.DataFrame:
    columns = frame.score_columns(rows)
    columns["churn_reasons"] = [REASON_SEPARATOR.join(r) for r in columns["churn_reasons"]]
    table = pd.DataFrame({name: columns[name] for name in SCORE_COLUMNS})
    table["expected_next_order_at"] = pd.to_datetime(
        table["expected_next_order_at"], utc=True, format="ISO8601"
    )
    # to 2 decimals, as the score table rounds days and money
    for name in EXTRA_COLUMNS[:2]:
        table[name] = np.round(frame.numbers[name][rows], 2)
    winback = [winback_items(recommender, c) for c in columns["customer_id"]]
    table["winback_item_ids"] = [REASON_SEPARATOR.join(items) for items in winback]
    table["winback_item_names"] = [
        REASON_SEPARATOR.join(item_name(i) for i in items) for items in winback
    ]
    return table


def stream_csv(
    frame: CustomerFrame,
    rows: np.ndarray,
    recommender: Recommender,
    item_name: Callable[[str], str],
) -> Iterator[bytes]:
    """CSV bytes of `rows` (frame rows, in order), header first, `CHUNK_ROWS` at a time."""
    for start in range(0, max(len(rows), 1), CHUNK_ROWS):
        chunk = _chunk_frame(frame, rows[start : start + CHUNK_ROWS], recommender, item_name)
        buffer = io.StringIO()
        chunk.to_csv(buffer, index=False, header=start == 0)
        yield buffer.getvalue().encode("utf-8")
