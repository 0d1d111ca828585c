"""Numpy-only scorers of fitted models, so that ``bench predict`` starts without scikit-learn
(or XGBoost, which imports scikit-learn itself; the networks are in :mod:`benchmark.portable_network`).

Why: importing scikit-learn (it imports scipy.stats and pandas) took ~2.2 s of a 5.6 s one-file
``bench predict`` of an svm model on this machine, and issue 9 asks for < 3 s. A fitted RBF SVM
with Platt-scaled probabilities is a handful of arrays and four formulas: the scaler, libsvm's
one-vs-one kernel expansion, scikit-learn's one-vs-rest vote transform
(``sklearn.utils.multiclass._ovr_decision_function``) and one sigmoid per class, normalised
(``sklearn.calibration._CalibratedClassifier.predict_proba``).

scikit-learn stays the reference. :func:`export` reads a fitted pipeline (scikit-learn is loaded
then, by whoever fitted or loaded it) and returns its portable form only if that form reproduces
the pipeline's own ``predict_proba`` on probe inputs to ``PARITY_ATOL``; anything else (another
kernel, a model without calibration, a future scikit-learn that computes differently) has no
portable form and loads as before. ``benchmark.model_cache`` stores the form beside the local
copy of a model; nothing here is ever logged to MLflow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import BenchError

KIND_RBF_SVC_PLATT = "rbf_svc_platt"
FORMAT_VERSION = 1  # bump when the arrays' meaning changes: older files then fall back to the model
PARITY_ATOL = 1e-9
ROWS_PER_CHUNK = 1024  # the kernel is rows x support vectors: bounded memory for large folders


def export(pipeline, probes: np.ndarray | None = None) -> dict[str, np.ndarray] | None:
    """The portable arrays of ``StandardScaler -> CalibratedClassifierCV(SVC(rbf), sigmoid,
    ensemble=False)``, checked against the pipeline itself; None for anything else."""
    try:
        arrays = _rbf_svc_platt_arrays(pipeline)
    except (AttributeError, IndexError, TypeError, ValueError):
        return None
    if arrays is None:
        return None
    if probes is None:
        probes = default_probes(arrays)
    try:
        expected = np.asarray(pipeline.predict_proba(probes), dtype=np.float64)
        got = PortableSVM(arrays).predict_proba(probes)
    except Exception:  # noqa: BLE001 - any mismatch in shape or kind: no portable form
        return None
    if expected.shape != got.shape or not np.allclose(got, expected, rtol=0, atol=PARITY_ATOL):
        return None
    return arrays


def _rbf_svc_platt_arrays(pipeline) -> dict[str, np.ndarray] | None:
    steps = [step for _, step in pipeline.steps]
    if len(steps) != 2 or type(steps[0]).__name__ != "StandardScaler":
        return None
    scaler, calibrated = steps
    if not (scaler.with_mean and scaler.with_std):
        return None
    if type(calibrated).__name__ != "CalibratedClassifierCV" or len(calibrated.calibrated_classifiers_) != 1:
        return None
    inner = calibrated.calibrated_classifiers_[0]
    svc = inner.estimator
    if (type(svc).__name__ != "SVC" or svc.kernel != "rbf" or inner.method != "sigmoid"
            or svc.decision_function_shape != "ovr"
            or any(type(c).__name__ != "_SigmoidCalibration" for c in inner.calibrators)):
        return None
    return {
        "kind": np.array(KIND_RBF_SVC_PLATT), "format_version": np.array(FORMAT_VERSION),
        "mean": np.asarray(scaler.mean_, np.float64), "scale": np.asarray(scaler.scale_, np.float64),
        "support_vectors": np.asarray(svc.support_vectors_, np.float64),
        "dual_coef": np.asarray(svc.dual_coef_, np.float64), "intercept": np.asarray(svc.intercept_, np.float64),
        "n_support": np.asarray(svc.n_support_, np.int64), "gamma": np.array(float(svc._gamma)),
        "a": np.array([float(c.a_) for c in inner.calibrators]), "b": np.array([float(c.b_) for c in inner.calibrators]),
        # the column of each calibrator's class among the calibrated classifier's classes
        "columns": np.searchsorted(np.asarray(inner.classes), np.asarray(svc.classes_)).astype(np.int64),
        "n_classes": np.array(len(inner.classes)),
    }


def default_probes(arrays: dict[str, np.ndarray], n_random: int = 64, seed: int = 0) -> np.ndarray:
    """Inputs to check parity on: the support vectors themselves (where the kernel is largest),
    points between them, and random points around the training distribution."""
    rng = np.random.default_rng(seed)
    sv = arrays["support_vectors"]
    between = 0.5 * (sv + sv[rng.permutation(len(sv))])
    scattered = rng.standard_normal((n_random, sv.shape[1])) * 1.5
    scaled = np.concatenate([sv[: 4 * n_random], between[:n_random], scattered])
    return scaled * arrays["scale"] + arrays["mean"]


class PortableSVM:
    """``predict_proba`` of an exported RBF SVM with Platt scaling, numpy only."""

    input_kind = "vector"  # what benchmark.model_input asks of a model
    loads_tensorflow = False

    def __init__(self, arrays: dict[str, np.ndarray]):
        self.a = arrays
        self.n_features = arrays["mean"].shape[0]

    def decision_values(self, X: np.ndarray) -> np.ndarray:
        """scikit-learn's ``SVC.decision_function`` (one-vs-rest shape for 3+ classes)."""
        X = np.asarray(X, np.float64)
        if X.ndim != 2 or X.shape[1] != self.a["mean"].shape[0]:
            raise BenchError(f"the model takes {self.a['mean'].shape[0]} features per utterance, got shape {X.shape}")
        if not np.isfinite(X).all():  # scikit-learn refuses these too
            raise BenchError("features contain NaN or infinity; check the audio files")
        if len(X) > ROWS_PER_CHUNK:
            return np.concatenate([self.decision_values(X[i : i + ROWS_PER_CHUNK])
                                   for i in range(0, len(X), ROWS_PER_CHUNK)])
        a = self.a
        z = (X - a["mean"]) / a["scale"]
        sv = a["support_vectors"]
        squared = (z * z).sum(1)[:, None] + (sv * sv).sum(1)[None, :] - 2.0 * z @ sv.T
        kernel = np.exp(-float(a["gamma"]) * np.maximum(squared, 0.0))
        n_support, coef = a["n_support"], a["dual_coef"]
        if len(n_support) == 2:  # binary: scikit-learn's public coefficients already carry its sign
            return kernel @ coef[0] + a["intercept"][0]
        start = np.concatenate([[0], np.cumsum(n_support)[:-1]])
        part = [slice(s, s + n) for s, n in zip(start, n_support)]
        pairs = [(i, j) for i in range(len(n_support)) for j in range(i + 1, len(n_support))]
        ovo = np.column_stack([kernel[:, part[i]] @ coef[j - 1, part[i]] + kernel[:, part[j]] @ coef[i, part[j]]
                               for i, j in pairs]) + a["intercept"]
        votes, confidence = np.zeros((len(z), len(n_support))), np.zeros((len(z), len(n_support)))
        for k, (i, j) in enumerate(pairs):  # _ovr_decision_function(ovo < 0, -ovo, n_classes)
            confidence[:, i] += ovo[:, k]
            confidence[:, j] -= ovo[:, k]
            votes[:, i] += ovo[:, k] >= 0
            votes[:, j] += ovo[:, k] < 0
        return votes + confidence / (3 * (np.abs(confidence) + 1))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        a = self.a
        scores = self.decision_values(X)
        scores = scores[:, None] if scores.ndim == 1 else scores
        n_classes = int(a["n_classes"])
        proba = np.zeros((len(scores), n_classes))
        for column, (k, a_k, b_k) in enumerate(zip(a["columns"], a["a"], a["b"])):
            proba[:, k + 1 if n_classes == 2 else k] = 1.0 / (1.0 + np.exp(a_k * scores[:, column] + b_k))
        if n_classes == 2:
            proba[:, 0] = 1.0 - proba[:, 1]
        else:
            total = proba.sum(axis=1, keepdims=True)
            proba = np.divide(proba, total, out=np.full_like(proba, 1.0 / n_classes), where=total != 0)
        proba[(1.0 < proba) & (proba <= 1.0 + 1e-5)] = 1.0
        return proba


