"""`patronage train` end to end on the small sample shop, against a real MLflow SQLite store.

Two runs share one store (module fixture), on the same data and seed:
- A at as_of = last day - 30 days, generous recommender search budget: version 1 of each model,
  champion (nothing to compare with). A is the session's trained store (`trained_sample_store`),
  copied;
- B at the default as_of with a recommender search budget of 0 s (only the baselines are tried).
  B is compared with A on B's backtest window: for the recommender A itself (fitted exactly at
  B's cut), which is genuinely better, so B's recommender must stay out; for churn and loyalty
  A's logged backtest model (fitted before A's own cut, leak-free on B's window).
A real `mlflow server` boots while those runs train (it takes seconds); a small shop trained
against it (recommender and loyalty) must reproduce, every digit, the metrics of the same
training into a SQLite store. Tests that change the registry work on a copy of the database;
tests that only need some training use the small shop (`small_shop_dir`), a quarter of the
sample shop's CPU.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from patronage.cli import main
from tests.conftest import SAMPLE_TRAINED_AS_OF, TrainedSampleStore, copy_trained_store
from training.pipeline import TrainOptions, TrainResult, train
from training.registry import CHALLENGER, CHAMPION, CHURN, LOYALTY, RECOMMENDER, registered_name

pytestmark = pytest.mark.timeout(900)
"""A hang guard, not a speed check: the module's first test waits for the session's trained
store (a training, shared with the other test process) and run B, minutes on a busy machine."""

SHOP = "sample"
"""The shop name every run here registers under (`--shop`)."""


def name_of(role: str) -> str:
    """The registered model name of `role` in the test shop."""
    return registered_name(SHOP, role)


EARLIER_AS_OF = SAMPLE_TRAINED_AS_OF
"""30 days before the default as_of of the sample shop (365 days from 2025-01-01)."""
SEED = 0
"""The seed of every run here (run A's, the session store's)."""


@dataclass(frozen=True)
class TrainedStore:
    """A store after two training runs."""

    root: Path
    first: TrainResult
    second: TrainResult


def _use_store(root: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    import mlflow

    uri = f"sqlite:///{root / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


@pytest.fixture(scope="module")
def trained(
    trained_sample_store: TrainedSampleStore,
    tmp_path_factory: pytest.TempPathFactory,
    server_process: ServerProcess,
) -> TrainedStore:
    """Runs A and B (see the module docstring); the tracking server boots meanwhile.

    A is the session's trained store (`trained_sample_store`: same shop, as_of, seed and
    generous budget), so B trains into a private copy of it instead of repeating A."""
    import mlflow

    assert trained_sample_store.as_of == EARLIER_AS_OF
    root = tmp_path_factory.mktemp("trained") / "mlruns"
    uri = copy_trained_store(trained_sample_store, root)
    with pytest.MonkeyPatch.context() as monkeypatch:
        assert _use_store(root, monkeypatch) == uri
        second = train(
            TrainOptions(
                trained_sample_store.shop_dir,
                seed=SEED,
                progress=False,
                shop=SHOP,
                time_budget_s=0.0,
            )
        )
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
        mlflow.set_registry_uri(None)  # type: ignore[arg-type]
    return TrainedStore(root, trained_sample_store.result, second)


@pytest.fixture
def store_copy(trained: TrainedStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the trained store's database (artifacts stay shared, read-only)."""
    import mlflow

    root = tmp_path / "mlruns"
    root.mkdir()
    shutil.copyfile(trained.root / "mlflow.db", root / "mlflow.db")
    _use_store(root, monkeypatch)
    yield root
    mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
    mlflow.set_registry_uri(None)  # type: ignore[arg-type]


def registry_snapshot() -> dict[str, object]:
    """Every version with its aliases and tags, plus registered-model tags and aliases."""
    from mlflow import MlflowClient

    client = MlflowClient()
    snapshot: dict[str, object] = {}
    for model in client.search_registered_models():
        versions = client.search_model_versions(f"name = '{model.name}'")
        snapshot[model.name] = {
            "aliases": dict(sorted(model.aliases.items())),
            "tags": dict(model.tags),
            "versions": sorted((str(v.version), tuple(sorted(v.tags.items()))) for v in versions),
        }
    return snapshot


