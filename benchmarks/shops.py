"""Benchmark: every shop through the whole product, as a new user runs it, in one MLflow store.

For each shop: `import` (or `generate`) -> `validate` -> plain `train` (no flags) -> `models
--shop` -> `score` -> `recommend` -> `serve --shop` with one request per route. Every command
runs as its own process of the real CLI. A step succeeds when it exits 0; a route answers 200,
or 503 `role_not_trained` for a role that training skipped (the reason is recorded). The shops:
the sample shop, the sample shop generated with `--days 150` (young), Groceries, CDNOW and
The Complete Journey from `../shared/data`.
All shops share one store, so the run also shows that shops keep their models apart.
Prints a table and writes `benchmarks/results/shops.json` (the full run) or the file given by
`--results`.
Usage: python -m benchmarks.shops [--small] [--only NAME ...] [--workdir DIR] [--results FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.report import write_result

RESULTS = Path(__file__).resolve().parent / "results" / "shops.json"
ROLES = ("recommender", "churn", "loyalty")
KEYS = {"storefront": "bench-sf", "crm": "bench-crm", "admin": "bench-admin"}
ROUTE_ROLES = {
    "recommendations": "recommender",
    "cross-sell": "recommender",
    "similar": "recommender",
    "churn": "churn",
    "loyalty": "loyalty",
    "segments": "loyalty",
}
"""The role behind each route (scores:batch answers with whichever of churn and loyalty the shop
has, and names a missing one in `unavailable`)."""


def shared_data() -> Path:
    """`PATRONAGE_SHARED_DATA`, else `../shared/data` beside the project."""
    default = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
    return Path(os.environ.get("PATRONAGE_SHARED_DATA", default))


@dataclass(frozen=True)
class ShopSource:
    """How to make one shop's data directory: a command after `patronage`, `{out}` = the
    directory."""

    name: str
    command: tuple[str, ...]
    description: str


def shop_sources(small: bool) -> list[ShopSource]:
    """The shops of the run. `small` (for `make test`): generated shops of 300 customers, the
    CDNOW sample (2,357 customers) and no Groceries."""
    data = shared_data()
    size = ("--customers", "300", "--items", "60") if small else ()
    cdnow = data / "cdnow" / ("CDNOW_sample.txt" if small else "CDNOW_master.txt")
    shops = [
        ShopSource("sample", ("generate", "--out", "{out}", *size), "the sample shop (365 days)"),
        ShopSource(
            "sample-150",
            ("generate", "--out", "{out}", "--days", "150", *size),
            "the sample shop generated with --days 150 (a young shop)",
        ),
        ShopSource(
            "cdnow",
            ("import", "cdnow", str(cdnow), "--out", "{out}"),
            f"CDNOW ({cdnow.name}): one product (CDs), amounts",
        ),
    ]
    if not small:
        groceries = data / "groceries" / "Groceries_dataset.csv"
        shops.insert(
            2,
            ShopSource(
                "groceries",
                ("import", "groceries", str(groceries), "--out", "{out}"),
                "Groceries (Kaggle): baskets, no prices",
            ),
        )
        shops.append(
            ShopSource(
                "completejourney",
                ("import", "completejourney", str(data / "completejourney"), "--out", "{out}"),
                "The Complete Journey: a grocer's loyalty panel, 2,469 households",
            )
        )
    return shops


@dataclass
class Step:
    """One command of one shop: exit code, seconds, and the tail of what it printed."""

    name: str
    code: int
    seconds: float
    output: str = ""


@dataclass
class ShopRun:
    """Everything one shop went through."""

    shop: str
    description: str
    steps: list[Step] = field(default_factory=list)
    trained: dict[str, str] = field(default_factory=dict)
    """role -> `beats` / `NOT beaten` (its plain baseline)."""
    skipped: dict[str, str] = field(default_factory=dict)
    routes: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every step exit 0 and every route answered as its role allows."""
        return not self.problems

    def step_output(self, name: str) -> str:
        """What step `name` printed (its tail), or empty."""
        return next((s.output for s in self.steps if s.name == name), "")


Runner = Callable[[str, list[str], dict[str, str], Path], Step]
"""Runs one `patronage` command (step name, argv, environment, working directory)."""


def run_process(name: str, command: list[str], env: dict[str, str], cwd: Path) -> Step:
    """The command as its own process of the real CLI (the benchmark's runner)."""
    started = time.perf_counter()
    process = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    output = (process.stdout + process.stderr)[-4000:]
    return Step(name, process.returncode, time.perf_counter() - started, output)


def _patronage(*args: str) -> list[str]:
    return [sys.executable, "-m", "patronage", *args]


def _first_ids(directory: Path, n: int) -> tuple[list[str], list[str]]:
    """Up to `n` customer ids and item ids from the shop's purchases."""
    import pandas as pd

    frame = pd.read_csv(directory / "purchases.csv", dtype=str, usecols=["customer_id", "item_id"])
    return list(frame["customer_id"].unique()[:n]), list(frame["item_id"].unique()[:n])


