"""The one contract every model follows: scikit-learn's ``fit`` / ``predict_proba`` / ``classes_``,
plus what only the model can know about its framework.

``input_kind`` tells the runner what ``X`` is: ``"sequence"`` models take a list of
(n_frames, n_features) arrays of any length, ``"vector"`` models one row per utterance
(:func:`benchmark.model_input.model_input` builds either from extracted features, for runs and for ``bench predict``
alike). Hyper-parameters are the typed, annotated arguments of ``__init__`` (sklearn style): the
annotations (types, ``annotated_types`` ranges) are what ``benchmark.config`` validates before a
run exists. How a fitted model is logged to MLflow and loaded back is the model's business
(:meth:`log_model`, :meth:`load_model`), so the runner, ``bench predict`` and ``bench tune`` never
ask which framework a model uses.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Literal

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

# Called after every training epoch with (epoch, metrics, model); may raise to stop training
# (Optuna's TrialPruned). Models without epochs never call it.
EpochHook = Callable[[int, dict, "SERClassifier"], None]


class SERClassifier(ClassifierMixin, BaseEstimator):
    name: ClassVar[str]
    input_kind: ClassVar[Literal["sequence", "vector"]] = "vector"
    default_features: ClassVar[str] = "egemaps"
    description: ClassVar[str] = ""
    # loads TensorFlow into the process (native libraries such as openSMILE must then stay out of it)
    loads_tensorflow: ClassVar[bool] = False

    def fit(self, X, y, groups=None, on_epoch: EpochHook | None = None) -> "SERClassifier":  # pragma: no cover
        raise NotImplementedError

    def predict_proba(self, X) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def predict(self, X) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    @staticmethod
    def search_space(trial) -> dict[str, Any]:  # used by `bench tune`
        return {}

    def encode(self, y) -> np.ndarray:
        """Fit ``classes_`` (sorted labels) and return integer targets."""
        self.classes_, encoded = np.unique(np.asarray(y), return_inverse=True)
        return encoded

    # -- MLflow: each model logs and loads itself with its own flavour -----------------------------
    def log_model(self, signature, metadata: dict, registered_name: str | None = None):
        """Log the fitted model to the active MLflow run (default: the sklearn flavour, via skops)."""
        import mlflow

        from ..tracking import requirements
        from .skops_import import import_skops

        import_skops()
        return mlflow.sklearn.log_model(
            self.fitted_estimator(), name="model", signature=signature, metadata=metadata,
            registered_model_name=registered_name, pip_requirements=requirements("scikit-learn", "ser-bench"),
            serialization_format="skops", skops_trusted_types=list(self.trusted_types) or None)

    @classmethod
    def warm_up_logging(cls) -> None:
        """Import the serialiser :meth:`log_model` will use (called in a background thread)."""
        from .skops_import import import_skops

        import_skops()

    @classmethod
    def load_model(cls, uri: str, classes: list[str]) -> "SERClassifier":
        """The fitted model logged at ``uri``, ready for :meth:`predict_proba`."""
        import mlflow

        from .skops_import import import_skops

        import_skops()
        model = cls()
        model.set_fitted(mlflow.sklearn.load_model(uri), classes)
        return model

    @classmethod
    def load_local(cls, model_dir, flavors: dict, classes: list[str]) -> "SERClassifier":
        """The model from a local copy of its MLflow artifact folder, without importing MLflow
        (see :mod:`benchmark.model_cache`). Default: the sklearn flavour saved with skops, loaded
        with this class's own :attr:`trusted_types` (not the list in the model's MLmodel file, which
        whoever made the model wrote). Other formats go through :meth:`load_model`."""
        from pathlib import Path

        conf = flavors.get("sklearn", {})
        if conf.get("serialization_format") != "skops":
            return cls.load_model(str(model_dir), classes)
        from .skops_import import import_skops

        skops_io = import_skops()
        model = cls()
        model.set_fitted(skops_io.load(Path(model_dir) / conf["pickled_model"], trusted=list(cls.trusted_types)),
                         classes)
        return model

    def portable(self) -> dict | None:
        """A numpy-only form of the fitted model (:mod:`benchmark.portable`), checked against the
        model itself, for ``bench predict``'s start-up; None: the model has none."""
        return None

    # parameters that change how fast a model trains, not what it learns: never a recipe of its own
    runtime_params: ClassVar[tuple[str, ...]] = ("n_jobs", "verbose")

    # sklearn flavour: the fitted object MLflow stores, and how to put it back
    trusted_types: ClassVar[tuple[str, ...]] = ()

    def fitted_estimator(self) -> Any:
        return self

    def set_fitted(self, estimator: Any, classes: list[str]) -> None:  # pragma: no cover - overridden
        raise NotImplementedError