def _outcome(result: TrainResult, name: str):  # type: ignore[no-untyped-def]
    return next(o for o in result.outcomes if o.name == name)


def test_runs_register_challengers_and_promote_only_when_no_worse(trained: TrainedStore) -> None:
    for name in (RECOMMENDER, CHURN, LOYALTY):
        first = _outcome(trained.first, name)
        assert (first.version, first.decision, first.champion) == ("1", "first", "1")
        assert _outcome(trained.second, name).version == "2"

    # B's budget-0 recommender against A evaluated on B's own backtest window: worse, kept out.
    worse = _outcome(trained.second, RECOMMENDER)
    assert "champion v1 evaluated on this backtest window" in worse.reason
    assert worse.decision == "kept" and worse.champion == "1", worse.reason
    assert "worse on ndcg_at_10" in worse.reason
    for name in (CHURN, LOYALTY):
        outcome = _outcome(trained.second, name)
        assert "backtest model of champion v1" in outcome.reason
        # Which way B's decision goes is the data's business; the decision itself is tested
        # with a registry set up to make it known (test_decision_follows_the_champion_...).
        assert (outcome.decision, outcome.champion) in (("promoted", "2"), ("kept", "1"))


@pytest.mark.parametrize(
    ("champion_lead", "decision", "champion_after"),
    [(0.0, "promoted", "3"), (0.05, "kept", "2")],
    ids=["champion-equal", "champion-better"],
)
def test_decision_follows_the_champion_set_up_in_the_registry(  # type: ignore[no-untyped-def]
    store_copy, trained: TrainedStore, champion_lead: float, decision: str, champion_after: str
) -> None:
    """Churn and loyalty challengers on the champion's own backtest (same backtest key): with
    the champion's recorded metrics equal to theirs they are promoted; with the champion
    recorded 0.05 better on every promotion metric they are kept out. The registry is set up
    so the outcome is known, then `register` runs as `train` calls it."""
    from mlflow import MlflowClient

    from models.registry_names import METRIC_TAG_PREFIX, recorded_metrics
    from training.candidate import Candidate
    from training.champion import compare_with_champion
    from training.promotion import PROMOTION_METRICS
    from training.registration import register
    from training.shop_data import DataSummary

    client = MlflowClient()
    candidates = []
    for role in (CHURN, LOYALTY):
        # B's outcome decided who is champion; set the champion to version 2 (B) explicitly.
        client.set_registered_model_alias(name_of(role), CHAMPION, "2")
        champion = client.get_model_version(name_of(role), "2")
        metrics = recorded_metrics(champion.tags)
        for rule in PROMOTION_METRICS[role]:
            lead = champion_lead if rule.higher_is_better else -champion_lead
            value = metrics[rule.name]
            recorded = value * (1 + lead) if rule.relative else value + lead
            client.set_model_version_tag(
                name_of(role), "2", METRIC_TAG_PREFIX + rule.name, repr(recorded)
            )
        candidate = Candidate(
            name=role,
            python_model=None,
            artifacts={},
            input_example=pd.DataFrame(),
            metrics=dict(metrics),
            baselines={},
            backtest_key=champion.tags["patronage.backtest_key"],
            cut=pd.Timestamp(champion.tags["patronage.backtest_cut"]),
            evaluate_champion=lambda wrapper: pytest.fail("same backtest: must not re-evaluate"),
            model_uri=champion.source,
            model_id=getattr(champion, "model_id", "") or "",
        )
        compare_with_champion(client, candidate, SHOP)
        assert candidate.comparison == "same backtest as champion v2"
        candidates.append(candidate)
    data = DataSummary("test", "0" * 64, {"purchases": 1}, pd.Timestamp("2025-01-01", tz="UTC"),
                       pd.Timestamp("2025-12-31", tz="UTC"), 0)  # fmt: skip
    outcomes = register(
        client, SHOP, candidates, {}, TrainOptions("unused"),
        pd.Timestamp("2026-01-01", tz="UTC"), trained.second.run_id, data,
    )  # fmt: skip
    assert [(o.name, o.version, o.decision, o.champion) for o in outcomes] == [
        (CHURN, "3", decision, champion_after),
        (LOYALTY, "3", decision, champion_after),
    ], [o.reason for o in outcomes]
    for role in (CHURN, LOYALTY):
        served = client.get_model_version_by_alias(name_of(role), CHAMPION)
        assert str(served.version) == champion_after


