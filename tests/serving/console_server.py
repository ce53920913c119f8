"""A real `patronage serve` on 127.0.0.1 over the session's trained sample store, for the CRM
console's tests (one per test module), and `patronage score` on the same champion, run beside
it while the server loads."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import SAMPLE_SHOP_NAME, TrainedSampleStore

KEYS = {"storefront": "console-sf-key", "crm": "console-crm-key", "admin": "console-admin-key"}
API_KEYS = ",".join(f"{scope}={key}" for scope, key in KEYS.items())


@dataclass(frozen=True)
class ConsoleServer:
    """A running server: its base URL and its log file."""

    url: str
    log_path: Path
    workdir: Path

    def log(self) -> str:
        """Everything the server printed so far."""
        return self.log_path.read_text(errors="replace")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _environment(store: TrainedSampleStore) -> dict[str, str]:
    env = dict(
        os.environ,
        MLFLOW_TRACKING_URI=store.tracking_uri,
        PATRONAGE_API_KEYS=API_KEYS,
        OPENBLAS_NUM_THREADS="1",
    )
    env.pop("MLFLOW_REGISTRY_URI", None)
    env.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", None)
    return env


def score_with_the_cli(store: TrainedSampleStore, out: Path) -> Path:
    """Run `patronage score` (its `main`, in this process: the test session has already paid
    for the imports) on the sample shop with its churn champion at the store's `as_of`, what the
    console serves; fail unless it wrote `out`."""
    import mlflow

    from patronage.cli import main

    before = {name: os.environ.get(name) for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    os.environ["MLFLOW_TRACKING_URI"] = store.tracking_uri
    os.environ.pop("MLFLOW_REGISTRY_URI", None)
    try:
        code = main(
            [
                "score",
                str(store.shop_dir),
                "--shop",
                SAMPLE_SHOP_NAME,
                "--as-of",
                store.as_of,
                "--out",
                str(out),
            ]  # fmt: skip
        )
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
        mlflow.set_registry_uri(None)  # type: ignore[arg-type]
    if code != 0 or not out.exists():
        pytest.fail(f"patronage score exited {code} without writing {out}")
    return out


@contextmanager
def running_console(
    store: TrainedSampleStore, workdir: Path, while_loading: Callable[[], object] | None = None
) -> Iterator[ConsoleServer]:
    """`patronage serve` on a free port with keys of every scope, ready (models loaded) or
    fail with its log; stopped afterwards. `while_loading` runs while the server loads."""
    port = _free_port()
    env = _environment(store) | {"PATRONAGE_EVENTS_DIR": str(workdir / "events")}
    log_path = workdir / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "patronage",
                "serve",
                "--port",
                str(port),
                "--poll-seconds",
                "0",
                "--access-log",
            ],  # fmt: skip
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        if while_loading is not None:
            while_loading()
        _wait_ready(url, process, log_path)
        yield ConsoleServer(url=url, log_path=log_path, workdir=workdir)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _wait_ready(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"patronage serve exited early:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{url}/health/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"server not ready within 90 s:\n{log_path.read_text()}")
