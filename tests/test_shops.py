"""The small version of `python -m benchmarks.shops`: shops our generator did not shape for
training go through the whole product in one MLflow store, as a new user runs it.

A young shop (150 days: too short to learn churn over 90 days) and the CDNOW sample (one
product: no recommender) each go through import/generate, validate, plain `train`, `models`,
`score`, `recommend` and `serve` with one request per route (`serve` as its own process, the
other commands through the real CLI's `main` in the test process). The two shops share the store:
training the second leaves the first one's champions alone, so does moving a champion of one
by hand, and `score` on a third shop without a model of its own refuses instead of borrowing
one. (A retrain with `--force` cost 110 s of the suite's ten minutes; training into a shared
store is what the fixture already does.)"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.shops import Step, run_all, shop_sources

pytestmark = pytest.mark.timeout(900)
"""A hang guard, not a speed check: the module fixture runs two shops through about twenty
`patronage` commands (about 3 minutes on a quiet 2-core machine; seen over 300 s, the suite's
default, while benchmarks ran beside it). Speed is measured by `python -m benchmarks.shops`."""


@contextlib.contextmanager
def _as_a_process(env: dict[str, str], cwd: Path) -> Iterator[None]:
    """Run the block with `env` as the whole environment and `cwd` as working directory, as a
    new process would have them, then put both back (and MLflow's process-wide store URIs)."""
    import mlflow

    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
        mlflow.set_registry_uri(None)  # type: ignore[arg-type]


def _main(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """`patronage ARGS` through the real CLI's `main`, in this process: the same code as
    `python -m patronage ARGS` without importing MLflow, pandas and scikit-learn again for each
    of the module's twenty commands (about 6 CPU-s each)."""
    from patronage.cli import main

    out, err = io.StringIO(), io.StringIO()
    with _as_a_process(env, cwd), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(args)
        except SystemExit as exit_:  # argparse's usage errors
            code = exit_.code if isinstance(exit_.code, int) else 1
    return subprocess.CompletedProcess(["patronage", *args], code, out.getvalue(), err.getvalue())


def _in_process(name: str, command: list[str], env: dict[str, str], cwd: Path) -> Step:
    """The benchmark's runner for `python -m patronage ...`, through `_main`."""
    assert command[1:3] == ["-m", "patronage"], command
    started = time.perf_counter()
    done = _main(command[3:], env, cwd)
    output = (done.stdout + done.stderr)[-4000:]
    return Step(name, done.returncode, time.perf_counter() - started, output)


@pytest.fixture(scope="module")
def shops(shared_data: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Both shops run through the product (`serve` as a process, the other commands through the
    CLI's `main`); (workdir, runs by shop)."""
    workdir = tmp_path_factory.mktemp("shops")
    sources = [s for s in shop_sources(small=True) if s.name in ("sample-150", "cdnow")]
    runs = run_all(sources, workdir, runner=_in_process)
    return workdir, {run.shop: run for run in runs}


def _cli(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{workdir / 'mlruns' / 'mlflow.db'}")
    env.pop("MLFLOW_REGISTRY_URI", None)
    return _main(list(args), env, workdir)


def test_a_young_shop_gets_recommendations_and_loyalty_and_is_told_why_not_churn(shops) -> None:  # type: ignore[no-untyped-def]
    _, runs = shops
    young = runs["sample-150"]
    assert young.ok, young.problems
    assert set(young.trained) == {"recommender", "loyalty"}
    assert young.skipped["churn"].startswith("churn over 90 days needs 236 days of history")
    assert "pass --churn-horizon-days" in young.skipped["churn"]
    assert young.routes["churn"] == 503 and young.routes["loyalty"] == 200
    assert young.routes["recommendations"] == 200
    assert [step.code for step in young.steps if step.name == "train"] == [0]


def test_a_one_product_shop_gets_churn_and_loyalty(shops) -> None:  # type: ignore[no-untyped-def]
    _, runs = shops
    cdnow = runs["cdnow"]
    assert cdnow.ok, cdnow.problems
    assert set(cdnow.trained) == {"churn", "loyalty"}
    assert "need at least two products" in cdnow.skipped["recommender"]
    assert cdnow.routes["recommendations"] == 503 and cdnow.routes["churn"] == 200
    assert "recommender: skipped. recommendations need" in cdnow.step_output("train")


def test_shops_keep_their_champions_apart(shops) -> None:  # type: ignore[no-untyped-def]
    workdir, _ = shops
    # cdnow trained into the store after sample-150: the young shop's champions are its own v1.
    young = _cli(workdir, "models", "--shop", "sample-150", "--json")
    assert young.returncode == 0, young.stderr
    listed = json.loads(young.stdout)
    versions = {row["role"]: row for row in listed if "skipped" not in row}
    assert set(versions) == {"recommender", "loyalty"}
    assert [row["role"] for row in listed if "skipped" in row] == ["churn"]
    for row in versions.values():
        assert row["name"].startswith("patronage.sample-150.") and row["version"] == "1"
        assert "champion" in row["aliases"] and row["decision"] == "first"
    # A registry write on one shop (a champion moved by hand) leaves the other's alone.
    before = _cli(workdir, "models", "--shop", "cdnow", "--json")
    assert before.returncode == 0, before.stderr
    moved = _cli(workdir, "promote", "loyalty", "1", "--shop", "sample-150", "--reason", "test")
    assert moved.returncode == 0, moved.stderr
    assert "patronage.sample-150.loyalty: champion is now version 1" in moved.stdout
    after = _cli(workdir, "models", "--shop", "cdnow", "--json")
    assert after.stdout == before.stdout
    # A role alone is ambiguous between two shops.
    ambiguous = _cli(workdir, "rollback", "loyalty")
    assert ambiguous.returncode == 1 and "pass --shop NAME" in ambiguous.stderr


def test_score_never_borrows_another_shops_model(shops) -> None:  # type: ignore[no-untyped-def]
    workdir, _ = shops
    third = workdir / "other"
    (third).mkdir()
    for name in ("purchases.csv", "items.csv", "customers.csv", "feedback.csv"):
        source = workdir / "sample-150" / name
        if source.exists():
            (third / name).write_bytes(source.read_bytes())
    refused = _cli(workdir, "score", str(third), "--out", str(workdir / "other.csv"))
    assert refused.returncode == 1
    assert "shop 'other' has no champion to score with" in refused.stderr
    assert "cdnow" in refused.stderr and "--model-uri" in refused.stderr
    assert not (workdir / "other.csv").exists()
    # Named explicitly, another shop's model is used, and the command says whose it is.
    uri = "models:/patronage.sample-150.loyalty@champion"
    borrowed = _cli(workdir, "score", str(third), "--model-uri", uri, "--out", "other.csv")
    assert borrowed.returncode == 0, borrowed.stderr
    assert "with shop 'sample-150''s model" in borrowed.stdout
