"""One MLflow run per training: parameters, metrics, dataset, report, the models (each loaded
back and asked to predict before anything is registered).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from models.registry_names import AS_OF_TAG, DATA_SHA256_TAG
from training.candidate import Candidate
from training.options import TrainingFailed, TrainOptions
from training.shop_data import DataSummary

if TYPE_CHECKING:
    from training.report import EvaluationReport


def pip_requirements() -> list[str]:
    """Pinned requirements of the logged models (Patronage itself must also be installed)."""
    from importlib.metadata import PackageNotFoundError, version

    packages = (
        "mlflow",
        "numpy",
        "pandas",
        "scipy",
        "scikit-learn",
        "pyarrow",
        "implicit",
        "threadpoolctl",
        "skops",
        "duckdb",
        "ibis-framework",
    )
    pins = []
    for package in packages:
        try:
            pins.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            continue
    return pins


def log_run(
    options: TrainOptions,
    experiment_id: str,
    as_of: pd.Timestamp,
    data: DataSummary,
    candidates: list[Candidate],
    report: EvaluationReport,
    workdir: Path,
) -> str:
    """One MLflow run with params, metrics, dataset, report and the three models (verified)."""
    import mlflow

    try:
        with mlflow.start_run(experiment_id=experiment_id) as run:
            try:
                _log_contents(options, as_of, data, candidates, report, workdir)
            except Exception:
                mlflow.end_run(status="FAILED")
                raise
            return str(run.info.run_id)
    except TrainingFailed:
        raise
    except Exception as error:
        raise TrainingFailed(
            f"logging to MLflow failed, registry unchanged: {type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}"
        ) from error


def _log_contents(
    options: TrainOptions,
    as_of: pd.Timestamp,
    data: DataSummary,
    candidates: list[Candidate],
    report: EvaluationReport,
    workdir: Path,
) -> None:
    import mlflow

    mlflow.log_params(
        {
            "data.source": data.source,
            "data.sha256": data.sha256,
            "as_of": as_of.isoformat(),
            "churn_horizon_days": options.churn_horizon_days,
            "value_horizon_days": options.value_horizon_days,
            "recommendation_window_days": options.recommendation_window_days,
            "seed": options.seed,
            "time_budget_s": options.time_budget_s,
            "force": options.force,
            "max_reject_rate": options.max_reject_rate,
            **{f"data.rows.{k}": v for k, v in data.rows.items()},
            "data.first_order_at": data.first_order_at.isoformat(),
            "data.last_order_at": data.last_order_at.isoformat(),
        }
    )
    mlflow.set_tags({AS_OF_TAG: as_of.isoformat(), DATA_SHA256_TAG: data.sha256})
    metrics: dict[str, float] = {}
    for candidate in candidates:
        short = candidate.name
        for key, value in candidate.metrics.items():
            metrics[f"backtest.{short}.model.{key}"] = value
        for baseline, values in candidate.baselines.items():
            for key, value in values.items():
                metrics[f"backtest.{short}.{baseline}.{key}"] = value
        for key, value in (candidate.champion_metrics or {}).items():
            metrics[f"backtest.{short}.champion.{key}"] = value
        metrics.update(candidate.run_metrics)
    for candidate in candidates:
        if candidate.run_params:
            mlflow.log_params(candidate.run_params)
    mlflow.log_metrics({k: float(v) for k, v in metrics.items() if np.isfinite(v)})
    with _quiet_mlflow():
        _log_dataset(data, as_of)
    report.summary += [
        (f"{c.name} vs champion", c.comparison or "no champion yet") for c in candidates
    ]
    report_dir = workdir / "report"
    report.write(report_dir)
    mlflow.log_artifacts(str(report_dir), artifact_path="report")
    run_id = mlflow.active_run().info.run_id  # type: ignore[union-attr]
    logged: dict[str, str] = {}
    for candidate in candidates:
        if not candidate.backtest_dir:
            continue
        if candidate.backtest_dir not in logged:
            name = Path(candidate.backtest_dir).name
            mlflow.log_artifacts(candidate.backtest_dir, artifact_path=f"backtest/{name}")
            logged[candidate.backtest_dir] = f"runs:/{run_id}/backtest/{name}"
        candidate.backtest_model_uri = logged[candidate.backtest_dir]
    requirements = pip_requirements()
    with _quiet_mlflow():
        for candidate in candidates:
            _log_model(candidate, requirements)


@contextmanager
def _quiet_mlflow() -> Iterator[None]:
    """Silence MLflow's generic advice while logging our models: the cloudpickle warning is
    answered by `check_model_dir`, the integer-column hint does not apply (ranks never miss)."""
    import logging
    import warnings

    logger = logging.getLogger("mlflow.pyfunc")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning)
            yield
    finally:
        logger.setLevel(level)


def _log_model(candidate: Candidate, requirements: list[str]) -> None:
    """Log one wrapper with its artifacts, signature and input example, then verify it."""
    import mlflow
    from mlflow.models import infer_signature

    output = _output_example(candidate)
    signature = infer_signature(candidate.input_example, output, params=candidate.predict_params)
    info = mlflow.pyfunc.log_model(
        name=candidate.name,
        python_model=candidate.python_model,
        artifacts=candidate.artifacts,
        signature=signature,
        input_example=candidate.input_example,
        pip_requirements=requirements,
        tags={"patronage.registered_model": candidate.name},
    )
    candidate.model_uri = info.model_uri
    candidate.model_id = info.model_id or ""
    _verify_logged_model(candidate)


class _LocalContext:
    """The part of MLflow's PythonModelContext the wrappers read: artifact paths."""

    def __init__(self, artifacts: dict[str, str]) -> None:
        self.artifacts = artifacts
        self.model_config: dict[str, Any] = {}


