"""MLflow pyfunc wrappers of the three registered models, loadable anywhere with
`mlflow.pyfunc.load_model("models:/NAME@champion")` (Patronage must be importable there).

The wrapper classes hold no state when logged: the pickle MLflow writes for a custom Python
model (`python_model.pkl`) then only names the class, and every learned number is read in
`load_context` from pickle-free artifacts (JSON, `np.load(allow_pickle=False)`, Parquet).
`check_model_dir` verifies that pickle before loading, so a tampered artifact cannot run code.

Input and output (documented in docs/training.md):
- `patronage-recommender`: a DataFrame with column `customer_id` (str); params `k` (int, 10),
  `exclude_purchased` (`all` | `non-repeatable` | `none`, default `non-repeatable`) and
  `category` (str, "" = any). Output: one row per recommendation, columns
  `customer_id, rank, item_id, score, strategy, note` (rank 1 = best; note says why the
  trending fallback answered, e.g. `new customer`, empty for a personal list).
- `patronage-churn`: column `customer_id`. Output: `customer_id, churn_probability,
  churn_risk, churn_reasons` as scored at the model's `as_of` (NaN / "unknown" for a customer
  the model never saw).
- `patronage-loyalty`: column `customer_id`. Output: `customer_id, loyalty_score, segment,
  p_alive, expected_orders_90d, predicted_clv_365d, expected_next_order_at,
  avg_days_between_orders, satisfaction`, at `as_of`.
For the fast path, `model.unwrap_python_model()` gives the wrapper: `.bundle` (the
`RecommenderBundle`), or `.scores` (the per-customer score table at `.as_of`), `.scorer`.
"""

from __future__ import annotations

import json
import pickletools
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from models.score_columns import CHURN_COLUMNS, LOYALTY_COLUMNS

RECOMMENDATION_COLUMNS = ("customer_id", "rank", "item_id", "score", "strategy", "note")
SCORE_TABLE_FILE = "scores.parquet"
SCORE_META_FILE = "scores.json"
TRUSTED_PICKLE_MODULES = ("models.pyfunc",)
"""The only module whose names the logged `python_model.pkl` may reference."""


def _customer_ids(model_input: Any) -> list[str]:
    """The `customer_id` column of a pyfunc input as strings; ValueError when it is missing."""
    if isinstance(model_input, pd.DataFrame):
        if "customer_id" not in model_input.columns:
            raise ValueError(
                "input must have a customer_id column, got columns "
                f"{', '.join(map(str, model_input.columns))}"
            )
        return model_input["customer_id"].astype(str).tolist()
    if isinstance(model_input, dict) and "customer_id" in model_input:
        return [str(c) for c in np.atleast_1d(model_input["customer_id"])]
    raise ValueError("input must be a DataFrame with a customer_id column")


class RecommenderModel(PythonModel):
    """`patronage-recommender`: top-k items per customer from a `RecommenderBundle`."""

    bundle: Any
    as_of: pd.Timestamp

    def load_context(self, context: Any) -> None:
        """Read the bundle (JSON + npz, no pickle) from the `bundle` artifact."""
        from models.recommenders.bundle import RecommenderBundle

        self.bundle = RecommenderBundle.load(context.artifacts["bundle"])
        self.as_of = self.bundle.as_of

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """Recommendations as rows `customer_id, rank, item_id, score, strategy, note` (note:
        why the trending fallback answered, e.g. `new customer`; empty for personal lists)."""
        params = params or {}
        customers = _customer_ids(model_input)
        k = int(params.get("k", 10))
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        exclude = str(params.get("exclude_purchased") or "non-repeatable")
        category = str(params.get("category") or "") or None
        answers = self.bundle.recommend_many(
            customers, k=k, exclude_purchased=exclude, category=category
        )
        rows: dict[str, list[Any]] = {name: [] for name in RECOMMENDATION_COLUMNS}
        for customer, answer in zip(customers, answers, strict=True):
            for rank, (item, score) in enumerate(
                zip(answer.item_ids, answer.scores, strict=True), start=1
            ):
                rows["customer_id"].append(customer)
                rows["rank"].append(rank)
                rows["item_id"].append(item)
                rows["score"].append(float(score))
                rows["strategy"].append(answer.strategy)
                rows["note"].append(answer.note or "")
        return pd.DataFrame(
            {
                "customer_id": pd.Series(rows["customer_id"], dtype=object),
                "rank": pd.Series(rows["rank"], dtype="int64"),
                "item_id": pd.Series(rows["item_id"], dtype=object),
                "score": pd.Series(rows["score"], dtype="float64"),
                "strategy": pd.Series(rows["strategy"], dtype=object),
                "note": pd.Series(rows["note"], dtype=object),
            }
        )


