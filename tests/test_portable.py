"""The numpy-only form of a fitted svm (benchmark.portable): the same probabilities as
scikit-learn, none for models it cannot reproduce, and nothing loaded that is not data."""

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
    unseen = np.random.default_rng(1).standard_normal((300, X.shape[1])) * 6 + 5
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
    assert get_model("xgboost", n_estimators=5).fit(X, y).portable() is None  # a model with no portable form


def test_portable_file_round_trip_loads_data_only(tmp_path):
    X, y = separable(3)
    arrays = get_model("svm").fit(X, y).portable()
    portable.save(tmp_path / "p.npz", arrays)
    np.testing.assert_array_equal(portable.load(tmp_path / "p.npz").predict_proba(X),
                                  portable.PortableSVM(arrays).predict_proba(X))
    np.savez(tmp_path / "other.npz", kind=np.array("something_else"))
    with pytest.raises(ValueError, match="unknown portable model kind"):
        portable.load(tmp_path / "other.npz")
    np.save(tmp_path / "objects.npy", np.array([object()], dtype=object), allow_pickle=True)
    (tmp_path / "objects.npz").write_bytes((tmp_path / "objects.npy").read_bytes())
    with pytest.raises(ValueError):
        portable.load(tmp_path / "objects.npz")  # pickled objects are refused, never run
