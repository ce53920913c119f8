"""The registry plumbing: aliases, champion history, rollback, listing, unreachable stores."""

from __future__ import annotations

import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from models.registry_names import ROLE_TAG, SHOP_TAG, registered_name, shop_name
from patronage.cli import main
from tests.conftest import PROJECT_ROOT
from training import registry
from training.promotion import decide, versus_baseline
from training.tracking import (
    DEFAULT_EXPERIMENT,
    TrackingUnavailable,
    connect,
    ensure_experiment,
    resolve_store,
)


class _ConstantModel(mlflow.pyfunc.PythonModel):
    """A real (tiny) pyfunc model: returns a constant column; enough to exercise the registry."""

    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        return pd.DataFrame({"value": [1.0] * len(model_input)})


def _register_versions(name: str, count: int) -> list[str]:
    store, client = connect()
    experiment_id = ensure_experiment(client, store, DEFAULT_EXPERIMENT)
    versions = []
    for _ in range(count):
        with mlflow.start_run(experiment_id=experiment_id):
            info = mlflow.pyfunc.log_model(
                name="model", python_model=_ConstantModel(), pip_requirements=["pandas"]
            )
        versions.append(client.create_model_version(name, info.model_uri, info.run_id).version)
    return [str(v) for v in versions]


def _shop_model(client, shop: str, role: str) -> str:  # type: ignore[no-untyped-def]
    name = registered_name(shop, role)
    client.create_registered_model(name, tags={SHOP_TAG: shop, ROLE_TAG: role})
    return name


def test_promote_rollback_and_listing(mlflow_store, capsys) -> None:  # type: ignore[no-untyped-def]
    client = connect()[1]
    churn = _shop_model(client, "shopa", registry.CHURN)
    versions = _register_versions(churn, 3)
    registry.set_champion(client, churn, versions[0], "first", "no champion yet")
    registry.set_champion(client, churn, versions[1], "promoted", "no worse")
    # A role names the model of the store's only shop.
    assert main(["promote", "churn", versions[2], "--reason", "hand-picked"]) == 0
    assert str(registry.champion_version(client, churn).version) == versions[2]
    assert registry.champion_history(client, churn) == versions

    assert main(["rollback", "churn"]) == 0
    assert str(registry.champion_version(client, churn).version) == versions[1]
    assert main(["rollback", churn]) == 0
    assert str(registry.champion_version(client, churn).version) == versions[0]
    # Nothing earlier than the first champion: a clear error, exit 1, champion unchanged.
    assert main(["rollback", "churn", "--shop", "shopa"]) == 1
    assert "no earlier champion" in capsys.readouterr().err
    assert str(registry.champion_version(client, churn).version) == versions[0]

    capsys.readouterr()
    assert main(["models"]) == 0
    table = capsys.readouterr().out
    assert table.count("shopa  churn") == 3
    assert "champion" in table and "rollback" in table


def test_shops_keep_their_models_apart(mlflow_store, capsys) -> None:  # type: ignore[no-untyped-def]
    """Two shops in one store: a role alone is ambiguous, promoting in one shop leaves the
    other's champion alone, and listing one shop shows only its models."""
    client = connect()[1]
    names = {shop: _shop_model(client, shop, registry.CHURN) for shop in ("shopa", "shopb")}
    for shop, name in names.items():
        (version,) = _register_versions(name, 1)
        registry.set_champion(client, name, version, "first", f"{shop}'s first")
    (second_b,) = _register_versions(names["shopb"], 1)
    assert main(["promote", "churn", second_b]) == 1
    assert "several shops (shopa, shopb): pass --shop NAME" in capsys.readouterr().err
    assert main(["promote", "churn", second_b, "--shop", "shopb"]) == 0
    assert str(registry.champion_version(client, names["shopb"]).version) == second_b
    assert str(registry.champion_version(client, names["shopa"]).version) == "1"
    capsys.readouterr()
    assert main(["models", "--shop", "shopa"]) == 0
    listing = capsys.readouterr().out
    assert "shopa" in listing and "shopb" not in listing


def test_shop_names() -> None:
    assert shop_name("Groceries Dataset") == "groceries-dataset"
    assert shop_name("data/sample"[5:]) == "sample"
    with pytest.raises(ValueError, match="--shop"):
        shop_name("...")


def test_runs_keep_their_artifacts_in_the_test_store(mlflow_store) -> None:  # type: ignore[no-untyped-def]
    """A run in the project's experiment and one in MLflow's "Default" experiment (id 0, whose
    location MLflow fixed when it created the database) both write under tmp, never into the
    repository's `mlruns/`."""
    from mlflow.utils.file_utils import local_file_uri_to_path

    store, client = connect()
    project = ensure_experiment(client, store, DEFAULT_EXPERIMENT)
    for experiment_id in (project, "0"):
        with mlflow.start_run(experiment_id=experiment_id) as run:
            mlflow.log_dict({"checked": True}, "check.json")
        artifacts = Path(local_file_uri_to_path(run.info.artifact_uri)).resolve()
        assert (artifacts / "check.json").is_file()
        assert not artifacts.is_relative_to(PROJECT_ROOT), artifacts
        if experiment_id == project:
            assert artifacts.is_relative_to(mlflow_store.root.resolve()), artifacts


