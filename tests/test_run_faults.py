"""Whole `bench` commands under faults: an empty training fold, pruned trials, piped reports, `bench ui` stopped."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import psutil
import pytest

from reliability_helpers import bench, one_line_error, tone_corpus


def test_empty_training_fold_is_one_line_naming_the_fold(tmp_path):
    root = tone_corpus(tmp_path / "corpus", speakers=3, per_emotion=2)
    for wav in (root / "anger" / "spk1").glob("*.wav"):
        wav.write_bytes(b"RIFF-not-really")
    for wav in (root / "sadness" / "spk1").glob("*.wav"):
        wav.write_bytes(b"")
    for emotion in ("anger", "sadness"):  # spk0 and spk2 keep one readable file each... in the test fold only
        for wav in (root / emotion / "spk2").glob("*.wav"):
            wav.write_bytes(b"")
    line = one_line_error(bench("run", "--model", "svm", "--features", "librosa46", "--corpus", f"folder:{root}",
                                "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db", cwd=tmp_path))
    assert "has no readable training utterance" in line and "fold" in line


def test_pruned_trials_are_not_failed_runs(tmp_path):
    from mlflow.tracking import MlflowClient

    root = tone_corpus(tmp_path / "corpus", speakers=6, per_emotion=2)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    result = bench("tune", "--model", "svm", "--features", "librosa46", "--corpus", f"folder:{root}", "--trials", "12",
                   "--tracking-uri", uri, "--storage", f"sqlite:///{tmp_path}/optuna.db", cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    import optuna

    client = MlflowClient(tracking_uri=uri)
    trials = client.search_runs([e.experiment_id for e in client.search_experiments()], "tags.ser_bench_kind = 'trial'")
    assert trials and not [r for r in trials if r.info.status == "FAILED"]
    pruned_runs = [r for r in trials if r.data.tags.get("pruned") == "true"]
    assert all(r.info.status == "KILLED" for r in pruned_runs)
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/optuna.db")
    pruned = sum(t.state == optuna.trial.TrialState.PRUNED for s in optuna.get_all_study_summaries(storage)
                 for t in optuna.load_study(study_name=s.study_name, storage=storage).trials)
    assert len(pruned_runs) == pruned


def test_piped_report_keeps_table_rows_whole(tmp_path):
    root = tone_corpus(tmp_path / "corpus", speakers=3, per_emotion=2)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    run = bench("run", "--model", "svm", "--features", "librosa46", "--corpus", f"folder:{root}", "--tracking-uri", uri,
                "--no-final-model", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    report = bench("report", "--tracking-uri", uri, cwd=tmp_path, env={"COLUMNS": "80"})
    assert report.returncode == 0, report.stderr[-2000:]
    rows = [line for line in report.stdout.splitlines() if line.startswith("|")]
    assert rows and max(len(r) for r in rows) > 80
    assert len({r.count("|") for r in rows if not set(r) <= set("|-: ")}) == 1  # every row has all its cells
    written = (tmp_path / "reports" / "benchmark.md").read_text()
    for row in rows:
        assert row in written


def test_killing_bench_ui_stops_mlflow_and_its_children(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ui = subprocess.Popen([str(os.path.join(os.path.dirname(sys.executable), "bench")), "ui", "--port", str(port),
                           "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"], cwd=tmp_path,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                time.sleep(1)
        else:
            pytest.fail("mlflow ui never answered")
        children = psutil.Process(ui.pid).children(recursive=True)
        assert children
        os.kill(ui.pid, signal.SIGTERM)  # `kill <pid of bench ui>`
        ui.wait(timeout=60)
        gone, alive = psutil.wait_procs(children, timeout=30)
        assert not alive, [p.cmdline() for p in alive]
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
    finally:
        for child in psutil.Process().children(recursive=True):
            if child.pid == ui.pid or ui.pid in [p.pid for p in child.parents()]:
                child.kill()
