"""The Complete Journey: next purchases and customer value through the product, beside the peers.

In one run, on the protocols of ../shared/data/README.md (section completejourney):
1. `patronage import completejourney` of ../shared/data/completejourney into a temporary
   directory, then a plain `patronage train DIR --as-of 2017-11-01` into a temporary MLflow
   store (SQLite), timed as a separate process (the issue's target: within 5 minutes);
2. next purchases: `patronage recommend` with the shop's registered champion (the path a
   storefront's batch export takes) for every evaluated household, keep-seen lists with
   `--exclude-purchased none` and exclude-seen lists with `all` (the default `non-repeatable`,
   whose rule the shop's validation window chose, is reported beside them on every
   protocol); the truths are built by the peer script's own `protocols` function and every
   list, ours and the peers', is scored by its own `metrics` function; the peers are the
   unmodified ../shared/peers/cj_peers.py, run as a subprocess in the same run;
3. customer value: `patronage score DIR --fit --as-of 2017-10-01 --value-horizon-days 91`
   (the scorer fitted on data before the cut only), its `predicted_spend` against what each
   household really spent in the 13 weeks from the cut, scored by the `scores` function of the
   unmodified ../shared/peers/cj_clv_peers.py, which also runs as a subprocess in the same run.
Only this file knows the data set, its dates and the targets; the product is run as any shop's.

Usage: python -m benchmarks.completejourney [--workdir DIR] [--only value]
Writes benchmarks/results/completejourney.json. `--only value` runs the import and step 3 alone
(a few minutes) and replaces only the value figures in that file, saying in its notes when
each part was measured.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from types import ModuleType  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from benchmarks.report import write_result  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("PATRONAGE_SHARED_DATA", PROJECT_ROOT.parent / "shared" / "data"))
SOURCE = SHARED / "completejourney"
TRANSACTIONS = SOURCE / "transactions.parquet"
PEERS = SHARED.parent / "peers" / "cj_peers.py"
VALUE_PEERS = SHARED.parent / "peers" / "cj_clv_peers.py"
RESULT = Path(__file__).resolve().parent / "results" / "completejourney.json"
SHOP = "completejourney"
CUT = "2017-11-01"
VALUE_CUT = "2017-10-01"
VALUE_DAYS = 91  # the protocol's 13 weeks
TRAIN_TARGET_SECONDS = 300.0
TARGETS = {
    "next_basket.keep_seen": {"ndcg@10": 0.230, "recall@10": 0.188},
    "next_4_weeks.keep_seen": {"ndcg@10": 0.43},
    "next_4_weeks.exclude_seen": {"ndcg@10": 0.050},
}
VALUE_TARGETS = {"spearman": 0.83, "mae": 165.0, "top_decile_spend_share": 0.34}
DEFAULT_TOLERANCE = 0.02
"""Issue #21: the default rule within 2% of each protocol's own rule (`EXCLUDE_MODES`)."""
VALUE_ONLY_NOTE = "Customer value re-measured"
EXCLUDE_MODES = {"keep_seen": "none", "exclude_seen": "all"}
"""Protocol kind -> the `--exclude-purchased` rule its lists are made with."""


def _load_peer(path: Path, name: str) -> ModuleType:
    """The peer script as a module (for its own split and metric functions), unmodified."""
    if not path.is_file():
        raise FileNotFoundError(f"peer script {path} is missing: set PATRONAGE_SHARED_DATA")
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"cannot load the peer script {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(command: list[str], env: dict[str, str], cwd: Path) -> tuple[float, str]:
    """Run one command; returns (wall seconds, stdout). Fails the benchmark when it fails."""
    started = time.perf_counter()
    process = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} exited {process.returncode}:\n{process.stderr[-3000:]}"
        )
    return seconds, process.stdout


