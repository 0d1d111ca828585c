"""Every model through every protocol on slices of the synthetic corpora in the EMO-DB, URDU and
ShEMO layouts, then the MLflow store itself is queried for runs, metrics, artifacts and models."""

import numpy as np
import pytest

from benchmark.errors import BenchError
from benchmark.config import resolve
from benchmark.runner import Runtime, run


def RunConfig(**settings):
    return resolve(settings)

SMALL = {
    "local_attn_blstm": {"epochs": 1, "batch_size": 8, "model_params": {"dense_units": 16, "lstm_units": 8}},
    "attn_blstm": {"epochs": 1, "batch_size": 8, "model_params": {"units": 8}},
    "svm": {},
    "xgboost": {"model_params": {"n_estimators": 20}},
}
PROTOCOLS = {
    "speaker": {"protocol": "within_corpus", "max_speakers": 3, "max_per_speaker_class": 1},
    "random": {"protocol": "within_corpus", "split": "random", "max_speakers": 3, "max_per_speaker_class": 2},
    "emodb->urdu": {"protocol": "cross_corpus", "train_corpus": "emodb", "test_corpus": "urdu", "max_speakers": 4,
                    "max_per_speaker_class": 2},
    "emodb->shemo": {"protocol": "cross_corpus", "train_corpus": "emodb", "test_corpus": "shemo", "classes": "5",
                     "max_speakers": 4, "max_per_speaker_class": 2},
}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow")
    return f"sqlite:///{root / 'mlflow.db'}"


@pytest.fixture(scope="module")
def corpora_dir(data_dir):
    return data_dir


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("features"))


def runtime(store, corpora_dir, cache_dir, **kw):
    return Runtime(data_dir=str(corpora_dir), cache_dir=cache_dir, tracking_uri=store, jobs=1, progress=False, **kw)


@pytest.mark.parametrize("protocol", sorted(PROTOCOLS))
@pytest.mark.parametrize("model", sorted(SMALL))
def test_model_through_protocol_is_tracked(model, protocol, store, corpora_dir, cache_dir):
    import mlflow
    from mlflow import MlflowClient

    config = RunConfig(model=model, **SMALL[model], **PROTOCOLS[protocol])
    result = run(config, runtime(store, corpora_dir, cache_dir))

    client = MlflowClient(tracking_uri=store)
    parent = client.get_run(result.run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.params["model.name"] == model and parent.data.params["protocol.name"] == config.protocol.name
    assert parent.data.tags["report_column"].startswith(config.protocol.name)
    # a run logs the parameters of its own protocol only
    logged_protocol = {k.split(".", 1)[1] for k in parent.data.params if k.startswith("protocol.") and k != "protocol.name"}
    assert logged_protocol == set(config.protocol.params)
    assert parent.data.tags["feature_cache_key"] and parent.data.tags["git_commit"]
    for name in ("wa", "uar", "macro_f1", "uar_ci_low", "uar_ci_high"):
        assert 0.0 <= parent.data.metrics[name] <= 1.0
    assert parent.data.metrics["uar_ci_low"] <= parent.data.metrics["uar"] <= parent.data.metrics["uar_ci_high"]
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{result.run_id}'")
    assert len(children) == len(result.folds) >= 1
    assert {c.data.tags["fold"] for c in children} == {f["fold"] for f in result.folds}
    if model in ("local_attn_blstm", "attn_blstm"):
        history = client.get_metric_history(children[0].info.run_id, "epoch_loss")
        assert len(history) == 1  # one epoch
    artifacts = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"confusion_counts.png", "confusion_normalised.png", "confusion_counts.csv", "predictions.csv",
            "classification_report.txt", "label_map.json"} <= artifacts

    import benchmark.models  # noqa: F401  (registers the custom Keras layers)

    loaded = mlflow.pyfunc.load_model(result.model_uri)
    metadata = loaded.metadata.metadata
    assert metadata["label_map"] == list(result.classes) and metadata["model"] == model
    n_features = loaded.metadata.get_input_schema().inputs[0].shape[-1]
    shape = (2, 40, n_features) if metadata["input_kind"] == "sequence" else (2, n_features)
    output = np.asarray(loaded.predict(np.random.default_rng(0).standard_normal(shape).astype(np.float32)))
    assert output.shape[0] == 2


