"""Optuna tuning on synthetic EMO-DB-layout slices with real sqlite storage and a real MLflow store."""

import subprocess
import sys

import numpy as np
import optuna
import pytest

from benchmark.config import resolve
from benchmark.runner import Runtime, build_inputs, prepare


def RunConfig(**settings):
    return resolve(settings)
from benchmark.tuning import TuneOptions, load_tuned, pools, tune

SLICE = {"max_speakers": 3, "max_per_speaker_class": 2, "features": "handcrafted36"}


@pytest.fixture
def stores(tmp_path):
    return {"storage": f"sqlite:///{tmp_path / 'optuna.db'}", "tracking": f"sqlite:///{tmp_path / 'mlflow.db'}",
            "cache": str(tmp_path / "cache")}


def runtime(data_dir, stores):
    return Runtime(data_dir=str(data_dir), cache_dir=stores["cache"], tracking_uri=stores["tracking"],
                   experiment="tuning", progress=False)


def test_nested_pools_never_contain_the_outer_test_speaker(data_dir):
    config = RunConfig(model="svm", **SLICE)
    rt = Runtime(data_dir=str(data_dir), progress=False)
    inputs = build_inputs(prepare(config, rt), rt)
    named = dict(pools(inputs))
    assert set(named) == {f.name for f in inputs.folds} | {"all"}
    for fold in inputs.folds:
        assert not set(inputs.groups[named[fold.name]]) & set(inputs.groups[fold.test])
    assert len(named["all"]) == len(inputs.labels)


def test_tune_then_run_with_params_from(data_dir, stores):
    from mlflow import MlflowClient

    from benchmark.runner import run

    config = RunConfig(model="svm", **SLICE)
    name, best = tune(config, runtime(data_dir, stores), TuneOptions(trials=3, storage=stores["storage"]))
    assert set(best) == {"speaker-03", "speaker-08", "speaker-09", "all"}
    summaries = optuna.get_all_study_summaries(stores["storage"])
    assert sorted(s.study_name for s in summaries) == sorted(f"{name}@{k}" for k in best)
    assert all(s.n_trials == 3 for s in summaries)
    # each outer fold's study starts its search from points of its own, not the same ones
    firsts = {repr(sorted(optuna.load_study(study_name=s.study_name, storage=stores["storage"]).trials[0].params.items()))
              for s in summaries}
    assert len(firsts) == len(summaries)

    # resuming with the same command adds nothing; asking for more adds only the difference
    tune(config, runtime(data_dir, stores), TuneOptions(trials=3, storage=stores["storage"]))
    tune(config, runtime(data_dir, stores), TuneOptions(trials=5, storage=stores["storage"]))
    assert all(s.n_trials == 5 for s in optuna.get_all_study_summaries(stores["storage"]))

    client = MlflowClient(tracking_uri=stores["tracking"])
    experiment = client.get_experiment_by_name("tuning").experiment_id
    study_runs = client.search_runs([experiment], "tags.ser_bench_kind = 'study'")
    assert len(study_runs) == 4
    trial_runs = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{study_runs[0].info.run_id}'")
    assert len(trial_runs) == 5 and all("C" in r.data.params for r in trial_runs)

    tuned = load_tuned(name, stores["storage"])
    assert tuned.final == optuna.load_study(study_name=f"{name}@all", storage=stores["storage"]).best_params
    result = run(config, runtime(data_dir, stores), tuned)
    parent = client.get_run(result.run_id)
    assert parent.data.tags["tuned_by_study"] == name and parent.info.run_name.endswith("-tuned")
    # the parent shows what was really used, never the defaults of what was tuned
    assert parent.data.params["model.C"].startswith("tuned")
    assert float(parent.data.params["tuned.final.C"]) == pytest.approx(tuned.final["C"])
    assert "tuned_params.json" in {a.path for a in client.list_artifacts(result.run_id)}
    child = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{result.run_id}' "
                               "and tags.fold = 'speaker-08'")[0]
    assert float(child.data.params["tuned.C"]) == pytest.approx(tuned.by_fold["speaker-08"]["C"])


