"""Static baselines on utterance-level functionals: RBF SVM (with scaling) and XGBoost."""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from annotated_types import Ge, Gt, Interval
from sklearn.calibration import CalibratedClassifierCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.utils.class_weight import compute_sample_weight

from ..config import Seed
from ..models import register_model
from ..threads import fit_threads, limit_threads
from .base import SERClassifier


@register_model
class SVMClassifier(SERClassifier):
    """RBF SVC behind a StandardScaler fitted on the training fold only."""

    name = "svm"
    description = "RBF SVM with feature scaling, on utterance functionals"
    default_features = "egemaps"

    def __init__(self, C: Annotated[float, Gt(0)] = 10.0,
                 gamma: Literal["scale", "auto"] | Annotated[float, Gt(0)] = "scale",
                 class_weight: Literal["balanced"] | None = "balanced", seed: Seed = 0):
        self.C, self.gamma, self.class_weight, self.seed = C, gamma, class_weight, seed

    def fit(self, X, y, groups=None, on_epoch=None):
        target = self.encode(y)
        svc = SVC(C=self.C, gamma=self.gamma, class_weight=self.class_weight, random_state=self.seed)
        smallest = int(np.bincount(target).min())
        if smallest >= 2:
            # Platt-scaled probabilities from internal cross-validation (what SVC(probability=True) did)
            svc = CalibratedClassifierCV(svc, method="sigmoid", ensemble=False, cv=min(5, smallest))
        # else: a class with one example cannot be calibrated; predict_proba falls back to a softmax
        # of the one-vs-rest decision values (tiny slices only)
        self.pipeline_ = make_pipeline(StandardScaler(), svc)
        # libsvm is serial, and the rest (scaling, Platt's two-parameter L-BFGS per class) is BLAS work
        # far too small to share: a second OpenBLAS thread only adds wake-ups. On a busy 2-core machine
        # one Platt fit took 62-66 ms with 2 threads against 3-5 ms with 1 (7/8 of a warm svm run's folds).
        with limit_threads(1):
            self.pipeline_.fit(np.asarray(X, dtype=np.float64), target)
        return self

    def predict_proba(self, X):
        X = np.asarray(X, dtype=np.float64)
        with limit_threads(1):  # as in fit: serial libsvm, tiny BLAS calls
            if hasattr(self.pipeline_, "predict_proba"):
                return self.pipeline_.predict_proba(X)
            scores = self.pipeline_.decision_function(X)
        scores = np.column_stack([-scores, scores]) if scores.ndim == 1 else scores
        scores = np.exp(scores - scores.max(axis=1, keepdims=True))
        return scores / scores.sum(axis=1, keepdims=True)

    def fitted_estimator(self):
        return self.pipeline_

    def set_fitted(self, estimator, classes):
        self.pipeline_, self.classes_ = estimator, np.asarray(classes)

    def portable(self):
        from ..portable import export

        with limit_threads(1):
            return export(self.pipeline_)

    # scikit-learn classes inside the pipeline that MLflow's skops loader must be told are safe
    trusted_types = ("sklearn.calibration._CalibratedClassifier", "sklearn.calibration._SigmoidCalibration")

    @staticmethod
    def search_space(trial):
        return {"C": trial.suggest_float("C", 1e-2, 1e3, log=True),
                "gamma": trial.suggest_float("gamma", 1e-5, 1e-1, log=True)}


@register_model
class XGBoostClassifier(SERClassifier):
    name = "xgboost"
    description = "Gradient-boosted trees (XGBoost), on utterance functionals"
    default_features = "egemaps"

    def __init__(self, n_estimators: Annotated[int, Ge(1)] = 300, max_depth: Annotated[int, Ge(1)] = 4,
                 learning_rate: Annotated[float, Gt(0)] = 0.1, subsample: Annotated[float, Interval(gt=0, le=1)] = 0.8,
                 colsample_bytree: Annotated[float, Interval(gt=0, le=1)] = 0.5,
                 class_weight: Literal["balanced"] | None = "balanced", n_jobs: Annotated[int, Ge(1)] | None = None,
                 seed: Seed = 0):
        # n_jobs=None: the cores free when the fit starts (benchmark.threads); the trees are the
        # same with any number of threads (hist is deterministic), only the time changes.
        self.n_estimators, self.max_depth, self.learning_rate = n_estimators, max_depth, learning_rate
        self.subsample, self.colsample_bytree, self.class_weight = subsample, colsample_bytree, class_weight
        self.n_jobs, self.seed = n_jobs, seed

    def fit(self, X, y, groups=None, on_epoch=None):
        from xgboost import XGBClassifier

        target = self.encode(y)
        weights = compute_sample_weight(self.class_weight, target) if self.class_weight else None
        self.booster_ = XGBClassifier(
            n_estimators=self.n_estimators, max_depth=self.max_depth, learning_rate=self.learning_rate,
            subsample=self.subsample, colsample_bytree=self.colsample_bytree,
            n_jobs=self.n_jobs if self.n_jobs else fit_threads(),
            random_state=self.seed, tree_method="hist", eval_metric="mlogloss",
        )
        self.booster_.fit(np.asarray(X, dtype=np.float32), target, sample_weight=weights)
        return self

    def predict_proba(self, X):
        proba = self.booster_.predict_proba(np.asarray(X, dtype=np.float32))
        return proba if proba.shape[1] == len(self.classes_) else np.column_stack([1 - proba[:, 0], proba[:, 0]])

    def portable(self):
        from ..portable import export_xgboost

        return export_xgboost(self.booster_)

    @classmethod
    def warm_up_logging(cls) -> None:
        import mlflow.xgboost  # noqa: F401  (UBJSON through the xgboost flavour, no skops)

    def log_model(self, signature, metadata, registered_name=None):
        import mlflow

        from ..tracking import requirements

        return mlflow.xgboost.log_model(
            self.booster_, name="model", signature=signature, metadata=metadata, model_format="ubj",
            registered_model_name=registered_name,
            pip_requirements=requirements("xgboost-cpu", "scikit-learn", "ser-bench"))

    @classmethod
    def load_model(cls, uri, classes):
        import mlflow

        model = cls()
        model.booster_, model.classes_ = mlflow.xgboost.load_model(uri), np.asarray(classes)
        return model

    @classmethod
    def load_local(cls, model_dir, flavors, classes):
        """The UBJSON booster MLflow's xgboost flavour saved, read by XGBoost itself (no MLflow)."""
        import xgboost
        from pathlib import Path

        conf = flavors.get("xgboost", {})
        kinds = {"xgboost.sklearn.XGBClassifier": xgboost.XGBClassifier, "xgboost.core.Booster": xgboost.Booster}
        if "data" not in conf or conf.get("model_class") not in kinds:  # not what ser-bench logs: through MLflow
            return cls.load_model(str(model_dir), classes)
        booster = kinds[conf["model_class"]]()
        booster.load_model(str(Path(model_dir) / conf["data"]))
        model = cls()
        model.booster_, model.classes_ = booster, np.asarray(classes)
        return model

    @staticmethod
    def search_space(trial):
        return {"n_estimators": trial.suggest_int("n_estimators", 100, 600, step=100),
                "max_depth": trial.suggest_int("max_depth", 2, 8),
                "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.3, log=True),
                "colsample_bytree": trial.suggest_float("colsample_bytree", 0.2, 1.0)}