# --- gradient-boosted trees (xgboost) -------------------------------------------------------------
KIND_XGBOOST_TREES = "xgboost_trees"
TREES_PARITY_ATOL = 1e-5  # XGBoost sums leaves in float32; this sums them in float64
TREES_FORMAT_VERSION = 1  # this kind's own version: bumping it leaves the other kinds' files alone


def export_xgboost(booster, probes: np.ndarray | None = None) -> dict[str, np.ndarray] | None:
    """The trees of a fitted ``XGBClassifier`` (multi:softprob or binary:logistic, numerical splits)
    as flat arrays, checked against XGBoost's own ``predict_proba``; None for anything else.

    The base margin (XGBoost's intercept, one per class) is read off XGBoost's own margins
    (``output_margin=True``) minus the leaf sums, rather than parsed from its version-dependent
    ``base_score`` field; the parity check then covers it too."""
    import json

    try:
        learner = json.loads(bytes(booster.get_booster().save_raw("json")))["learner"]
        objective = learner["objective"]["name"]
        model = learner["gradient_booster"]["model"]
        if learner["gradient_booster"].get("name") != "gbtree" or objective not in ("multi:softprob", "binary:logistic"):
            return None
        missing = getattr(booster, "missing", np.nan)
        if not (missing is None or np.isnan(missing)):
            return None  # another value than NaN means "missing": not written out here
        trees = model["trees"]
        if any(any(t["split_type"]) or t.get("categories") for t in trees):
            return None  # categorical splits: not written out here
        n_features = int(learner["learner_model_param"]["num_feature"])
        sizes = np.array([len(t["left_children"]) for t in trees])
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])

        def flat(key, dtype):
            return np.concatenate([np.asarray(t[key], dtype) for t in trees])

        left, right = flat("left_children", np.int64), flat("right_children", np.int64)
        is_leaf = left == -1
        tree_of_node = np.repeat(np.arange(len(trees)), sizes)
        arrays = {
            "kind": np.array(KIND_XGBOOST_TREES), "format_version": np.array(TREES_FORMAT_VERSION),
            "roots": offsets.astype(np.int64),
            "left": np.where(is_leaf, -1, left + offsets[tree_of_node]),
            "right": np.where(is_leaf, -1, right + offsets[tree_of_node]),
            "feature": flat("split_indices", np.int64), "threshold": flat("split_conditions", np.float32),
            "default_left": flat("default_left", np.int64).astype(bool),
            "tree_class": np.asarray(model["tree_info"], np.int64), "n_features": np.array(n_features),
            "binary": np.array(objective == "binary:logistic"),
            "base_margin": np.zeros(1 if objective == "binary:logistic" else int(learner["learner_model_param"]["num_class"])),
        }
        if probes is None:
            probes = tree_probes(arrays)
        import xgboost

        margins = np.asarray(booster.get_booster().predict(xgboost.DMatrix(probes), output_margin=True), np.float64)
        margins = margins.reshape(len(probes), -1)
        arrays["base_margin"] = np.median(margins - PortableTrees(arrays).margins(probes), axis=0)
        expected = np.asarray(booster.predict_proba(probes), np.float64)
        got = PortableTrees(arrays).predict_proba(probes)
    except Exception:  # noqa: BLE001 - any structure it does not know: no portable form
        return None
    if expected.shape != got.shape or not np.allclose(got, expected, rtol=0, atol=TREES_PARITY_ATOL):
        return None
    return arrays


