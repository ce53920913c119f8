"""The models being served: an immutable snapshot, swapped atomically when the champion changes.

`ServingModels` is everything the routes need, held in memory: a recommender and the customer
score table precomputed at the model's `as_of`. `ModelStore.current` is a single attribute read;
a reload builds a whole new `ServingModels` beside the old one and replaces the reference in one
assignment, so a request sees either the old or the new models, never a mix, and never waits.
A failed load leaves the old snapshot serving and is recorded (`last_reload`, `reload_failures`).

Nothing here is called on the request path except `ModelStore.current` and the lookups of
`CustomerScoreTable` (dict + list indexing) and the recommender (numpy top-k).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd

from models.registry_names import ROLES, Role
from models.score_columns import CHURN_COLUMNS, LOYALTY_COLUMNS

logger = logging.getLogger("patronage.serving")

__all__ = ["ROLES", "Role"]


class RoleNotTrained(LookupError):
    """The served shop has no champion for this role (training skipped it, or never ran);
    answered as 503 `role_not_trained` with the reason (serving/app.py)."""

    def __init__(self, role: str, reason: str) -> None:
        super().__init__(f"{role} is not available for this shop: {reason}")
        self.role = role
        self.reason = reason


class UntrainedRecommender:
    """Stands in for the recommender of a shop that has none: every answer raises
    `RoleNotTrained` with why (e.g. a one-product shop)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def _refuse(self) -> RoleNotTrained:
        return RoleNotTrained("recommender", self.reason)

    def recommend_for(self, *args: Any, **kwargs: Any) -> RecommendationList:
        """Raises `RoleNotTrained`."""
        raise self._refuse()

    def cross_sell(self, *args: Any, **kwargs: Any) -> RecommendationList:
        """Raises `RoleNotTrained`."""
        raise self._refuse()

    def similar(self, *args: Any, **kwargs: Any) -> RecommendationList:
        """Raises `RoleNotTrained`."""
        raise self._refuse()

    def session(self, *args: Any, **kwargs: Any) -> SessionList:
        """Raises `RoleNotTrained`."""
        raise self._refuse()

    def left_out_when_bought(self, *args: Any, **kwargs: Any) -> frozenset[str]:
        """Raises `RoleNotTrained`."""
        raise self._refuse()


class UntrainedScores:
    """Stands in for the churn or loyalty score table of a shop without that model: reading
    anything from it raises `RoleNotTrained` with why."""

    def __init__(self, role: str, reason: str) -> None:
        self.role = role
        self.reason = reason

    def __getattr__(self, name: str) -> Any:
        raise RoleNotTrained(self.role, self.reason)

    def __len__(self) -> int:
        raise RoleNotTrained(self.role, self.reason)


@dataclass(frozen=True)
class RecommendationList:
    """Items best first, their scores (higher is better) and the strategy that produced them."""

    item_ids: tuple[str, ...]
    scores: tuple[float, ...]
    strategy: str
    note: str | None = None
    """Why a fallback strategy answered (e.g. `new customer`), else None."""


@dataclass(frozen=True)
class SessionList:
    """The answer for an anonymous session, and the session's item ids the model does not
    know (in the order given)."""

    answer: RecommendationList
    unknown_items: tuple[str, ...]


class Recommender(Protocol):
    """What the recommendation routes need from the recommender model (in memory, no I/O)."""

    def recommend_for(
        self,
        customer_id: str,
        k: int,
        category: str | None,
        exclude_purchased: str,
        extra_purchased: Sequence[str],
        extra_interactions: Sequence[tuple[str, str]] = (),
    ) -> RecommendationList:
        """Top-k items for one customer; an unknown customer gets trending items.

        `extra_purchased`: items bought since the model's data; `extra_interactions`:
        `(item_id, kind)` of views and carts since then; both fold into the customer's row."""
        ...

    def left_out_when_bought(
        self, item_ids: Sequence[str], exclude_purchased: str
    ) -> frozenset[str]:
        """The items of `item_ids` that the rule `exclude_purchased` leaves out of a
        customer's answers once bought (none for `none`); unknown ids are not listed."""
        ...

    def session(self, item_ids: Sequence[str], k: int) -> SessionList:
        """Top-k items for an anonymous session (item ids, oldest first)."""
        ...

    def cross_sell(
        self, item_ids: Sequence[str], customer_id: str | None, k: int
    ) -> RecommendationList:
        """Top-k items that go with a basket; basket items are never returned."""
        ...

    def similar(self, item_id: str, k: int) -> RecommendationList:
        """Top-k items similar to one item; raises `KeyError` for an unknown item."""
        ...