def test_two_worker_processes_share_one_study(data_dir, stores, tmp_path):
    args = [sys.executable, "-m", "benchmark.cli", "tune", "--model", "svm", "--features", "handcrafted36",
            "--protocol", "cross_corpus", "--test-corpus", "urdu", "--max-speakers", "3",
            "--max-per-speaker-class", "2", "--trials", "8", "--study", "shared", "--storage", stores["storage"],
            "--tracking-uri", stores["tracking"], "--data-dir", str(data_dir), "--cache-dir", stores["cache"]]
    # warm the feature cache first so both workers start optimising at the same time
    subprocess.run(args[:-12] + ["--trials", "1", "--study", "warm", "--storage", f"sqlite:///{tmp_path / 'w.db'}",
                                 "--tracking-uri", stores["tracking"], "--data-dir", str(data_dir),
                                 "--cache-dir", stores["cache"]], check=True, capture_output=True)
    workers = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(2)]
    outputs = [w.communicate(timeout=600)[0].decode() for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    (study,) = [optuna.load_study(study_name=s.study_name, storage=stores["storage"])
                for s in optuna.get_all_study_summaries(stores["storage"])]
    states = [t.state for t in study.trials]
    # counting the trials and creating one is a single step under the study's lock: exactly 8
    assert len(states) == 8
    assert all(s in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED) for s in states)  # none lost
    assert sorted(t.number for t in study.trials) == list(range(len(states)))
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == len(states)  # none evaluated twice
    # each worker prints a plain line per trial it ran (the output here is a pipe, not a terminal)
    reported = [int(line.split(": trial ")[1].split()[0]) for out in outputs for line in out.splitlines()
                if line.startswith(f"tune {study.study_name}: trial ")]
    assert sorted(reported) == list(range(len(states)))

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=stores["tracking"])
    experiment = client.get_experiment_by_name("ser-bench-tuning").experiment_id
    run_id = study.user_attrs["mlflow_run_id"]
    trials = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{run_id}'")
    assert sorted(int(r.data.tags["optuna_trial"]) for r in trials) == list(range(len(states)))  # one run each


def test_keras_trials_report_every_epoch(data_dir, stores):
    """An ensemble of 2 members, 2 epochs each, 2 inner folds: 8 distinct steps (a step reported
    twice would be dropped by Optuna, and pruning would compare the wrong fold)."""
    config = RunConfig(model="local_attn_blstm", epochs=2, batch_size=8, protocol="cross_corpus",
                       test_corpus="urdu", model_params={"ensemble": 2}, **SLICE)
    name, best = tune(config, runtime(data_dir, stores), TuneOptions(trials=1, storage=stores["storage"],
                                                                      inner_folds=2))
    study = optuna.load_study(study_name=f"{name}@emodb->urdu", storage=stores["storage"])
    steps = sorted(study.trials[0].intermediate_values)
    assert steps == list(range(2 * 2 * 2))  # per epoch and member, across inner folds
    assert np.isfinite(study.best_value)