def tree_probes(arrays: dict[str, np.ndarray], n: int = 256, seed: int = 0) -> np.ndarray:
    """Random standardised rows, and rows whose values sit exactly on the trees' thresholds
    (where ``<`` against ``<=`` would differ), some missing (NaN: the default direction)."""
    rng = np.random.default_rng(seed)
    n_features = int(arrays["n_features"])
    scattered = rng.standard_normal((n, n_features)) * 1.5
    on_threshold = rng.standard_normal((n, n_features))
    inner = np.flatnonzero(arrays["left"] >= 0)
    if len(inner):
        pick = rng.choice(inner, size=(n, 4))
        np.put_along_axis(on_threshold, arrays["feature"][pick], arrays["threshold"][pick].astype(np.float64), axis=1)
    missing = rng.standard_normal((16, n_features))
    missing[rng.random(missing.shape) < 0.3] = np.nan
    zeros = rng.standard_normal((16, n_features))
    zeros[rng.random(zeros.shape) < 0.3] = 0.0  # exact zeros: a model that treats 0 as missing differs here
    return np.concatenate([scattered, on_threshold, missing, zeros]).astype(np.float32)


class PortableTrees:
    """``predict_proba`` of exported XGBoost trees, numpy only: every row walks every tree at once,
    one level per step (left when ``x < threshold`` in float32, the default way when ``x`` is NaN)."""

    input_kind = "vector"
    loads_tensorflow = False

    def __init__(self, arrays: dict[str, np.ndarray]):
        self.a = arrays
        self.n_features = int(arrays["n_features"])

    def margins(self, X: np.ndarray) -> np.ndarray:
        a = self.a
        X = np.asarray(X, np.float32)
        if X.ndim != 2 or X.shape[1] != int(a["n_features"]):
            raise BenchError(f"the model takes {int(a['n_features'])} features per utterance, got shape {X.shape}")
        if len(X) > ROWS_PER_CHUNK:
            return np.concatenate([self.margins(X[i : i + ROWS_PER_CHUNK]) for i in range(0, len(X), ROWS_PER_CHUNK)])
        nodes = np.broadcast_to(a["roots"], (len(X), len(a["roots"]))).copy()
        rows = np.arange(len(X))[:, None]
        while True:
            left = a["left"][nodes]
            inner = left >= 0
            if not inner.any():
                break
            values = X[rows, a["feature"][nodes]]
            go_left = np.where(np.isnan(values), a["default_left"][nodes], values < a["threshold"][nodes])
            nodes = np.where(inner, np.where(go_left, left, a["right"][nodes]), nodes)
        leaves = a["threshold"][nodes].astype(np.float64)  # a leaf's value is stored as its "condition"
        n_outputs = len(a["base_margin"])
        out = np.zeros((len(X), n_outputs))
        for k in range(n_outputs):
            out[:, k] = leaves[:, a["tree_class"] == k].sum(axis=1)
        return out

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        margins = self.margins(X) + self.a["base_margin"]
        if bool(self.a["binary"]):
            p = 1.0 / (1.0 + np.exp(-margins[:, 0]))
            return np.column_stack([1.0 - p, p])
        e = np.exp(margins - margins.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)