def test_same_backtest_compares_recorded_metrics(store_copy, trained: TrainedStore) -> None:  # type: ignore[no-untyped-def]
    from mlflow import MlflowClient

    from training.candidate import Candidate
    from training.champion import compare_with_champion

    client = MlflowClient()
    champion = client.get_model_version_by_alias(name_of(RECOMMENDER), CHAMPION)
    candidate = Candidate(
        name=RECOMMENDER,
        python_model=None,
        artifacts={},
        input_example=pd.DataFrame(),
        metrics={},
        baselines={},
        backtest_key=champion.tags["patronage.backtest_key"],
        cut=pd.Timestamp("2025-11-02T00:00:00Z"),
        evaluate_champion=lambda wrapper: pytest.fail("must not re-evaluate"),
    )
    compare_with_champion(client, candidate, SHOP)
    assert candidate.comparison == "same backtest as champion v1"
    metrics = _outcome(trained.first, RECOMMENDER).metrics
    assert candidate.champion_metrics
    for key, value in candidate.champion_metrics.items():
        assert value == pytest.approx(metrics[key], abs=1e-12)


def test_run_logs_params_metrics_dataset_and_report(trained: TrainedStore, store_copy) -> None:  # type: ignore[no-untyped-def]
    from mlflow import MlflowClient

    client = MlflowClient()
    run = client.get_run(trained.first.run_id)
    assert run.data.params["seed"] == str(SEED)
    assert len(run.data.params["data.sha256"]) == 64
    metrics = run.data.metrics
    for key in (
        "backtest.recommender.model.ndcg_at_10",
        "backtest.recommender.popularity.ndcg_at_10",
        "backtest.recommender.trending.ndcg_at_10",
        "backtest.churn.model.roc_auc",
        "backtest.churn.recency.roc_auc",
        "backtest.churn.base_rate.brier",
        "backtest.loyalty.model.orders_spearman",
        "backtest.loyalty.past_rate.orders_spearman",
        # the final scorer's spend choice for --value-horizon-days (default 90), with its figures
        "backtest.loyalty.model.spend_learned_chosen",
        "backtest.loyalty.model.spend_bgnbd_gamma_gamma_mae",
        "backtest.loyalty.model.spend_learned_mae",
    ):
        assert key in metrics, key
    assert run.data.params["value_horizon_days"] == "90"
    _check_next_need_weights_logged(client)
    # The recommender's default exclude_purchased rule, learned on its validation window, with
    # its figures beside those of `none` and `all`.
    rule = run.data.params["recommender.default_exclusion.rule"]
    assert rule in {"none", "all", "repeatable"}
    prefix = "fit.recommender.default_exclusion.validation_ndcg_at_10."
    figures = {k[len(prefix) :]: v for k, v in metrics.items() if k.startswith(prefix)}
    plain = max(figures["none"], figures["all"])
    assert figures[rule if rule != "repeatable" else max(figures, key=figures.get)] >= plain
    # B's run logged the champion (A) evaluated on B's backtest beside B's own model.
    second = client.get_run(trained.second.run_id).data.metrics
    assert (
        second["backtest.recommender.champion.ndcg_at_10"]
        > second["backtest.recommender.model.ndcg_at_10"]
    )
    assert "backtest.churn.champion.roc_auc" in second
    backtest = {Path(a.path).name for a in client.list_artifacts(trained.first.run_id, "backtest")}
    assert backtest == {"recommender_bundle", "customer_scorer"}
    inputs = run.inputs.dataset_inputs
    assert len(inputs) == 1
    tags = {t.key: t.value for t in inputs[0].tags}
    assert tags["sha256"] == run.data.params["data.sha256"]
    assert "/" in tags["time_range"]
    report = {Path(a.path).name for a in client.list_artifacts(trained.first.run_id, "report")}
    assert {"report.html", "churn_roc.png", "churn_calibration.png", "churn_lift.png"} <= report
    assert any(name.startswith("recommendations_ndcg") for name in report)
    assert "segments.png" in report