def _children_cpu_seconds() -> float:
    """User + system CPU seconds of this process's finished children so far."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return float(usage.ru_utime + usage.ru_stime)


def _patronage(*args: str) -> list[str]:
    return [sys.executable, "-m", "patronage", *args]


def run_peers(script: Path, cut: str, env: dict[str, str]) -> dict[str, Any]:
    """The unmodified peer script on the transactions file (subprocess, BLAS pinned)."""
    seconds, stdout = _run(
        [sys.executable, str(script), str(TRANSACTIONS), "--cut", cut], env, PROJECT_ROOT
    )
    return {**json.loads(stdout), "wall_seconds": round(seconds, 1)}


def _read_lists(path: Path) -> dict[str, list[str]]:
    """`patronage recommend`'s CSV as customer id -> item ids, best first."""
    frame = pd.read_csv(path, dtype={"customer_id": str, "item_id": str})
    frame = frame.sort_values(["customer_id", "rank"], kind="stable")
    return {c: list(g["item_id"]) for c, g in frame.groupby("customer_id", sort=False)}


def recommendations(workdir: Path, env: dict[str, str], peers: ModuleType) -> dict[str, Any]:
    """Patronage's lists for the evaluated households, scored with the peer's own code."""
    raw = pd.read_parquet(
        TRANSACTIONS, columns=["household_id", "basket_id", "product_id", "transaction_timestamp"]
    )
    lines = pd.DataFrame(
        {
            "u": raw.household_id.astype(str),
            "b": raw.basket_id.astype(str),
            "i": raw.product_id.astype(str),
            "t": pd.to_datetime(raw.transaction_timestamp),
        }
    )
    _, truths = peers.protocols(lines, pd.Timestamp(CUT))
    households = sorted(set().union(*[set(truth) for truth in truths.values()]))
    customers_file = workdir / "evaluated_households.csv"
    customers_file.write_text("customer_id\n" + "\n".join(households) + "\n")
    lists: dict[str, dict[str, list[str]]] = {}
    seconds: dict[str, float] = {}
    for mode in ("none", "all", "non-repeatable"):
        out = workdir / f"recommend_{mode}.csv"
        command = _patronage(
            "recommend",
            "--shop",
            SHOP,
            "--customers",
            str(customers_file),
            "--exclude-purchased",
            mode,
            "--k",
            "10",
            "--out",
            str(out),
        )
        seconds[mode], _ = _run(command, env, workdir)
        lists[mode] = _read_lists(out)
    result: dict[str, Any] = {"households": len(households), "recommend_seconds": seconds}
    for protocol, truth in truths.items():
        kind = protocol.split(".")[1]
        mode = EXCLUDE_MODES[kind]
        block = {
            "exclude_purchased": mode,
            "patronage": peers.metrics({u: lists[mode][u] for u in truth}, truth),
        }
        block["patronage_default_non_repeatable"] = peers.metrics(
            {u: lists["non-repeatable"][u] for u in truth}, truth
        )
        result[protocol] = block
    return result


def value(workdir: Path, shop_dir: Path, env: dict[str, str], peers: ModuleType) -> dict[str, Any]:
    """`patronage score --fit --as-of VALUE_CUT --value-horizon-days 91` against the real
    13-week spend of every household with a line before the cut (the peer script's set)."""
    out = workdir / "value_scores.parquet"
    scorer_dir = workdir / "value_scorer"
    command = _patronage(
        "score",
        str(shop_dir),
        "--fit",
        "--as-of",
        VALUE_CUT,
        "--value-horizon-days",
        str(VALUE_DAYS),
        "--out",
        str(out),
        "--save-model",
        str(scorer_dir),
    )
    seconds, _ = _run(command, env, workdir)
    # Which spend forecast the shop's own backtest chose, with its figures (the saved JSON).
    spend = json.loads((scorer_dir / "customer_scorer.json").read_text())["spend"]["choice"]
    table = pd.read_parquet(out)
    raw = pd.read_parquet(
        TRANSACTIONS, columns=["household_id", "sales_value", "transaction_timestamp"]
    )
    when = pd.to_datetime(raw.transaction_timestamp)
    cut = pd.Timestamp(VALUE_CUT)
    end = cut + pd.Timedelta(days=VALUE_DAYS)
    households = raw.loc[when < cut, "household_id"].astype(str).unique()
    window = raw.loc[(when >= cut) & (when < end)]
    actual = (
        window.groupby(window.household_id.astype(str))["sales_value"]
        .sum()
        .reindex(households)
        .fillna(0.0)
        .to_numpy(np.float64)
    )
    predicted = table.set_index(table["customer_id"].astype(str))["predicted_spend"]
    missing = int((~pd.Index(households).isin(predicted.index)).sum())
    prediction = predicted.reindex(households).fillna(0.0).to_numpy(np.float64)
    return {
        "score_seconds": round(seconds, 1),
        "households": int(len(households)),
        "households_not_scored": missing,
        "patronage_predicted_spend": peers.scores(prediction, actual),
        "spend_model_chosen": spend["winner"],
        "spend_choice_reason": spend["reason"],
        "spend_choice_backtest_cut": spend["cut"],
        "spend_choice_backtest": spend["backtest"],
        "mean_predicted": round(float(prediction.mean()), 2),
        "mean_actual": round(float(actual.mean()), 2),
    }


