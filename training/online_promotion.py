"""Promotion on real traffic: the challenger becomes champion only when shoppers bought through
its recommendations more than through the champion's, beyond doubt; and the online metrics
logged to MLflow beside each version's offline backtest.

The rule (`patronage promote NAME --online`, docs/training.md): compare the impressions the
current `@challenger` version answered (variant `challenger`) with those the current
`@champion` version answered (variant `champion`), over all routes, since `--since` if given.
Promote when the buy-through rate of the challenger minus the champion's has a 95% interval
(Newcombe's hybrid score interval, `features.online_metrics`) entirely above zero. Otherwise
nothing moves and the reason says why: no distinct challenger, no impressions of one of them,
or an interval that reaches zero or below.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from features.online_metrics import (
    ALL_ROUTES,
    OnlineEvents,
    OnlineReport,
    Tally,
    VariantDifference,
    online_report,
)
from models.registry_names import CHALLENGER_ALIAS, CHAMPION_ALIAS
from training.registry import set_champion

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient

ONLINE_TAG_PREFIX = "patronage.online."
"""Version tags of the online metrics (`patronage online-report --log`)."""


@dataclass(frozen=True)
class OnlineDecision:
    """Whether the challenger was promoted on real traffic, and why."""

    promoted: bool
    reason: str
    champion: str | None
    challenger: str | None


def _alias(client: MlflowClient, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def online_verdict(difference: VariantDifference | None, champion: str, challenger: str) -> str:
    """Empty when the rule is met, else why not (in words)."""
    if difference is None:
        return (
            f"no impressions of both version {champion} (champion) and version {challenger} "
            "(challenger) in the event log: serve with PATRONAGE_CHALLENGER_SHARE above 0 and "
            "post impressions"
        )
    diff, low, high = difference.buy_through()
    stated = (
        f"buy-through challenger {_rate(difference.challenger)} vs champion "
        f"{_rate(difference.champion)}: difference {diff:+.4f}, 95% interval "
        f"[{low:+.4f}, {high:+.4f}]"
    )
    return "" if low > 0 else f"{stated}, which does not exclude zero from above"


def _rate(tally: Tally) -> str:
    rate = tally.bought / tally.impressions if tally.impressions else 0.0
    return f"{rate:.4f} ({tally.bought}/{tally.impressions} impressions)"


def promote_online(
    client: MlflowClient, name: str, events: OnlineEvents, since: pd.Timestamp | None = None
) -> OnlineDecision:
    """Apply the rule of the module docstring to registered model `name` (a recommender) and
    move `champion` to the challenger when it is met (decision tag `online`)."""
    champion = _alias(client, name, CHAMPION_ALIAS)
    challenger = _alias(client, name, CHALLENGER_ALIAS)
    if champion is None or challenger is None or champion == challenger:
        why = "no champion" if champion is None else "no challenger distinct from the champion"
        return OnlineDecision(False, f"{name}: {why}; nothing to compare", champion, challenger)
    versions = {"champion": f"{name}/{champion}", "challenger": f"{name}/{challenger}"}
    report = online_report(events, since, versions)
    overall = next((d for d in report.differences if d.route == ALL_ROUTES), None)
    why_not = online_verdict(overall, champion, challenger)
    if why_not:
        return OnlineDecision(
            False, f"{name}: kept version {champion}: {why_not}", champion, challenger
        )
    assert overall is not None
    diff, low, high = overall.buy_through()
    reason = (
        f"promoted on real traffic: buy-through challenger {_rate(overall.challenger)} vs "
        f"champion {_rate(overall.champion)}, difference {diff:+.4f} (95% interval "
        f"[{low:+.4f}, {high:+.4f}], above zero)"
    )
    set_champion(client, name, challenger, "online", reason)
    return OnlineDecision(
        True, f"{name}: champion is now version {challenger}: {reason}", *_pair(report)
    )


def _pair(report: OnlineReport) -> tuple[str | None, str | None]:
    versions = {key[3]: key[0] for key in report.groups}
    return versions.get("champion"), versions.get("challenger")


_METRIC_NAME = re.compile(r"[^A-Za-z0-9_\-. /]")


def log_online_metrics(client: MlflowClient, report: OnlineReport) -> list[str]:
    """Write each registered version's online metrics (pooled per route and variant) to the
    MLflow run that holds its offline backtest, as metrics `online.ROUTE.VARIANT.NAME` (rates,
    their 95% bounds, impressions, revenue), and tag the version with the buy-through rate;
    returns the `name/version`s written. Versions not in the registry are skipped."""
    from mlflow.exceptions import MlflowException

    pooled: dict[tuple[str, str, str], Tally] = {}
    for (version, route, _, variant), tally in report.groups.items():
        pooled.setdefault((version, route, variant), Tally()).merge(tally)
    written: list[str] = []
    for (label, route, variant), tally in sorted(pooled.items()):
        name, _, number = label.rpartition("/")
        try:
            run_id = client.get_model_version(name, number).run_id
        except MlflowException:
            continue
        values = tally.to_json()
        prefix = _METRIC_NAME.sub("_", f"online.{route}.{variant}.")
        metrics = {
            "impressions": float(tally.impressions),
            "revenue": float(tally.revenue),
            "click_through_rate": values["click_through_rate"],
            "click_through_low": values["click_through_interval"][0],
            "click_through_high": values["click_through_interval"][1],
            "buy_through_rate": values["buy_through_rate"],
            "buy_through_low": values["buy_through_interval"][0],
            "buy_through_high": values["buy_through_interval"][1],
            "revenue_per_impression": values["revenue_per_impression"],
        }
        for metric, value in metrics.items():
            if value is not None and run_id:
                client.log_metric(run_id, prefix + metric, float(value))
        client.set_model_version_tag(
            name,
            number,
            f"{ONLINE_TAG_PREFIX}{route}.{variant}.buy_through_rate",
            f"{values['buy_through_rate']:.6f}",
        )
        if label not in written:
            written.append(label)
    return written