def check_scores(model, n_classes: int) -> None:
    """Score one probe input and require one probability per class, each row summing to 1: a
    damaged file whose arrays load but disagree with each other fails here, before any real input."""
    probe = (np.full((1, model.n_features), 0.5) if model.input_kind == "vector"
             else [np.full((3, model.n_features), 0.5)])
    scores = np.asarray(model.predict_proba(probe))
    if scores.shape != (1, n_classes) or not np.isfinite(scores).all() or not np.allclose(scores.sum(1), 1.0, atol=1e-6):
        raise ValueError(f"the portable form scores {scores.shape[1:] or '?'} classes, the model has {n_classes}")


def save(path: Path, arrays: dict[str, np.ndarray]) -> None:
    np.savez(path, **arrays)


def load(path: Path):
    """The scorer saved at ``path`` (``allow_pickle`` stays off: the file is data only): a
    :class:`PortableSVM` or a network (:mod:`benchmark.portable_network`)."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    from . import portable_network

    if str(arrays.get("kind")) == portable_network.KIND:
        return portable_network.validated(arrays, path)
    if str(arrays.get("kind")) == KIND_XGBOOST_TREES:
        return _validated_trees(arrays, path)
    if str(arrays.get("kind")) != KIND_RBF_SVC_PLATT:
        raise ValueError(f"{path}: unknown portable model kind {arrays.get('kind')!r}")
    if int(arrays.get("format_version", 0)) != FORMAT_VERSION:
        raise ValueError(f"{path}: portable format {arrays.get('format_version')}, this version reads {FORMAT_VERSION}")
    sv, coef, n_support = arrays["support_vectors"], arrays["dual_coef"], arrays["n_support"]
    if (sv.ndim != 2 or arrays["mean"].shape != (sv.shape[1],) or arrays["scale"].shape != (sv.shape[1],)
            or coef.shape != (len(n_support) - 1, sv.shape[0]) or int(n_support.sum()) != sv.shape[0]):
        raise ValueError(f"{path}: inconsistent array shapes")
    return PortableSVM(arrays)


def _validated_trees(arrays: dict[str, np.ndarray], path) -> PortableTrees:
    if int(arrays.get("format_version", 0)) != TREES_FORMAT_VERSION:
        raise ValueError(f"{path}: portable format {arrays.get('format_version')}, this version reads {TREES_FORMAT_VERSION}")
    integers = ("roots", "left", "right", "feature", "tree_class")
    if any(arrays[k].dtype.kind not in "iu" or arrays[k].ndim != 1 for k in integers) or len(arrays["base_margin"]) < 1:
        raise ValueError(f"{path}: inconsistent array shapes")
    if bool(arrays["binary"]) != (len(arrays["base_margin"]) == 1) or (arrays["roots"] < 0).any():
        raise ValueError(f"{path}: inconsistent array shapes")
    n_nodes = len(arrays["left"])
    inner = arrays["left"] >= 0
    if (any(len(arrays[k]) != n_nodes for k in ("right", "feature", "threshold", "default_left"))
            or len(arrays["tree_class"]) != len(arrays["roots"])
            or (arrays["roots"] >= n_nodes).any() or (arrays["left"] >= n_nodes).any() or (arrays["right"] >= n_nodes).any()
            or (arrays["right"][inner] < 0).any() or (arrays["feature"][inner] >= int(arrays["n_features"])).any()
            # XGBoost numbers a node's children after it: no walk can loop
            or (arrays["left"][inner] <= np.flatnonzero(inner)).any() or (arrays["right"][inner] <= np.flatnonzero(inner)).any()
            or (arrays["feature"][inner] < 0).any() or (arrays["tree_class"] >= len(arrays["base_margin"])).any()):
        raise ValueError(f"{path}: inconsistent array shapes")
    return PortableTrees(arrays)