def _parse_training(output: str, run: ShopRun) -> None:
    """Roles trained (with their baseline verdict) and skipped (with why) from `train`."""
    for role in ROLES:
        match = re.search(rf"^  {role}: skipped\. (.+)$", output, re.M)
        if match:
            run.skipped[role] = match.group(1)
        elif re.search(rf"^  {role} v\d+ ", output, re.M):
            verdict = re.search(
                rf"^  {role} v\d+ .*\n.*\n    (WARNING: )?(beats|does NOT beat)", output, re.M
            )
            run.trained[role] = "NOT beaten" if verdict and verdict.group(1) else "beats"


def run_shop(
    source: ShopSource, workdir: Path, env: dict[str, str], runner: Runner = run_process
) -> ShopRun:
    """One shop through the product; never raises for the shop's own failures. `runner` runs
    every command but `serve`, which is always a process of its own."""
    run = ShopRun(source.name, source.description)
    directory = workdir / source.name
    command = [part.replace("{out}", str(directory)) for part in source.command]
    steps = [
        (command[0], _patronage(*command)),
        ("validate", _patronage("validate", str(directory))),
        ("train", _patronage("train", str(directory))),
        ("models", _patronage("models", "--shop", source.name)),
    ]
    for name, argv in steps:
        step = runner(name, argv, env, workdir)
        run.steps.append(step)
        if name == "train":
            _parse_training(step.output, run)
        if step.code != 0:
            run.problems.append(f"{name} exit {step.code}: {step.output[-600:]}")
            return run
    if set(run.trained) | set(run.skipped) != set(ROLES):
        run.problems.append(f"train did not account for every role: {run.step_output('train')}")
    customers, items = _first_ids(directory, 20)
    (workdir / f"{source.name}-customers.txt").write_text("\n".join(customers) + "\n")
    later = [
        ("score", _patronage("score", str(directory), "--out", f"{source.name}-scores.csv")),
        (
            "recommend",
            _patronage(
                "recommend",
                "--shop",
                source.name,
                "--customers",
                f"{source.name}-customers.txt",
                "--out",
                f"{source.name}-recs.csv",
            ),
        ),  # fmt: skip
    ]
    for name, argv in later:
        step = runner(name, argv, env, workdir)
        run.steps.append(step)
        expected = 0 if name != "recommend" or "recommender" in run.trained else 1
        if step.code != expected:
            run.problems.append(f"{name} exit {step.code} (expected {expected}): {step.output}")
    _serve(run, workdir, env, customers[0], items[:2])
    return run


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _serve(
    run: ShopRun, workdir: Path, env: dict[str, str], customer: str, items: list[str]
) -> None:
    """`patronage serve --shop` and one request per route; 200, or 503 role_not_trained for a
    skipped role, else a problem."""
    import httpx

    port = _free_port()
    serve_env = dict(
        env,
        PATRONAGE_API_KEYS=",".join(f"{scope}={key}" for scope, key in KEYS.items()),
        PATRONAGE_EVENTS_DIR=str(workdir / f"{run.shop}-events"),
    )
    log = (workdir / f"{run.shop}-serve.log").open("wb")
    started = time.perf_counter()
    process = subprocess.Popen(
        _patronage("serve", "--shop", run.shop, "--port", str(port), "--poll-seconds", "0"),
        env=serve_env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{base}/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                run.problems.append("serve never became ready")
                return
            time.sleep(0.5)
        run.steps.append(Step("serve (ready)", 0, time.perf_counter() - started))
        sf, crm = {"X-API-Key": KEYS["storefront"]}, {"X-API-Key": KEYS["crm"]}
        with httpx.Client(base_url=base, timeout=30) as client:
            answers = {
                "recommendations": client.get(
                    f"/v1/customers/{customer}/recommendations", headers=sf
                ),
                "cross-sell": client.post("/v1/recommendations/cross-sell", headers=sf,
                                          json={"items": items[:1]}),
                "similar": client.get(f"/v1/items/{items[0]}/similar", headers=sf),
                "churn": client.get(f"/v1/customers/{customer}/churn", headers=crm),
                "loyalty": client.get(f"/v1/customers/{customer}/loyalty", headers=crm),
                "scores:batch": client.post("/v1/customers/scores:batch", headers=crm,
                                            json={"customer_ids": [customer]}),
                "segments": client.get("/v1/segments", headers=crm),
                "models": client.get("/v1/models", headers={"X-API-Key": KEYS["admin"]}),
            }  # fmt: skip
        for route, answer in answers.items():
            run.routes[route] = answer.status_code
            if route == "scores:batch":
                _check_batch(run, answer)
                continue
            role = ROUTE_ROLES.get(route)
            if answer.status_code == 200:
                if role in run.skipped:
                    run.problems.append(f"{route} answered 200 although {role} was skipped")
                continue
            skipped = role in run.skipped
            if skipped and answer.status_code == 503 and "role_not_trained" in answer.text:
                continue
            run.problems.append(f"{route}: {answer.status_code} {answer.text[:300]}")
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def _check_batch(run: ShopRun, answer: Any) -> None:
    """scores:batch: 200 naming each skipped score role in `unavailable`, or 503 when the shop
    has neither churn nor loyalty."""
    skipped = {role for role in ("churn", "loyalty") if role in run.skipped}
    if answer.status_code == 503 and skipped == {"churn", "loyalty"}:
        return
    if answer.status_code != 200:
        run.problems.append(f"scores:batch: {answer.status_code} {answer.text[:300]}")
    elif set(answer.json().get("unavailable", {})) != skipped:
        run.problems.append(f"scores:batch does not name {sorted(skipped)} as unavailable")


def run_all(
    sources: list[ShopSource], workdir: Path, runner: Runner = run_process
) -> list[ShopRun]:
    """Every shop in one fresh MLflow SQLite store under `workdir` (`runner`: see `run_shop`)."""
    store = workdir / "mlruns"
    store.mkdir(parents=True, exist_ok=True)
    env = dict(
        os.environ,
        MLFLOW_TRACKING_URI=f"sqlite:///{store / 'mlflow.db'}",
        OPENBLAS_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
    )
    env.pop("MLFLOW_REGISTRY_URI", None)
    runs = []
    for source in sources:
        print(f"[shops] {source.name}: {source.description}", flush=True)
        run = run_shop(source, workdir, env, runner)
        runs.append(run)
        print(
            f"[shops] {source.name}: {'ok' if run.ok else 'FAILED'}; trained {run.trained}; "
            f"skipped {run.skipped}",
            flush=True,
        )
        for problem in run.problems:
            print(f"    {problem}", flush=True)
    return runs


def summary(runs: list[ShopRun], small: bool) -> dict[str, Any]:
    """The result file's content."""
    rows = []
    for run in runs:
        seconds = {step.name: round(step.seconds, 1) for step in run.steps}
        rows.append(
            {
                "shop": run.shop,
                "result": "ok" if run.ok else "FAILED",
                "trained (vs plain baseline)": ", ".join(
                    f"{role} ({verdict})" for role, verdict in run.trained.items()
                )
                or "-",
                "skipped": ", ".join(run.skipped) or "-",
                "train s": seconds.get("train", ""),
                "routes": " ".join(f"{route}={code}" for route, code in run.routes.items()),
            }
        )
    steps = [
        {"shop": run.shop, **{step.name: round(step.seconds, 1) for step in run.steps}}
        for run in runs
    ]
    reasons = [
        {"shop": run.shop, "role": role, "why skipped (as printed by train)": reason}
        for run in runs
        for role, reason in run.skipped.items()
    ]
    return {
        "title": "Any shop through the product (import, validate, train, models, score, "
        "recommend, serve)",
        "command": "python -m benchmarks.shops" + (" --small" if small else ""),
        "notes": [
            "Each shop in turn, in one MLflow store, through the real CLI as separate "
            "processes; plain `patronage train DIR`, no flags.",
            "A route passes with 200, or with 503 role_not_trained where training skipped "
            "that role; anything else is a failure.",
        ],
        "tables": {"shops": rows, "skipped roles": reasons, "seconds per step": steps},
        "problems": {run.shop: run.problems for run in runs if run.problems},
        "all_ok": all(run.ok for run in runs),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit 1 when any shop fails."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="small generated shops")
    parser.add_argument("--only", nargs="*", default=None, help="shop names to run")
    parser.add_argument("--workdir", default=None, help="keep everything here (default: temp)")
    parser.add_argument("--results", default=str(RESULTS), help="result JSON path")
    args = parser.parse_args(argv)
    sources = shop_sources(args.small)
    if args.only:
        unknown = set(args.only) - {s.name for s in sources}
        if unknown:
            parser.error(f"unknown shop(s) {', '.join(sorted(unknown))}")
        sources = [s for s in sources if s.name in args.only]
    missing = [s for s in sources if s.command[0] == "import" and not Path(s.command[2]).exists()]
    if missing:
        print(
            f"missing shared data for {', '.join(s.name for s in missing)} under "
            f"{shared_data()}: set PATRONAGE_SHARED_DATA",
            file=sys.stderr,
        )
        return 1
    temporary = args.workdir is None
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench-shops-"))
    try:
        runs = run_all(sources, workdir)
    finally:
        if temporary:
            shutil.rmtree(workdir, ignore_errors=True)
    result = summary(runs, args.small)
    write_result(Path(args.results), result)
    print(json.dumps(result["tables"], indent=1))
    return 0 if result["all_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
