"""The numpy-only forms of fitted models (benchmark.portable, benchmark.portable_network): the same
probabilities as scikit-learn, XGBoost and Keras, none for models they cannot reproduce, and
nothing loaded that is not data."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark import portable
from benchmark.models import get_model


def separable(n_classes: int, n: int = 120, n_features: int = 12, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    X = rng.standard_normal((n, n_features)) * 3 + 5 + 0.8 * y[:, None]  # far from zero mean, unit scale
    return X, np.array([f"emotion{k}" for k in y])


@pytest.mark.parametrize("n_classes", [2, 3, 7])
@pytest.mark.parametrize("params", [{}, {"C": 0.1, "gamma": 0.02}])
def test_portable_svm_gives_scikit_learns_probabilities(n_classes, params):
    X, y = separable(n_classes)
    model = get_model("svm", **params).fit(X, y)
    arrays = model.portable()
    assert arrays is not None
    unseen = np.random.default_rng(1).standard_normal((portable.ROWS_PER_CHUNK + 300, X.shape[1])) * 6 + 5  # 2 chunks
    np.testing.assert_allclose(portable.PortableSVM(arrays).predict_proba(unseen), model.predict_proba(unseen),
                               rtol=0, atol=1e-12)


def test_no_portable_form_for_what_it_cannot_reproduce():
    X, y = separable(3, n=13)
    y[-1] = "only_once"  # a class with one example: no Platt calibration, another predict_proba
    assert get_model("svm").fit(X, y).portable() is None
    X, y = separable(3)
    model = get_model("svm").fit(X, y)
    arrays = model.portable()
    broken = dict(arrays, gamma=arrays["gamma"] * 2)  # e.g. a scikit-learn that computed differently

    class Pipeline:  # the parity check, not the export, decides
        steps = model.pipeline_.steps

        @staticmethod
        def predict_proba(Z):
            return portable.PortableSVM(broken).predict_proba(Z)

    assert portable.export(Pipeline()) is None


def test_portable_file_round_trip_loads_data_only(tmp_path):
    X, y = separable(3)
    arrays = get_model("svm").fit(X, y).portable()
    portable.save(tmp_path / "p.npz", arrays)
    np.testing.assert_array_equal(portable.load(tmp_path / "p.npz").predict_proba(X),
                                  portable.PortableSVM(arrays).predict_proba(X))
    np.savez(tmp_path / "old.npz", **dict(arrays, format_version=np.array(portable.FORMAT_VERSION + 1)))
    with pytest.raises(ValueError, match="portable format"):
        portable.load(tmp_path / "old.npz")  # a file whose arrays may mean something else: not used
    np.savez(tmp_path / "cut.npz", **dict(arrays, mean=arrays["mean"][:-1]))
    with pytest.raises(ValueError, match="shapes"):
        portable.load(tmp_path / "cut.npz")
    np.savez(tmp_path / "other.npz", kind=np.array("something_else"))
    with pytest.raises(ValueError, match="unknown portable model kind"):
        portable.load(tmp_path / "other.npz")
    np.save(tmp_path / "objects.npy", np.array([object()], dtype=object), allow_pickle=True)
    (tmp_path / "objects.npz").write_bytes((tmp_path / "objects.npy").read_bytes())
    with pytest.raises(ValueError):
        portable.load(tmp_path / "objects.npz")  # pickled objects are refused, never run


def test_portable_svm_refuses_what_scikit_learn_refuses():
    from benchmark.errors import BenchError

    X, y = separable(3)
    scorer = portable.PortableSVM(get_model("svm").fit(X, y).portable())
    bad = X[:3].copy()
    bad[1, 2] = np.nan
    with pytest.raises(BenchError, match="NaN"):
        scorer.predict_proba(bad)
    with pytest.raises(BenchError, match="features per utterance"):
        scorer.predict_proba(X[:3, :-1])


def test_the_numpy_form_of_a_pickled_model_still_needs_trust_model(tmp_path, monkeypatch):
    """A portable form made while --trust-model was given does not lift the check for later calls."""
    from benchmark import model_cache, tracking
    from benchmark.config import resolve
    from benchmark.model_trust import UntrustedModelError
    from benchmark.predict import Predictor

    monkeypatch.setenv("SER_BENCH_CACHE", str(tmp_path / "cache"))
    X, y = separable(3)
    arrays = get_model("svm").fit(X, y).portable()
    uri, store = "models:/m-" + "0" * 32, tracking.resolve_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    metadata = {"label_map": sorted(set(y)), "ser_bench_config": resolve({"model": "svm", "norm": "none"}).to_dict()}

    def download(folder):
        folder.mkdir(parents=True)
        (folder / "MLmodel").write_text("flavors: {}\n")
        return folder

    for serialization, trusted_needed in (("cloudpickle", True), ("skops", False)):
        flavors = {"sklearn": {"serialization_format": serialization}}
        model_cache.forget(uri, store)
        entry = model_cache.save(model_cache.CachedModel(uri, flavors, metadata, None, None), store, download)
        model_cache.save_portable(entry, arrays)
        assert model_cache.lookup(uri, store).portable is not None
        if trusted_needed:
            with pytest.raises(UntrustedModelError, match="--trust-model"):
                Predictor(uri, store)
            assert Predictor(uri, store, trust_model=True).model_class is None  # the numpy form, trusted
        else:
            assert Predictor(uri, store).model_class is None


@pytest.mark.parametrize("n_classes", [2, 3, 7])
@pytest.mark.parametrize("params", [{"n_estimators": 30}, {"n_estimators": 200, "max_depth": 6, "class_weight": None}])
def test_portable_trees_give_xgboosts_probabilities(n_classes, params, tmp_path):
    X, y = separable(n_classes, n=150)
    y[: n_classes * 10] = y[0]  # unequal classes: a base margin per class that is not zero
    model = get_model("xgboost", **params).fit(X, y)
    arrays = model.portable()
    assert arrays is not None
    portable.save(tmp_path / "trees.npz", arrays)
    scorer = portable.load(tmp_path / "trees.npz")
    assert isinstance(scorer, portable.PortableTrees)
    unseen = np.random.default_rng(1).standard_normal((portable.ROWS_PER_CHUNK + 300, X.shape[1])) * 6 + 5
    unseen[:5, 3] = np.nan  # missing values take each split's default way, as in XGBoost
    np.testing.assert_allclose(scorer.predict_proba(unseen), model.predict_proba(unseen), rtol=0,
                               atol=portable.TREES_PARITY_ATOL)
    on_threshold = np.tile(X[:1], (len(arrays["feature"]), 1)).astype(np.float32)
    on_threshold[np.arange(len(on_threshold)), arrays["feature"]] = arrays["threshold"]  # x == threshold: right
    np.testing.assert_allclose(scorer.predict_proba(on_threshold), model.predict_proba(on_threshold), rtol=0,
                               atol=portable.TREES_PARITY_ATOL)


def test_portable_trees_refuse_a_damaged_file(tmp_path):
    from benchmark.errors import BenchError

    X, y = separable(3)
    arrays = get_model("xgboost", n_estimators=10).fit(X, y).portable()
    np.savez(tmp_path / "cut.npz", **dict(arrays, threshold=arrays["threshold"][:-1]))
    with pytest.raises(ValueError, match="shapes"):
        portable.load(tmp_path / "cut.npz")
    np.savez(tmp_path / "loop.npz", **dict(arrays, feature=arrays["feature"] + 1000))
    with pytest.raises(ValueError, match="shapes"):
        portable.load(tmp_path / "loop.npz")
    inner = np.flatnonzero(arrays["left"] >= 0)
    looping = arrays["left"].copy()
    looping[inner[-1]] = inner[-1]  # a node that is its own child: a walk that never ends
    np.savez(tmp_path / "cycle.npz", **dict(arrays, left=looping))
    with pytest.raises(ValueError, match="shapes"):
        portable.load(tmp_path / "cycle.npz")
    np.savez(tmp_path / "flipped.npz", **dict(arrays, binary=np.array(True)))
    with pytest.raises(ValueError, match="shapes"):
        portable.load(tmp_path / "flipped.npz")  # a binary flag on 3 classes' margins
    np.savez(tmp_path / "floats.npz", **dict(arrays, feature=arrays["feature"].astype(np.float64)))
    with pytest.raises(ValueError, match="shapes"):
        portable.load(tmp_path / "floats.npz")
    with pytest.raises(BenchError, match="features per utterance"):
        portable.PortableTrees(arrays).predict_proba(X[:2, :-1])


def test_no_tree_form_when_another_value_means_missing():
    X, y = separable(3)
    X[::3, 0] = 0.0
    model = get_model("xgboost", n_estimators=10).fit(X, y)
    model.booster_.set_params(missing=0.0)  # zeros would then take the default way in XGBoost only
    assert model.portable() is None


# --- the networks (benchmark.portable_network) ---------------------------------------------------


def sequences(n: int = 36, n_features: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = [rng.standard_normal((int(rng.integers(3, 40)), n_features)).astype(np.float32) + 0.7 * (i % 3)
         for i in range(n)]
    return X, np.array([f"emotion{i % 3}" for i in range(n)])


@pytest.fixture(scope="module")
def networks():
    """Tiny trained networks (one epoch: parity does not need a good model, only a trained one)."""
    X, y = sequences()
    return {name: get_model(name.split("+")[0], epochs=1, **params).fit(X, y) for name, params in (
        ("attn_blstm", {"units": 6}), ("local_attn_blstm", {"dense_units": 8, "lstm_units": 5}),
        ("attn_blstm+ensemble", {"units": 4, "ensemble": 2}))}


@pytest.mark.parametrize("name", ["attn_blstm", "local_attn_blstm", "attn_blstm+ensemble"])
def test_portable_network_gives_keras_probabilities(networks, name, tmp_path):
    from benchmark import portable_network

    model = networks[name]
    arrays = model.portable()
    assert arrays is not None and str(arrays["architecture"]) == name.split("+")[0]
    portable.save(tmp_path / "net.npz", arrays)
    scorer = portable.load(tmp_path / "net.npz")
    assert isinstance(scorer, portable_network.PortableNetwork) and scorer.input_kind == "sequence"
    rng = np.random.default_rng(3)
    unseen = [rng.standard_normal((length, 6)).astype(np.float32) * 2 for length in (1, 9, 250)]
    unseen[1][4:6] = 0.0  # all-zero frames inside an utterance are hidden, as Keras' Masking hides them
    np.testing.assert_allclose(scorer.predict_proba(unseen), model.predict_proba(unseen), rtol=0,
                               atol=portable_network.PARITY_ATOL)
    if "ensemble" in name:
        assert int(arrays["n_members"]) == 2


def test_portable_network_refuses_what_it_cannot_reproduce_or_read(networks, tmp_path):
    from benchmark.errors import BenchError

    X, y = sequences(n_features=6)
    assert get_model("crnn", epochs=1, filters=2, conv_blocks=1, lstm_units=2, projection_units=4, dense_units=4,
                     channels=1).fit(X, y).portable() is None  # an architecture without a numpy form
    model = networks["attn_blstm"]
    arrays = model.portable()
    broken = dict(arrays, **{"member0.attention_dense": arrays["member0.attention_dense"] * 1.5})
    model.portable_weights = lambda member: {name.split(".", 1)[1]: value for name, value in broken.items()
                                             if name.startswith("member0.")}
    try:
        assert model.portable() is None  # weights read wrongly: the parity check, not the export, decides
    finally:
        del model.portable_weights  # the fixture's model is shared with other tests
    np.savez(tmp_path / "many.npz", **dict(arrays, n_members=np.array(10**9)))
    with pytest.raises(ValueError, match="announced"):
        portable.load(tmp_path / "many.npz")  # refused at once, not a loop over a billion members
    np.savez(tmp_path / "bias.npz", **dict(arrays, **{"member0.forward_bias": arrays["member0.forward_bias"][:-1]}))
    with pytest.raises(ValueError, match="shapes"):
        portable.load(tmp_path / "bias.npz")
    scorer = portable.load(_saved(tmp_path, arrays))
    portable.check_scores(scorer, 3)
    with pytest.raises(ValueError, match="classes"):
        portable.check_scores(scorer, 4)  # a form for another label list: bench predict falls back
    np.savez(tmp_path / "cut.npz", **dict(arrays, **{"member0.forward_recurrent": arrays["member0.forward_recurrent"][:-1]}))
    with pytest.raises(ValueError, match="shapes"):
        portable.load(tmp_path / "cut.npz")
    np.savez(tmp_path / "newer.npz", **dict(arrays, format_version=np.array(99)))
    with pytest.raises(ValueError, match="portable format"):
        portable.load(tmp_path / "newer.npz")
    scorer = portable.load(_saved(tmp_path, arrays))
    with pytest.raises(BenchError, match="features per frame"):
        scorer.predict_proba([X[0][:, :-1]])
    bad = X[0].copy()
    bad[1, 1] = np.nan
    with pytest.raises(BenchError, match="NaN"):
        scorer.predict_proba([bad])


def _saved(folder, arrays):
    portable.save(folder / "ok.npz", arrays)
    return folder / "ok.npz"
