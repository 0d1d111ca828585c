"""Real services for the services tests: PostgreSQL, an MLflow tracking server, a Dask cluster.

Each is a real process bound to 127.0.0.1 on a free port, started under coreutils ``timeout`` (so
it stops itself even if pytest is killed) in its own process group, which teardown kills.
PostgreSQL comes from Debian's ``postgresql`` package; it refuses to run as root, so as root it
runs as the ``postgres`` user from a temporary folder that user owns.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

LIFETIME_S = 1800  # hard cap on every server's life: `timeout` kills it after that


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def missing(what: str) -> None:
    """Under CI a missing server package is a failure (CI installs it); elsewhere a skip."""
    message = f"{what}; install it: apt-get install -y postgresql (see .ci/run)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


def start(command: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
    handle = log.open("ab")
    return subprocess.Popen(["timeout", str(LIFETIME_S), *command], stdout=handle, stderr=subprocess.STDOUT,
                            env={**os.environ, **(env or {})}, start_new_session=True)


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM, wait: float = 5) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, sig)
        process.wait(wait)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(5)


def wait_for(check, what: str, process: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited ({process.returncode}):\n{log.read_text()[-3000:]}")
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{what} did not start in {timeout} s:\n{log.read_text()[-3000:]}")


class Postgres:
    """A throw-away PostgreSQL server: ``url(db)`` gives a SQLAlchemy URL for a new database."""

    def __init__(self):
        binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres")) or [shutil.which("postgres") or ""]
        if not binaries[-1] or not os.path.exists(binaries[-1]):
            missing("PostgreSQL server binaries not found")
        self.bin = Path(binaries[-1]).parent
        self.root = Path(tempfile.mkdtemp(prefix="ser-bench-pg-"))  # not under pytest's 0700 root folder
        self.as_user = []
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.port = free_port()
        self.log = self.root / "server.log"
        subprocess.run([*self.as_user, str(self.bin / "initdb"), "-D", str(self.root / "data"), "-A", "trust",
                        "-U", "postgres", "-E", "UTF8", "--no-sync"], check=True, capture_output=True)
        self.process = start([*self.as_user, str(self.bin / "postgres"), "-D", str(self.root / "data"),
                              "-h", "127.0.0.1", "-p", str(self.port), "-k", str(self.root), "-F"], self.log)
        wait_for(self._ready, "postgres", self.process, self.log, timeout=60)

    def _ready(self) -> bool:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", connect_timeout=2):
            return True

    def url(self, database: str) -> str:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{database}"')
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def close(self) -> None:
        stop(self.process, signal.SIGINT)  # "fast" shutdown
        shutil.rmtree(self.root, ignore_errors=True)


class MlflowServer:
    """``mlflow server`` on a PostgreSQL backend, artifacts proxied into a local folder."""

    def __init__(self, backend_url: str, root: Path):
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.artifacts = root / "artifacts"
        self.log = root / "mlflow-server.log"
        self.process = start([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_url,
                              "--artifacts-destination", str(self.artifacts), "--host", "127.0.0.1",
                              "--port", str(self.port), "--workers", "1"], self.log)
        wait_for(lambda: urllib.request.urlopen(f"{self.uri}/health", timeout=2).status == 200, "mlflow server",
                 self.process, self.log, timeout=180)

    def close(self) -> None:
        stop(self.process)


class DaskCluster:
    """``dask scheduler`` and ``dask worker`` processes (one thread each), named w1, w2, ..."""

    def __init__(self, root: Path, workers: int = 2, env: dict | None = None):
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        root.mkdir(parents=True, exist_ok=True)
        self.root, self.env = root, {"DASK_DISTRIBUTED__WORKER__DAEMON": "False", **(env or {})}
        dask = Path(sys.executable).parent / "dask"
        self.scheduler_log = root / "scheduler.log"
        self.scheduler = start([str(dask), "scheduler", "--host", "127.0.0.1", "--port", str(self.port),
                                "--no-dashboard"], self.scheduler_log, self.env)
        self.workers = {f"w{i}": start([str(dask), "worker", self.address, "--host", "127.0.0.1", "--nthreads", "1",
                                        "--name", f"w{i}", "--no-dashboard", "--local-directory", str(root / f"w{i}")],
                                       root / f"w{i}.log", self.env) for i in range(1, workers + 1)}
        wait_for(lambda: self.n_workers() == workers, "dask cluster", self.scheduler, self.scheduler_log, timeout=120)

    def n_workers(self) -> int:
        from distributed import Client

        with Client(self.address, timeout=5) as client:
            return len(client.nthreads())

    def kill(self, name: str) -> None:
        """kill -9 a worker's whole process group (nanny and worker): a machine that died."""
        os.killpg(self.workers[name].pid, signal.SIGKILL)
        self.workers[name].wait(10)

    def close(self) -> None:
        for process in [*self.workers.values(), self.scheduler]:
            stop(process)
