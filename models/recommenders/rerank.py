"""A learned re-ranker (scikit-learn HistGradientBoosting) over candidates from member models.

For each customer, the members' row-normalised scores are summed; the best `candidates` items
of that sum are the candidates (items the customer already has are left out when
`exclude_seen` is set, for discovery). Each (customer, candidate) pair is described by every
member's score, its rank in the sum, the customer's own confidence for the item (and whether
they bought it), the size of their history, and the item's repeat-purchase rate; the classifier
gives the probability that the customer buys the item in the next window. Candidates are scored
2 + probability, so they always precede the rest, which keep their summed score (scaled below 1).

`fit` takes fitted members (constructor), the history matrix they score, the items' repeat
rates, and either `labels` (purchases of the window after that history: the classifier is
trained on them) or a `classifier` trained elsewhere (constructor; e.g. one window earlier,
see `models.recommenders.rerank_training`). The classifier is saved with skops (a non-pickle
format) and loaded trusting only its tree type.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from features.attributes import CustomerAttributes
from features.interactions import Interactions
from models.recommenders.base import Recommender, row_normalise, top_k

TRUSTED_TYPES = ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]
HISTORY_HALF_LIFE = 1.0
"""Re-rankers read customer history with a half-life of W, the validation window (train and
serve alike)."""
TRAIN_CUSTOMERS = 3_000
"""The classifier learns from at most this many customers' candidates (a seeded sample)."""
MIN_TRAIN_CUSTOMERS = 20


