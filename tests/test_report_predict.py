"""bench report / predict / ui and the MLproject, on real runs in a real (temporary) MLflow store."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from benchmark.cli import app
from benchmark.config import resolve
from benchmark.runner import Runtime, run


def RunConfig(**settings):
    return resolve(settings)

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.fixture(scope="module")
def store(tmp_path_factory, data_dir):
    root = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    rt = Runtime(data_dir=str(data_dir), cache_dir=str(root / "cache"), tracking_uri=uri, progress=False,
                 experiment="report-test")
    slice_ = {"max_speakers": 3, "max_per_speaker_class": 2, "features": "handcrafted36"}
    results = {
        "svm": run(RunConfig(model="svm", **slice_), rt),
        "svm_c1": run(RunConfig(model="svm", model_params={"C": 1.0}, **slice_), rt),  # another recipe
        "xgboost": run(RunConfig(model="xgboost", model_params={"n_estimators": 30}, **slice_), rt),
        # the same set with another option is another input: a row of its own
        "svm_step": run(RunConfig(model="svm", feature_params={"step_s": 0.05}, **slice_), rt),
        "cross": run(RunConfig(model="svm", protocol="cross_corpus", test_corpus="urdu", **slice_), rt),
        "keras": run(RunConfig(model="attn_blstm", epochs=1, model_params={"units": 8}, split="random",
                               max_speakers=3, max_per_speaker_class=2), rt),
    }
    return uri, results


def report_files(uri, out, *extra):
    result = runner.invoke(app, ["report", "--name", "t", "--out-dir", str(out), "--tracking-uri", uri, *extra],
                           env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    return {p.suffix: p.read_bytes() for p in sorted(out.iterdir())}


def test_report_is_deterministic_and_marks_the_best(store, tmp_path):
    uri, results = store
    first, second = report_files(uri, tmp_path / "a"), report_files(uri, tmp_path / "b")
    assert first == second and set(first) == {".md", ".html", ".csv"}
    markdown = first[".md"].decode()
    assert "svm + handcrafted36" in markdown and "xgboost + handcrafted36" in markdown
    assert "within_corpus emodb 7 classes" in markdown and "cross_corpus emodb->urdu" in markdown
    assert "reference: ERTK eGeMAPS+SVM" in markdown  # seed.md numbers beside the matching column
    assert markdown.count("**UAR") >= 3  # a best cell per column
    best = max((results[name] for name in ("svm", "svm_c1", "xgboost", "svm_step")), key=lambda r: r.pooled["uar"])
    assert f"**UAR {best.pooled['uar']:.3f}" in markdown
    # a recipe other than the defaults is a row of its own, named by what it changes
    assert "| svm + handcrafted36 (norm: global) |" in markdown
    assert "| svm + handcrafted36 (norm: global, C=1.0) |" in markdown
    assert "| xgboost + handcrafted36 (norm: global, n_estimators=30) |" in markdown
    assert "| svm + handcrafted36[step_s=0.05] (norm: global) |" in markdown
    assert b"data:image/png;base64," in first[".html"]
    import pandas as pd

    table = pd.read_csv(tmp_path / "a" / "t.csv")
    assert set(table["run_id"]) == {r.run_id for r in results.values()}


def test_report_filters_and_errors(store, tmp_path):
    uri, _ = store
    only_cross = report_files(uri, tmp_path / "c", "--protocol", "cross_corpus")[".md"].decode()
    assert "cross_corpus" in only_cross and "within_corpus emodb 7" not in only_cross.split("## Reference")[0]
    result = runner.invoke(app, ["report", "--tracking-uri", uri, "--experiment", "nope", "--out-dir", str(tmp_path)])
    assert result.exit_code == 2 and "no experiment nope" in result.output


def test_predict_a_file_a_folder_and_bad_files(store, tmp_path, emodb_files):
    uri, results = store
    model = results["svm"].model_uri
    single = runner.invoke(app, ["predict", str(emodb_files[0]), "--model", model, "--tracking-uri", uri,
                                 "--format", "json"])
    assert single.exit_code == 0, single.output
    payload = json.loads(single.output)
    (row,) = payload["predictions"]
    assert row["top1"] in results["svm"].classes and 0 < row["p2"] <= row["p1"] <= 1

    folder = tmp_path / "mixed"
    folder.mkdir()
    for path in emodb_files[:3]:
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "broken.wav").write_bytes(b"")
    table = runner.invoke(app, ["predict", str(folder), "--model", model, "--tracking-uri", uri, "--format", "csv",
                                "--top", "3"], env={"COLUMNS": "250"})
    assert table.exit_code == 0, table.output
    lines = [line for line in table.output.splitlines() if line.startswith(("path,", str(folder)))]
    assert lines[0] == "path,top1,p1,top2,p2,top3,p3" and len(lines) == 4
    assert "broken.wav" in table.output and "empty" in table.output


def test_predict_keras_model_on_any_length(store, tmp_path, emodb_files):
    uri, results = store
    signal, sr = sf.read(emodb_files[0], dtype="float32")
    sf.write(tmp_path / "long.wav", np.tile(signal, 8), sr)  # ~20 s
    sf.write(tmp_path / "short.wav", signal[:3200], sr)  # 0.2 s
    result = runner.invoke(app, ["predict", str(tmp_path), "--model", results["keras"].model_uri,
                                 "--tracking-uri", uri, "--format", "json"])
    assert result.exit_code == 0, result.output
    predictions = json.loads(result.output)["predictions"]
    assert {Path(p["path"]).name for p in predictions} == {"long.wav", "short.wav"}


def test_predict_again_reads_the_local_copy_without_importing_mlflow(store, tmp_path, emodb_files, monkeypatch):
    """The URI `bench run` prints names one model for ever: the second `bench predict` of it loads the
    local copy (no MLflow import, same probabilities); an svm's copy also gets a numpy-only form, so
    that call imports neither MLflow nor scikit-learn, and a network's (an xgboost model's) copy one
    that spares TensorFlow (XGBoost).
    A damaged copy is removed and made again."""
    from benchmark.predict import Predictor

    uri, results = store
    cache = tmp_path / "cache"
    env = {**os.environ, "SER_BENCH_CACHE": str(cache), "PYTHONPROFILEIMPORTTIME": "1"}
    bench = str(Path(sys.executable).parent / "bench")  # the README's command, as installed

    def predict_in_a_new_process(model, wav):
        done = subprocess.run([bench, "predict", str(wav), "--model", model, "--tracking-uri", uri, "--format", "json"],
                              capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
        return json.loads(done.stdout)["predictions"][0], imported

    def same_prediction(a, b):
        """Probabilities printed to 4 decimals: equal up to one rounding step (a near-tie may swap)."""
        tie = abs(a["p1"] - a["p2"]) <= 2e-4
        return (a["top1"] == b["top1"] or tie) and abs(a["p1"] - b["p1"]) <= 1.5e-4

    svm = results["svm"].model_uri
    assert svm.startswith("models:/m-")
    first, first_imported = predict_in_a_new_process(svm, emodb_files[0])
    again, again_imported = predict_in_a_new_process(svm, emodb_files[0])
    assert "mlflow" in first_imported and "sklearn" in first_imported
    assert "mlflow" not in again_imported and "sklearn" not in again_imported
    assert again == first
    entry = next((cache / "models").glob("*/portable.npz")).parent
    (entry / "portable.npz").write_bytes(b"not an npz")  # a damaged numpy form: the copy loads instead
    fallback, fallback_imported = predict_in_a_new_process(svm, emodb_files[0])
    assert fallback == first and "sklearn" in fallback_imported and "mlflow" not in fallback_imported
    assert (entry / "portable.npz").is_file()  # and it was made again from the loaded model
    keras_uri = results["keras"].model_uri  # a network: its numpy-only form spares TensorFlow too
    first, first_imported = predict_in_a_new_process(keras_uri, emodb_files[2])
    again, again_imported = predict_in_a_new_process(keras_uri, emodb_files[3])
    assert "tensorflow" in first_imported and {"tensorflow", "keras", "mlflow", "sklearn"}.isdisjoint(again_imported)
    assert again == predict_in_a_new_process(keras_uri, emodb_files[3])[0]
    (next(p for p in (cache / "models").glob("*/portable.npz") if p.parent != entry)).unlink()
    via_keras, via_keras_imported = predict_in_a_new_process(keras_uri, emodb_files[3])
    assert "tensorflow" in via_keras_imported and same_prediction(via_keras, again)  # Keras and numpy agree
    xgb = results["xgboost"].model_uri  # trees: the numpy form spares XGBoost (which imports scikit-learn)
    by_xgboost, by_xgboost_imported = predict_in_a_new_process(xgb, emodb_files[4])
    by_numpy, by_numpy_imported = predict_in_a_new_process(xgb, emodb_files[4])
    assert "xgboost" in by_xgboost_imported and {"xgboost", "sklearn", "mlflow"}.isdisjoint(by_numpy_imported)
    assert same_prediction(by_numpy, by_xgboost)

    monkeypatch.setenv("SER_BENCH_CACHE", str(cache))

    def probabilities(model):
        predictor = Predictor(model, uri)
        return predictor.predict([emodb_files[1]])[0], not predictor.asked_store

    for name in ("svm", "xgboost"):
        expected, _ = probabilities(results[name].model_uri)  # the xgboost model's copy is made here
        copied, from_copy = probabilities(results[name].model_uri)
        assert from_copy and np.array_equal(copied, expected), name
    entries = sorted((cache / "models").glob("*/manifest.json"))
    assert len(entries) == 3  # svm, xgboost and the network above
    svm_expected, _ = probabilities(svm)
    for manifest in entries:
        manifest.write_text("{not json")
    damaged, from_copy = probabilities(svm)
    # the copy's numpy-only form and the reloaded scikit-learn model agree to the parity they are checked at
    from benchmark.portable import PARITY_ATOL

    assert not from_copy and np.allclose(damaged, svm_expected, rtol=0, atol=PARITY_ATOL)
    repaired, from_copy = probabilities(svm)  # copied again by the call before
    assert from_copy and np.array_equal(repaired, svm_expected)
    for model_file in (cache / "models").glob("*/model/model.skops"):
        model_file.write_bytes(b"not a model")  # a readable manifest, a broken model: back to the store
        (model_file.parent.parent / "portable.npz").unlink()  # (the numpy form alone would still do)
    broken, from_copy = probabilities(svm)
    np.testing.assert_allclose(broken, svm_expected, rtol=0, atol=PARITY_ATOL)
    assert not from_copy


def test_predict_defaults_to_the_latest_model_and_rejects_bad_values(store, emodb_files):
    uri, results = store
    result = runner.invoke(app, ["predict", str(emodb_files[0]), "--tracking-uri", uri, "--format", "json"])
    assert result.exit_code == 0 and json.loads(result.output)["model"] == results["keras"].model_uri
    bad = runner.invoke(app, ["predict", str(emodb_files[0]), "--tracking-uri", uri, "--format", "xml"])
    assert bad.exit_code == 2 and "--format xml" in bad.output
    missing = runner.invoke(app, ["predict", "/no/such.wav", "--tracking-uri", uri])
    assert missing.exit_code == 2 and "no such file" in missing.output


def test_mlproject_main_entry_point_as_the_readme_types_it(tmp_path, data_dir):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}, "MLFLOW_TRACKING_URI": uri, "SER_BENCH_DATA": str(data_dir),
           "SER_BENCH_CACHE": str(tmp_path / "cache"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    # the README's command, word for word (features=auto: the model's own), on the synthetic corpus
    command = [sys.executable, "-m", "mlflow", "run", ".", "-e", "main", "-P", "model=svm",
               "-P", "protocol=within_corpus", "--env-manager", "local"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    import mlflow

    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED" and "uar" in parents[0].data.metrics
    assert parents[0].data.params["features.name"] == "egemaps"  # the model's own set, beside MLflow's "auto"
    speakers = len(list((data_dir / "emodb" / "wav").glob("*.wav"))) and len({p.name[:2] for p in (data_dir / "emodb" / "wav").glob("*.wav")})
    assert len(runs) == 1 + speakers  # the project's run and one run per speaker fold


def test_bench_ui_serves_the_store_on_localhost(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    process = subprocess.Popen([sys.executable, "-m", "benchmark.cli", "ui", "--port", str(port), "--tracking-uri", uri],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline, status = time.time() + 120, None
        while time.time() < deadline and status is None:
            try:
                status = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).status
            except OSError:
                time.sleep(1)
        assert status == 200
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=30)


@pytest.mark.parametrize("uri, copied", [
    ("models:/m-20cd0899e524483dae16ebdeb092be88", True),
    ("runs:/ca4c4b9504d8458facf13a61ce79e79d/model", False),  # looked up among the run's logged models
    ("models:/emotion-svm/3", False),  # a version number comes back if the name is deleted and re-created
    ("models:/emotion-svm@champion", False),  # an alias moves
    ("models:/emotion-svm/latest", False),
    ("/some/folder/model", False),
])
def test_only_uris_that_name_one_model_for_ever_are_copied(uri, copied):
    from benchmark import model_cache

    assert model_cache.is_immutable(uri) is copied


def test_model_copy_is_atomic_and_cleans_up_after_killed_copies(tmp_path):
    """Only a complete copy (MLmodel present) is ever served; a half copy of a killed process is
    removed once it is an hour old, a fresh one (maybe another process's) is left alone."""
    from benchmark import model_cache

    uri, store = "models:/m-" + "a" * 32, "sqlite:///nowhere.db"
    model = model_cache.CachedModel(uri, {"sklearn": {}}, {"label_map": ["a", "b"]}, {"mean": [0.0]}, None)
    root = tmp_path / "models"
    root.mkdir()
    stale, fresh = root / ".partial-stale", root / ".partial-fresh"
    stale.mkdir()
    fresh.mkdir()
    os.utime(stale, (time.time() - 2 * model_cache.STALE_PARTIAL_S,) * 2)

    def incomplete(folder):
        folder.mkdir()
        return folder  # no MLmodel: a failed download

    assert model_cache.save(model, store, incomplete, cache_dir=tmp_path) is model
    assert model_cache.lookup(uri, store, cache_dir=tmp_path) is None

    def complete(folder):
        folder.mkdir()
        (folder / "MLmodel").write_text("flavors: {}\n")
        return folder

    copied = model_cache.save(model, store, complete, cache_dir=tmp_path)
    assert copied.model_dir is not None and (copied.model_dir / "MLmodel").is_file()
    assert copied.metadata == model.metadata and copied.normaliser == model.normaliser
    assert not stale.exists() and fresh.exists()
    assert [p.name for p in root.iterdir() if p.name.startswith(".partial-")] == [".partial-fresh"]


def store_copy(store, tmp_path):
    """The module's store as a copy, so that the fused runs logged here stay out of the report tests."""
    import shutil

    uri, results = store
    copy = tmp_path / "mlflow.db"
    shutil.copy(uri[len("sqlite:///"):], copy)
    return f"sqlite:///{copy}", results


def mlflow_artifact(uri, run_id, name):
    import mlflow

    return mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=name, tracking_uri=uri)


