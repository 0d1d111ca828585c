"""Cross-corpus that transfers (issue 11): multi-corpus cross_corpus, leave_one_corpus_out,
--norm corpus / corpus+speaker, --map, the feature-shift warning and the cross-corpus matrix.

On the synthetic corpora (tests/synthetic.py): EMO-DB layout (7 emotions), URDU layout (4) and
ShEMO layout (5 + one "surprise" label). Runs go through the real runner into a real sqlite
MLflow store; leak tests record what a model registered here is really given to fit.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from typer.testing import CliRunner

from benchmark.cli import app
from benchmark.config import resolve
from benchmark.corpora import get_corpus
from benchmark.errors import BenchError
from benchmark.feature_shift import check_folds, distances
from benchmark.models import MODELS
from benchmark.models.sklearn_models import SVMClassifier
from benchmark.normalise import Normaliser
from benchmark.protocols import PROTOCOLS, Fold
from benchmark.runner import Runtime, build_inputs, evaluate_folds, prepare, run

SLICE = {"max_speakers": 3, "max_per_speaker_class": 1, "features": "handcrafted36"}
cli = CliRunner()


def get_protocol(name, classes="all", **params):
    cls = PROTOCOLS[name]
    return cls(cls.Params(**params), classes=classes)


@pytest.fixture(scope="module")
def by_corpus(data_dir):
    return {"emodb": get_corpus("emodb", data_dir=data_dir).utterances(),
            "urdu": get_corpus("urdu", data_dir=data_dir).utterances(),
            "shemo": get_corpus("shemo", data_dir=data_dir).utterances()}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture(scope="module")
def features_cache(tmp_path_factory):
    """One feature cache for this module's runs: each synthetic file is extracted once."""
    return tmp_path_factory.mktemp("features")


def runtime(data_dir, store, features_cache, **kw):
    return Runtime(data_dir=str(data_dir), cache_dir=str(features_cache), tracking_uri=store, jobs=1,
                   progress=False, **kw)


# -- the protocols ---------------------------------------------------------------------------------
def test_cross_corpus_trains_on_several_corpora_and_tests_each_apart(by_corpus):
    protocol = get_protocol("cross_corpus", train_corpus="emodb,urdu", test_corpus=["shemo"])
    data = protocol.select(by_corpus)
    assert data.classes == ("anger", "happiness", "neutral", "sadness")  # what all three share
    assert any("emodb drops boredom, disgust, fear" in note for note in data.notes)
    assert any("shemo drops fear, surprise" in note for note in data.notes)
    (fold,) = protocol.folds(data)
    assert fold.name == "emodb+urdu->shemo"
    assert set(data.corpora[fold.train]) == {"emodb", "urdu"} and set(data.corpora[fold.test]) == {"shemo"}

    two_tests = get_protocol("cross_corpus", train_corpus="emodb", test_corpus="urdu,shemo")
    data = two_tests.select(by_corpus)
    folds = two_tests.folds(data)
    assert [f.name for f in folds] == ["emodb->urdu", "emodb->shemo"]
    for fold, test_corpus in zip(folds, ("urdu", "shemo")):
        assert set(data.corpora[fold.test]) == {test_corpus}
        assert set(data.corpora[fold.train]) == {"emodb"}  # the other test corpus never trains either
    assert two_tests.slug() == "emodb->urdu,shemo"


def test_cross_corpus_refuses_a_corpus_on_both_sides_and_names_missing_classes(by_corpus):
    with pytest.raises(BenchError, match="both a --train-corpus and a --test-corpus"):
        resolve({"model": "svm", "protocol": "cross_corpus", "train_corpus": "emodb,urdu", "test_corpus": "urdu"})
    with pytest.raises(BenchError, match="corpus urdu has no fear"):
        get_protocol("cross_corpus", classes="5", train_corpus="emodb", test_corpus="urdu,shemo").select(by_corpus)


def test_leave_one_corpus_out_holds_out_each_corpus_once(by_corpus):
    protocol = get_protocol("leave_one_corpus_out", corpora="emodb,urdu,shemo")
    data = protocol.select(by_corpus)
    folds = protocol.folds(data)
    assert [f.name for f in folds] == ["urdu+shemo->emodb", "emodb+shemo->urdu", "emodb+urdu->shemo"]
    for fold, held_out in zip(folds, ("emodb", "urdu", "shemo")):
        assert set(data.corpora[fold.test]) == {held_out}
        assert set(data.corpora[fold.train]) == {"emodb", "urdu", "shemo"} - {held_out}
        assert not set(fold.train) & set(fold.test)
    assert sorted(np.concatenate([f.test for f in folds])) == list(range(len(data.labels)))  # each once
    with pytest.raises(BenchError, match="give two or more"):
        resolve({"model": "svm", "protocol": "leave_one_corpus_out", "corpora": "emodb"})


