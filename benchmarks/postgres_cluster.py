"""A throwaway PostgreSQL cluster for tests and benchmarks: initdb in a temporary directory,
started on a free port on 127.0.0.1, stopped and removed afterwards.

`database_url()` gives `PATRONAGE_TEST_DATABASE_URL` when it is set (a server someone runs),
else starts a cluster with Debian's PostgreSQL binaries (`/usr/lib/postgresql/*/bin`, or
`initdb`/`pg_ctl` on PATH). Run as root, the cluster runs as the `postgres` user (PostgreSQL
refuses root). Trust authentication on 127.0.0.1 only; fsync off for tests (the data is thrown
away), on for benchmarks that measure commits (`fsync=True`).
Raises `ClusterUnavailable` with what to install or set when neither works.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TEST_DATABASE_ENV = "PATRONAGE_TEST_DATABASE_URL"
_BIN_GLOB = "/usr/lib/postgresql/*/bin"


class ClusterUnavailable(RuntimeError):
    """No PostgreSQL server for the tests: neither the variable nor the binaries."""


def _binaries() -> Path:
    """The directory holding initdb and pg_ctl (the newest Debian version first)."""
    candidates = sorted(Path("/").glob(_BIN_GLOB.lstrip("/")), reverse=True)
    for directory in candidates:
        if (directory / "initdb").exists() and (directory / "pg_ctl").exists():
            return directory
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).parent
    raise ClusterUnavailable(
        f"no PostgreSQL server for the tests: set {TEST_DATABASE_ENV}="
        "postgresql://USER@HOST:PORT/DB, or install PostgreSQL's server binaries "
        "(Debian: apt-get install postgresql) so that initdb and pg_ctl exist"
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _as_cluster_owner(command: list[str]) -> list[str]:
    """`command` run as `postgres` when we are root (PostgreSQL will not run as root)."""
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


def _run(command: list[str], what: str) -> None:
    done = subprocess.run(_as_cluster_owner(command), capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise ClusterUnavailable(f"{what} failed ({done.returncode}): {done.stderr[-2000:]}")


@contextmanager
def throwaway_cluster(fsync: bool = False) -> Iterator[str]:
    """Start a new cluster; yields its URL (`postgresql://postgres@127.0.0.1:PORT/postgres`).
    `fsync`: commits reach the disk as on a real server (off: faster, for tests)."""
    binaries = _binaries()
    root = Path(tempfile.mkdtemp(prefix="patronage-pg-"))
    data = root / "data"
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError as error:
            raise ClusterUnavailable(
                "running as root and there is no `postgres` user to run the cluster as"
            ) from error
        os.chown(root, owner.pw_uid, owner.pw_gid)
    port = _free_port()
    try:
        _run(
            [str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
             "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync"],
            "initdb",
        )  # fmt: skip
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1"
        options += "" if fsync else " -c fsync=off"
        _run(
            [str(binaries / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"),
             "-o", options, "-w", "-t", "60", "start"],
            "pg_ctl start",
        )  # fmt: skip
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            _run([str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def database_url(fsync: bool = False) -> Iterator[str]:
    """`PATRONAGE_TEST_DATABASE_URL` when set, else a throwaway cluster's URL (`fsync` as for
    `throwaway_cluster`)."""
    given = os.environ.get(TEST_DATABASE_ENV)
    if given:
        yield given
        return
    with throwaway_cluster(fsync=fsync) as url:
        yield url


def wait_until_ready(url: str, seconds: float = 30.0) -> None:
    """Return once the server answers a query; raises ClusterUnavailable after `seconds`."""
    import psycopg

    deadline = time.monotonic() + seconds
    while True:
        try:
            with psycopg.connect(url, connect_timeout=5) as connection:
                connection.execute("select 1")
            return
        except psycopg.OperationalError as error:
            if time.monotonic() > deadline:
                raise ClusterUnavailable(f"{url} does not answer: {error}") from error
            time.sleep(0.2)