class _CustomerScoresModel(PythonModel):
    """Shared part of the churn and loyalty wrappers: a per-customer score table at `as_of`."""

    output_columns: tuple[str, ...] = ()
    scores: pd.DataFrame
    as_of: pd.Timestamp
    metadata: dict[str, Any]
    scorer: Any

    def load_context(self, context: Any) -> None:
        """Read the score table (Parquet) and, when logged, the fitted scorer (no pickle)."""
        directory = Path(context.artifacts["scores"])
        self.metadata = json.loads((directory / SCORE_META_FILE).read_text())
        self.as_of = pd.Timestamp(self.metadata["as_of"])
        table = pd.read_parquet(directory / SCORE_TABLE_FILE)
        table["customer_id"] = table["customer_id"].astype(str)
        self.scores = table.set_index("customer_id", drop=False)
        self.scorer = None
        if "scorer" in context.artifacts:
            from models.customer_scores import CustomerScorer

            self.scorer = CustomerScorer.load(context.artifacts["scorer"])

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """The stored scores of the asked customers, in input order (unknown: missing values)."""
        customers = _customer_ids(model_input)
        columns = [c for c in self.output_columns if c in self.scores.columns]
        found = self.scores.reindex(customers)[columns].reset_index(drop=True)
        found.insert(0, "customer_id", pd.Series(customers, dtype=object))
        if "churn_risk" in found.columns:
            found["churn_risk"] = found["churn_risk"].astype(object).fillna("unknown")
        if "churn_reasons" in found.columns:
            found["churn_reasons"] = found["churn_reasons"].astype(object).fillna("")
        if "segment" in found.columns:
            found["segment"] = found["segment"].astype(object).fillna("unknown")
        return found


class ChurnModel(_CustomerScoresModel):
    """`patronage-churn`: churn probability, risk tier and reasons per customer at `as_of`."""

    output_columns = CHURN_COLUMNS


class LoyaltyModel(_CustomerScoresModel):
    """`patronage-loyalty`: loyalty score, segment, value and timing per customer at `as_of`."""

    output_columns = LOYALTY_COLUMNS


def write_score_table(
    scores: pd.DataFrame, directory: Path, as_of: pd.Timestamp, extra: dict[str, Any] | None = None
) -> Path:
    """Write a per-customer score frame (Parquet) and its metadata (JSON) into `directory`.

    `churn_reasons` lists become one string joined by "; " so the file stays flat."""
    directory.mkdir(parents=True, exist_ok=True)
    table = scores.copy()
    table["customer_id"] = table["customer_id"].astype(str)
    if "churn_reasons" in table.columns:
        table["churn_reasons"] = table["churn_reasons"].map(_reasons_text)
    table.to_parquet(directory / SCORE_TABLE_FILE, index=False)
    meta = {"as_of": pd.Timestamp(as_of).isoformat(), "customers": int(len(table))}
    meta.update(extra or {})
    (directory / SCORE_META_FILE).write_text(json.dumps(meta, indent=1, default=str))
    return directory


def _reasons_text(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, str):
        return value
    return "; ".join(str(v) for v in value)


def check_model_dir(model_dir: str | Path) -> None:
    """Refuse a logged model whose `python_model.pkl` references code outside this module.

    Call before `mlflow.pyfunc.load_model` on a local copy (see
    `training.registry.resolve_model_dir`). Raises ValueError naming the offending reference."""
    directory = Path(model_dir)
    candidates = list(directory.glob("python_model.pkl")) + list(
        directory.glob("**/python_model.pkl")
    )
    if not candidates:
        raise ValueError(f"{directory} is not a Patronage pyfunc model (no python_model.pkl)")
    for path in candidates:
        for module, name in _pickle_globals(path.read_bytes()):
            if module not in TRUSTED_PICKLE_MODULES and (module, name) not in _HARMLESS_GLOBALS:
                raise ValueError(
                    f"{path} references {module}.{name}: not a Patronage wrapper; refusing to "
                    "load it (re-train with `patronage train`)"
                )


# cloudpickle pickles a class by reference through these helpers, and MLflow stores the type
# hints of `predict` (a small record naming pandas.DataFrame); nothing else is allowed.
_HARMLESS_GLOBALS = {
    ("mlflow.models.signature", "_TypeHints"),
    ("pandas", "DataFrame"),
    ("pandas.core.frame", "DataFrame"),
    ("copyreg", "_reconstructor"),
    ("copyreg", "__newobj__"),
    ("builtins", "object"),
    ("cloudpickle.cloudpickle", "_class_getnewargs"),
}


def _pickle_globals(data: bytes) -> list[tuple[str, str]]:
    """(module, name) of every global a pickle would import, GLOBAL and STACK_GLOBAL alike.

    STACK_GLOBAL takes its names from the stack: we follow string pushes and the memo, and
    anything we cannot resolve is reported as ("?", "?") so that the caller refuses it."""
    found: list[tuple[str, str]] = []
    top: list[str | None] = []  # the values pushed most recently (None: not a known string)
    memo: dict[int, str | None] = {}
    for opcode, arg, _ in pickletools.genops(data):
        name = opcode.name
        if name in (
            "SHORT_BINUNICODE",
            "BINUNICODE",
            "UNICODE",
            "BINUNICODE8",
            "STRING",
            "BINSTRING",
            "SHORT_BINSTRING",
        ):
            top.append(str(arg))
        elif name == "MEMOIZE":
            memo[len(memo)] = top[-1] if top else None
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[int(str(arg))] = top[-1] if top else None
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            top.append(memo.get(int(str(arg))))
        elif name == "GLOBAL":
            module, attribute = str(arg).split(" ", 1)
            found.append((module, attribute))
            top.append(None)
        elif name == "STACK_GLOBAL":
            pair = (top[-2], top[-1]) if len(top) >= 2 else (None, None)
            found.append((pair[0] or "?", pair[1] or "?"))
            top.append(None)
        elif name not in ("PROTO", "FRAME", "STOP", "MARK"):
            top.append(None)
    return found
