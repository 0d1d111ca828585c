"""The MLflow store: concurrent creation, half-migrated, read-only, full disk and bogus URIs."""

from __future__ import annotations

import multiprocessing
import socket
import sqlite3
import time

import pytest

from reliability_helpers import bench, fill, one_line_error, read_only_view, tiny_fs, tone_corpus

PROCESSES, REPETITIONS = 4, 8  # 32 racing creations (20 repetitions took 85 s of CI)


def _open_stores(root: str, barrier, results) -> None:
    """One process: open each repetition's new store at the same instant as the others."""
    import os

    os.environ.pop("MLFLOW_TRACKING_URI", None)
    from benchmark import tracking

    for repetition in range(REPETITIONS):
        barrier.wait(timeout=300)
        try:
            tracking.use_store(f"sqlite:///{root}/rep{repetition}/mlflow.db", "ser-bench")  # retries as users get
            results.put((repetition, "ok"))
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            results.put((repetition, f"{type(exc).__name__}: {str(exc)[:300]}"))


def test_processes_creating_one_new_store_at_once_all_succeed(tmp_path):
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(PROCESSES), context.Queue()
    workers = [context.Process(target=_open_stores, args=(str(tmp_path), barrier, results))
               for _ in range(PROCESSES)]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=600) for _ in range(PROCESSES * REPETITIONS)]
    for worker in workers:
        worker.join(60)
    failures = [o for o in outcomes if o[1] != "ok"]
    assert not failures, failures[:3]
    for repetition in range(REPETITIONS):  # every store ends fully migrated, with one experiment
        with sqlite3.connect(tmp_path / f"rep{repetition}" / "mlflow.db") as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            names = [row[0] for row in db.execute("SELECT name FROM experiments")]
        assert not [t for t in tables if t.startswith("_alembic_tmp_")]
        assert names.count("ser-bench") == 1