# -- nothing leaks ---------------------------------------------------------------------------------
class RecordingSVM(SVMClassifier):
    """An SVM that records the speaker groups and labels every ``fit`` receives."""

    name = "recording_svm_test"
    fits: list = []

    def fit(self, X, y, groups=None, on_epoch=None):
        RecordingSVM.fits.append((np.asarray(groups).copy(), np.asarray(y).copy()))
        return super().fit(X, y, groups=groups, on_epoch=on_epoch)


@pytest.fixture
def recording_model():
    MODELS.register(RecordingSVM)
    RecordingSVM.fits = []
    yield RecordingSVM
    MODELS.pop(RecordingSVM.name)


def test_no_test_corpus_utterance_reaches_training(recording_model, data_dir, store, tmp_path, features_cache):
    config = resolve({"model": recording_model.name, "protocol": "leave_one_corpus_out", "corpora": "emodb,urdu,shemo",
                      "final_model": False, **SLICE})
    result = run(config, runtime(data_dir, store, features_cache))
    assert [f["fold"] for f in result.folds] == ["urdu+shemo->emodb", "emodb+shemo->urdu", "emodb+urdu->shemo"]
    assert len(recording_model.fits) == 3
    for (groups, labels), held_out in zip(recording_model.fits, ("emodb", "urdu", "shemo")):
        corpora = {g.split(":")[0] for g in groups}
        assert corpora == {"emodb", "urdu", "shemo"} - {held_out}
        assert set(labels) <= set(result.classes)


def test_tuning_sees_the_training_corpora_only(recording_model, data_dir, store, tmp_path, features_cache):
    from benchmark.tuning import TuneOptions, tune

    config = resolve({"model": recording_model.name, "protocol": "cross_corpus", "train_corpus": "emodb",
                      "test_corpus": "urdu", **SLICE})
    tune(config, runtime(data_dir, store, features_cache, experiment="tuning"),
         TuneOptions(trials=2, storage=f"sqlite:///{tmp_path / 'optuna.db'}", inner_folds=2))
    assert len(recording_model.fits) >= 2  # inner folds of the trials
    for groups, _ in recording_model.fits:
        assert {g.split(":")[0] for g in groups} == {"emodb"}


# -- normalisation ---------------------------------------------------------------------------------
def test_corpus_norm_standardises_each_corpus_with_its_own_statistics():
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(0, 1, (40, 3)), rng.normal(50, 7, (30, 3))])
    groups = np.array([f"a:s{i % 4}" for i in range(40)] + [f"b:t{i % 3}" for i in range(30)])
    out = Normaliser("corpus").fit(X[:40], groups[:40]).transform(X, groups)
    for corpus in ("a", "b"):
        rows = out[np.char.startswith(groups, corpus + ":")]
        assert np.allclose(rows.mean(axis=0), 0, atol=1e-5) and np.allclose(rows.std(axis=0), 1, atol=1e-4)
    both = Normaliser("corpus+speaker").fit(X[:40], groups[:40]).transform(X, groups)
    for speaker in np.unique(groups):  # every speaker centred ...
        assert np.allclose(both[groups == speaker].mean(axis=0), 0, atol=1e-4)
    rows = both[np.char.startswith(groups, "b:")]  # ... and scaled by its corpus's spread
    assert np.allclose(rows.std(axis=0), 1, atol=1e-4)
    # `bench predict` passes one group (0) for the files given together; one file uses the training statistics
    fitted = Normaliser("corpus").fit(X[:40], groups[:40])
    assert np.allclose(fitted.transform(X[40:], np.zeros(30, dtype=int)), out[40:], atol=1e-5)
    assert np.allclose(fitted.transform(X[40:41], np.zeros(1, dtype=int)), (X[40:41] - X[:40].mean(0)) / X[:40].std(0),
                       atol=1e-4)
    sequences = [x[None, :].repeat(3, axis=0) for x in X]  # sequence input works the same way
    assert np.allclose(np.vstack([s[0] for s in Normaliser("corpus").fit(sequences[:40], groups[:40])
                                  .transform(sequences, groups)]), out, atol=1e-5)


