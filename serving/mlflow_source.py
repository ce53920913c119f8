"""Loads the champion models from the MLflow registry into a `ServingModels` snapshot.

Only this module imports mlflow (lazily), and only the model store's background thread calls it:
nothing on the request path touches MLflow or disk. Each version is downloaded to a temporary
directory, its `python_model.pkl` is checked by `models.pyfunc.check_model_dir` (a tampered
artifact cannot run code), loaded with `mlflow.pyfunc.load_model`, unwrapped to the in-memory
objects (`.bundle`, `.scores`) and the directory removed: the snapshot holds everything in memory.
A role whose version did not change is reused from the previous snapshot.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.registry_names import (
    BASELINE_NOTE_TAG,
    MLFLOW_CLIENT_DEFAULTS,
    SKIPPED_TAG,
    beats_baseline,
    recorded_metrics,
    registered_name,
    shops,
)
from serving.config import Settings
from serving.model_store import (
    ROLES,
    CustomerScoreTable,
    LoadedModel,
    RecommendationList,
    Role,
    ServingModels,
    UntrainedRecommender,
    UntrainedScores,
)

logger = logging.getLogger("patronage.serving")
EXCLUDE_DEFAULT = "non-repeatable"
HiddenItems = Callable[[], frozenset[str]]
"""Items no answer may show right now (posted `available: false` since training)."""
ShownItems = Callable[[], frozenset[str]]
"""Items posted `available: true` since training (a restocked item comes back)."""


def no_posted_items() -> frozenset[str]:
    """The default: the catalog as the model was trained on it."""
    return frozenset()


class ModelNotFound(LookupError):
    """A registered model or its alias is missing; the message says what to run."""


class ModelLoadFailed(RuntimeError):
    """A champion could not be downloaded or loaded; the message names the role, the
    registered model and the version."""


MISSING_CODES = frozenset({"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"})
"""MLflow's error codes for a registered model or alias that does not exist; any other error
from the registry is the registry failing, and is reported as such."""


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
    ) -> None:
        self.bundle = bundle
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
        return {
            "precomputed": None if lists is None else lists.progress(),
            "restocked_items": len(restocked),
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
    ) -> RecommendationList:
        """Top-k for one customer (new customers: trending). The default question (no category,
        `non-repeatable`, nothing bought since `as_of`, k within the precomputed depth) is
        answered from the lists computed at load time: the same numbers, no scoring. Items
        posted as unavailable since training never appear."""
        hidden, extra = self._hidden()
        bundle, precomputed = self._current()
        if (
            precomputed is not None
            and category is None
            and exclude_purchased == PrecomputedLists.EXCLUDE
            and not extra_purchased
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
        answer = self._convert(
            bundle.recommend_for(
                customer_id,
                k=k + extra,
                category=category,
                exclude_purchased=exclude_purchased,
                extra_purchased=extra_purchased,
            )
        )
        return self._shown(answer, hidden, k)

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


class PrecomputedLists:
    """Top-K items of every known customer for the default question, as arrays.

    Filled by a background thread once the recommender is serving (`start`), in chunks, with
    the bundle's own batched `recommend_many`; until a customer's row is filled, that customer
    is scored live. A request only slices a filled row. `stop` ends the filling when the
    recommender is retired by a swap."""

    EXCLUDE = EXCLUDE_DEFAULT
    CHUNK = 256

    def __init__(self, bundle: Any, depth: int) -> None:
        self.bundle = bundle
        self.customer_ids = [str(c) for c in bundle.customer_ids]
        self.item_ids = [str(i) for i in bundle.item_ids]
        self.index = {customer_id: row for row, customer_id in enumerate(self.customer_ids)}
        self.depth = depth
        self.items = np.full((len(self.customer_ids), depth), -1, dtype=np.int32)
        self.scores = np.zeros((len(self.customer_ids), depth), dtype=np.float32)
        self.lengths = np.full(len(self.customer_ids), -1, dtype=np.int32)  # -1: not yet
        self.filled = 0
        self.strategy = ""
        self.seconds = 0.0
        self.cold: RecommendationList | None = None
        """The answer for any new customer, filled on first use."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Begin filling in a daemon thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._fill, name="patronage-precompute", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Stop filling (the lists already filled stay valid)."""
        self._stop.set()

    def _fill(self) -> None:
        started = time.perf_counter()
        column = {item: position for position, item in enumerate(self.item_ids)}
        try:
            for start in range(0, len(self.customer_ids), self.CHUNK):
                if self._stop.is_set():
                    return
                chunk = self.customer_ids[start : start + self.CHUNK]
                answers = self.bundle.recommend_many(
                    chunk, k=self.depth, exclude_purchased=self.EXCLUDE
                )
                for offset, answer in enumerate(answers):
                    row = start + offset
                    n = len(answer.item_ids)
                    self.items[row, :n] = [column[i] for i in answer.item_ids]
                    self.scores[row, :n] = answer.scores
                    self.strategy = answer.strategy
                    self.lengths[row] = n  # last: a reader trusts a row once its length is set
                self.filled = min(start + self.CHUNK, len(self.customer_ids))
                time.sleep(0)  # let request threads in between chunks
        except Exception:  # the live path still answers; say why the fast path stopped
            logger.exception("precomputing recommendations stopped")
        finally:
            self.seconds = time.perf_counter() - started

    def progress(self) -> dict[str, Any]:
        """Customers filled so far, of how many, and the seconds it took (when done)."""
        done = self.filled >= len(self.customer_ids)
        return {
            "customers": self.filled,
            "of": len(self.customer_ids),
            "depth": self.depth,
            "done": done,
            "seconds": round(self.seconds, 1) if done else None,
        }

    def lookup(self, customer_id: str, k: int) -> RecommendationList | None:
        """The precomputed top-k, or None (unknown customer, row not filled yet, k too deep)."""
        row = self.index.get(customer_id)
        if row is None or k > self.depth:
            return None
        length = int(self.lengths[row])
        if length < 0:
            return None
        n = min(k, length)
        item_ids = self.item_ids
        return RecommendationList(
            tuple(item_ids[i] for i in self.items[row, :n].tolist()),
            tuple(self.scores[row, :n].tolist()),
            self.strategy,
        )


