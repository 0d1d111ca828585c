"""A vector model's run computes in a forked process while the run process imports MLflow and logs
(benchmark/forked.py): the same numbers and artifacts as one process, failures reported as before,
and no process left behind."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import psutil
import pytest

from reliability_helpers import bench, tone_corpus

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="fork is used on Linux only")


def _runs(store: str):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name("ser-bench")
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = {p.info.run_id: [r for r in runs if r.data.tags.get("mlflow.parentRunId") == p.info.run_id]
                for p in parents}
    return client, parents, children


def test_a_forked_run_equals_a_one_process_run(tmp_path):
    corpus = tone_corpus(tmp_path / "corpus", speakers=4, per_emotion=3)
    store = f"sqlite:///{tmp_path}/mlflow.db"
    command = ("run", "--model", "svm", "--features", "handcrafted36", "--corpus", f"folder:{corpus}",
               "--tracking-uri", store, "--cache-dir", str(tmp_path / "cache"))
    for env in ({}, {"SER_BENCH_FORK": "0"}):
        done = bench(*command, cwd=tmp_path, env=env)
        assert done.returncode == 0, done.stderr[-3000:]
    client, (forked_run, single), children = _runs(store)
    assert forked_run.data.tags["computed_in"] == "forked process"
    assert single.data.tags["computed_in"] == "run process"
    assert forked_run.data.metrics == single.data.metrics  # pooled UAR, its interval, WA, ...: to the bit
    fold_metrics = [sorted((c.data.tags["fold"], c.data.metrics["uar"]) for c in children[r.info.run_id])
                    for r in (forked_run, single)]
    assert fold_metrics[0] == fold_metrics[1] and len(fold_metrics[0]) == 4
    texts = [open(client.download_artifacts(r.info.run_id, "confusion_counts.csv", str(tmp_path / r.info.run_id))).read()
             for r in (forked_run, single)]
    assert texts[0] == texts[1]
    pictures = [client.download_artifacts(r.info.run_id, "confusion_normalised.png", str(tmp_path / r.info.run_id))
                for r in (forked_run, single)]
    assert all(open(p, "rb").read(8) == b"\x89PNG\r\n\x1a\n" for p in pictures)
    assert all(r.data.tags.get("model_uri", "").startswith("models:/") for r in (forked_run, single))


SCRIPT = """
import os, sys
from benchmark import runner
from benchmark.config import resolve
parent, calls = os.getpid(), []
real = runner.fit_and_predict

def failing(*args, **kwargs):
    calls.append(1)
    if len(calls) == 3:
        if sys.argv[1] == "kill":
            os.kill(os.getpid(), 9)  # the computing process dies without a word
        raise RuntimeError("disk full while training in pid %d" % os.getpid())
    return real(*args, **kwargs)

runner.fit_and_predict = failing
config = resolve({"model": "svm", "features": "handcrafted36", "corpus": "folder:" + sys.argv[2]})
try:
    runner.run(config, runner.Runtime(tracking_uri=sys.argv[3], cache_dir=sys.argv[4], progress=False))
except BaseException as exc:
    print("RAISED", type(exc).__name__, exc, "PARENT", parent)
"""


@pytest.mark.parametrize("how", ["raise", "kill"])
def test_a_failure_in_the_forked_computation_fails_the_run_and_keeps_finished_folds(tmp_path, how):
    corpus = tone_corpus(tmp_path / "corpus", speakers=4, per_emotion=2)
    store = f"sqlite:///{tmp_path}/mlflow.db"
    marker = f"ser-bench-fork-test-{os.getpid()}-{how}"
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(SCRIPT), how, str(corpus), store,
                           str(tmp_path / "cache"), marker], capture_output=True, text=True, timeout=300)
    assert "RAISED" in done.stdout, done.stderr[-3000:]
    words = done.stdout.split()
    parent_pid = int(words[words.index("PARENT") + 1])
    if how == "raise":  # the child's own exception, raised in the run process
        assert "RuntimeError disk full while training in pid" in done.stdout
        assert f"in pid {parent_pid} " not in done.stdout + " "  # it happened in the other process
    else:
        assert "BenchError" in done.stdout and "ended without a result" in done.stdout
    client, (run,), children = _runs(store)
    assert run.info.status == "FAILED" and run.data.tags["computed_in"] == "forked process"
    assert ("disk full" if how == "raise" else "ended without a result") in run.data.tags["error"]
    finished = [c for c in children[run.info.run_id] if c.info.status == "FINISHED"]
    assert len(finished) == 2 and all("uar" in c.data.metrics for c in finished)
    assert not [p for p in psutil.process_iter(["cmdline"]) if marker in " ".join(p.info["cmdline"] or [])]


def test_fork_is_used_only_when_nothing_else_runs_in_the_process(monkeypatch):
    import threading

    from benchmark import forked

    clean = subprocess.run([sys.executable, "-c", "from benchmark import cli, forked; print(forked.fork_is_safe())"],
                           capture_output=True, text=True, timeout=120)
    assert clean.stdout.strip() == "True", clean.stderr[-2000:]
    switched_off = subprocess.run([sys.executable, "-c", "from benchmark import forked; print(forked.fork_is_safe())"],
                                  capture_output=True, text=True, timeout=120, env={**os.environ, "SER_BENCH_FORK": "0"})
    assert switched_off.stdout.strip() == "False"
    release = threading.Event()
    busy = threading.Thread(target=release.wait, name="someone-elses-thread", daemon=True)
    busy.start()
    try:
        assert not forked.fork_is_safe()  # its locks may be held at the fork: run here instead
        items = forked.iterate(lambda: iter([1, 2, 3]))
        assert not isinstance(items, forked.FromChild) and list(items) == [1, 2, 3]
    finally:
        release.set()
        busy.join()
