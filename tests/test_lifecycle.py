"""Runs never stay RUNNING: SIGTERM and kill -9 on real `bench run` processes, and reaping rules."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from benchmark import lifecycle
from reliability_helpers import TESTS, bench, tone_corpus


def runs(uri: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    ids = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(ids) if ids else []


def start_slow_run(tmp_path: Path) -> tuple[subprocess.Popen, str, list[psutil.Process]]:
    """A real `bench run` busy in two extraction workers; returns it once its run is RUNNING."""
    corpus = tone_corpus(tmp_path / "corpus", speakers=4, per_emotion=2)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    process = subprocess.Popen(
        [sys.executable, str(TESTS / "bench_with_test_sets.py"), "run", "--model", "svm", "--features", "test_slow",
         "--feature-param", "pause=3", "--corpus", f"folder:{corpus}", "--folds", "2", "--jobs", "2",
         "--tracking-uri", uri, "--cache-dir", str(tmp_path / "cache")],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        children = psutil.Process(process.pid).children(recursive=True)
        workers = [c for c in children if c.ppid() != process.pid]  # forked by the forkserver
        if (tmp_path / "mlflow.db").exists() and len(workers) >= 2 and \
                any(r.info.status == "RUNNING" for r in runs(uri)):
            return process, uri, children
        time.sleep(0.5)
    process.kill()
    pytest.fail("bench run never reached its extraction workers")


def assert_gone(processes: list[psutil.Process], within: float = 20) -> None:
    gone, alive = psutil.wait_procs(processes, timeout=within)
    assert not alive, [p.cmdline() for p in alive]


def test_sigterm_ends_the_run_failed_and_stops_the_workers(tmp_path):
    process, uri, children = start_slow_run(tmp_path)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 143, err[-2000:]
    assert "Traceback" not in err and "SIGTERM" in err
    assert_gone(children)
    (run,) = runs(uri)
    assert run.info.status == "FAILED" and "SIGTERM" in run.data.tags["error"]


def test_a_sigterm_while_a_run_is_created_is_raised_where_it_can_be_recorded():
    """The window between MLflow creating a run and the try that tags its error: a SIGTERM there
    is held, then raised by release() (the end-to-end test above hit that window once)."""
    reached = []
    with pytest.raises(lifecycle.Terminated):
        with lifecycle.sigterm_as_interrupt():
            with lifecycle.SigtermHeld() as held:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.05)  # Python runs the handler between bytecodes: here, while held
                reached.append("after the signal")
                try:
                    held.release()
                except lifecycle.Terminated:
                    reached.append("recorded")
                    raise
    assert reached == ["after the signal", "recorded"]
    assert signal.getsignal(signal.SIGTERM) is not None and lifecycle._HELD == {"depth": 0, "pending": False}


def test_kill_9_leaves_no_workers_and_the_next_report_marks_the_run_failed(tmp_path):
    process, uri, children = start_slow_run(tmp_path)
    process.kill()
    assert_gone(children)  # the workers notice their parent is gone (even before it is reaped)
    process.wait(timeout=60)
    (run,) = runs(uri)
    assert run.info.status == "RUNNING"  # nothing could run in the killed process
    report = bench("report", "--tracking-uri", uri, "--out-dir", str(tmp_path / "reports"), cwd=tmp_path)
    assert "Traceback" not in report.stderr
    (run,) = runs(uri)
    assert run.info.status == "FAILED"
    assert f"process {process.pid}" in run.data.tags[lifecycle.KILLED_TAG]


def _running_run(uri: str, tags: dict[str, str]) -> str:
    from mlflow.tracking import MlflowClient

    from benchmark import tracking

    experiment = tracking.use_store(uri, "ser-bench")
    client = MlflowClient(tracking_uri=uri)
    parent = client.create_run(experiment, tags=tags).info.run_id
    client.create_run(experiment, tags={"mlflow.parentRunId": parent})  # a fold under it
    return parent


@pytest.mark.parametrize("case, reaped", [
    ("this_process", False),
    ("dead_pid", True),
    ("reused_pid", True),
    ("other_host_fresh_heartbeat", False),
    ("other_host_stale_heartbeat", True),
    ("no_tags", False),
])
def test_reaping_rules(tmp_path, case, reaped):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    mine = lifecycle.process_tags()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    tags = {
        "this_process": mine,
        "dead_pid": {**mine, lifecycle.PID_TAG: str(dead.pid)},
        "reused_pid": {**mine, lifecycle.START_TAG: f"{float(mine[lifecycle.START_TAG]) - 3600:.2f}"},
        "other_host_fresh_heartbeat": {**mine, lifecycle.HOST_TAG: "elsewhere-" + socket.gethostname()},
        "other_host_stale_heartbeat": {**mine, lifecycle.HOST_TAG: "elsewhere", lifecycle.HEARTBEAT_TAG:
                                       f"{time.time() - 2 * lifecycle.stale_seconds():.0f}"},
        "no_tags": {},
    }[case]
    _running_run(uri, tags)
    assert lifecycle.reap_dead_runs(tracking_uri=uri) == (2 if reaped else 0)
    assert {r.info.status for r in runs(uri)} == ({"FAILED"} if reaped else {"RUNNING"})


def test_heartbeat_refreshes_the_tag(tmp_path, monkeypatch):
    import mlflow

    from benchmark import tracking

    monkeypatch.setenv("SER_BENCH_HEARTBEAT_S", "0.2")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracking.use_store(uri, "ser-bench")
    with mlflow.start_run() as run, lifecycle.owned(run.info.run_id):
        first = mlflow.get_run(run.info.run_id).data.tags[lifecycle.HEARTBEAT_TAG]
        deadline, later = time.time() + 20, first  # a loaded machine may delay a beat; it must still come
        while time.time() < deadline and int(later) <= int(first):
            time.sleep(0.5)
            later = mlflow.get_run(run.info.run_id).data.tags[lifecycle.HEARTBEAT_TAG]
    assert int(later) > int(first)
    assert mlflow.get_run(run.info.run_id).data.tags[lifecycle.PID_TAG] == str(os.getpid())


def running_runs(database: Path, kind: str | None = None) -> int:
    """RUNNING runs in an MLflow sqlite store (optionally with ser_bench_kind ``kind``), read with
    sqlite3: an MlflowClient here would race the bench process creating the store's tables."""
    import sqlite3

    if not database.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as db:
            if kind is None:
                return db.execute("SELECT COUNT(*) FROM runs WHERE status = 'RUNNING'").fetchone()[0]
            return db.execute("SELECT COUNT(*) FROM runs JOIN tags ON tags.run_uuid = runs.run_uuid WHERE "
                              "runs.status = 'RUNNING' AND tags.key = 'ser_bench_kind' AND tags.value = ?",
                              (kind,)).fetchone()[0]
    except sqlite3.Error:  # tables not created yet
        return 0