def logged_predictions(uri, run_id):
    import pandas as pd

    return pd.read_csv(mlflow_artifact(uri, run_id, "predictions.csv"), dtype={"id": str}).set_index("id").sort_index()


def test_bench_fuse_averages_the_members_probabilities_and_is_a_report_row(store, tmp_path):
    from mlflow import MlflowClient
    from sklearn.metrics import balanced_accuracy_score

    uri, results = store_copy(store, tmp_path)
    members = [results["svm"].run_id, results["xgboost"].run_id, results["svm_step"].run_id]
    # the README's command as typed; the store named by MLFLOW_TRACKING_URI, as a user would
    result = runner.invoke(app, ["fuse", *members], env={"COLUMNS": "200", "MLFLOW_TRACKING_URI": uri})
    assert result.exit_code == 0, result.output
    fused_id = result.output.split("MLflow run ")[1].split()[0].rstrip(";")
    classes = results["svm"].classes
    columns = [f"p_{c}" for c in classes]
    expected = np.mean([logged_predictions(uri, run_id)[columns].to_numpy() for run_id in members], axis=0)
    fused = logged_predictions(uri, fused_id)
    truth = logged_predictions(uri, members[0])
    assert np.allclose(fused[columns].to_numpy(), expected)
    assert (fused["predicted"].to_numpy() == np.asarray(classes)[expected.argmax(axis=1)]).all()
    run = MlflowClient(uri).get_run(fused_id)
    assert run.info.status == "FINISHED" and run.data.tags["fused_runs"] == ",".join(members)
    assert run.data.metrics["uar"] == pytest.approx(balanced_accuracy_score(truth["true"], fused["predicted"]))
    assert run.data.metrics["uar_ci_low"] <= run.data.metrics["uar"] <= run.data.metrics["uar_ci_high"]
    # the gain over each member, with a paired interval, as printed and as logged
    import pandas as pd

    gains = pd.read_csv(mlflow_artifact(uri, fused_id, "fusion_gains.csv"))
    for run_id, row in zip(members, gains.itertuples()):
        member_uar = balanced_accuracy_score(truth["true"], logged_predictions(uri, run_id)["predicted"])
        assert row.run_id == run_id and row.uar == pytest.approx(member_uar)
        assert row.gain == pytest.approx(run.data.metrics["uar"] - member_uar)
        assert row.gain_ci_low <= row.gain <= row.gain_ci_high
    assert "xgboost[n_estimators=30]/handcrafted36" in result.output  # not swallowed as rich markup
    assert f"{gains.gain.iloc[1]:+.3f} [{gains.gain_ci_low.iloc[1]:+.3f}, {gains.gain_ci_high.iloc[1]:+.3f}]" in result.output
    markdown = report_files(uri, tmp_path / "report")[".md"].decode()
    assert "| fusion + svm/handcrafted36 + xgboost[n_estimators=30]/handcrafted36 + svm/handcrafted36[step_s=0.05]" \
           " (norm: global, mean of 3 runs' probabilities) |" in markdown