def test_a_process_killed_while_creating_a_store_leaves_none_half_made(tmp_path):
    """MLflow's migrations take seconds; a kill -9 in the middle of creating ``mlflow.db`` used to
    leave a half-migrated store every later run refused. The store is built beside its path and
    renamed: killed mid-way, there is no store yet, and the next run creates a complete one."""
    import os
    import signal
    import subprocess
    import sys

    db = tmp_path / "mlflow.db"
    side = tmp_path / "mlflow.db.creating"
    creator = subprocess.Popen([sys.executable, "-c", "from benchmark import tracking; "
                                f"tracking.use_store('sqlite:///{db}', 'ser-bench')"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (side.exists() and side.stat().st_size > 0) and time.time() < deadline and creator.poll() is None:
        time.sleep(0.01)
    assert creator.poll() is None, "the store was created before it could be killed"
    os.kill(creator.pid, signal.SIGKILL)
    creator.wait()
    assert not db.exists()  # no half-made store in its place
    from benchmark import tracking

    tracking.use_store(f"sqlite:///{db}", "ser-bench")
    with sqlite3.connect(db) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        names = [row[0] for row in connection.execute("SELECT name FROM experiments")]
    assert "runs" in tables and not [t for t in tables if t.startswith("_alembic_tmp_")]
    assert "ser-bench" in names and not side.exists()


@pytest.fixture
def store_with_run(tmp_path):
    from benchmark import tracking

    uri = f"sqlite:///{tmp_path}/store/mlflow.db"
    tracking.use_store(uri, "ser-bench")
    return uri, tmp_path / "store" / "mlflow.db"


def test_half_migrated_store_is_explained_in_one_line(store_with_run, tmp_path):
    uri, path = store_with_run
    with sqlite3.connect(path) as db:  # what an interrupted Alembic batch migration leaves behind
        db.execute("CREATE TABLE _alembic_tmp_tags (key VARCHAR(250), value VARCHAR(5000))")
    for command in (("report", "--tracking-uri", uri, "--out-dir", str(tmp_path / "r")),
                    ("run", "--model", "svm", "--tracking-uri", uri)):
        line = one_line_error(bench(*command, cwd=tmp_path))
        assert "half-migrated" in line and "_alembic_tmp_tags" in line and "mlflow db upgrade" in line


def test_a_store_left_with_a_hot_journal_by_a_killed_run_opens(store_with_run, tmp_path):
    """A run killed (kill -9) in the middle of an MLflow write leaves ``mlflow.db-journal`` behind;
    the next connection must roll it back. The store check used to open read-only, which cannot,
    and refused the store as "not a readable sqlite database" (seen in CI on a resumed tune)."""
    import os
    import signal
    import subprocess
    import sys

    uri, path = store_with_run
    writer = subprocess.Popen([sys.executable, "-c", f"""
import sqlite3, time
db = sqlite3.connect({str(path)!r}, isolation_level=None)
db.execute('PRAGMA cache_size=1')  # spill to the file (and journal) before commit
db.execute('BEGIN')
db.execute("UPDATE experiments SET name = name || '-half-written'")
db.execute('CREATE TABLE filler (x)')
db.executemany('INSERT INTO filler VALUES (?)', [(str(i) * 50,) for i in range(20000)])
print('inside', flush=True)
time.sleep(120)
"""], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "inside"
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    assert (tmp_path / "store" / "mlflow.db-journal").exists()  # the hot journal the kill left
    done = bench("report", "--tracking-uri", uri, "--out-dir", str(tmp_path / "r"), cwd=tmp_path)
    line = one_line_error(done)  # the store is empty of runs: report opened and queried it, and says so
    assert "no finished `bench run`" in line and "not a readable" not in line, line
    assert not (tmp_path / "store" / "mlflow.db-journal").exists()  # bench rolled it back
    with sqlite3.connect(path) as db:  # the half-written transaction is gone
        names = [row[0] for row in db.execute("SELECT name FROM experiments")]
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "ser-bench" in names and "filler" not in tables


@pytest.mark.parametrize("uri, expected", [
    ("foo://somewhere/db", "unknown scheme"),
    ("postgres-typo:///x", "unknown scheme"),
])
def test_unknown_tracking_uri_scheme_is_one_line(tmp_path, uri, expected):
    for command in (("report", "--tracking-uri", uri, "--out-dir", str(tmp_path / "r")),
                    ("predict", str(tmp_path), "--tracking-uri", uri)):
        line = one_line_error(bench(*command, cwd=tmp_path))
        assert expected in line or "no WAV" in line


def test_unreachable_tracking_server_is_one_line_and_quick(tmp_path):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start = time.monotonic()
    line = one_line_error(bench("report", "--tracking-uri", f"http://127.0.0.1:{port}", "--out-dir",
                                str(tmp_path / "r"), cwd=tmp_path))
    assert f"127.0.0.1:{port}" in line and "no tracking server answers" in line
    assert time.monotonic() - start < 60  # not MLflow's minutes of retries


def test_read_only_store_is_one_line(tmp_path):
    from benchmark import tracking

    corpus = tone_corpus(tmp_path / "corpus")
    tracking.use_store(f"sqlite:///{tmp_path}/store/mlflow.db", "ser-bench")
    with read_only_view(tmp_path / "store", tmp_path / "ro") as view:
        line = one_line_error(bench("run", "--model", "svm", "--features", "librosa46", "--corpus",
                                    f"folder:{corpus}", "--tracking-uri", f"sqlite:///{view}/mlflow.db",
                                    "--folds", "2", cwd=tmp_path))
        assert "read-only" in line and str(view) in line


def test_store_on_a_full_disk_is_one_line(tmp_path):
    from benchmark import tracking

    corpus = tone_corpus(tmp_path / "corpus")
    with tiny_fs(tmp_path / "full", "32m") as mount:
        tracking.use_store(f"sqlite:///{mount}/mlflow.db", "ser-bench")
        fill(mount)
        result = bench("run", "--model", "svm", "--features", "librosa46", "--corpus", f"folder:{corpus}",
                       "--tracking-uri", f"sqlite:///{mount}/mlflow.db", "--folds", "2", cwd=tmp_path)
        line = one_line_error(result)
        assert "no space left" in line


def test_store_path_that_is_a_folder_is_one_line(tmp_path):
    (tmp_path / "adir").mkdir()
    corpus = tone_corpus(tmp_path / "corpus", speakers=2, per_emotion=1)
    line = one_line_error(bench("run", "--model", "svm", "--features", "librosa46", "--corpus", f"folder:{corpus}",
                                "--tracking-uri", f"sqlite:///{tmp_path}/adir", cwd=tmp_path))
    assert str(tmp_path / "adir") in line


def test_a_web_server_that_is_not_mlflow_is_one_line(tmp_path):
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: Quiet(*a, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        line = one_line_error(bench("report", "--tracking-uri", f"http://127.0.0.1:{server.server_address[1]}",
                                    "--out-dir", str(tmp_path / "r"), cwd=tmp_path))
        assert "127.0.0.1" in line
    finally:
        server.shutdown()
        server.server_close()