def test_corpus_norm_uses_no_test_labels(data_dir, tmp_path, features_cache):
    """Permute the test corpus's labels: normalised features and every prediction stay identical."""
    config = resolve({"model": "svm", "protocol": "cross_corpus", "train_corpus": "emodb", "test_corpus": "urdu",
                      "norm": "corpus", **SLICE})
    rt = Runtime(data_dir=str(data_dir), cache_dir=str(features_cache), jobs=1, progress=False)
    inputs = build_inputs(prepare(config, rt), rt)
    (fold,) = inputs.folds
    permuted = inputs.labels.copy()
    permuted[fold.test] = np.random.default_rng(1).permutation(permuted[fold.test])
    assert (permuted[fold.test] != inputs.labels[fold.test]).any()
    shuffled = SimpleNamespace(**{**vars(inputs), "labels": permuted})

    (original,) = evaluate_folds(config, inputs)
    (other,) = evaluate_folds(config, shuffled)
    assert [r["predicted"] for r in original.predictions] == [r["predicted"] for r in other.predictions]
    assert [r["true"] for r in original.predictions] != [r["true"] for r in other.predictions]
    test_X = inputs.X[fold.test]
    assert np.array_equal(original.normaliser.transform(test_X, inputs.groups[fold.test]),
                          other.normaliser.transform(test_X, inputs.groups[fold.test]))


