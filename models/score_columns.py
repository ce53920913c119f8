"""The columns of the per-customer score table: what the CRM reads about churn and loyalty.

Kept apart from `models.customer_scores` (which imports scikit-learn, SciPy and skops) so the
server and the MLflow wrappers can name the columns without loading the model code."""

from __future__ import annotations

CHURN_COLUMNS = ("churn_probability", "churn_risk", "churn_reasons")
"""What the CRM asks about churn, per customer (the churn model's output)."""
LOYALTY_COLUMNS = (
    "loyalty_score",
    "segment",
    "p_alive",
    "expected_orders_90d",
    "predicted_clv_365d",
    "expected_next_order_at",
    "avg_days_between_orders",
    "satisfaction",
)
"""What the CRM asks about value and loyalty, per customer (the loyalty model's output)."""
SCORE_COLUMNS = ("customer_id", *CHURN_COLUMNS, *LOYALTY_COLUMNS)
"""The score table's columns, in order (`patronage score`, the training pipeline)."""
SPEND_COLUMN = "predicted_spend"
"""Expected spend in the next N days, in the shop's currency (undiscounted): appended after
`SCORE_COLUMNS` only when a value horizon is asked for (`patronage score --value-horizon-days`)."""