def test_cross_corpus_without_shemo_audio_is_a_clear_error(tmp_path, emodb_dir, store):
    (tmp_path / "emodb").symlink_to(emodb_dir)
    with pytest.raises(BenchError, match="bench data download shemo"):
        run(RunConfig(model="svm", protocol="cross_corpus"), Runtime(data_dir=str(tmp_path), tracking_uri=store))


def test_failed_run_is_marked_failed_and_keeps_finished_folds(store, corpora_dir, cache_dir, monkeypatch):
    from mlflow import MlflowClient

    import benchmark.runner as runner

    real, calls = runner.fit_and_predict, []

    def fail_on_third_fold(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("disk full while training")
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "fit_and_predict", fail_on_third_fold)
    with pytest.raises(RuntimeError, match="disk full"):
        run(RunConfig(model="svm", features="handcrafted36", max_speakers=4, max_per_speaker_class=2),
            runtime(store, corpora_dir, cache_dir, run_name="doomed"))
    client = MlflowClient(tracking_uri=store)
    (parent,) = client.search_runs(client.get_experiment_by_name("ser-bench").experiment_id,
                                   filter_string="attributes.run_name = 'doomed'")
    assert parent.info.status == "FAILED" and "disk full" in parent.data.tags["error"]
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    finished = [c for c in children if c.info.status == "FINISHED"]
    assert len(finished) == 2 and all("uar" in c.data.metrics for c in finished)


def test_register_puts_the_model_in_the_registry(store, corpora_dir, cache_dir):
    from mlflow import MlflowClient

    run(RunConfig(model="svm", features="handcrafted36", max_speakers=3, max_per_speaker_class=1),
        runtime(store, corpora_dir, cache_dir, register="ser-svm"))
    versions = MlflowClient(tracking_uri=store).search_model_versions("name = 'ser-svm'")
    assert len(versions) == 1


def test_bad_values_fail_before_any_run(tmp_path, corpora_dir):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'untouched.db'}"
    for settings, message in (({"model": "svm", "norm": "zscore"}, "--norm"),
                              ({"model": "svm", "epochs": 3}, "models trained in epochs"),
                              ({"model": "svm", "protocol": "loso"}, "unknown protocol"),
                              ({"model": "svm", "split": "kfold"}, "split='kfold' is invalid"),
                              ({"model": "svm", "model_params": {"C": -1}}, "C=-1 is invalid"),
                              ({"model": "svm", "seed": -1}, "seed=-1 is invalid"),  # was a traceback from sklearn
                              ({"model": "xgboost", "model_params": {"seed": -1}}, "seed=-1 is invalid"),
                              ({"model": "attn_blstm", "model_params": {"seed": 2**32}}, "seed=4294967296 is invalid"),
                              ({"model": "svm", "features": "handcrafted36", "feature_params": {"step_s": -1}}, "step_s=-1 is invalid"),
                              ({"model": "svm", "protocol": "cross_corpus", "folds": 3}, "does not apply"),
                              ({"model": "attn_blstm", "features": "compare"}, "no frame-level features")):
        with pytest.raises(BenchError, match=message):
            run(RunConfig(**settings), Runtime(data_dir=str(corpora_dir), tracking_uri=uri))
    # a check that needs the data (one speaker only) also fails before any run exists
    with pytest.raises(BenchError, match="one speaker only"):
        run(RunConfig(model="svm", features="handcrafted36", max_speakers=1),
            Runtime(data_dir=str(corpora_dir), tracking_uri=uri, progress=False))
    if (tmp_path / "untouched.db").exists():
        client = MlflowClient(tracking_uri=uri)
        assert not client.search_runs([e.experiment_id for e in client.search_experiments()])


def test_skipped_files_remap_the_folds(tmp_path, emodb_dir, store):
    """An unreadable file leaves the folds pointing at the right utterances (not shifted by one)."""
    import shutil

    root = tmp_path / "data"
    shutil.copytree(emodb_dir, root / "emodb")
    broken = sorted((root / "emodb" / "wav").glob("08*.wav"))[0]
    broken.write_bytes(b"RIFF not audio")
    config = RunConfig(model="svm", features="handcrafted36")
    from benchmark.runner import build_inputs, prepare

    rt = Runtime(data_dir=str(root), cache_dir=str(tmp_path / "c"), jobs=1, progress=False)
    inputs = build_inputs(prepare(config, rt), rt)
    assert len(inputs.skipped) == 1 and len(inputs.utterances) == len(list((root / "emodb" / "wav").glob("*.wav"))) - 1
    for fold in inputs.folds:
        speaker = fold.name.split("-", 1)[1]
        assert {inputs.utterances[i].speaker for i in fold.test} == {speaker}
        assert speaker not in {inputs.utterances[i].speaker for i in fold.train}
    assert sum(len(f.test) for f in inputs.folds) == len(inputs.utterances)