class MlflowModelSource:
    """Reads the alias (default `champion`) of one shop's three registered models (the shop
    of the settings, else the store's only shop). A role without that alias is served as
    unavailable, with the reason training recorded; at least one role must have it."""

    def __init__(
        self,
        settings: Settings,
        hidden_items: HiddenItems = no_posted_items,
        shown_items: ShownItems = no_posted_items,
    ) -> None:
        self.settings = settings
        self.hidden_items = hidden_items
        self.shown_items = shown_items
        self.shop = settings.shop
        self.served_shop = settings.shop
        self.names: dict[Role, str] = {}
        self.unavailable: dict[Role, str] = {}
        """Roles without the alias at the last `champion_versions`, and why."""
        self._client: Any = None

    def _mlflow_client(self) -> Any:
        if self._client is None:
            for name, value in MLFLOW_CLIENT_DEFAULTS.items():
                os.environ.setdefault(name, value)
            uri = self.settings.tracking_uri
            _require_sqlite_file(uri)
            import mlflow
            from mlflow import MlflowClient

            # Process-wide, but this process only ever reads this one store.
            mlflow.set_tracking_uri(uri)
            mlflow.set_registry_uri(uri)
            self._client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        return self._client

    def _shop(self, client: Any) -> str:
        """The served shop: the configured one, else the store's only shop."""
        if self.shop:
            return self.shop
        known = shops(client)
        if len(known) != 1:
            which = f"several shops ({', '.join(known)})" if known else "no shop's models"
            raise ModelNotFound(
                f"{self.settings.tracking_uri} holds {which}: "
                + (
                    "start with --shop NAME (or PATRONAGE_SHOP)"
                    if known
                    else "run `patronage train DIR` first"
                )
            )
        return known[0]

    def champion_versions(self) -> dict[Role, str]:
        """The version holding the alias for each role that has one (the others, with why, in
        `unavailable`); raises `ModelNotFound` when no role has one."""
        from mlflow.exceptions import MlflowException

        client = self._mlflow_client()
        shop = self._shop(client)
        self.served_shop = shop
        self.names = {role: registered_name(shop, role) for role in ROLES}
        alias = self.settings.model_alias
        versions: dict[Role, str] = {}
        unavailable: dict[Role, str] = {}
        for role, name in self.names.items():
            try:
                version = client.get_model_version_by_alias(name, alias)
            except MlflowException as error:
                if error.error_code not in MISSING_CODES:
                    raise  # the registry itself failed (unreadable, corrupt): not "no model"
                unavailable[role] = self._why_missing(client, name, alias, error)
                continue
            versions[role] = str(version.version)
        if not versions:
            raise ModelNotFound(
                f"shop {shop!r} has no @{alias} model in {self.settings.tracking_uri} ("
                + "; ".join(f"{role}: {why}" for role, why in unavailable.items())
                + f"); run `patronage train DIR --shop {shop}` first"
            )
        self.unavailable = unavailable
        return versions

    @staticmethod
    def _why_missing(client: Any, name: str, alias: str, error: Exception) -> str:
        """Why `name` has no version with `alias`: the reason training recorded, or what to do."""
        from mlflow.exceptions import MlflowException

        try:
            skipped = (client.get_registered_model(name).tags or {}).get(SKIPPED_TAG)
        except MlflowException:
            return f"{name} is not registered: run `patronage train DIR` first"
        if skipped:
            return f"training skipped it: {skipped}"
        return f"{name} has no @{alias} version ({str(error).splitlines()[0]})"

    def load(self, versions: Mapping[Role, str], previous: ServingModels | None) -> ServingModels:
        """Load the asked versions (reusing unchanged roles of `previous`) into a snapshot;
        roles not in `versions` are served as unavailable."""
        client = self._mlflow_client()
        loaded: dict[Role, tuple[LoadedModel, Any]] = {}
        for role, version in versions.items():
            kept = None if previous is None else previous.versions.get(role)
            if kept is not None and kept.name == self.names[role] and kept.version == version:
                continue
            try:
                loaded[role] = self._load_one(client, role, version)
            except Exception as error:
                raise ModelLoadFailed(
                    f"loading the {role} model {self.names[role]} version {version} failed: "
                    f"{type(error).__name__}: {error}"
                ) from error
        return self._snapshot(loaded, versions, previous)

    def _load_one(self, client: Any, role: Role, version: str) -> tuple[LoadedModel, Any]:
        import mlflow

        from models.pyfunc import check_model_dir

        name = self.names[role]
        model_version = client.get_model_version(name, version)
        tags = model_version.tags or {}
        metrics = recorded_metrics(tags)
        scratch = Path(tempfile.mkdtemp(prefix=f"patronage-serve-{role}-"))
        try:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{name}/{version}",
                dst_path=str(scratch),
                tracking_uri=self.settings.tracking_uri,
            )
            check_model_dir(local)
            python_model = mlflow.pyfunc.load_model(local).unwrap_python_model()
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        as_of = getattr(python_model, "as_of", None)
        info = LoadedModel(
            role=role,
            name=name,
            version=version,
            run_id=model_version.run_id,
            metrics=metrics,
            as_of=None if as_of is None else pd.Timestamp(as_of).isoformat(),
            loaded_at=datetime.now(UTC).isoformat(timespec="seconds"),
            beats_baseline=beats_baseline(tags),
            baseline_note=tags.get(BASELINE_NOTE_TAG, ""),
        )
        logger.info("loaded %s version %s", name, version)
        return info, python_model

    def _snapshot(
        self,
        loaded: Mapping[Role, tuple[LoadedModel, Any]],
        versions: Mapping[Role, str],
        previous: ServingModels | None,
    ) -> ServingModels:
        unavailable = {role: self.unavailable.get(role, "no champion model") for role in ROLES}
        unavailable = {role: why for role, why in unavailable.items() if role not in versions}

        def keep(role: Role) -> bool:
            return role not in loaded and previous is not None

        recommender: Any
        if "recommender" in unavailable:
            recommender = UntrainedRecommender(unavailable["recommender"])
            recommender_as_of = pd.Timestamp.max.tz_localize("UTC")
        elif keep("recommender"):
            assert previous is not None
            recommender, recommender_as_of = previous.recommender, previous.recommender_as_of
        else:
            bundle = loaded["recommender"][1].bundle
            recommender = BundleRecommender(
                bundle, self.settings.precompute_top_k, self.hidden_items, self.shown_items
            )
            recommender_as_of = _utc(bundle.as_of)
        tables: dict[Role, Any] = {}
        for role in ("churn", "loyalty"):
            if role in unavailable:
                tables[role] = UntrainedScores(role, unavailable[role])
            elif keep(role):
                assert previous is not None
                tables[role] = previous.churn if role == "churn" else previous.loyalty
            else:
                python_model = loaded[role][1]
                tables[role] = CustomerScoreTable.from_frame(
                    python_model.scores.reset_index(drop=True),
                    _utc(python_model.as_of),
                    _segment_thresholds(python_model),
                )
        served = {
            role: loaded[role][0] if role in loaded else previous.versions[role]  # type: ignore[union-attr]
            for role in versions
        }
        return ServingModels(
            recommender=recommender,
            recommender_as_of=recommender_as_of,
            churn=tables["churn"],
            loyalty=tables["loyalty"],
            versions=served,
            strategies={
                "churn": "churn-model-scores-at-as_of",
                "loyalty": "loyalty-model-scores-at-as_of",
            },
            unavailable=unavailable,
            shop=self.served_shop,
        )