@dataclass(frozen=True)
class LoadedModel:
    """One registered model version as loaded: what `/v1/models` reports."""

    role: Role
    name: str
    version: str
    run_id: str | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    as_of: str | None = None
    loaded_at: str = ""
    beats_baseline: bool | None = None
    """Whether its backtest beat the role's plain baseline (None: not recorded)."""
    baseline_note: str = ""
    data_source: str = ""
    """Where training read the shop's data (the `patronage.data_source` tag; may end in
    ` + events DIR`); the CRM console reads orders and feedback from there."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "role": self.role,
            "name": self.name,
            "version": self.version,
            "run_id": self.run_id,
            "as_of": self.as_of,
            "loaded_at": self.loaded_at,
            "metrics": {k: finite_or_none(v) for k, v in self.metrics.items()},
            "beats_baseline": self.beats_baseline,
            "baseline_note": self.baseline_note,
        }


OPTIONAL_COLUMNS = ("last_order_at",)


def finite_or_none(value: Any) -> Any:
    """JSON has no NaN: a missing float becomes null."""
    if value is None:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _column_as_list(frame: pd.DataFrame, name: str) -> list[Any]:
    """A score column as plain Python values: floats (NaN -> None), ISO strings for times."""
    if name not in frame.columns:
        return [None] * len(frame)
    column = frame[name]
    if pd.api.types.is_datetime64_any_dtype(column):
        if column.dt.tz is None:
            column = column.dt.tz_localize("UTC")
        return [None if pd.isna(v) else v.isoformat() for v in column]
    if pd.api.types.is_float_dtype(column) or pd.api.types.is_integer_dtype(column):
        values = column.astype("float64").to_numpy()
        return [None if not math.isfinite(v) else float(v) for v in values.tolist()]
    out = []
    for value in column.tolist():
        if isinstance(value, np.ndarray):
            value = value.tolist()
        if isinstance(value, tuple):
            value = list(value)
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            value = None
        out.append(value)
    return out


@dataclass(frozen=True)
class CustomerScoreTable:
    """Churn and loyalty scores of every customer at `as_of`, indexed by customer id.

    Columnar (plain Python lists) so that 1M customers stay compact and one lookup is a dict
    probe plus a dozen list reads."""

    as_of: pd.Timestamp
    index: Mapping[str, int]
    columns: Mapping[str, list[Any]]
    segments: tuple[dict[str, Any], ...]

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        as_of: pd.Timestamp,
        segment_thresholds: Mapping[str, Any] | None = None,
    ) -> CustomerScoreTable:
        """Index a score frame (one row per customer, columns of `patronage score`).

        Missing columns read as None. `churn_reasons` may be lists or one "; "-joined string.
        `last_order_at` is taken from that column, or derived from `days_since_last_order` at
        `as_of` when only that is present. Raises `ValueError` when `customer_id` is missing
        or repeated."""
        if "customer_id" not in frame.columns:
            raise ValueError("score table has no customer_id column")
        ids = frame["customer_id"].astype(str).tolist()
        index = {customer_id: row for row, customer_id in enumerate(ids)}
        if len(index) != len(ids):
            raise ValueError("score table repeats a customer_id")
        as_of = pd.Timestamp(as_of)
        as_of = as_of.tz_localize("UTC") if as_of.tzinfo is None else as_of.tz_convert("UTC")
        frame = _with_last_order(frame, as_of)
        columns = {
            name: _column_as_list(frame, name)
            for name in CHURN_COLUMNS + LOYALTY_COLUMNS + OPTIONAL_COLUMNS
        }
        columns["churn_reasons"] = [_reasons_list(v) for v in columns["churn_reasons"]]
        columns["last_order_seconds"] = [
            None if v is None else pd.Timestamp(v).timestamp() for v in columns["last_order_at"]
        ]
        return cls(
            as_of=as_of,
            index=index,
            columns=columns,
            segments=_segment_summary(frame, segment_thresholds or {}),
        )

    def __post_init__(self) -> None:
        # Formatting a Timestamp costs microseconds; answers reuse this string.
        object.__setattr__(self, "as_of_iso", self.as_of.isoformat())
        object.__setattr__(self, "answer_cache", [None] * len(self.index))

    as_of_iso: str = field(init=False, default="")
    answer_cache: list[bytes | None] = field(init=False, default_factory=list, repr=False)
    """Per row, the JSON of the answer that depends only on this table (filled on first ask:
    the answers are a pure function of the loaded model, so computing one twice is waste)."""

    def __len__(self) -> int:
        return len(self.index)

    def row(self, customer_id: str) -> int | None:
        """The row of a customer, or None when the model has no score for them."""
        return self.index.get(customer_id)

    def value(self, row: int, column: str) -> Any:
        """One cell by row number."""
        return self.columns[column][row]


def _with_last_order(frame: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    if "last_order_at" in frame.columns or "days_since_last_order" not in frame.columns:
        return frame
    days = pd.to_numeric(frame["days_since_last_order"], errors="coerce")
    return frame.assign(last_order_at=as_of - pd.to_timedelta(days, unit="D"))


def _reasons_list(value: Any) -> list[str]:
    """Reasons as a list of sentences, whether stored as a list or a "; "-joined string."""
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(";") if part.strip()]
    return [str(v) for v in value if v is not None and str(v).strip()]


def _segment_summary(
    frame: pd.DataFrame, thresholds: Mapping[str, Any]
) -> tuple[dict[str, Any], ...]:
    """Segment sizes, shares and loyalty-score ranges, plus the model's own thresholds."""
    if "segment" not in frame.columns or frame.empty:
        return ()
    total = len(frame)
    grouped = frame.groupby("segment", sort=True, observed=True)
    summary: list[dict[str, Any]] = []
    for segment, rows in grouped:
        score = rows["loyalty_score"] if "loyalty_score" in rows else pd.Series(dtype=float)
        summary.append(
            {
                "segment": str(segment),
                "customers": int(len(rows)),
                "share": round(len(rows) / total, 6),
                "loyalty_score_min": finite_or_none(float(score.min())) if len(score) else None,
                "loyalty_score_max": finite_or_none(float(score.max())) if len(score) else None,
                "thresholds": thresholds.get(str(segment)),
            }
        )
    summary.sort(key=lambda s: -s["customers"])
    return tuple(summary)