def _check_next_need_weights_logged(client: Any) -> None:
    """The champion's bundle keeps the next-need weights its final fit chose on validation,
    and its run logged them (parameters) with the validation figures behind them (metrics)."""
    from models.recommenders.bundle import RecommenderBundle
    from models.recommenders.next_need import NEXT_NEED_WEIGHTS
    from training.registry import resolve_model_dir

    uri = f"models:/{name_of(RECOMMENDER)}@champion"
    bundle = RecommenderBundle.load(resolve_model_dir(uri, artifact="bundle"))
    assert set(bundle.next_need_weights) == {"discovery", "repeat"}
    version = client.get_model_version_by_alias(name_of(RECOMMENDER), "champion")
    logged = client.get_run(version.run_id).data
    for role, weight in bundle.next_need_weights.items():
        assert weight in NEXT_NEED_WEIGHTS
        assert float(logged.params[f"recommender.next_need_weight.{role}"]) == weight
        chosen = logged.metrics[f"fit.recommender.next_need.{role}.ndcg_with_weight"]
        assert chosen >= logged.metrics[f"fit.recommender.next_need.{role}.ndcg_champion_alone"]
    assert bundle.report["next_need"]["repeat"]["cases"] > 100


def test_rollback_restores_the_previous_champion_and_models_lists_it(  # type: ignore[no-untyped-def]
    store_copy, capsys, sample_shop_dir
) -> None:
    from mlflow import MlflowClient

    client = MlflowClient()

    def champion(role: str) -> str:
        return str(client.get_model_version_by_alias(name_of(role), CHAMPION).version)

    assert champion(RECOMMENDER) == "1"
    # Version 1 was the first champion: nothing earlier to roll back to, nothing changes.
    assert main(["rollback", RECOMMENDER]) == 1
    assert "no earlier champion" in capsys.readouterr().err
    assert champion(RECOMMENDER) == "1"
    assert main(["promote", RECOMMENDER, "2", "--reason", "test"]) == 0
    assert champion(RECOMMENDER) == "2"
    assert main(["rollback", RECOMMENDER]) == 0
    assert champion(RECOMMENDER) == "1"
    assert str(client.get_model_version_by_alias(name_of(RECOMMENDER), CHALLENGER).version) == "2"

    capsys.readouterr()
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by_key = {(r["role"], r["version"]): r for r in rows}
    assert {r["shop"] for r in rows} == {SHOP}
    assert len(rows) == 6
    assert by_key[(RECOMMENDER, "1")]["aliases"] == [CHAMPION]
    assert by_key[(RECOMMENDER, "1")]["decision"] == "rollback"
    assert by_key[(RECOMMENDER, "2")]["aliases"] == [CHALLENGER]
    assert "roc_auc" in by_key[(CHURN, "2")]["metrics"]
    # Each version says what it was trained on and whether it beat its plain baseline.
    first = by_key[(RECOMMENDER, "1")]
    assert len(first["data_sha256"]) == 64 and first["data_rows"]["purchases"] > 1000
    assert first["data_source"].endswith(sample_shop_dir.name)
    assert first["beats_baseline"] is True and "popularity" in first["baseline_note"]
    assert main(["models"]) == 0
    assert "champion" in capsys.readouterr().out


