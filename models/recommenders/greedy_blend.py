"""The greedy blend: the best candidate on validation, plus up to two members that each raise
validation NDCG significantly (on both halves of the customers, by more than one standard
error of the paired per-customer gain).

The blend starts from the best candidate, with one rule for candidates within noise of each
other: a shared list (popularity, trending; or an own-item model under discovery, where it
lists popular items) starts it only when it beats the best personal candidate on both halves
of the validation customers, the halves test of that same guard; where the halves disagree the
best personal candidate starts it (`first_member`). A shared list never starts it where a
personal candidate scores higher."""

from __future__ import annotations

from typing import Any

import numpy as np

from models.recommenders.candidates import CandidateSpec
from models.recommenders.validation import K, ValidationData
from models.recommenders.winners import WinnerSpec

BLEND_POOL = 8
BLEND_POOL_PER_FAMILY = 2
BLEND_WEIGHTS = (0.03, 0.1, 0.3, 1.0, 3.0)
"""The weights a new member is tried at (the first member weighs 1)."""
BLEND_MAX_MEMBERS = 3
BLEND_MIN_STANDARD_ERRORS = 1.0
"""A blend member must raise validation NDCG by at least this many standard errors of the
paired per-customer gain (and on both halves of the customers): tiny gains are tuning noise."""


def blend_pool(ranked: list[CandidateSpec]) -> list[CandidateSpec]:
    """The candidates a blend may add: the best `BLEND_POOL`, at most `BLEND_POOL_PER_FAMILY`
    of one model family, so near-twins (latent classes with and without attributes, one model
    at two settings) do not crowd out the different models a blend gains most from (at 1M
    customers, without this cap the repeat-purchase blend lost ALS and category affinity to
    latent-class variants: validation NDCG@10 0.2890 instead of 0.2938)."""
    pool: list[CandidateSpec] = []
    for candidate in ranked:
        if sum(c.family == candidate.family for c in pool) < BLEND_POOL_PER_FAMILY:
            pool.append(candidate)
        if len(pool) == BLEND_POOL:
            break
    return pool


def significant(gain: np.ndarray, in_half: list[np.ndarray]) -> bool:
    """True when the per-customer NDCG gain is positive on both halves and its mean exceeds
    `BLEND_MIN_STANDARD_ERRORS` standard errors."""
    if len(gain) < 2 or not all(gain[half].mean() > 0 for half in in_half if half.any()):
        return False
    standard_error = gain.std(ddof=1) / np.sqrt(len(gain))
    return bool(gain.mean() > BLEND_MIN_STANDARD_ERRORS * standard_error)


class _BlendScorer:
    """Validation NDCG of weighted sums of cached candidate score blocks, for one protocol."""

    def __init__(self, data: ValidationData, cached: dict[str, np.ndarray], protocol: str):
        self.data, self.cached, self.protocol = data, cached, protocol

    def _total(self, members: list[CandidateSpec], weights: list[float]) -> np.ndarray:
        return blend_scores(self.cached, WinnerSpec(tuple(members), tuple(weights)))

    def ndcg(
        self, members: list[CandidateSpec], weights: list[float], subset: np.ndarray | None
    ) -> float:
        """Mean NDCG@K over the evaluated customers (or the `subset` of them)."""
        return self.data.ndcg(self._total(members, weights), self.protocol, subset)["ndcg"]

    def per_customer(self, members: list[CandidateSpec], weights: list[float]) -> np.ndarray:
        """NDCG@K of each evaluated customer."""
        return self.data.per_customer_ndcg(self._total(members, weights), self.protocol)

    def trials(
        self, members: list[CandidateSpec], weights: list[float], candidate: CandidateSpec
    ) -> list[np.ndarray]:
        """`per_customer(members + [candidate], weights + [w])` for every w of `BLEND_WEIGHTS`,
        with the same float32 sums in the same order, but the members' total (excluded items
        already -inf), the candidate's rows and the trial block built once, not per weight."""
        data, protocol = self.data, self.protocol
        rows = np.fromiter(sorted(data.relevant[protocol]), dtype=np.int64)
        every_row = len(rows) == len(data.eval_rows)
        base = self._total(members, weights)
        base = base if every_row else base[rows]
        exclude = data.exclude[protocol]
        if exclude is not None:
            np.putmask(base, exclude if every_row else exclude[rows], np.float32(-np.inf))
        block = self.cached[candidate.name]
        block = block if every_row else block[rows]
        trial = np.empty_like(base)
        out = []
        for weight in BLEND_WEIGHTS:
            np.multiply(block, np.float32(weight), out=trial)
            np.add(base, trial, out=trial)
            out.append(data.per_customer_ndcg_of_rows(trial, protocol))
        return out


def _halves(data: ValidationData, protocol: str) -> list[np.ndarray]:
    """Per half of the validation customers: a mask over `protocol`'s evaluated customers."""
    positions = np.fromiter(sorted(data.relevant[protocol]), dtype=np.int64)
    return [np.isin(positions, half) for half in data.halves]


