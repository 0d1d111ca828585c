"""Beyond one machine, against the real servers on 127.0.0.1 (issue 12): a PostgreSQL server, an
MLflow tracking server on it with proxied artifacts, a Dask scheduler with two worker processes.

The corpus is synthetic (WAV files written here, joined through a ``folder:`` manifest), so these
tests need no real corpora. Commands run as a user types them, through the ``bench`` script.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from servers import DaskCluster, MlflowServer, Postgres

pytestmark = pytest.mark.services

BENCH = str(Path(sys.executable).parent / "bench")
EMOTIONS = {"anger": (300.0, 0.6), "sadness": (150.0, 0.15), "neutral": (220.0, 0.3)}  # base Hz, loudness
CELLS = [{"C": c} for c in (0.5, 1.0, 2.0, 4.0)]


def bench(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    done = subprocess.run([BENCH, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"bench {' '.join(args)}\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def postgres():
    server = Postgres()
    yield server
    server.close()


@pytest.fixture(scope="module")
def mlflow_server(postgres, tmp_path_factory):
    server = MlflowServer(postgres.url("mlflow"), tmp_path_factory.mktemp("mlflow-server"))
    yield server
    server.close()


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    """4 speakers x 3 emotions x 3 files of 1 s: tones whose pitch, loudness and noise differ by emotion."""
    root = tmp_path_factory.mktemp("synthetic")
    rows, rng = [], np.random.default_rng(12)
    t = np.arange(16_000) / 16_000
    for s, speaker in enumerate(["s1", "s2", "s3", "s4"]):
        for emotion, (freq, loud) in EMOTIONS.items():
            for k in range(3):
                f0 = freq * (0.9 + 0.07 * s) * (1 + 0.05 * np.sin(2 * np.pi * (1 + k) * t))
                wave = loud * np.sin(2 * np.pi * np.cumsum(f0) / 16_000) + 0.02 * rng.standard_normal(t.size)
                path = root / f"{speaker}_{emotion}_{k}.wav"
                sf.write(path, wave.astype(np.float32), 16_000)
                rows.append({"path": path.name, "emotion": emotion, "speaker": speaker})
    with (root / "manifest.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["path", "emotion", "speaker"])
        writer.writeheader()
        writer.writerows(rows)
    return root / "manifest.csv"


@pytest.fixture
def grid(manifest, tmp_path) -> Path:
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump({
        "name": "services-grid",
        "base": {"model": "svm", "features": "handcrafted36", "corpus": f"folder:{manifest}", "final_model": False},
        "grid": {"model_params": CELLS},
    }))
    return path


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """One cluster for the module's grid tests; the kill test, which runs last, takes w1 down."""
    root = tmp_path_factory.mktemp("dask")
    workers = DaskCluster(root, workers=2, env={"SER_BENCH_CACHE": str(root / "worker-cache")})
    yield workers
    workers.close()


def top_level_runs(uri: str, experiment: str) -> list:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment} in {uri}"
    runs = client.search_runs([found.experiment_id], max_results=1000)
    return [r for r in runs if "mlflow.parentRunId" not in r.data.tags]


def by_c(runs) -> dict[float, dict]:
    return {float(r.data.params["model.C"]): r.data.metrics for r in runs}