def wait_until(process: subprocess.Popen, condition, what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        if condition():
            return
        time.sleep(0.5)
    process.kill()
    pytest.fail(f"never reached: {what}")


def slow_network_args(tmp_path: Path) -> list[str]:
    corpus = tone_corpus(tmp_path / "corpus", speakers=4, per_emotion=2)
    return ["--model", "local_attn_blstm", "--features", "handcrafted36", "--param", "epochs=400",
            "--param", "patience=400", "--param", "lstm_units=8", "--param", "dense_units=8",
            "--corpus", f"folder:{corpus}", "--cache-dir", str(tmp_path / "cache")]


def test_sigterm_during_parallel_folds_fails_every_run_and_stops_the_fold_workers(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    process = subprocess.Popen([str(Path(sys.executable).parent / "bench"), "run", *slow_network_args(tmp_path),
                                "--folds", "2", "--jobs", "2", "--tracking-uri", uri],
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_until(process, lambda: running_runs(tmp_path / "mlflow.db") >= 1 and
               len(psutil.Process(process.pid).children(recursive=True)) >= 2, "fold workers training")
    time.sleep(15)  # into training
    children = psutil.Process(process.pid).children(recursive=True)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 143, err[-2000:]
    assert "Traceback" not in err and "SIGTERM" in err
    assert_gone(children, within=60)
    statuses = [r.info.status for r in runs(uri)]
    assert statuses and "RUNNING" not in statuses and "FAILED" in statuses


def test_sigterm_during_tune_fails_the_trial_and_leaves_nothing_running(tmp_path):
    import optuna

    uri, storage = f"sqlite:///{tmp_path}/mlflow.db", f"sqlite:///{tmp_path}/optuna.db"
    process = subprocess.Popen([str(Path(sys.executable).parent / "bench"), "tune", *slow_network_args(tmp_path),
                                "--split", "random", "--trials", "3", "--study", "sigterm", "--storage", storage,
                                "--tracking-uri", uri], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    wait_until(process, lambda: running_runs(tmp_path / "mlflow.db", "trial") >= 1, "a trial running")
    time.sleep(5)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 143, err[-2000:]
    assert "Traceback" not in err and "SIGTERM" in err
    assert "RUNNING" not in [r.info.status for r in runs(uri)]
    (summary,) = optuna.get_all_study_summaries(storage)
    trials = optuna.load_study(study_name=summary.study_name, storage=storage).trials
    assert trials and all(t.state != optuna.trial.TrialState.RUNNING for t in trials)
