"""The recommender role: backtest on the last window before `as_of` beside popularity and
trending, then the final fit on all data (docs/training.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd

from training.candidate import Candidate, backtest_key
from training.options import RoleSkipped
from training.registry import RECOMMENDER
from training.stages import RoleInputs


def recommender_candidate(inputs: RoleInputs) -> Candidate:
    shop, as_of, data, options = inputs.shop, inputs.as_of, inputs.data, inputs.options
    workdir, progress, report = inputs.workdir, inputs.progress, inputs.report
    from models.pyfunc import RecommenderModel
    from models.recommenders.bundle import fit_recommender_bundle
    from training.recommendation_backtest import (
        baseline_lists,
        bundle_lists,
        evaluate_lists,
        window_truth,
    )

    window = float(options.recommendation_window_days)
    cut = as_of - pd.Timedelta(days=window)
    progress.step(f"recommender backtest: fit before {cut.date()}, test to {as_of.date()}")
    products = shop.purchases["item_id"].nunique()
    if products < 2:
        raise RoleSkipped(
            f"recommendations need at least two products that sold; this shop sold {products} "
            "before as_of, so there is nothing to choose between (churn and loyalty do not need "
            "products)"
        )
    past = shop.before(cut)
    if past.purchases.empty:
        raise RoleSkipped(
            f"the recommender backtest needs purchases before {cut.date()} (the "
            f"{window:g}-day window before as_of) and this shop has none: pass a shorter "
            "--recommendation-window-days or wait for more history"
        )
    try:
        backtest_bundle = fit_recommender_bundle(
            past, cut, seed=options.seed, time_budget_s=options.time_budget_s
        )
    except ValueError as error:
        raise RoleSkipped(
            f"the recommender could not be fitted on the data before {cut.date()}: {error}"
        ) from error
    truth = window_truth(shop, backtest_bundle.customer_ids, cut, as_of, seed=options.seed)
    if not truth.relevant["repeat"]:
        raise RoleSkipped(
            f"no customer known before {cut.date()} bought in the {window:g} days before as_of, "
            "so recommendations cannot be checked: pass a longer --recommendation-window-days "
            "or an earlier --as-of"
        )
    n_items = len(backtest_bundle.item_ids)
    model_eval = evaluate_lists(bundle_lists(backtest_bundle, truth), truth, n_items)
    baselines = {
        name: evaluate_lists(lists, truth, n_items)
        for name, lists in baseline_lists(backtest_bundle, past, truth, window).items()
    }
    report.metric_tables["Recommendations: backtest"] = {
        "model": model_eval.metrics,
        **{name: e.metrics for name, e in baselines.items()},
    }
    report.recommendation_curves = {"model": model_eval.curves} | {
        name: e.curves for name, e in baselines.items()
    }
    report.summary.append(("recommendation window", f"{cut.isoformat()} to {as_of.isoformat()}"))
    report.summary.append(("recommender strategies", json.dumps(backtest_bundle.strategies)))

    progress.step("fitting the final recommender on all data")
    try:
        bundle = fit_recommender_bundle(
            shop, as_of, seed=options.seed, time_budget_s=options.time_budget_s
        )
    except ValueError as error:
        raise RoleSkipped(f"the recommender could not be fitted on all data: {error}") from error
    bundle_dir = workdir / "recommender_bundle"
    bundle.save(bundle_dir)
    known = [str(c) for c in bundle.customer_ids[:3]]
    example = pd.DataFrame({"customer_id": known + ["__new_customer__"]})

    def evaluate_champion(wrapper: Any) -> dict[str, float]:
        return evaluate_lists(bundle_lists(wrapper.bundle, truth), truth, n_items).metrics

    backtest_dir = workdir / "backtest" / "recommender_bundle"
    backtest_bundle.save(backtest_dir)

    def load_backtest(directory: Path) -> Any:
        from models.recommenders.bundle import RecommenderBundle

        return SimpleNamespace(bundle=RecommenderBundle.load(directory))

    return Candidate(
        name=RECOMMENDER,
        python_model=RecommenderModel(),
        artifacts={"bundle": str(bundle_dir)},
        input_example=example,
        predict_params={"k": 10, "exclude_purchased": "non-repeatable", "category": ""},
        metrics=model_eval.metrics,
        baselines={name: e.metrics for name, e in baselines.items()},
        backtest_key=backtest_key(data, RECOMMENDER, cut, as_of, options),
        cut=cut,
        evaluate_champion=evaluate_champion,
        backtest_dir=str(backtest_dir),
        backtest_loader=load_backtest,
    )