def _output_example(candidate: Candidate) -> pd.DataFrame:
    """The wrapper's answer to its input example, from a fresh instance (the logged instance
    stays empty, so its pickle names the class only)."""
    wrapper = type(candidate.python_model)()
    wrapper.load_context(_LocalContext(candidate.artifacts))
    return wrapper.predict(None, candidate.input_example, params=candidate.predict_params)


def _log_dataset(data: DataSummary, as_of: pd.Timestamp) -> None:
    import mlflow

    frame = pd.DataFrame(
        {
            "table": list(data.rows),
            "rows": list(data.rows.values()),
        }
    )
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.dataset_source import DatasetSource
    from mlflow.data.pandas_dataset import from_pandas

    from features.postgres_url import is_postgres_url

    # MLflow resolves a path or an http URL as a source, not a database URL: a database is
    # recorded as a source described by tags (its URL, password masked).
    source: str | DatasetSource = data.source
    if is_postgres_url(data.source):
        source = CodeDatasetSource(tags={"patronage.data_source": data.source})
    dataset = from_pandas(frame, source=source, name="shop", digest=data.sha256[:32])
    mlflow.log_input(
        dataset,
        context="training",
        tags={
            "sha256": data.sha256,
            "rows": str(sum(data.rows.values())),
            "purchases": str(data.rows["purchases"]),
            "time_range": f"{data.first_order_at.isoformat()}/{data.last_order_at.isoformat()}",
            "as_of": as_of.isoformat(),
        },
    )


def _verify_logged_model(candidate: Candidate) -> None:
    """Load the logged model back (as anyone would) and predict on its input example."""
    import mlflow.pyfunc

    from models.pyfunc import check_model_dir

    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=candidate.model_uri)
        check_model_dir(local)
        loaded = mlflow.pyfunc.load_model(local)
        output = loaded.predict(candidate.input_example, params=candidate.predict_params)
    except Exception as error:
        raise TrainingFailed(
            f"the logged {candidate.name} model does not load back ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}); registry unchanged"
        ) from error
    if output is None or len(output) == 0:
        raise TrainingFailed(
            f"the logged {candidate.name} model predicts nothing for its input example; "
            "registry unchanged"
        )