@dataclass(frozen=True)
class ServingModels:
    """One immutable snapshot of everything served. Never mutated after construction."""

    recommender: Recommender
    recommender_as_of: pd.Timestamp
    """The recommender saw purchases strictly before this UTC time."""
    churn: CustomerScoreTable
    """Churn columns, from the churn champion (its own `as_of`)."""
    loyalty: CustomerScoreTable
    """Loyalty columns, from the loyalty champion (may be another version than churn's)."""
    versions: Mapping[Role, LoadedModel]
    strategies: Mapping[Role, str] = field(default_factory=dict)
    """How churn and loyalty answers are produced (e.g. the churn estimator's name)."""
    unavailable: Mapping[Role, str] = field(default_factory=dict)
    """Roles without a champion and why; their parts are `Untrained*` stand-ins that answer
    `RoleNotTrained`."""
    shop: str = ""
    """The shop whose models these are (empty for sources without shops, e.g. test doubles)."""

    def __post_init__(self) -> None:
        labels = {role: f"{m.name}/{m.version}" for role, m in self.versions.items()}
        object.__setattr__(self, "_labels", labels)

    def version_of(self, role: Role) -> str:
        """`name/version` of the model serving a role, e.g. `patronage.sample.churn/3`;
        raises `RoleNotTrained` for a role without a champion."""
        label = self._labels.get(role)  # type: ignore[attr-defined]
        if label is None:
            raise RoleNotTrained(role, self.unavailable.get(role, "no champion model"))
        return label  # type: ignore[no-any-return]


class ModelSource(Protocol):
    """Where snapshots come from (the MLflow registry in production, a fake in unit tests)."""

    def champion_versions(self) -> dict[Role, str]:
        """The version of each role's model that should be served now (a cheap registry read)."""
        ...

    def load(self, versions: Mapping[Role, str], previous: ServingModels | None) -> ServingModels:
        """Load those versions into a new snapshot; may reuse unchanged parts of `previous`."""
        ...


