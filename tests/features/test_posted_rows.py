"""Rows posted as JSON records pass the validator of a shop's files (features.posted_rows)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.posted_rows import RejectedRow, check_posted_rows
from features.validation import RawTable, check_tables

AS_OF = pd.Timestamp("2026-01-10T12:00:00Z")


def _purchase(**changes: object) -> dict[str, object]:
    row: dict[str, object] = {
        "order_id": "o1",
        "customer_id": "c1",
        "item_id": "i1",
        "quantity": 2,
        "unit_price": None,
        "ordered_at": "2026-01-05T08:30:00+01:00",
        "channel": None,
    }
    row.update(changes)
    return row


def test_accepted_rows_come_back_in_canonical_plain_values() -> None:
    feedback = {"customer_id": " c1 ", "created_at": "2026-01-06", "kind": "review", "text": "ok"}
    items = {"item_id": "i1", "available": False, "price": 2.5}
    accepted, rejected = check_posted_rows(
        {"purchases": [_purchase(quantity=2**63 - 1)], "feedback": [feedback], "items": [items]},
        AS_OF,
    )
    assert rejected == []
    (purchase,) = accepted["purchases"]
    assert purchase["ordered_at"] == pd.Timestamp("2026-01-05T07:30:00Z")  # in UTC
    assert purchase["quantity"] == 2**63 - 1 and type(purchase["quantity"]) is int  # exact
    assert purchase["unit_price"] is None and purchase["channel"] is None
    assert accepted["feedback"][0]["customer_id"] == "c1"  # trimmed, as in a file
    assert accepted["feedback"][0]["rating"] is None
    assert accepted["items"] == [
        {"item_id": "i1", "name": None, "category": None, "price": 2.5, "available": False}
    ]


def test_rejects_name_the_request_positions_and_rows() -> None:
    purchases = [_purchase(), _purchase(), _purchase(customer_id="c2", item_id="i2")]
    accepted, rejected = check_posted_rows(
        {"purchases": purchases}, AS_OF, positions={"purchases": [0, 4, 7]}
    )
    assert [r["order_id"] for r in accepted["purchases"]] == ["o1"]
    assert rejected == [
        RejectedRow("purchases", 4, "duplicate_line: same values as row 0"),
        RejectedRow(
            "purchases",
            7,
            "order_conflict: order o1 is on row 0 for customer c1 at 2026-01-05T07:30:00+00:00; "
            "this row says customer c2 at 2026-01-05T07:30:00+00:00",
        ),
    ]


def test_references_to_the_shop_are_not_checked() -> None:
    feedback = {"customer_id": "c9", "created_at": "2026-01-06", "kind": "complaint",
                "order_id": "o-old", "item_id": "i-old"}  # fmt: skip
    accepted, rejected = check_posted_rows({"feedback": [feedback]}, AS_OF)
    assert rejected == [] and len(accepted["feedback"]) == 1


def test_posted_rows_get_the_reasons_a_file_gets() -> None:
    """The same rows as a CSV file would spell them get the same reason codes."""
    purchases = [
        _purchase(),
        _purchase(order_id="o2", quantity=0),
        _purchase(order_id="o3", ordered_at="2026-02-01T00:00:00Z"),
        _purchase(order_id="o4", customer_id="   "),
        _purchase(order_id="o5", ordered_at="2300-01-01"),
    ]
    _, rejected = check_posted_rows({"purchases": purchases}, AS_OF)
    posted = {r.row: r.reason.split(":")[0] for r in rejected}
    as_text = pd.DataFrame(purchases).astype("str").replace("None", "")
    raw = RawTable("purchases", as_text, np.arange(2, 2 + len(purchases)))
    verdict = check_tables({"purchases": raw}, AS_OF)["purchases"]
    from_file = {int(row): verdict.reasons[row] for row in verdict.rejected_rows}
    assert (
        posted
        == from_file
        == {
            1: "out_of_range",
            2: "after_as_of",
            3: "missing_value",
            4: "bad_timestamp",
        }
    )


def test_a_file_says_now_is_no_timestamp() -> None:
    """pandas reads "now" and "today" as the current time; the contract does not."""
    frame = pd.DataFrame([_purchase(order_id=f"o{i}", ordered_at=v) for i, v in enumerate(
        ["now", "today", "2026-01-05T08"]
    )]).astype("str").replace("None", "")  # fmt: skip
    raw = RawTable("purchases", frame, np.arange(2, 5))
    verdict = check_tables({"purchases": raw}, AS_OF)["purchases"]
    assert list(verdict.reasons) == ["bad_timestamp", "bad_timestamp", None]