def test_failing_fit_leaves_the_registry_as_it_was(store_copy, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    from features.sample_shop import generate_shop

    before = registry_snapshot()
    too_short = tmp_path / "too_short"
    generate_shop(too_short, customers=60, items=20, days=20, seed=1)
    assert main(["train", str(too_short), "--quiet", "--shop", SHOP]) == 1
    error = capsys.readouterr().err
    assert "no role could be trained" in error and "registry unchanged" in error
    # Each role says why in its own words.
    assert "recommender: the recommender backtest needs purchases before" in error
    assert "churn: churn and loyalty are checked on the last 90 days and nobody" in error
    assert registry_snapshot() == before


@pytest.fixture(scope="module")
def small_shop_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated shop (300 customers, 60 items, 200 days) for the tests that need a
    training but not the sample shop's: too young for churn (which is most of a small shop's
    training), so the recommender and loyalty train in about a quarter of the sample shop's
    CPU (7.5 against 30 CPU-s at a search budget of 0)."""
    from features.sample_shop import generate_shop

    directory = tmp_path_factory.mktemp("small_shop")
    generate_shop(directory, customers=300, items=60, days=200, seed=3, overwrite=True)
    return directory


def test_corrupt_artifact_leaves_the_registry_as_it_was(
    store_copy, small_shop_dir, monkeypatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    import mlflow.pyfunc
    from mlflow.utils.file_utils import local_file_uri_to_path

    original = mlflow.pyfunc.log_model
    experiment = mlflow.get_experiment_by_name("patronage")
    artifacts = Path(local_file_uri_to_path(experiment.artifact_location))
    damaged = []

    def log_then_corrupt(*args, **kwargs):  # type: ignore[no-untyped-def]
        info = original(*args, **kwargs)
        # Damage the stored copy, as a bad disk or a partial upload would.
        for path in artifacts.glob(f"**/{info.model_id}/**/*.npz"):
            path.write_bytes(path.read_bytes()[:100])
            damaged.append(path)
        return info

    monkeypatch.setattr(mlflow.pyfunc, "log_model", log_then_corrupt)
    before = registry_snapshot()
    code = main(
        [
            "train",
            str(small_shop_dir),
            "--quiet",
            "--time-budget",
            "0",
            "--shop",
            SHOP,
        ]
    )
    assert code == 1 and damaged
    error = capsys.readouterr().err
    assert "does not load back" in error and "registry unchanged" in error
    assert registry_snapshot() == before


def test_unreachable_tracking_server_is_a_clear_error(sample_shop_dir, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    started = time.perf_counter()
    assert main(["train", str(sample_shop_dir), "--quiet"]) == 1
    assert "cannot reach the MLflow tracking store at http://127.0.0.1:9" in capsys.readouterr().err
    assert time.perf_counter() - started < 20


def test_champions_load_and_predict_in_a_fresh_process(store_copy, sample_shop_dir) -> None:  # type: ignore[no-untyped-def]
    customers = pd.read_csv(sample_shop_dir / "purchases.csv", usecols=["customer_id"])
    known = customers["customer_id"].astype(str).iloc[0]
    script = f"""
import json, mlflow.pyfunc, pandas as pd
frame = pd.DataFrame({{"customer_id": [{known!r}, "never-seen"]}})
out = {{}}
for role in ("churn", "loyalty", "recommender"):
    model = mlflow.pyfunc.load_model(f"models:/patronage.{SHOP}.{{role}}@champion")
    answer = model.predict(frame, params={{"k": 3}} if role == "recommender" else None)
    out[role] = json.loads(answer.to_json(orient="records", date_format="iso"))