@dataclass(frozen=True)
class ReloadOutcome:
    """What the last reload attempt did."""

    at: str
    outcome: Literal["loaded", "unchanged", "failed"]
    detail: str
    versions: Mapping[Role, str]
    seconds: float

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "at": self.at,
            "outcome": self.outcome,
            "detail": self.detail,
            "versions": dict(self.versions),
            "seconds": round(self.seconds, 4),
        }


def _notify(snapshot: ServingModels, previous: ServingModels | None) -> None:
    """Optional hooks of a recommender: `on_serving` once it answers, `on_retired` once not."""
    if previous is not None and previous.recommender is not snapshot.recommender:
        retired = getattr(previous.recommender, "on_retired", None)
        if retired is not None:
            retired()
    if previous is None or previous.recommender is not snapshot.recommender:
        serving = getattr(snapshot.recommender, "on_serving", None)
        if serving is not None:
            serving()


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class ModelStore:
    """Holds the current `ServingModels` and replaces it when the registry's champion changes."""

    def __init__(self, source: ModelSource, poll_seconds: float = 30.0) -> None:
        self.source = source
        self.poll_seconds = poll_seconds
        self._current: ServingModels | None = None
        self._reload_lock = threading.Lock()  # serialises reloads; reads never take it
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_reload: ReloadOutcome | None = None
        self.reload_failures = 0
        self.reloads_loaded = 0
        self.listeners: list[Callable[[ServingModels], None]] = []

    @property
    def current(self) -> ServingModels | None:
        """The snapshot to answer from, or None before the first successful load."""
        return self._current

    def reload(self, force: bool = False) -> ReloadOutcome:
        """Check the registry and load changed champions; keeps the old snapshot on failure.

        Thread-safe: concurrent calls run one after the other. Never raises for a load error;
        the outcome says what happened."""
        with self._reload_lock:
            started = time.perf_counter()
            previous = self._current
            versions: Mapping[Role, str] = {}
            kind: Literal["loaded", "unchanged", "failed"]
            try:
                versions = self.source.champion_versions()
                kind, detail = self._swap_if_changed(versions, previous, force)
            except Exception as error:  # a bad model must never take the server down
                self.reload_failures += 1
                kept = "no models loaded" if previous is None else "previous models still serving"
                kind, detail = "failed", f"{type(error).__name__}: {error} ({kept})"
                logger.error("model reload failed: %s", detail)
            outcome = ReloadOutcome(
                _now_iso(), kind, detail, versions, time.perf_counter() - started
            )
            self.last_reload = outcome
            return outcome

    def _swap_if_changed(
        self, versions: Mapping[Role, str], previous: ServingModels | None, force: bool
    ) -> tuple[Literal["loaded", "unchanged"], str]:
        """Load `versions` and swap them in unless they are the ones serving (or `force`);
        returns the outcome and its detail. A load error propagates (nothing swapped)."""
        loaded = (
            {}
            if previous is None
            else {role: model.version for role, model in previous.versions.items()}
        )
        if not force and previous is not None and dict(versions) == loaded:
            return "unchanged", "champions unchanged"
        snapshot = self.source.load(versions, previous)
        for listener in self.listeners:
            listener(snapshot)
        # The swap: one reference assignment of an immutable snapshot.
        self._current = snapshot
        _notify(snapshot, previous)
        self.reloads_loaded += 1
        changed = ", ".join(
            f"{role} {loaded.get(role, 'none')}->{version}"
            for role, version in versions.items()
            if loaded.get(role) != version
        )
        detail = f"loaded {changed or 'same versions (forced)'}"
        logger.info("models %s", detail)
        return "loaded", detail

    def start(self) -> None:
        """Load in a background thread now, then poll every `poll_seconds` (0: never poll)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="patronage-model-store", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self.reload()
        # Until the first load succeeds, retry at least every 5 s so /health/ready turns green
        # soon after a champion appears.
        while not self._stop.is_set():
            wait = self.poll_seconds if self._current is not None else min(self.poll_seconds, 5.0)
            if wait <= 0:
                if self._current is not None:
                    return
                wait = 5.0
            if self._stop.wait(wait):
                return
            self.reload()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop polling; a load in progress finishes in its thread (daemon)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None