# -- the feature-shift warning ----------------------------------------------------------------------
def _inputs(train, test):
    X = np.vstack([train, test])
    groups = np.array(["a:1", "a:2"] * (len(train) // 2) + ["b:1", "b:2"] * (len(test) // 2))
    fold = Fold("a->b", np.arange(len(train)), np.arange(len(train), len(X)))
    return SimpleNamespace(X=X, groups=groups, folds=[fold])


def test_feature_shift_warns_on_shifted_data_only():
    rng = np.random.default_rng(0)
    names = [f"f{j}" for j in range(20)]
    train = rng.normal(0, 1, (60, 20))
    matched = rng.normal(0, 1, (40, 20))
    assert check_folds("global", _inputs(train, matched), names) is None

    shifted = matched.copy()
    shifted[:, [3, 7, 11]] += 8.0  # three features 8 SDs away (a louder microphone, say)
    shift = check_folds("global", _inputs(train, shifted), names)
    assert shift is not None and {name for name, _ in shift.worst(3)} == {"f3", "f7", "f11"}
    message = shift.message()
    assert "3 of 20 features" in message and "f3" in message and "--norm corpus" in message
    # each corpus standardised with its own statistics: the same data no longer warns
    assert check_folds("corpus", _inputs(train, shifted), names) is None
    assert distances(train, shifted)[3] > 5 > distances(train, shifted)[0]


def test_run_logs_the_shift_warning_as_a_tag(data_dir, store, tmp_path, features_cache, monkeypatch):
    from mlflow import MlflowClient

    import benchmark.feature_shift as feature_shift

    monkeypatch.setattr(feature_shift, "MIN_FRACTION", 0.0)  # any feature beyond 0.5 SD counts, so that this
    monkeypatch.setattr(feature_shift, "SD", 0.5)            # small synthetic run warns for sure
    config = resolve({"model": "svm", "protocol": "cross_corpus", "train_corpus": "emodb", "test_corpus": "urdu",
                      "norm": "none", "final_model": False, **SLICE})
    result = run(config, runtime(data_dir, store, features_cache))
    tags = MlflowClient(tracking_uri=store).get_run(result.run_id).data.tags
    assert "try --norm corpus" in tags["feature_shift_warning"]
    assert "emotions used: anger, happiness, neutral, sadness" in tags["protocol_notes"]


# -- --map -------------------------------------------------------------------------------------------
def test_map_renames_emotions_before_classes_are_chosen(data_dir, tmp_path, features_cache):
    config = resolve({"model": "svm", "map": "boredom=neutral", **SLICE})
    assert config.task.map == "boredom=neutral" and config.mlflow_params()["task.map"] == "boredom=neutral"
    rt = Runtime(data_dir=str(data_dir), cache_dir=str(features_cache), jobs=1, progress=False)
    plain = prepare(resolve({"model": "svm", **SLICE}), rt).data
    mapped = prepare(config, rt).data
    assert "boredom" in plain.classes and "boredom" not in mapped.classes
    assert (mapped.labels == "neutral").sum() == (plain.labels == "neutral").sum() + (plain.labels == "boredom").sum()
    assert resolve({"model": "svm", "map": {"b": "a,d=c"}}).task.map == "b=a,d=c"  # YAML mapping / comma list
    with pytest.raises(BenchError, match="no corpus of this run has calm"):
        prepare(resolve({"model": "svm", "map": "calm=neutral", **SLICE}), rt)
    with pytest.raises(BenchError, match="mapped to both"):
        resolve({"model": "svm", "map": "a=b,a=c"})


def test_cli_map_and_multi_corpus_options_as_typed(data_dir, tmp_path, features_cache, caplog):
    """`bench run --protocol cross_corpus --train-corpus emodb,urdu --test-corpus shemo --map ...`"""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'cli.db'}"
    result = cli.invoke(app, ["run", "--model", "svm", "--features", "handcrafted36", "--protocol", "cross_corpus",
                              "--train-corpus", "emodb,urdu", "--test-corpus", "shemo", "--map", "boredom=neutral",
                              "--map", "disgust=anger", "--max-speakers", "3", "--max-per-speaker-class", "1",
                              "--no-final-model", "--data-dir", str(data_dir), "--cache-dir", str(features_cache),
                              "--tracking-uri", uri], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "emotions used: anger, happiness, neutral, sadness" in caplog.text  # printed as a warning line
    assert "emodb drops fear" in caplog.text
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert parent.data.params["task.map"] == "boredom=neutral,disgust=anger"
    assert parent.data.params["protocol.train_corpus"] == "emodb,urdu"
    bad = cli.invoke(app, ["run", "--model", "svm", "--map", "calm", "--data-dir", str(data_dir)])
    assert bad.exit_code != 0 and "expected FROM=TO" in bad.output and "Traceback" not in bad.output


# -- the cross-corpus matrix -------------------------------------------------------------------------
def test_report_matrix_has_one_cell_per_train_and_test_corpus(data_dir, tmp_path, features_cache):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'matrix.db'}"
    rt = runtime(data_dir, uri, features_cache, experiment="matrix")
    base = {"model": "svm", "classes": "4", "final_model": False, **SLICE}
    cross = run(resolve({**base, "protocol": "cross_corpus", "train_corpus": "emodb", "test_corpus": "urdu,shemo"}), rt)
    loco = run(resolve({**base, "protocol": "leave_one_corpus_out", "corpora": "emodb,urdu"}), rt)
    run(resolve({**base, "protocol": "within_corpus", "corpus": "urdu"}), rt)
    run(resolve({**base, "model": "xgboost", "model_params": {"n_estimators": 10}, "protocol": "leave_one_corpus_out",
                 "corpora": "emodb,urdu"}), rt)

    def matrix(out, *extra):
        result = cli.invoke(app, ["report", "--matrix", "--name", "m", "--out-dir", str(out), "--tracking-uri", uri,
                                  "--model", "svm", *extra], env={"COLUMNS": "250"})
        assert result.exit_code == 0, result.output
        return (out / "m.md").read_text(), (out / "m.csv").read_text()

    first, csv = matrix(tmp_path / "a")
    assert (first, csv) == matrix(tmp_path / "b")  # deterministic
    assert "| trained on \\ tested on | emodb | shemo | urdu |" in first
    assert "xgboost" not in first  # --model filters
    import pandas as pd

    table = pd.read_csv(tmp_path / "a" / "m.csv")
    cells = {(r.train, r.test): r for r in table.itertuples()}
    assert set(cells) == {("emodb", "urdu"), ("emodb", "shemo"), ("urdu", "emodb"), ("urdu", "urdu")}
    assert cells[("emodb", "urdu")].run_id == loco.run_id  # the latest run of a cell wins
    assert cells[("emodb", "shemo")].run_id == cross.run_id
    # a cell is that fold's UAR (a cross-corpus fold is one test corpus)
    client = MlflowClient(tracking_uri=uri)
    (fold,) = client.search_runs([client.get_experiment_by_name("matrix").experiment_id],
                                 f"tags.mlflow.parentRunId = '{cross.run_id}' and tags.fold = 'emodb->shemo'")
    assert cells[("emodb", "shemo")].uar == pytest.approx(fold.data.metrics["uar"], abs=1e-6)
    for cell in cells.values():
        assert cell.uar_ci_low <= cell.uar <= cell.uar_ci_high
    empty = cli.invoke(app, ["report", "--matrix", "--out-dir", str(tmp_path / "c"), "--tracking-uri", uri,
                             "--model", "nosuchmodel"])
    assert empty.exit_code != 0 and "no finished `bench run`" in empty.output