print(json.dumps(out))
"""
    env = dict(os.environ)
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=store_copy.parent,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    answers = json.loads(result.stdout.strip().splitlines()[-1])
    churn = answers[CHURN]
    assert [row["customer_id"] for row in churn] == [known, "never-seen"]
    assert 0.0 <= churn[0]["churn_probability"] <= 1.0
    assert churn[1]["churn_probability"] is None and churn[1]["churn_risk"] == "unknown"
    loyalty = answers[LOYALTY]
    assert loyalty[0]["segment"] not in ("", "unknown")
    assert 0.0 <= loyalty[0]["loyalty_score"] <= 100.0
    recommendations = answers[RECOMMENDER]
    assert [r["rank"] for r in recommendations if r["customer_id"] == known] == [1, 2, 3]
    assert all(r["strategy"] for r in recommendations)
    cold = [r for r in recommendations if r["customer_id"] == "never-seen"]
    assert len(cold) == 3 and cold[0]["strategy"].startswith("trending")


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class ServerProcess:
    """A booting `mlflow server`: its process, URL and log file."""

    process: subprocess.Popen  # type: ignore[type-arg]
    url: str
    log: Path


@pytest.fixture(scope="module")
def server_process(migrated_mlflow_db: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Start a real `mlflow server` on 127.0.0.1 (SQLite backend, proxied artifacts), without
    waiting: it boots while the module's training runs work. Stopped (its process group only)
    at the end of the module."""
    import signal

    directory = tmp_path_factory.mktemp("mlflow_server")
    shutil.copyfile(migrated_mlflow_db, directory / "server.db")
    port = _free_port()
    command = [
        str(Path(sys.executable).with_name("mlflow")), "server",
        "--backend-store-uri", f"sqlite:///{directory / 'server.db'}",
        "--serve-artifacts", "--artifacts-destination", str(directory / "served-artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    log_path = directory / "server.log"
    # MLflow 3's server also starts a job runner (about seven huey consumer processes, polling
    # all the time) that training never uses; off, it stops taking CPU from the other tests.
    environment = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=environment
        )
    try:
        yield ServerProcess(process, f"http://127.0.0.1:{port}", log_path)
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # the server and its uvicorn worker, nothing else
        try:
            process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture
def mlflow_server(server_process: ServerProcess, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """The server's URL once `/health` answers; `MLFLOW_TRACKING_URI` points at it."""
    import urllib.request

    import mlflow

    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(f"{server_process.url}/health", timeout=2) as answer:
                if answer.status == 200:
                    break
        except OSError:
            pass
        if server_process.process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"mlflow server did not start: {server_process.log.read_text()}")
        time.sleep(0.3)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server_process.url)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    yield server_process.url
    mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
    mlflow.set_registry_uri(None)  # type: ignore[arg-type]


