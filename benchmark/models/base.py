"""The one contract every model follows: scikit-learn's ``fit`` / ``predict_proba`` / ``classes_``.

``input_kind`` tells the runner what ``X`` is: ``"sequence"`` models take a list of
(n_frames, n_features) arrays of any length, ``"vector"`` models one row per utterance.
``mlflow_flavor`` and :meth:`flavor_model` tell the tracker how to log the fitted model.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin


class SERClassifier(ClassifierMixin, BaseEstimator):
    input_kind: ClassVar[Literal["sequence", "vector"]] = "vector"
    mlflow_flavor: ClassVar[Literal["keras", "sklearn", "xgboost"]] = "sklearn"
    description: ClassVar[str] = ""

    def fit(self, X, y, groups=None, callbacks=None) -> "SERClassifier":  # pragma: no cover - abstract
        raise NotImplementedError

    def predict_proba(self, X) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def predict(self, X) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def flavor_model(self) -> Any:
        """The object MLflow's flavour logs (a Keras model, an sklearn estimator, an XGBoost model)."""
        return self

    @staticmethod
    def search_space(trial) -> dict[str, Any]:  # used by `bench tune`
        return {}

    def encode(self, y) -> np.ndarray:
        """Fit ``classes_`` (sorted labels) and return integer targets."""
        self.classes_, encoded = np.unique(np.asarray(y), return_inverse=True)
        return encoded
