"""When a challenger may become champion: the metrics compared and the decision rule.

A challenger is "no worse" than the champion when, on the same backtest, every metric listed for
its registered model is at least the champion's (higher-is-better metrics) or at most the
champion's (lower-is-better), less a small tolerance: differences that small are backtest noise
(a few customers either way), and a stale champion must not block fresher models on noise.
The list is the contract documented in docs/training.md; keep both in step.

Every role also has a plain baseline it must beat to be worth serving (`PLAIN_BASELINES`):
popularity for recommendations, recency and the constant base rate for churn, the past order
rate for loyalty. A version that does not beat it is named so everywhere, and is never promoted
over a champion that does (unless forced).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from training.registry import CHURN, LOYALTY, RECOMMENDER


@dataclass(frozen=True)
class PromotionMetric:
    """One metric compared between challenger and champion."""

    name: str
    higher_is_better: bool
    tolerance: float = 1e-9
    """Slack: a challenger this close to the champion still counts as no worse (noise)."""
    relative: bool = False
    """When True, `tolerance` is a share of the champion's value (for unbounded metrics)."""

    def no_worse(self, challenger: float, champion: float) -> bool:
        """True when `challenger` is no worse than `champion` on this metric."""
        slack = self.tolerance * abs(champion) if self.relative else self.tolerance
        if self.higher_is_better:
            return challenger >= champion - slack
        return challenger <= champion + slack


PROMOTION_METRICS: dict[str, tuple[PromotionMetric, ...]] = {
    RECOMMENDER: (
        PromotionMetric("ndcg_at_10", higher_is_better=True, tolerance=0.002),
        PromotionMetric("recall_at_10", higher_is_better=True, tolerance=0.002),
    ),
    CHURN: (
        PromotionMetric("roc_auc", higher_is_better=True, tolerance=0.002),
        PromotionMetric("average_precision", higher_is_better=True, tolerance=0.002),
        PromotionMetric("brier", higher_is_better=False, tolerance=0.001),
    ),
    LOYALTY: (
        PromotionMetric("orders_spearman", higher_is_better=True, tolerance=0.005),
        PromotionMetric("orders_mae", higher_is_better=False, tolerance=0.01, relative=True),
    ),
}


@dataclass(frozen=True)
class BaselineCheck:
    """One metric the role's backtest must beat on one plain baseline."""

    baseline: str
    metric: str
    higher_is_better: bool


PLAIN_BASELINES: dict[str, tuple[BaselineCheck, ...]] = {
    RECOMMENDER: (BaselineCheck("popularity", "ndcg_at_10", higher_is_better=True),),
    CHURN: (
        BaselineCheck("recency", "roc_auc", higher_is_better=True),
        BaselineCheck("base_rate", "brier", higher_is_better=False),
    ),
    LOYALTY: (BaselineCheck("past_rate", "orders_mae", higher_is_better=False),),
}


def versus_baseline(
    name: str, metrics: Mapping[str, float], baselines: Mapping[str, Mapping[str, float]]
) -> tuple[bool, str]:
    """Whether the backtest of role `name` beats its plain baselines (strictly, on every check
    in `PLAIN_BASELINES`), and a sentence saying so with the figures. A check whose figures
    are missing or not finite counts as not beaten."""
    beaten: list[str] = []
    lost: list[str] = []
    for check in PLAIN_BASELINES[name]:
        mine = metrics.get(check.metric)
        theirs = baselines.get(check.baseline, {}).get(check.metric)
        if not (_finite(mine) and _finite(theirs)):
            lost.append(f"{check.metric} not measurable against {check.baseline}")
            continue
        assert mine is not None and theirs is not None
        better = mine > theirs if check.higher_is_better else mine < theirs
        text = f"{check.metric} {mine:.4f} vs {check.baseline} {theirs:.4f}"
        (beaten if better else lost).append(text)
    if not lost:
        return True, f"beats its plain baseline: {'; '.join(beaten)}"
    return False, (
        f"does NOT beat its plain baseline ({'; '.join(lost)}): on this shop's backtest a "
        "simple rule does as well, so treat its answers with care"
    )


@dataclass(frozen=True)
class Decision:
    """Whether the challenger becomes champion, and why (recorded as version tags)."""

    promote: bool
    decision: str
    """`first` (no champion yet), `promoted`, `kept` (champion stays), or `forced`."""
    reason: str


def decide(
    name: str,
    challenger: Mapping[str, float],
    champion: Mapping[str, float] | None,
    force: bool = False,
    comparison: str = "",
    beats_baseline: bool | None = None,
    champion_beats_baseline: bool | None = None,
) -> Decision:
    """Compare challenger and champion metrics of registered model `name` on the same backtest.

    `champion` None means there is no champion (the challenger wins). `comparison` says how the
    champion's metrics were obtained and is added to the reason. A challenger that does not beat
    its plain baseline (`beats_baseline` False) never replaces a champion that did
    (`champion_beats_baseline` True), unless `force`. Raises `KeyError` for a name
    without promotion metrics and `ValueError` when the challenger lacks one of them."""
    rules = PROMOTION_METRICS[name]
    missing = [rule.name for rule in rules if not _finite(challenger.get(rule.name))]
    if missing:
        raise ValueError(f"{name}: challenger has no finite value for {', '.join(missing)}")
    mine = ", ".join(f"{rule.name}={challenger[rule.name]:.4f}" for rule in rules)
    if champion is None:
        return Decision(True, "first", f"no champion yet; challenger {mine}")
    worse = []
    compared = []
    for rule in rules:
        theirs = champion.get(rule.name)
        if not _finite(theirs):
            continue  # the champion never recorded it: nothing to lose on this metric
        assert theirs is not None
        compared.append(f"{rule.name} {challenger[rule.name]:.4f} vs {theirs:.4f}")
        if not rule.no_worse(challenger[rule.name], theirs):
            worse.append(rule.name)
    detail = "; ".join(compared) or "champion has none of the metrics"
    how = f" ({comparison})" if comparison else ""
    if beats_baseline is False and champion_beats_baseline:
        if force:
            return Decision(
                True,
                "forced",
                f"--force although it does not beat its plain "
                f"baseline and the champion does{how}: {detail}",
            )
        return Decision(
            False,
            "kept",
            f"does not beat its plain baseline while the champion does{how}: {detail}",
        )
    if not worse:
        return Decision(True, "promoted", f"no worse than the champion{how}: {detail}")
    if force:
        return Decision(
            True, "forced", f"--force although worse on {', '.join(worse)}{how}: {detail}"
        )
    return Decision(False, "kept", f"worse on {', '.join(worse)}{how}: {detail}")


def _finite(value: float | None) -> bool:
    return value is not None and isinstance(value, int | float) and math.isfinite(value)