def test_training_against_a_real_tracking_server(
    mlflow_server, small_shop_dir, migrated_mlflow_db, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    import mlflow
    import mlflow.pyfunc

    result = train(
        TrainOptions(small_shop_dir, seed=SEED, time_budget_s=0.0, progress=False, shop=SHOP)
    )
    assert result.tracking_uri == mlflow_server
    assert {o.name: o.decision for o in result.outcomes} == dict.fromkeys(
        (RECOMMENDER, LOYALTY), "first"
    )
    # The same shop, seed and settings into a SQLite store: the same metrics, every digit.
    shutil.copyfile(migrated_mlflow_db, tmp_path / "mlflow.db")
    local = train(
        TrainOptions(
            small_shop_dir,
            seed=SEED,
            time_budget_s=0.0,
            progress=False,
            shop=SHOP,
            tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        )
    )
    for outcome in result.outcomes:
        assert outcome.metrics == _outcome(local, outcome.name).metrics
    assert result.backtest == local.backtest
    mlflow.set_tracking_uri(mlflow_server)
    mlflow.set_registry_uri(mlflow_server)
    model = mlflow.pyfunc.load_model(
        f"models:/{name_of(LOYALTY)}@champion"
    )  # artifacts via the server
    answer = model.predict(pd.DataFrame({"customer_id": ["never-seen"]}))
    assert list(answer.columns)[:3] == ["customer_id", "loyalty_score", "segment"]


def test_resolve_model_dir_gives_loadable_artifacts(store_copy) -> None:  # type: ignore[no-untyped-def]
    from models.recommenders.bundle import RecommenderBundle
    from training.registry import RegistryError, resolve_model_dir

    bundle = RecommenderBundle.load(
        resolve_model_dir(f"models:/{name_of(RECOMMENDER)}@champion", artifact="bundle")
    )
    assert len(bundle.item_ids) > 0
    scores = resolve_model_dir(f"models:/{name_of(CHURN)}@champion", artifact="scores")
    assert (scores / "scores.parquet").exists()
    with pytest.raises(RegistryError, match="no artifact"):
        resolve_model_dir(f"models:/{name_of(CHURN)}@champion", artifact="bundle")
    with pytest.raises(RegistryError, match="cannot find the model"):
        resolve_model_dir(f"models:/{name_of(CHURN)}@nonexistent")


def test_an_error_while_registering_puts_the_registry_back(store_copy, trained) -> None:  # type: ignore[no-untyped-def]
    """The server going away mid-way: aliases, history and versions are restored."""
    from mlflow import MlflowClient

    from training.candidate import Candidate
    from training.options import TrainingFailed
    from training.registration import register
    from training.shop_data import DataSummary

    client = MlflowClient()
    before = registry_snapshot()
    candidates = []
    for name in (RECOMMENDER, CHURN, LOYALTY):
        logged = client.get_model_version(name_of(name), "2")
        candidates.append(
            Candidate(
                name=name,
                python_model=None,
                artifacts={},
                input_example=pd.DataFrame(),
                metrics=dict(_outcome(trained.second, name).metrics),
                baselines={},
                backtest_key="test",
                cut=pd.Timestamp("2025-12-02T00:00:00Z"),
                evaluate_champion=lambda wrapper: {},
                model_uri=logged.source,
                model_id=getattr(logged, "model_id", "") or "",
            )
        )

    class ServerGoesAway:
        """The real client, until the third model's version is created."""

        def __getattr__(self, attribute: str):  # type: ignore[no-untyped-def]
            return getattr(client, attribute)

        def create_model_version(self, name, *args, **kwargs):  # type: ignore[no-untyped-def]
            if name == name_of(LOYALTY):
                raise ConnectionError("connection refused")
            return client.create_model_version(name, *args, **kwargs)

    data = DataSummary("test", "0" * 64, {"purchases": 1}, pd.Timestamp("2025-01-01", tz="UTC"),
                       pd.Timestamp("2025-12-31", tz="UTC"), 0)  # fmt: skip
    options = TrainOptions("unused", force=True)  # moves champion of the first two first
    with pytest.raises(TrainingFailed, match="put back as it was"):
        register(
            ServerGoesAway(), SHOP, candidates, {}, options,
            pd.Timestamp("2026-01-01", tz="UTC"), trained.second.run_id, data,
        )  # fmt: skip
    assert registry_snapshot() == before


def test_recommend_and_score_default_to_the_registered_champions(  # type: ignore[no-untyped-def]
    store_copy, sample_shop_dir: Path, tmp_path: Path
) -> None:
    """`patronage recommend` and `patronage score` without a model option use @champion."""
    customers = tmp_path / "customers.txt"
    shop_customers = pd.read_csv(sample_shop_dir / "purchases.csv", dtype=str)["customer_id"]
    customers.write_text("\n".join(sorted(shop_customers.unique())[:5]) + "\n")
    recs = tmp_path / "recs.csv"
    assert main(["recommend", "--customers", str(customers), "--k", "3", "--out", str(recs)]) == 0
    table = pd.read_csv(recs, dtype=str)
    assert len(table) == 15 and table["strategy"].notna().all()
    scores = tmp_path / "scores.csv"
    assert main(["score", str(sample_shop_dir), "--shop", SHOP, "--out", str(scores)]) == 0
    scored = pd.read_csv(scores, dtype={"customer_id": str})
    assert scored["churn_probability"].between(0, 1).all() and len(scored) > 100