def _bundle_report(env: dict[str, str]) -> dict[str, Any]:
    """What selection chose in the champion bundle (winners, window, why)."""
    os.environ["MLFLOW_TRACKING_URI"] = env["MLFLOW_TRACKING_URI"]
    from models.registry_names import RECOMMENDER, registered_name
    from training.registry import resolve_model_dir

    directory = resolve_model_dir(
        f"models:/{registered_name(SHOP, RECOMMENDER)}@champion", artifact="bundle"
    )
    report = json.loads((directory / "bundle.json").read_text())["report"]
    keys = (
        "validation_window_days",
        "validation_cut",
        "validation_customers",
        "default_exclusion",
        "selection_seconds",
        "fit_seconds",
        "skipped",
    )
    out = {key: report.get(key) for key in keys}
    for role in ("discovery", "repeat"):
        winner = report[f"{role}_winner"]
        out[f"{role}_winner"] = {k: winner.get(k) for k in ("model", "validation_ndcg", "reason")}
    return out


def _compare(result: dict[str, Any]) -> dict[str, Any]:
    """Per protocol: Patronage beside the best peer, and whether the issue's targets hold."""
    verdict: dict[str, Any] = {}
    for protocol, block in result["recommendations"].items():
        if not isinstance(block, dict) or "patronage" not in block:
            continue
        peer_models = result["peers"]["models"]
        best = max(peer_models, key=lambda name: peer_models[name][protocol]["ndcg@10"])
        ours = block["patronage"]
        block["best_peer"] = best
        block["best_peer_ndcg@10"] = peer_models[best][protocol]["ndcg@10"]
        block["lift_over_best_peer"] = round(ours["ndcg@10"] / block["best_peer_ndcg@10"] - 1, 4)
        for metric, target in TARGETS.get(protocol, {}).items():
            verdict[f"{protocol} {metric} >= {target}"] = bool(ours[metric] >= target)
        default = block.get("patronage_default_non_repeatable")
        if default is not None:
            rule = block["exclude_purchased"]
            verdict[f"{protocol} default within 2% of {rule}"] = bool(
                default["ndcg@10"] >= (1 - DEFAULT_TOLERANCE) * ours["ndcg@10"]
            )
    ours = result["value"]["patronage_predicted_spend"]
    verdict[f"value spearman >= {VALUE_TARGETS['spearman']}"] = bool(
        ours["spearman"] >= VALUE_TARGETS["spearman"]
    )
    verdict[f"value mae <= {VALUE_TARGETS['mae']}"] = bool(ours["mae"] <= VALUE_TARGETS["mae"])
    share = VALUE_TARGETS["top_decile_spend_share"]
    verdict[f"value top-decile share >= {share}"] = bool(ours["top_decile_spend_share"] >= share)
    verdict[f"training within {TRAIN_TARGET_SECONDS:g} s"] = bool(
        result["train_seconds"] <= TRAIN_TARGET_SECONDS
    )
    return verdict