class RerankRecommender(Recommender):
    """Gradient-boosted re-ranking of the top candidates of fitted member models.

    `classifier`: an already trained classifier to use instead of training one in `fit`."""

    strategy = "rerank"
    _array_names = ("repeat_rates_",)
    repeat_rates_: np.ndarray
    classifier_: Any

    def __init__(
        self,
        members: list[Recommender] | None = None,
        member_names: list[str] | None = None,
        candidates: int = 50,
        exclude_seen: bool = False,
        max_iter: int = 150,
        learning_rate: float = 0.08,
        max_leaf_nodes: int = 31,
        min_samples_leaf: int = 100,
        random_state: int = 0,
        classifier: Any = None,
    ) -> None:
        self.members = list(members or [])
        self.member_names = list(member_names or [type(m).__name__ for m in self.members])
        self.candidates = candidates
        self.exclude_seen = exclude_seen
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.random_state = random_state
        self.classifier = classifier

    def get_params(self) -> dict[str, Any]:
        """Plain-value parameters (members and the classifier are saved beside them)."""
        params = super().get_params()
        params.pop("members")
        params.pop("classifier")
        return params

    def fit(
        self,
        interactions: Interactions,
        co_purchase: sp.csr_matrix | None = None,
        item_categories: np.ndarray | None = None,
        customer_attributes: CustomerAttributes | None = None,
        *,
        labels: sp.csr_matrix | None = None,
        repeat_rates: np.ndarray | None = None,
    ) -> Self:
        """Learn to re-rank the members' candidates for the customers of `interactions` (the
        history the members score; their rows are the customers of `labels`).

        `repeat_rates`: per item, the share of its buyers who bought it again (as from
        `rules.repeat_purchase_rates`, at the same time as `interactions`). `labels`: customers
        x items, non-zero where the customer bought the item in the window after `interactions`;
        the classifier is trained on them (at most `TRAIN_CUSTOMERS` customers, sampled with
        `random_state`). Without labels, the constructor's `classifier` is used as it is.
        The members must be fitted already; `co_purchase`, `item_categories` and
        `customer_attributes` are not read. Raises ValueError when neither labels nor a
        classifier is given, when repeat_rates is missing, or when the labels cannot train a
        classifier (too few buyers, or every label equal)."""
        if repeat_rates is None or len(repeat_rates) != interactions.n_items:
            raise ValueError(
                "a re-ranker needs the repeat-purchase rate of every item column "
                f"({interactions.n_items}): pass repeat_rates=repeat_purchase_rates(counts)"
            )
        if labels is None and self.classifier is None:
            raise ValueError(
                "a re-ranker learns from a later time window: pass labels= (the purchases "
                "after the history) or a trained classifier to the constructor"
            )
        self.n_items_ = interactions.n_items
        self.repeat_rates_ = np.asarray(repeat_rates, dtype=np.float32)
        if labels is None:
            self.classifier_ = self.classifier
        else:
            self.classifier_ = self._train_classifier(interactions.matrix, labels)
        return self

    def _train_classifier(self, history: sp.csr_matrix, labels: sp.csr_matrix) -> Any:
        """Fit the classifier on (customer, candidate) pairs: positive when the customer bought
        the candidate in the labels' window (a new item only, when `exclude_seen`)."""
        from sklearn.ensemble import HistGradientBoostingClassifier

        if self.exclude_seen:
            seen = sp.csr_matrix(history != 0, dtype=np.float32)
            positives = labels - labels.multiply(seen)
        else:
            positives = labels
        positives = sp.csr_matrix(positives)
        rows = np.flatnonzero(np.diff(positives.indptr) > 0)
        rng = np.random.default_rng(self.random_state)
        if len(rows) > TRAIN_CUSTOMERS:
            rows = np.sort(rng.choice(rows, TRAIN_CUSTOMERS, replace=False))
        if len(rows) < MIN_TRAIN_CUSTOMERS:
            raise ValueError("too few customers bought in the window to train a re-ranker")
        tables, targets = [], []
        for start in range(0, len(rows), 500):
            chunk = rows[start : start + 500]
            columns, table, _ = self.candidate_features(chunk, history[chunk])
            truth = positives[chunk].toarray() > 0
            target = np.take_along_axis(truth, np.maximum(columns, 0), axis=1) & (columns >= 0)
            keep = (columns >= 0).reshape(-1)
            tables.append(table[keep])
            targets.append(target.reshape(-1)[keep])
        y = np.concatenate(targets)
        if y.all() or not y.any():
            raise ValueError("re-ranker labels are all equal in the window")
        classifier = HistGradientBoostingClassifier(
            max_iter=self.max_iter,
            learning_rate=self.learning_rate,
            max_leaf_nodes=self.max_leaf_nodes,
            min_samples_leaf=self.min_samples_leaf,
            early_stopping=False,
            random_state=self.random_state,
        )
        with threadpool_limits(1):  # HistGradientBoosting uses OpenMP; the machine is shared
            return classifier.fit(np.vstack(tables), y)

    # --- features ---------------------------------------------------------------------------
    def candidate_features(
        self, customer_rows: np.ndarray, user_items: sp.csr_matrix, updated: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(candidate columns (n, c), features (n * c, f), summed member scores (n, items));
        `updated`: the rows changed since the fit (the members' `updated_scores`)."""
        member_scores = [
            row_normalise(
                (member.updated_scores if updated else member.scores)(customer_rows, user_items)
            )
            for member in self.members
        ]
        summed = np.sum(member_scores, axis=0).astype(np.float32)
        own = user_items.toarray()
        base = summed.copy()
        if self.exclude_seen:
            base[own > 0] = -np.inf
        columns, _ = top_k(base, min(self.candidates, base.shape[1]))
        valid = columns >= 0
        safe = np.where(valid, columns, 0)
        n_rows, n_candidates = columns.shape
        own_scale = np.maximum(own.max(axis=1, keepdims=True), 1e-12)
        history_size = np.diff(sp.csr_matrix(user_items).indptr).astype(np.float32)
        features = [np.take_along_axis(s, safe, axis=1) for s in member_scores]
        features += [
            np.broadcast_to(np.arange(n_candidates, dtype=np.float32), (n_rows, n_candidates)),
            np.take_along_axis(own / own_scale, safe, axis=1),
            (np.take_along_axis(own, safe, axis=1) > 0).astype(np.float32),
            np.broadcast_to(history_size[:, None], (n_rows, n_candidates)),
            np.broadcast_to(own.sum(axis=1, keepdims=True), (n_rows, n_candidates)),
            self.repeat_rates_[safe],
        ]
        table = np.stack([np.asarray(f, dtype=np.float32).reshape(-1) for f in features], axis=1)
        return np.where(valid, columns, -1), table, summed

    def _scores(self, customer_rows: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        return self._reranked(customer_rows, user_items, updated=False)

    def _updated_scores(self, customer_rows: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        return self._reranked(customer_rows, user_items, updated=True)

    def _reranked(
        self, customer_rows: np.ndarray, user_items: sp.csr_matrix, updated: bool
    ) -> np.ndarray:
        """The classifier's order of the members' candidates, the summed scores below them."""
        columns, table, summed = self.candidate_features(customer_rows, user_items, updated)
        scores = summed / np.float32(max(len(self.members), 1) + 1)
        with threadpool_limits(1):
            probability = self.classifier_.predict_proba(table)[:, 1].reshape(columns.shape)
        rows = np.repeat(np.arange(len(columns)), columns.shape[1]).reshape(columns.shape)
        valid = columns >= 0
        scores[rows[valid], columns[valid]] = 2.0 + probability[valid]
        return scores

    def _similarity_scores(self, item_rows: np.ndarray) -> np.ndarray:
        total = np.zeros((len(item_rows), self.n_items_), dtype=np.float32)
        for member in self.members:
            if member.knows_similar_items:
                total += row_normalise(member._similarity_scores(item_rows))
        return total

    # --- persistence ------------------------------------------------------------------------
    def _extra_meta(self, directory: Path) -> dict[str, Any]:
        import skops.io

        for index, member in enumerate(self.members):
            member.save(directory / f"member_{index}")
        skops.io.dump(self.classifier_, directory / "classifier.skops")
        return {"members": len(self.members)}

    def _load_extra(self, meta: dict[str, Any], directory: Path) -> None:
        from models.skops_files import load_trusted

        self.members = [
            Recommender.load(directory / f"member_{index}") for index in range(meta["members"])
        ]
        self.classifier_ = load_trusted(directory / "classifier.skops", TRUSTED_TYPES)