def test_bench_fuse_refuses_runs_that_scored_other_utterances_in_one_line(store, tmp_path):
    from mlflow import MlflowClient

    uri, results = store_copy(store, tmp_path)
    svm = results["svm"].run_id
    client = MlflowClient(uri)
    fold = client.search_runs([client.get_run(svm).info.experiment_id], f"tags.mlflow.parentRunId = '{svm}'")[0]
    cases = {
        (svm, fold.info.run_id): "not a `bench run`",
        (svm, results["cross"].run_id): "other protocols or corpora",
        (svm,): "at least two runs",
        (svm, svm): "named twice",
        (svm, "0123456789abcdef0123456789abcdef"): "not in",
    }
    for run_ids, message in cases.items():
        result = runner.invoke(app, ["fuse", *run_ids, "--tracking-uri", uri])
        assert result.exit_code == 2 and message in result.output, result.output
        assert "Traceback" not in result.output


@pytest.mark.parametrize("change, message", [
    (lambda frame: frame.iloc[1:], "other test utterances"),
    (lambda frame: frame.assign(corpus="urdu"), "other test utterances"),  # the same ids in another corpus
    (lambda frame: frame.assign(true=frame["true"].iloc[::-1].to_numpy()), "other labels"),
    (lambda frame: frame.assign(fold="speaker-99"), "other folds"),
])
def test_fusion_members_must_share_utterances_labels_and_folds(change, message):
    from benchmark.errors import BenchError
    from benchmark.fusion import Member, check_aligned

    frame = pd_frame()
    tags = {"report_column": "within_corpus emodb 7 classes", "classes": "anger,neutral"}
    assert check_aligned([Member("a", "0", tags, {}, frame), Member("b", "0", tags, {}, frame.copy())]) == ["anger", "neutral"]
    with pytest.raises(BenchError, match=message):
        check_aligned([Member("a", "0", tags, {}, frame), Member("b", "0", tags, {}, change(frame.copy()))])


