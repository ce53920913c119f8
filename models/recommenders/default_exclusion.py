"""The default `exclude_purchased` rule (`non-repeatable`) of one shop, learned on its
validation window.

The default answers "what will they buy next, including again" (relevant: every item bought in
the validation window, the `repeat` protocol of `validation`). Rules tried there, with the two
winners' validation scores:
- `none`: the repeat model, no bought item left out;
- `all`: the discovery model, every bought item left out;
- `repeatable_p<share>`: the repeat model, bought items left out except the `share` of the
  catalogue with the highest learned repeat-purchase rates (`rules.repeat_purchase_rates`),
  for each share in `REPEATABLE_SHARES`.
The better of `none` and `all` is the default; a share replaces it only when it beats it
significantly (higher NDCG@10 on both halves of the validation customers and by more than one
standard error of the paired per-customer gain, `greedy_blend.significant`), so on validation
the default is never worse than the better of `none` and `all`.

A share, not a rate, is what carries over to serving: the rates of the full history are
higher than those at the validation cut (more customers have had time to buy again), while
the items' order by rate moves little.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from models.recommenders.greedy_blend import significant
from models.recommenders.rules import repeat_purchase_rates
from models.recommenders.validation import K, ValidationData

REPEATABLE_SHARES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
"""Shares of the catalogue (highest repeat rates first) a `repeatable_p<share>` rule keeps."""
NOTHING_REPEATABLE = 2.0
"""A repeat threshold no rate reaches (rates are shares, at most 1): every bought item out."""


@dataclass(frozen=True)
class DefaultExclusion:
    """The learned default rule and the validation figures it was chosen on."""

    rule: str
    """`none`, `all` or `repeatable` (a share of the catalogue kept repeatable)."""
    repeatable_share: float | None = None
    """For `repeatable`: the share of the catalogue, highest repeat rates first, kept."""
    validation_ndcg: dict[str, float] = field(default_factory=dict)
    """NDCG@10 on the validation window (every window item relevant) of each rule tried."""
    reason: str = ""

    @property
    def role(self) -> str:
        """The bundle role that answers the default question: `discovery` for `all`."""
        return "discovery" if self.rule == "all" else "repeat"

    def threshold(self, repeat_rates: np.ndarray) -> float:
        """The `BusinessRules.repeat_threshold` that applies this rule to `repeat_rates` (one
        per item column, at serving's `as_of`): 0 keeps every item, `NOTHING_REPEATABLE` none."""
        if self.rule == "none":
            return 0.0
        if self.rule == "all" or self.repeatable_share is None or len(repeat_rates) == 0:
            return NOTHING_REPEATABLE
        return float(np.quantile(np.asarray(repeat_rates, np.float64), 1 - self.repeatable_share))

    def as_report(self) -> dict[str, Any]:
        """JSON-ready: the rule, its share and the validation figures of every rule tried."""
        return asdict(self)


def _rule_label(share: float) -> str:
    return f"repeatable_p{share:g}"


def learn_default_exclusion(
    data: ValidationData, repeat_scores: np.ndarray, discovery_scores: np.ndarray
) -> DefaultExclusion:
    """Choose the default rule on the validation window (module docstring).

    `repeat_scores` / `discovery_scores` are the two winners' score blocks over
    `data.eval_rows` (customers x item columns), as selection judged them."""
    bought = np.asarray(data.exclude["discovery"], dtype=bool)
    rates = repeat_purchase_rates(data.bought).astype(np.float64)
    per_customer = {
        "none": data.per_customer_ndcg(repeat_scores, "repeat"),
        "all": data.per_customer_ndcg(np.where(bought, -np.inf, discovery_scores), "repeat"),
    }
    for share in REPEATABLE_SHARES:
        keep = rates >= np.quantile(rates, 1 - share)
        left_out = bought & ~keep[None, :]
        scores = np.where(left_out, np.float32(-np.inf), repeat_scores)
        per_customer[_rule_label(share)] = data.per_customer_ndcg(scores, "repeat")
    ndcg = {rule: round(float(values.mean()), 5) for rule, values in per_customer.items()}
    plain = "none" if ndcg["none"] >= ndcg["all"] else "all"
    positions = np.fromiter(sorted(data.relevant["repeat"]), dtype=np.int64)
    in_half = [np.isin(positions, half) for half in data.halves]
    best_share: float | None = None
    best_gain = 0.0
    for share in REPEATABLE_SHARES:
        gain = per_customer[_rule_label(share)] - per_customer[plain]
        if significant(gain, in_half) and gain.mean() > best_gain:
            best_share, best_gain = share, float(gain.mean())
    if best_share is None:
        return DefaultExclusion(
            plain,
            None,
            ndcg,
            f"validation NDCG@{K} (every window item relevant): {plain} {ndcg[plain]:.4f}, "
            f"the better of none {ndcg['none']:.4f} and all {ndcg['all']:.4f}; no repeatable "
            "share beats it significantly",
        )
    label = _rule_label(best_share)
    return DefaultExclusion(
        "repeatable",
        best_share,
        ndcg,
        f"validation NDCG@{K} (every window item relevant): {label} {ndcg[label]:.4f} beats "
        f"{plain} {ndcg[plain]:.4f} significantly (none {ndcg['none']:.4f}, all "
        f"{ndcg['all']:.4f})",
    )