def _tables(result: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    protocols = [p for p in result["recommendations"] if "." in p]
    rows = []
    for label, key in (
        ("patronage", "patronage"),
        ("patronage, default non-repeatable", "patronage_default_non_repeatable"),
    ):
        row: dict[str, Any] = {"model": label}
        for protocol in protocols:
            metrics = result["recommendations"][protocol].get(key)
            row[protocol] = "-" if metrics is None else _pair(metrics)
        rows.append(row)
    for name, models in result["peers"]["models"].items():
        rows.append({"model": name, **{p: _pair(models[p]) for p in protocols}})
    return {
        "next purchases, NDCG@10 / Recall@10 (hit rate in the figures below)": rows,
        **_value_tables(result),
    }


def _value_tables(result: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The value table (ours beside the peers) and the shop's own spend-model backtest."""
    value = result["value"]
    chosen = value.get("spend_model_chosen", "bgnbd_gamma_gamma")
    value_rows = [
        {
            "model": f"patronage predicted_spend (backtest chose {chosen})",
            **value["patronage_predicted_spend"],
        }
    ]
    value_rows += [{"model": name, **m} for name, m in result["value_peers"]["models"].items()]
    tables = {f"customer value, {VALUE_DAYS} days from {VALUE_CUT}": value_rows}
    if value.get("spend_choice_backtest"):
        cut = str(value["spend_choice_backtest_cut"])[:10]
        tables[f"the shop's own spend backtest (held out: {VALUE_DAYS} days from {cut})"] = [
            {"model": name, **{k: v for k, v in m.items()}}
            for name, m in value["spend_choice_backtest"].items()
        ]
    return tables


def _pair(metrics: dict[str, Any]) -> str:
    return f"{metrics['ndcg@10']:.4f} / {metrics['recall@10']:.4f}"


def main() -> int:
    """Import, train, recommend, score, run the peers; write the JSON result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        choices=("all", "value"),
        default="all",
        help="value: import and customer value only, merged into the last full result",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="keep the shop, store and lists here (default: a temporary dir)",
    )
    args = parser.parse_args()
    if not TRANSACTIONS.is_file():
        raise SystemExit(f"{TRANSACTIONS} is missing: set PATRONAGE_SHARED_DATA")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = (args.workdir or Path(tmp)).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        result = run(workdir) if args.only == "all" else run_value_only(workdir)
    write_result(RESULT, result)
    print(json.dumps(result["meets_targets"], indent=1))
    return 0


def _environment(workdir: Path) -> dict[str, str]:
    store = workdir / "mlruns"
    store.mkdir(exist_ok=True)
    env = dict(
        os.environ,
        OPENBLAS_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        MLFLOW_TRACKING_URI=f"sqlite:///{store / 'mlflow.db'}",
    )
    env.pop("MLFLOW_REGISTRY_URI", None)
    return env


def _import(workdir: Path, env: dict[str, str]) -> tuple[Path, float]:
    """`patronage import completejourney` into `workdir`; (shop directory, seconds)."""
    shop_dir = workdir / SHOP
    import_seconds, _ = _run(
        _patronage(
            "import",
            "completejourney",
            str(SOURCE),
            "--out",
            str(shop_dir),
            "--file-format",
            "parquet",
            "--overwrite",
        ),
        env,
        workdir,
    )
    print(f"imported in {import_seconds:.0f} s", flush=True)
    return shop_dir, import_seconds


def run_value_only(workdir: Path) -> dict[str, Any]:
    """Import and step 3 (customer value with its peers), merged into the last full result:
    its value figures, value targets and value tables are replaced, the rest kept and the
    notes say when each part was measured. Raises SystemExit without a full result."""
    if not RESULT.is_file():
        raise SystemExit(f"{RESULT} is missing: run the full benchmark first")
    result = json.loads(RESULT.read_text())
    # The full run's time: its stamp, or what an earlier value-only merge kept of it.
    full_run_at = result.pop("full_run_at", None) or result.pop("measured_at", "unknown")
    result.pop("measured_at", None)
    env = _environment(workdir)
    shop_dir, _ = _import(workdir, env)
    value_peers = _load_peer(VALUE_PEERS, "cj_clv_peers")
    result["value"] = value(workdir, shop_dir, env, value_peers)
    result["value_peers"] = run_peers(VALUE_PEERS, VALUE_CUT, env)
    now = pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds")
    result["notes"] = [n for n in result["notes"] if not n.startswith(VALUE_ONLY_NOTE)] + [
        f"{VALUE_ONLY_NOTE} at {now} (`--only value`, peers in the same run); next purchases "
        f"and training time are from the full run measured at {full_run_at}."
    ]
    result["full_run_at"] = full_run_at
    result["meets_targets"] = _compare(result)
    result["tables"] = _tables(result)
    return result


def run(workdir: Path) -> dict[str, Any]:
    """The whole benchmark in `workdir` (shop, MLflow store, lists)."""
    env = _environment(workdir)
    shop_dir, import_seconds = _import(workdir, env)
    # The machine is shared: CPU seconds of the train process and the load beside wall time.
    load_before = os.getloadavg()[0]
    cpu_before = _children_cpu_seconds()
    train_seconds, train_output = _run(
        _patronage("train", str(shop_dir), "--as-of", CUT), env, workdir
    )
    train_cpu_seconds = _children_cpu_seconds() - cpu_before
    load_after = os.getloadavg()[0]
    print(f"trained in {train_seconds:.0f} s ({train_cpu_seconds:.0f} CPU-s)", flush=True)
    peers = _load_peer(PEERS, "cj_peers")
    value_peers = _load_peer(VALUE_PEERS, "cj_clv_peers")
    result: dict[str, Any] = {
        "title": "The Complete Journey: next purchases and customer value (peers in the same run)",
        "command": "python -m benchmarks.completejourney",
        "notes": [
            f"Trained with a plain `patronage train DIR --as-of {CUT}` (separate process, fresh "
            "SQLite MLflow store); lists from `patronage recommend` with the registered champion. "
            "Truths and metrics: the peer script's own `protocols` and `metrics` functions; "
            "peers: the unmodified ../shared/peers/cj_peers.py in the same run.",
            "Keep-seen lists use --exclude-purchased none, exclude-seen lists all; the "
            "default non-repeatable (its rule chosen on the shop's own validation window, "
            "selection.default_exclusion) is shown beside them on every protocol.",
            f"Value: `patronage score DIR --fit --as-of {VALUE_CUT} --value-horizon-days "
            f"{VALUE_DAYS}` (fitted on data before the cut only); predicted_spend against each "
            "household's real spend, scored by ../shared/peers/cj_clv_peers.py's `scores`. "
            "Which spend forecast is used (BG/NBD x Gamma-Gamma, a learned one, the last 90 "
            "days spend rate or a mean of them) is chosen by the shop's own backtest on the 91 "
            "days before the cut, shown in its own table.",
            "Targets (issue #21): next basket keep-seen NDCG@10 >= 0.230 and Recall@10 >= 0.188, "
            "next 4 weeks keep-seen NDCG@10 >= 0.43, next 4 weeks exclude-seen >= 0.050; value "
            "Spearman >= 0.83, MAE <= 165, top-decile share >= 0.34; training within 5 minutes.",
        ],
        "import_seconds": round(import_seconds, 1),
        "train_seconds": round(train_seconds, 1),
        "train_cpu_seconds": round(train_cpu_seconds, 1),
        "train_load_average_1min": [round(load_before, 2), round(load_after, 2)],
        "train_output_tail": train_output.strip().splitlines()[-12:],
        "selection": _bundle_report(env),
        "recommendations": recommendations(workdir, env, peers),
        "peers": run_peers(PEERS, CUT, env),
        "value": value(workdir, shop_dir, env, value_peers),
        "value_peers": run_peers(VALUE_PEERS, VALUE_CUT, env),
    }
    result["meets_targets"] = _compare(result)
    result["tables"] = _tables(result)
    return result


if __name__ == "__main__":
    sys.exit(main())