def test_speaker_normalisation_warns_when_speakers_lack_emotions(real_data_dir, real_urdu_dir, real_emodb_dir, caplog):
    data_dir = real_data_dir
    from benchmark.runner import prepare

    with caplog.at_level("WARNING"):
        prepare(RunConfig(model="svm", corpus="urdu", norm="speaker"), Runtime(data_dir=str(data_dir)))
    assert "26 of 29 speakers" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        prepare(RunConfig(model="svm", corpus="emodb", norm="speaker"), Runtime(data_dir=str(data_dir)))
    assert "--norm speaker" not in caplog.text


def test_folds_in_parallel_give_the_same_metrics_in_fold_order(store, corpora_dir, cache_dir):
    config = RunConfig(model="svm", features="handcrafted36", final_model=False)
    one = run(config, runtime(store, corpora_dir, cache_dir))
    two = run(config, Runtime(data_dir=str(corpora_dir), cache_dir=cache_dir, tracking_uri=store, jobs=2,
                              progress=False))
    assert [f["fold"] for f in one.folds] == [f["fold"] for f in two.folds] == sorted(f["fold"] for f in one.folds)
    assert one.folds == two.folds and one.pooled == two.pooled


@pytest.mark.parametrize("worker_start_s, parallel", [(1e9, False), (0.0, True)])
def test_automatic_jobs_send_folds_to_workers_only_when_a_fold_costs_more_than_a_worker_start(
        store, corpora_dir, cache_dir, monkeypatch, worker_start_s, parallel):
    """jobs=None times the first fold in-process; the rest go to loky workers only if it took longer
    than a worker's start-up. Either way the metrics equal a one-process run."""
    import joblib

    from benchmark import runner

    monkeypatch.setattr(runner, "WORKER_START_S", worker_start_s)
    monkeypatch.setattr(runner, "available_cores", lambda: 2)
    monkeypatch.setenv("SER_BENCH_FORK", "0")  # the folds' workers as this process decides them (recorded here)
    used = []
    real_parallel = joblib.Parallel

    def recording_parallel(*args, **kwargs):
        used.append(kwargs.get("n_jobs"))
        return real_parallel(*args, **kwargs)

    monkeypatch.setattr(joblib, "Parallel", recording_parallel)
    config = RunConfig(model="svm", features="handcrafted36", final_model=False)
    automatic = run(config, Runtime(data_dir=str(corpora_dir), cache_dir=cache_dir, tracking_uri=store, jobs=None,
                                    progress=False))
    assert bool(used) == parallel and all(n == 2 for n in used)
    one = run(config, runtime(store, corpora_dir, cache_dir))
    assert automatic.folds == one.folds and automatic.pooled == one.pooled


def test_automatic_jobs_send_every_fold_of_a_tensorflow_model_to_the_workers(
        store, corpora_dir, cache_dir, monkeypatch):
    """A network's fold costs minutes: none is timed in-process (one core idle), all go to workers."""
    import joblib

    from benchmark import runner

    monkeypatch.setattr(runner, "available_cores", lambda: 2)
    monkeypatch.setenv("SER_BENCH_FORK", "0")
    in_process, sent = [], []
    real_fold, real_parallel = runner.evaluate_fold, joblib.Parallel
    monkeypatch.setattr(runner, "evaluate_fold", lambda *a, **k: in_process.append(1) or real_fold(*a, **k))

    def recording_parallel(*args, **kwargs):
        sent.append(kwargs.get("n_jobs"))
        return real_parallel(*args, **kwargs)

    monkeypatch.setattr(joblib, "Parallel", recording_parallel)
    config = RunConfig(model="attn_blstm", features="handcrafted36", final_model=False, max_speakers=2,
                       max_per_speaker_class=1, **SMALL["attn_blstm"])
    result = run(config, Runtime(data_dir=str(corpora_dir), cache_dir=cache_dir, tracking_uri=store, jobs=None,
                                 progress=False))
    assert sent == [2] and not in_process and len(result.folds) == 2