def test_run_report_predict_and_ui_against_the_tracking_server(mlflow_server, manifest, tmp_path):
    uri = mlflow_server.uri
    bench("run", "--model", "svm", "--features", "handcrafted36", "--corpus", f"folder:{manifest}",
          "--tracking-uri", uri, "--experiment-name", "served", cwd=tmp_path)
    (run,) = top_level_runs(uri, "served")
    assert run.info.status == "FINISHED" and 0 <= run.data.metrics["uar"] <= 1
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")  # proxied by the server
    stored = {p.name for p in mlflow_server.artifacts.rglob("*") if p.is_file()}
    assert {"predictions.csv", "confusion_counts.png", "MLmodel"} <= stored
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "mlartifacts").exists()  # nothing local

    bench("report", "--tracking-uri", uri, "--experiment", "served", "--name", "served", "--out-dir",
          str(tmp_path / "reports"), cwd=tmp_path)
    with (tmp_path / "reports" / "served.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 1 and float(rows[0]["uar"]) == pytest.approx(run.data.metrics["uar"], abs=1e-3)

    wav = manifest.parent / "s2_anger_0.wav"
    predicted = json.loads(bench("predict", str(wav), "--tracking-uri", uri, "--format", "json", cwd=tmp_path).stdout)
    assert len(predicted["predictions"]) == 1 and predicted["predictions"][0]["top1"] in EMOTIONS
    assert not predicted["failed"]

    shown = bench("ui", "--tracking-uri", uri, cwd=tmp_path, timeout=60)
    assert uri in shown.stdout


def test_grid_on_two_dask_workers_equals_the_local_grid(mlflow_server, cluster, grid, tmp_path):
    bench("run", "--experiment", str(grid), "--scheduler", cluster.address, "--tracking-uri", mlflow_server.uri,
          "--experiment-name", "grid-two-workers", cwd=tmp_path)
    runs = top_level_runs(mlflow_server.uri, "grid-two-workers")
    assert len(runs) == len(CELLS) and all(r.info.status == "FINISHED" for r in runs)
    assert len({r.data.tags["ser_bench_cell"] for r in runs}) == len(CELLS)  # none twice
    assert {r.data.tags["dask_worker"] for r in runs} == {"w1", "w2"}  # both workers took cells

    local = f"sqlite:///{tmp_path / 'local.db'}"
    bench("run", "--experiment", str(grid), "--tracking-uri", local, cwd=tmp_path)
    on_dask, here = by_c(runs), by_c(top_level_runs(local, "services-grid"))
    assert sorted(on_dask) == sorted(here) == [c["C"] for c in CELLS]
    for c in here:
        for metric in ("uar", "wa", "macro_f1", "uar_ci_low", "fold_uar_mean"):
            assert on_dask[c][metric] == pytest.approx(here[c][metric], abs=1e-9), (c, metric)


def test_a_bad_cell_fails_alone_with_its_error(mlflow_server, cluster, manifest, tmp_path):
    grid = tmp_path / "bad.yaml"
    grid.write_text(yaml.safe_dump({
        "name": "grid-bad-cell",
        "base": {"model": "svm", "features": "handcrafted36", "corpus": f"folder:{manifest}", "final_model": False},
        "grid": {"classes": ["all", "anger,boredom"]},  # no boredom in the corpus: one cell cannot run
    }))
    done = subprocess.run([BENCH, "run", "--experiment", str(grid), "--scheduler", cluster.address,
                           "--tracking-uri", mlflow_server.uri], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2 and "1 of 2 runs failed" in done.stderr and "Traceback" not in done.stderr, done.stderr
    runs = top_level_runs(mlflow_server.uri, "grid-bad-cell")
    assert sorted(r.info.status for r in runs) == ["FAILED", "FINISHED"]  # no retry of a bad cell
    (bad,) = [r for r in runs if r.info.status == "FAILED"]
    assert "boredom" in bad.data.tags["error"] and "worker died" not in bad.data.tags["error"]


def test_a_worker_killed_mid_grid_has_its_cell_rerun_and_its_run_failed(mlflow_server, cluster, grid, tmp_path):
    from mlflow import MlflowClient

    assert cluster.n_workers() == 2

    experiment = "grid-killed"
    grid_run = subprocess.Popen([BENCH, "run", "--experiment", str(grid), "--scheduler", cluster.address,
                                 "--tracking-uri", mlflow_server.uri, "--experiment-name", experiment],
                                cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    client, victim, deadline = MlflowClient(mlflow_server.uri), None, time.time() + 180
    try:
        while victim is None and time.time() < deadline and grid_run.poll() is None:
            found = client.get_experiment_by_name(experiment)
            running = client.search_runs([found.experiment_id], "tags.dask_worker = 'w1' and attributes.status = "
                                         "'RUNNING'") if found else []
            if running:
                cluster.kill("w1")  # kill -9 while its cell's run is open
                victim = running[0].info.run_id
            time.sleep(0.1)
        output = grid_run.communicate(timeout=300)[0]
    finally:
        if grid_run.poll() is None:
            grid_run.kill()
    assert victim is not None, "worker w1 never started a cell"
    assert grid_run.returncode == 0, output

    runs = top_level_runs(mlflow_server.uri, experiment)
    finished = [r for r in runs if r.info.status == "FINISHED"]
    assert sorted(float(r.data.params["model.C"]) for r in finished) == [c["C"] for c in CELLS]  # one each
    killed = client.get_run(victim)
    assert killed.info.status == "FAILED" and "worker died" in killed.data.tags["error"]
    assert all(r.info.status == "FAILED" for r in runs if r not in finished)
    rerun = [r for r in finished if r.data.tags["ser_bench_cell"] == killed.data.tags["ser_bench_cell"]]
    assert len(rerun) == 1 and rerun[0].data.tags["dask_worker"] == "w2"
    assert int(rerun[0].data.tags["ser_bench_attempt"]) > int(killed.data.tags["ser_bench_attempt"])
    experiment_id = killed.info.experiment_id
    assert not client.search_runs([experiment_id], "attributes.status = 'RUNNING'")  # folds included


def test_two_tune_workers_share_one_study_on_postgres(postgres, mlflow_server, manifest, tmp_path):
    import optuna

    storage = postgres.url("optuna")
    args = [BENCH, "tune", "--model", "svm", "--features", "handcrafted36", "--corpus", f"folder:{manifest}",
            "--split", "random", "--trials", "8", "--study", "shared", "--storage", storage,
            "--tracking-uri", mlflow_server.uri, "--experiment-name", "tune-on-postgres"]
    workers = [subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for _ in range(2)]
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    (summary,) = optuna.get_all_study_summaries(storage)
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    states = [t.state for t in study.trials]
    # counting the trials and creating one is a single step under the study's lock: exactly 8
    assert len(states) == 8
    assert all(s in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED) for s in states)  # none lost
    assert sorted(t.number for t in study.trials) == list(range(len(states)))
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == len(states)  # none evaluated twice

    from mlflow import MlflowClient

    client = MlflowClient(mlflow_server.uri)
    experiment = client.get_experiment_by_name("tune-on-postgres").experiment_id
    trials = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{study.user_attrs['mlflow_run_id']}'")
    assert sorted(int(r.data.tags["optuna_trial"]) for r in trials) == list(range(len(states)))  # one run each


def test_workers_racing_for_trials_on_postgres_never_exceed_the_requested_number(postgres):
    """The same race on PostgreSQL, where workers on several machines share a study: the advisory
    lock makes counting and creating a trial one step, so exactly the trials asked for exist."""
    from study_race import race

    assert race(postgres.url("race"), trials=40) == 40