def first_member(scorer: _BlendScorer, ranked: list[CandidateSpec]) -> tuple[CandidateSpec, str]:
    """The candidate the blend starts from, and why: the best one (`ranked[0]`), except that a
    shared list gives way to the best personal candidate (`CandidateSpec.personal_for` the
    protocol) unless it beats that one on both halves of the validation customers, the halves
    test of the blend's guard (`significant`). Where the halves disagree, the two are within
    noise and the model that reads the customer's own history is preferred."""
    protocol = scorer.protocol
    best = ranked[0]
    personal = next((c for c in ranked if c.personal_for(protocol)), None)
    if best.personal_for(protocol) or personal is None:
        return best, "best on validation"
    gain = scorer.per_customer([best], [1.0]) - scorer.per_customer([personal], [1.0])
    by_half = [float(gain[half].mean()) for half in _halves(scorer.data, protocol) if half.any()]
    halves = ", ".join(f"{value:+.4f}" for value in by_half)
    if all(value > 0 for value in by_half):
        return best, (
            f"the shared list beats the best personal candidate {personal.name} on both halves "
            f"of the validation customers (gain {halves})"
        )
    return personal, (
        f"the best personal candidate: the shared list {best.name} is within noise of it "
        f"(gain {gain.mean():+.4f}; by half {halves})"
    )


def _grow(
    scorer: _BlendScorer, ranked: list[CandidateSpec], first: CandidateSpec
) -> tuple[list[CandidateSpec], list[float]]:
    """Members and weights: `first`, then greedily the pool member and weight with the
    largest significant gain, until none is significant or the blend is full."""
    data, protocol = scorer.data, scorer.protocol
    members, weights = [first], [1.0]
    in_half = _halves(data, protocol)
    current = scorer.per_customer(members, weights)
    history_half_life = {m.half_life for m in members if m.personalised}
    pool = blend_pool(ranked)
    for _ in range(BLEND_MAX_MEMBERS - 1):
        best: tuple[float, CandidateSpec, float, np.ndarray] | None = None
        for candidate in pool:
            if candidate in members:
                continue
            if (
                candidate.personalised
                and history_half_life
                and candidate.half_life not in history_half_life
            ):
                continue  # personal members must read the same serving matrix
            trials = scorer.trials(members, weights, candidate)
            for weight, trial in zip(BLEND_WEIGHTS, trials, strict=True):
                gain = trial - current
                if significant(gain, in_half) and (best is None or gain.mean() > best[0]):
                    best = (float(gain.mean()), candidate, weight, trial)
        if best is None:
            break
        _, candidate, weight, current = best
        members.append(candidate)
        weights.append(weight)
        if candidate.personalised:
            history_half_life.add(candidate.half_life)
    return members, weights


def blend_scores(cached: dict[str, np.ndarray], winner: WinnerSpec) -> np.ndarray:
    """The validation score block of a blend `winner` (not a re-ranker) from the candidates'
    cached blocks, as selection judged it."""
    first = cached[winner.members[0].name]
    total = np.multiply(first, np.float32(winner.weights[0]), dtype=np.float32)
    for member, weight in zip(winner.members[1:], winner.weights[1:], strict=True):
        total += np.float32(weight) * cached[member.name]
    return total


def greedy_blend(
    data: ValidationData,
    cached: dict[str, np.ndarray],
    specs: dict[str, CandidateSpec],
    protocol: str,
    report: dict[str, Any],
) -> tuple[WinnerSpec, dict[str, Any]]:
    """The blend selected for `protocol` from the fitted candidates (`cached`: validation score
    blocks by candidate name; `report["candidates"]`: their validation metrics), and why."""
    scored = report["candidates"]
    ranked = [specs[n] for n in sorted(cached, key=lambda n: -scored[n][protocol]["ndcg"])]
    best_single = ranked[0].name
    best_baseline = [c for c in ranked if not c.personalised][0].name
    scorer = _BlendScorer(data, cached, protocol)
    first, first_why = first_member(scorer, ranked)
    members, weights = _grow(scorer, ranked, first)
    winner = WinnerSpec(tuple(members), tuple(weights))
    winner_ndcg = scorer.ndcg(members, weights, None)
    baseline_ndcg = scored[best_baseline][protocol]["ndcg"]
    reason = (
        f"validation NDCG@{K} {winner_ndcg:.4f} vs best single {best_single} "
        f"{scored[best_single][protocol]['ndcg']:.4f} and best popularity/trending "
        f"{best_baseline} {baseline_ndcg:.4f}; starts from {first.name}: {first_why}"
    )
    return winner, {
        "validation_ndcg": round(winner_ndcg, 5),
        "validation_halves": [
            scorer.ndcg(list(winner.members), list(winner.weights), h) for h in data.halves
        ],
        "best_single": best_single,
        "first_member": first.name,
        "best_baseline": best_baseline,
        "baseline_ndcg": baseline_ndcg,
        "reason": reason,
    }