def test_promote_unknown_version_is_a_clear_error(mlflow_store, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["promote", "patronage.shopa.recommender", "7"]) == 1
    assert "no registered model" in capsys.readouterr().err
    assert main(["promote", "recommender", "7"]) == 1
    assert "no shop has registered models yet" in capsys.readouterr().err


def test_unreachable_server_fails_fast_and_clearly(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    started = time.perf_counter()
    with pytest.raises(TrackingUnavailable, match="cannot reach"):
        connect()
    assert time.perf_counter() - started < 15


def test_default_store_is_sqlite_under_mlruns(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    store = resolve_store()
    assert store.tracking_uri == "sqlite:///mlruns/mlflow.db"
    assert (tmp_path / "mlruns").is_dir()
    assert store.artifact_location == (tmp_path / "mlruns" / "artifacts").resolve().as_uri()
    with pytest.raises(ValueError, match="file store"):
        resolve_store(str(Path("mlruns").resolve()))


def test_decision_rule() -> None:
    champion = {"roc_auc": 0.80, "average_precision": 0.50, "brier": 0.15}
    same = decide(registry.CHURN, champion, champion)
    assert same.promote and same.decision == "promoted"
    worse_brier = decide(registry.CHURN, {**champion, "brier": 0.16}, champion)
    assert not worse_brier.promote and "brier" in worse_brier.reason
    forced = decide(registry.CHURN, {**champion, "roc_auc": 0.7}, champion, force=True)
    assert forced.promote and forced.decision == "forced"
    first = decide(registry.CHURN, champion, None)
    assert first.promote and first.decision == "first"
    with pytest.raises(ValueError, match="roc_auc"):
        decide(registry.CHURN, {"brier": 0.1}, champion)


def test_a_version_that_loses_to_its_baseline_never_replaces_one_that_beats_it() -> None:
    champion = {"roc_auc": 0.70, "average_precision": 0.50, "brier": 0.20}
    better_on_paper = {"roc_auc": 0.71, "average_precision": 0.51, "brier": 0.19}
    kept = decide(
        registry.CHURN, better_on_paper, champion, beats_baseline=False,
        champion_beats_baseline=True,
    )  # fmt: skip
    assert not kept.promote and "does not beat its plain baseline" in kept.reason
    forced = decide(
        registry.CHURN, better_on_paper, champion, force=True, beats_baseline=False,
        champion_beats_baseline=True,
    )  # fmt: skip
    assert forced.promote and forced.decision == "forced"
    # Neither beats its baseline: the usual comparison decides.
    plain = decide(
        registry.CHURN, better_on_paper, champion, beats_baseline=False,
        champion_beats_baseline=False,
    )  # fmt: skip
    assert plain.promote


def test_versus_baseline_names_a_useless_model() -> None:
    # Groceries on main: churn AUC 0.499 with a Brier worse than the constant base rate.
    useless, note = versus_baseline(
        registry.CHURN,
        {"roc_auc": 0.499, "brier": 0.26},
        {"recency": {"roc_auc": 0.60}, "base_rate": {"brier": 0.25}},
    )
    assert not useless and "does NOT beat its plain baseline" in note and "0.4990" in note
    useful, note = versus_baseline(
        registry.LOYALTY, {"orders_mae": 0.3}, {"past_rate": {"orders_mae": 0.4}}
    )
    assert useful and note.startswith("beats its plain baseline")
    missing, note = versus_baseline(registry.RECOMMENDER, {"ndcg_at_10": 0.3}, {})
    assert not missing and "not measurable" in note


def test_train_output_names_a_model_that_loses_to_its_baseline_and_skipped_roles() -> None:
    from training.pipeline import TrainResult
    from training.registration import ModelOutcome

    result = TrainResult(
        run_id="r",
        experiment_id="1",
        tracking_uri="sqlite:///x.db",
        as_of=pd.Timestamp("2026-01-01", tz="UTC"),
        seconds=1.0,
        outcomes=[
            ModelOutcome(
                "churn",
                "1",
                "first",
                "no champion yet",
                "1",
                {"roc_auc": 0.499},
                False,
                "does NOT beat its plain baseline (roc_auc 0.4990 vs recency 0.6000)",
            )
        ],  # fmt: skip
        shop="groceries",
        skipped={"recommender": "recommendations need at least two products that sold"},
    )
    text = result.describe()
    assert "churn v1 (patronage.groceries.churn): first" in text
    assert "WARNING: does NOT beat its plain baseline" in text
    assert "recommender: skipped. recommendations need at least two products" in text
