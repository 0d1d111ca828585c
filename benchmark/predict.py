"""``bench predict``: emotions of new audio with a logged model.

A model logged by ``bench run`` carries everything needed in its MLflow metadata (feature set and
its options, label map, input kind, normalisation) and its run holds the normaliser's training
statistics, so a model URI is all a user gives. With ``--norm speaker`` the files given together
are treated as one speaker and standardised with their own statistics (one file: its own).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .audio import AUDIO_SUFFIXES
from .errors import BenchError


def latest_model_uri(tracking_uri: str | None) -> str:
    """The most recently logged model in the store."""
    import mlflow

    from . import tracking

    tracking.quiet_mlflow()
    uri = tracking.resolve_tracking_uri(tracking_uri)
    mlflow.set_tracking_uri(uri)
    experiments = [e.experiment_id for e in mlflow.search_experiments()]
    models = mlflow.search_logged_models(
        experiment_ids=experiments, order_by=[{"field_name": "creation_timestamp", "ascending": False}],
        max_results=1, output_format="list") if experiments else []
    if not models:
        raise BenchError(f"no logged model in {uri}; train one with `bench run` or pass --model runs:/... | models:/...")
    return models[0].model_uri


@dataclass
class Predictor:
    """A logged model with everything it needs: the run's config (feature set and options,
    normalisation), its label map and the normaliser's training statistics. Framework-free: the
    model class named in the config loads itself and predicts exactly as it did in the run.

    Start-up is most of a one-file prediction, so the fastest source comes first: a local copy's
    numpy-only form (:mod:`benchmark.portable`: neither MLflow nor scikit-learn is imported), then the
    local copy (no MLflow), then the MLflow store."""

    uri: str
    tracking_uri: str | None = None
    trust_model: bool = False  # allow formats that run code when loaded (pickle); see model_trust

    def __post_init__(self):
        from . import model_cache, tracking

        tracking_uri = tracking.resolve_tracking_uri(self.tracking_uri)
        found = model_cache.lookup(self.uri, tracking_uri)
        self.asked_store = found is None  # False: everything below comes from the local copy
        if found is not None and found.portable is not None and self._load_portable(found):
            return
        if found is None:
            found = self._through_mlflow(tracking_uri)
        from .config import RunConfig
        from .model_trust import require_safe_format

        require_safe_format(found.flavors, self.uri, self.trust_model)  # before anything is unpickled
        meta = self._metadata(found)
        self.config = RunConfig.from_dict(meta["ser_bench_config"])
        self.model_class = self.config.model_class()
        self._prepare(meta, found, self.config.build_features(), self.config.task.norm)
        self.model = None
        if found.model_dir is not None:
            try:
                self.model = self.model_class.load_local(found.model_dir, found.flavors, list(self.labels))
            except Exception:  # noqa: BLE001 - a damaged copy: drop it, load through MLflow
                model_cache.forget(self.uri, tracking_uri)
                self.asked_store = True
            else:
                if found.portable is None:  # next time: without scikit-learn (checked against the model)
                    try:
                        arrays = self.model.portable()
                        if arrays is not None:
                            model_cache.save_portable(found, arrays)
                    except Exception:  # noqa: BLE001 - an optimisation only: the model is loaded
                        pass
        if self.model is None:
            self.model = self.model_class.load_model(self.uri, list(self.labels))

    def _metadata(self, found) -> dict:
        meta = found.metadata or {}
        if "label_map" not in meta or "ser_bench_config" not in meta:
            raise BenchError(f"model {self.uri} was not logged by this version of ser-bench (no run configuration "
                             f"in its metadata); log it again with `bench run`")
        return meta

    def _prepare(self, meta: dict, found, feature_set, norm: str) -> None:
        """Labels, feature set and the normaliser with the run's training statistics."""
        from .normalise import Normaliser

        self.labels = np.array(meta["label_map"])
        self.feature_set = feature_set
        self.normaliser = Normaliser(norm)
        if self.normaliser.mode != "none" and found.normaliser and found.normaliser.get("mean") is not None:
            self.normaliser.mean_ = np.array(found.normaliser["mean"])
            self.normaliser.std_ = np.array(found.normaliser["std"])

    def _load_portable(self, found) -> bool:
        """The numpy-only form beside a local copy; False (and the form dropped) if it will not load.
        The metadata was validated when the run logged it and again when the copy was made."""
        from . import model_cache, portable
        from .features import get_feature_set
        from .model_trust import require_safe_format

        # the form itself is data (no pickle), but the model it came from must pass the same check
        require_safe_format(found.flavors, self.uri, self.trust_model)
        try:
            meta = self._metadata(found)
            config = meta["ser_bench_config"]
            model = portable.load(found.portable)
            features = get_feature_set(config["features"]["name"], **config["features"]["params"])
            self._prepare(meta, found, features, config.get("task", {}).get("norm", "global"))
            portable.check_scores(model, len(self.labels))  # a file that loads but would not predict
        except BenchError:
            raise
        except Exception:  # noqa: BLE001 - a damaged or foreign file: the copy itself still works
            model_cache.forget_portable(found)
            return False
        self.config, self.model_class, self.model = None, None, model
        return True

    def _through_mlflow(self, tracking_uri: str):
        """The model's description from the MLflow store; a model URI that names one model for
        ever is also copied into the local cache (:mod:`benchmark.model_cache`) for next time."""
        import mlflow

        from . import model_cache, tracking

        tracking.quiet_mlflow()
        mlflow.set_tracking_uri(tracking_uri)
        try:
            info = mlflow.models.get_model_info(self.uri)
        except Exception as exc:
            raise BenchError(f"cannot open model {self.uri} ({str(exc).splitlines()[0]}); "
                             f"use runs:/<run id>/model or models:/<name>@<alias>") from None
        from .config import RunConfig

        normaliser, config = None, (info.metadata or {}).get("ser_bench_config")
        if config is not None and RunConfig.from_dict(config).task.norm != "none":
            normaliser = mlflow.artifacts.load_dict(f"runs:/{info.run_id}/preprocessing/normaliser.json")
        found = model_cache.CachedModel(self.uri, info.flavors, info.metadata or {}, normaliser, None)
        return model_cache.save(found, tracking_uri, lambda folder: mlflow.artifacts.download_artifacts(
            self.uri, dst_path=str(folder)))  # returns the folder that holds MLmodel

    def predict(self, paths: list[Path], progress: bool = False):
        """(probabilities (files x classes) of the readable files, their paths, {path: error}).

        ``self.seconds`` then holds this call's ``extraction`` and ``model`` (inputs, normalisation,
        predict_proba) wall seconds, reported apart by ``bench bench``."""
        from .features.extract import extract_features
        from .model_input import model_input, tensorflow_free
        takes = self.model_class or self.model  # a numpy-only form has no model class, but says what it takes
        start = time.perf_counter()
        result = extract_features([(str(p), p) for p in paths], self.feature_set, progress=progress,
                                  in_process_ok=tensorflow_free(takes))
        extracted = time.perf_counter()
        ok = [p for p in paths if str(p) in result.features]
        if not ok:
            self.seconds = {"extraction": extracted - start, "model": 0.0}
            return np.zeros((0, len(self.labels))), [], result.failed
        inputs = model_input(takes, [result.features[str(p)] for p in ok])
        inputs = self.normaliser.transform(inputs, np.zeros(len(ok), dtype=int))
        probabilities = np.asarray(self.model.predict_proba(inputs))
        self.seconds = {"extraction": extracted - start, "model": time.perf_counter() - extracted}
        return probabilities, ok, result.failed


def audio_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
        if not files:
            raise BenchError(f"{path}: no {', '.join(s[1:].upper() for s in AUDIO_SUFFIXES)} files in this folder")
        return files
    raise BenchError(f"{path}: no such file or folder")


def top_k(probabilities: np.ndarray, labels: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
    order = np.argsort(-probabilities, axis=1)[:, :k]
    return [[(str(labels[j]), float(row[j])) for j in idx] for row, idx in zip(probabilities, order)]
