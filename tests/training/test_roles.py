"""Which roles a shop's data can carry, and the sentence that says why not (no model fits)."""

from __future__ import annotations

import pandas as pd

from training.customer_roles import churn_skip_reason, loyalty_skip_reason


class _Shop:
    """Just the purchases the checks read."""

    def __init__(self, rows: list[tuple[str, str, str]]) -> None:
        self.purchases = pd.DataFrame(rows, columns=["order_id", "customer_id", "ordered_at"])
        self.purchases["ordered_at"] = pd.to_datetime(self.purchases["ordered_at"], utc=True)


AS_OF = pd.Timestamp("2026-01-01", tz="UTC")


def test_churn_needs_two_horizons_and_56_days_and_says_what_to_pass() -> None:
    young = _Shop([("o1", "c1", "2025-08-04"), ("o2", "c1", "2025-12-01")])  # 150 days
    reason = churn_skip_reason(young, AS_OF, 90, step_days=28.0)
    assert reason is not None
    assert reason.startswith("churn over 90 days needs 236 days of history")
    assert "this shop has 150: pass --churn-horizon-days 47 or wait 86 more days" in reason
    # Long enough: no reason. Far too short for any horizon: only "wait".
    old = _Shop([("o1", "c1", "2025-01-01"), ("o2", "c1", "2025-12-01")])
    assert churn_skip_reason(old, AS_OF, 90, step_days=28.0) is None
    baby = _Shop([("o1", "c1", "2025-12-01")])
    only_wait = churn_skip_reason(baby, AS_OF, 90, step_days=28.0)
    assert only_wait is not None and "--churn-horizon-days" not in only_wait


def test_loyalty_needs_orders_and_repeat_buyers_before_the_cut() -> None:
    cut = AS_OF - pd.Timedelta(days=90)
    none_before = _Shop([("o1", "c1", "2025-12-01")])
    assert "nobody ordered before 2025-10-03" in str(loyalty_skip_reason(none_before, cut, 90))
    # A rating log brought as purchases: everyone "ordered" once.
    one_each = _Shop([("o1", "c1", "2025-03-01"), ("o2", "c2", "2025-04-01")])
    assert "ordered more than once, and none did" in str(loyalty_skip_reason(one_each, cut, 90))
    # Two lines of one order are still one order.
    one_order = _Shop([("o1", "c1", "2025-03-01"), ("o1", "c1", "2025-03-01")])
    assert loyalty_skip_reason(one_order, cut, 90) is not None
    repeat = _Shop([("o1", "c1", "2025-03-01"), ("o2", "c1", "2025-04-01")])
    assert loyalty_skip_reason(repeat, cut, 90) is None