def test_a_killed_study_resumes_with_the_same_command(data_dir, stores, tmp_path):
    import os
    import signal
    import time

    args = [sys.executable, "-m", "benchmark.cli", "tune", "--model", "svm", "--features", "handcrafted36",
            "--protocol", "cross_corpus", "--test-corpus", "urdu", "--max-speakers", "3",
            "--max-per-speaker-class", "2", "--trials", "25", "--study", "killed", "--storage", stores["storage"],
            "--tracking-uri", stores["tracking"], "--data-dir", str(data_dir), "--cache-dir", stores["cache"]]
    env = {**os.environ, "SER_BENCH_OPTUNA_HEARTBEAT": "1", "SER_BENCH_OPTUNA_GRACE": "2"}
    worker = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    complete = optuna.trial.TrialState.COMPLETE
    deadline = time.time() + 300
    while time.time() < deadline:  # let it finish a couple of trials, then kill it mid-study
        if (tmp_path / "optuna.db").exists():
            try:  # the worker may still be creating the tables
                summaries = optuna.get_all_study_summaries(stores["storage"])
            except Exception:
                summaries = []
            if summaries and summaries[0].n_trials >= 3:
                break
        time.sleep(0.2)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    study_name = optuna.get_all_study_summaries(stores["storage"])[0].study_name
    before = len(optuna.load_study(study_name=study_name, storage=stores["storage"]).trials)
    assert before < 25  # it really was cut short
    time.sleep(3)  # past the grace period: the trial it was running is dead
    done = subprocess.run(args, env=env, capture_output=True, timeout=600, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    study = optuna.load_study(study_name=study_name, storage=stores["storage"])
    finished = study.get_trials(states=(complete, optuna.trial.TrialState.PRUNED))
    assert len(finished) == 25
    assert not study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
    assert sorted(t.number for t in study.trials) == list(range(len(study.trials)))


def test_a_trial_killed_before_its_first_heartbeat_stops_counting(tmp_path):
    """A worker killed between creating a trial and its first heartbeat leaves a RUNNING trial that
    Optuna's own stale check never sees; past the grace period it is failed, a fresh one is not."""
    import time

    from benchmark.study_slots import fail_dead_trials
    from benchmark.tuning import finished_or_running, open_storage

    storage = open_storage(f"sqlite:///{tmp_path / 'dead.db'}")
    study = optuna.create_study(study_name="dead", storage=storage)
    orphan = study.ask()  # ask() alone sends no heartbeat: exactly what a kill -9 right after it leaves
    time.sleep(1.5)
    fresh = study.ask()
    assert fail_dead_trials(study, storage, grace_s=1.0) == 1
    states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
    assert states == {orphan.number: optuna.trial.TrialState.FAIL, fresh.number: optuna.trial.TrialState.RUNNING}
    assert finished_or_running(study) == 1


def test_workers_racing_for_trials_never_exceed_the_requested_number(tmp_path):
    """Three processes ask one SQLite study for trials as fast as they can: counting and creating
    a trial is one step under the study's lock, so the study ends with exactly the number asked."""
    from study_race import race

    assert race(f"sqlite:///{tmp_path / 'race.db'}", trials=40) == 40


def test_a_searched_parameter_given_with_param_is_pinned_in_every_trial(data_dir, stores):
    """`bench tune --param C=10` as typed: every trial keeps C=10 (before, the search silently replaced
    a given value) while gamma is still searched, and --params-from carries the pin."""
    args = [sys.executable, "-m", "benchmark.cli", "tune", "--model", "svm", "--features", "handcrafted36",
            "--max-speakers", "3", "--max-per-speaker-class", "2", "--trials", "3", "--study", "pinned",
            "--storage", stores["storage"], "--tracking-uri", stores["tracking"], "--data-dir", str(data_dir),
            "--cache-dir", stores["cache"]]
    done = subprocess.run(args + ["--param", "C=10"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "pinned with --param: C=10.0; searched: gamma" in done.stderr
    studies = [optuna.load_study(study_name=s.study_name, storage=stores["storage"])
               for s in optuna.get_all_study_summaries(stores["storage"])]
    assert len(studies) == 4
    for study in studies:
        assert [t.params.get("C") for t in study.trials] == [None, None, None]  # Optuna never searched C
        assert len({t.params["gamma"] for t in study.trials}) == 3
        assert study.user_attrs["pinned_params"] == {"C": 10.0} and study.user_attrs["best_params"]["C"] == 10.0
    tuned = load_tuned("pinned", stores["storage"])
    assert {p["C"] for p in tuned.by_fold.values()} == {10.0} and tuned.final["C"] == 10.0

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=stores["tracking"])
    trials = client.search_runs([client.get_experiment_by_name("ser-bench-tuning").experiment_id],
                                "tags.ser_bench_kind = 'trial'")
    assert len(trials) == 12 and {r.data.params["C"] for r in trials} == {"10.0"}  # what each trial trained

    # a pin outside the search's range is allowed: it is a fixed value, not a search
    outside = subprocess.run(args + ["--param", "C=5000", "--study", "outside", "--trials", "1"], capture_output=True,
                             text=True)
    assert outside.returncode == 0, outside.stderr
    assert {p["C"] for p in load_tuned("outside", stores["storage"]).by_fold.values()} == {5000.0}


def test_only_searched_parameters_are_pinned_and_pinning_everything_is_refused():
    from benchmark.errors import BenchError
    from benchmark.tuning import PinnedTrial, pinned_params

    crnn = RunConfig(model="crnn", model_params={"filters": 8, "epochs": 3})
    # epochs is not searched: it applies to every trial and is not a pin; a pin need not be a choice
    assert pinned_params(crnn, {"filters": 8, "epochs": 3}) == {"filters": 8}
    trial = optuna.create_study().ask()
    params = crnn.model_class().search_space(PinnedTrial(trial, {"filters": 8}))
    assert params["filters"] == 8 and "filters" not in trial.params and "lstm_units" in trial.params
    with pytest.raises(BenchError, match="nothing is left to tune"):
        pinned_params(RunConfig(model="svm", model_params={"C": 1.0, "gamma": 0.01}), {"C": 1.0, "gamma": 0.01})


def test_tune_without_the_final_model_study_and_runs_that_need_it(data_dir, stores, tmp_path):
    """`bench tune --no-final-model` as typed skips STUDY@all (only the deployable model uses it);
    `bench run --params-from` then refuses to refit a final model in one line, before computing,
    and runs with --no-final-model; the same tune without the flag adds only the @all study."""
    common = ["--model", "svm", "--features", "handcrafted36", "--max-speakers", "3", "--max-per-speaker-class", "2",
              "--tracking-uri", stores["tracking"], "--data-dir", str(data_dir)]
    tune_args = [sys.executable, "-m", "benchmark.cli", "tune", *common, "--cache-dir", stores["cache"], "--trials", "2",
                 "--study", "outer", "--storage", stores["storage"]]
    done = subprocess.run(tune_args + ["--no-final-model"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "--no-final-model --params-from outer" in " ".join(done.stdout.split())
    names = sorted(s.study_name for s in optuna.get_all_study_summaries(stores["storage"]))
    assert names == ["outer@speaker-03", "outer@speaker-08", "outer@speaker-09"]
    tuned = load_tuned("outer", stores["storage"])
    assert tuned.final is None and set(tuned.by_fold) == {"speaker-03", "speaker-08", "speaker-09"}

    run_args = [sys.executable, "-m", "benchmark.cli", "run", *common, "--params-from", "outer",
                "--storage", stores["storage"]]
    untouched = tmp_path / "untouched-cache"  # computing anything would extract features into it
    refused = subprocess.run(run_args + ["--cache-dir", str(untouched)], capture_output=True, text=True, timeout=600)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "no outer@all study" in refused.stderr and "add --no-final-model" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert not untouched.exists() or not any(untouched.rglob("*"))

    ran = subprocess.run(run_args + ["--cache-dir", stores["cache"], "--no-final-model"], capture_output=True,
                         text=True, timeout=600)
    assert ran.returncode == 0, ran.stderr
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=stores["tracking"])
    parent = client.search_runs([client.get_experiment_by_name("ser-bench").experiment_id],
                                "tags.tuned_by_study = 'outer'")[0]
    assert parent.info.status == "FINISHED" and not any(k.startswith("tuned.final.") for k in parent.data.params)

    again = subprocess.run(tune_args, capture_output=True, text=True, timeout=600)  # per-fold studies are full
    assert again.returncode == 0, again.stderr
    summaries = {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(stores["storage"])}
    assert summaries == {"outer@speaker-03": 2, "outer@speaker-08": 2, "outer@speaker-09": 2, "outer@all": 2}
    assert load_tuned("outer", stores["storage"]).final is not None


def test_the_final_models_parameters_come_from_all_or_from_a_single_pool(tmp_path):
    """A one-pool tune (cross-corpus) serves the final model from its one study; a LOSO tune stopped
    after its first fold's study, with no @all, must not pass that fold's parameters off as final."""
    storage = f"sqlite:///{tmp_path / 'o.db'}"

    def study(name, outer_folds, C):
        made = optuna.create_study(study_name=name, storage=storage, direction="maximize")
        made.set_user_attr("outer_folds", outer_folds)
        made.add_trial(optuna.trial.create_trial(params={"C": C}, value=0.5,
                                                 distributions={"C": optuna.distributions.FloatDistribution(0.01, 100)}))

    study("cc@emodb->urdu", 1, 3.0)
    assert load_tuned("cc", storage).final == {"C": 3.0}
    study("loso@speaker-03", 10, 5.0)
    assert load_tuned("loso", storage).final is None and load_tuned("loso", storage).by_fold == {"speaker-03": {"C": 5.0}}
    study("loso@all", 10, 7.0)
    assert load_tuned("loso", storage).final == {"C": 7.0}