def pd_frame():
    import pandas as pd

    return pd.DataFrame({"id": ["u1", "u2", "u3"], "corpus": "emodb", "fold": ["speaker-03", "speaker-03", "speaker-08"],
                         "true": ["anger", "neutral", "neutral"], "predicted": ["anger", "anger", "neutral"],
                         "p_anger": [0.9, 0.6, 0.2], "p_neutral": [0.1, 0.4, 0.8]})


def ensemble_member(run_id, frame, **params):
    from benchmark.fusion import Member

    tags = {"report_column": "within_corpus emodb 7 classes", "classes": "anger,neutral"}
    return Member(run_id, "0", tags, {"model.name": "attn_blstm", "model.units": "64", **params}, frame)


def test_fusion_by_members_is_the_larger_ensemble_and_counts_each_member_once():
    from benchmark.errors import BenchError
    from benchmark.fusion import Member, fuse, member_counts

    first, second = pd_frame().assign(speaker="03"), pd_frame().assign(speaker="03")
    second[["p_anger", "p_neutral"]] = [[0.1, 0.9], [0.38, 0.62], [0.5, 0.5]]
    x3 = ensemble_member("a", first, **{"model.ensemble": "3", "model.seed": "0"})
    x2 = ensemble_member("b", second, **{"model.ensemble": "2", "model.seed": "3"})  # members 3 and 4
    weights = member_counts([x3, x2])
    assert weights == [3, 2]
    fused = fuse([x3, x2], ["anger", "neutral"], weights)
    expected = (3 * first[["p_anger", "p_neutral"]].to_numpy() + 2 * second[["p_anger", "p_neutral"]].to_numpy()) / 5
    assert np.allclose(fused[["p_anger", "p_neutral"]].to_numpy(), expected)
    assert list(fused["predicted"]) == ["anger", "anger", "neutral"]  # u2: 0.512 anger by 3:2 (0.49, neutral, equally)
    # the same recipe with overlapping seeds would count members 2 (and 3) twice
    overlapping = ensemble_member("c", second, **{"model.ensemble": "2", "model.seed": "2"})
    with pytest.raises(BenchError, match="runs a and c: one recipe.*seed 2.*--param seed=3"):
        member_counts([x3, overlapping])
    # another recipe with the same seeds is another set of members
    other = ensemble_member("d", second, **{"model.ensemble": "2", "model.seed": "0", "model.units": "128"})
    assert member_counts([x3, other]) == [3, 2]
    # a model without ensembles counts once; an ensemble size that is not a number is refused
    assert member_counts([x3, ensemble_member("e", second, **{"model.name": "svm"})]) == [3, 1]
    fusions = [Member(name, "0", {}, {"fusion.rule": "mean probability"}, second) for name in "gh"]  # no recipe at all
    assert member_counts(fusions) == [1, 1]
    with pytest.raises(BenchError, match="run f: its ensemble size is 'tuned"):
        member_counts([x3, ensemble_member("f", second, **{"model.ensemble": "tuned (see tuned_params.json)"})])


def test_bench_fuse_by_members_as_typed_logs_its_weights(store, tmp_path):
    from mlflow import MlflowClient

    uri, results = store_copy(store, tmp_path)
    members = [results["svm"].run_id, results["xgboost"].run_id]
    result = runner.invoke(app, ["fuse", "--by-members", *members], env={"COLUMNS": "200", "MLFLOW_TRACKING_URI": uri})
    assert result.exit_code == 0, result.output
    fused_id = result.output.split("MLflow run ")[1].split()[0].rstrip(";")
    run = MlflowClient(uri).get_run(fused_id)
    assert run.data.params["fusion.weights"] == "1,1" and run.data.params["fusion.rule"] == "mean probability per member"
    assert run.data.tags["model_changes"] == "mean of 2 members' probabilities (1+1)"
    columns = [f"p_{c}" for c in results["svm"].classes]
    expected = np.mean([logged_predictions(uri, run_id)[columns].to_numpy() for run_id in members], axis=0)
    assert np.allclose(logged_predictions(uri, fused_id)[columns].to_numpy(), expected)