def _require_sqlite_file(uri: str) -> None:
    """A `sqlite:///PATH` store must exist: MLflow would create an empty one and every model
    would then look missing. Raises `ModelNotFound` saying which file and what to do."""
    if not uri.startswith("sqlite:///"):
        return
    path = Path(uri.removeprefix("sqlite:///"))
    if not path.is_file():
        raise ModelNotFound(
            f"no MLflow database at {path.resolve()} (tracking URI {uri}): run `patronage "
            "train DIR` from the same directory first, or set MLFLOW_TRACKING_URI to the store"
        )


def _segment_thresholds(python_model: Any) -> dict[str, Any]:
    """Each segment's rule: the (recency score, frequency+monetary score) cells of the RFM grid
    that map to it, with the scorer's learned quintile edges. Empty when the scorer does not
    expose them (the summary then has sizes and score ranges only)."""
    scorer = getattr(python_model, "scorer", None)
    rfm = getattr(scorer, "rfm_", None)
    try:
        from models.loyalty import SEGMENT_GRID

        edges = rfm.to_dict() if rfm is not None else None
    except (ImportError, AttributeError, ValueError):
        return {}
    cells: dict[str, list[str]] = {}
    for recency, row in enumerate(SEGMENT_GRID, start=1):
        for frequency_monetary, segment in enumerate(row, start=1):
            cells.setdefault(segment, []).append(f"R{recency}FM{frequency_monetary}")
    rules: dict[str, Any] = {}
    for segment, segment_cells in cells.items():
        rules[segment] = {"rfm_cells": segment_cells}
        if edges is not None:
            rules[segment]["quintile_edges"] = {
                # Recency is scored on minus the days since the last order.
                "days_since_last_order": sorted(-float(e) for e in edges["recency_edges"]),
                "orders": [float(e) for e in edges["frequency_edges"]],
                "monetary": [float(e) for e in edges["monetary_edges"]],
            }
    return rules


def _utc(stamp: Any) -> pd.Timestamp:
    value = pd.Timestamp(stamp)
    return value.tz_localize("UTC") if value.tzinfo is None else value.tz_convert("UTC")
