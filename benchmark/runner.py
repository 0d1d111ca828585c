"""``bench run``: one model x feature set x protocol, every fold and the pooled result in MLflow.

Order of work: resolve and validate everything (typos fail before a run exists), load corpora,
extract features through the cache, then one nested MLflow run per fold. Scalers and
normalisation are fitted on each training fold only. A failure marks the parent run FAILED with
the error, while the folds already finished stay logged.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .corpora import open_corpus
from .corpora.base import fingerprint
from .errors import BenchError
from .features import augmented, get_feature_set
from .features.extract import extract_features
from .features.functionals import utterance_vector
from .metrics import classification_metrics, uar_interval
from .models import MODELS, get_model
from .protocols import Fold, ProtocolConfig, get_protocol
from .normalise import Normaliser

log = logging.getLogger(__name__)

# Each model's feature set when none is given: the report's pairing for its two networks.
DEFAULT_FEATURES = {"local_attn_blstm": "handcrafted36", "attn_blstm": "librosa46", "svm": "egemaps",
                    "xgboost": "egemaps", "crnn": "logmel"}


@dataclass
class RunConfig:
    """Everything that determines a run's numbers (logged as MLflow params)."""

    model: str = "svm"
    features: str | None = None
    protocol: str = "within_corpus"
    corpus: str = "emodb"
    train_corpus: str = "emodb"
    test_corpus: str = "shemo"
    classes: str = "all"
    split: str = "speaker"
    folds: int = 5
    norm: str = "global"
    seed: int = 0
    epochs: int | None = None
    batch_size: int | None = None
    model_params: dict[str, Any] = field(default_factory=dict)
    feature_params: dict[str, Any] = field(default_factory=dict)
    max_per_speaker_class: int | None = None  # a small slice of the corpus, for tests and quick looks
    max_speakers: int | None = None  # keep only the first N speakers of each corpus (also a small slice)
    final_model: bool = True

    def resolved_features(self) -> str:
        return self.features or DEFAULT_FEATURES.get(self.model, "handcrafted36")

    def protocol_config(self) -> ProtocolConfig:
        return ProtocolConfig(corpus=self.corpus, train_corpus=self.train_corpus, test_corpus=self.test_corpus,
                              classes=str(self.classes), split=self.split, folds=self.folds, seed=self.seed)

    def model_kwargs(self) -> dict[str, Any]:
        known = MODELS.lookup(self.model)().get_params()
        kwargs = {"seed": self.seed} if "seed" in known else {}
        if self.epochs is not None:
            kwargs["epochs"] = self.epochs
        if self.batch_size is not None:
            kwargs["batch_size"] = self.batch_size
        unsupported = [k for k in ("epochs", "batch_size") if k in kwargs and k not in known]
        if unsupported:
            raise BenchError(f"--{unsupported[0].replace('_', '-')} applies to the Keras models only, not {self.model}")
        return {**kwargs, **self.model_params}


@dataclass
class Runtime:
    """Where things are and how to run; does not change the numbers (not logged as params)."""

    data_dir: str | None = None
    cache_dir: str | None = None
    jobs: int | None = None
    tracking_uri: str | None = None
    experiment: str = "ser-bench"
    run_name: str | None = None
    register: str | None = None
    progress: bool = True


@dataclass
class RunResult:
    run_id: str
    classes: tuple[str, ...]
    folds: list[dict[str, Any]]
    pooled: dict[str, float]
    n_utterances: int
    skipped: dict[str, str]
    model_uri: str | None = None


def subsample(utterances: list, per_speaker_class: int | None, max_speakers: int | None = None) -> list:
    """The first N utterances (by id) of every speaker x emotion, of the first M speakers."""
    speakers = sorted({u.speaker for u in utterances})[:max_speakers] if max_speakers else None
    kept, seen = [], {}
    for utt in sorted(utterances, key=lambda u: u.id):
        if speakers is not None and utt.speaker not in speakers:
            continue
        key = (utt.corpus, utt.speaker, utt.emotion)
        if not per_speaker_class or seen.get(key, 0) < per_speaker_class:
            seen[key] = seen.get(key, 0) + 1
            kept.append(utt)
    return kept


def model_inputs(model_cls, arrays_list: list[dict[str, np.ndarray]]):
    if model_cls.input_kind == "sequence":  # prepare() checked the feature set has frames
        return [arrays["frames"].astype(np.float32) for arrays in arrays_list]
    return np.stack([utterance_vector(arrays) for arrays in arrays_list])


def take(X, index: np.ndarray):
    if isinstance(X, augmented.FrameSources):  # keeps the files, for audio-augmented training copies
        return X.subset(index)
    return X[index] if isinstance(X, np.ndarray) else [X[i] for i in index]


def prepare(config: RunConfig, runtime: Runtime):
    """Validate the config and load the protocol's utterances (before any MLflow run exists)."""
    if config.split not in ("speaker", "random"):
        raise BenchError(f"--split {config.split}: use speaker or random")
    feature_set = get_feature_set(config.resolved_features(), **config.feature_params)
    model = get_model(config.model, **config.model_kwargs())  # validates parameters
    if model.input_kind == "sequence" and feature_set.level != "frame":
        raise BenchError(f"feature set {feature_set.name} has no frame-level features; model {config.model} "
                         f"needs sequences (use handcrafted36, librosa46 or egemaps)")
    Normaliser(config.norm)
    protocol = get_protocol(config.protocol, config.protocol_config())
    by_corpus = {}
    for name in protocol.corpus_names():
        corpus = open_corpus(name, runtime.data_dir)
        by_corpus[name] = [u if u.corpus == name else _rename(u, name)
                           for u in subsample(corpus.utterances(), config.max_per_speaker_class, config.max_speakers)]
    data = protocol.select(by_corpus)
    if config.norm == "speaker":
        warn_if_speakers_lack_emotions(data)
    return feature_set, protocol, data, by_corpus


def warn_if_speakers_lack_emotions(data) -> None:
    """Per-speaker normalisation subtracts each speaker's mean: for a speaker heard in one emotion
    only, that mean *is* the emotion, which is then normalised away (URDU's 26 of 29 speaker codes
    measured below chance with it). Say so loudly."""
    emotions: dict[str, set] = {}
    for group, label in zip(data.groups, data.labels):
        emotions.setdefault(group, set()).add(label)
    narrow = sum(1 for found in emotions.values() if len(found) < max(2, len(data.classes) / 2))
    if narrow > len(emotions) / 4:
        log.warning("--norm speaker: %d of %d speakers are heard in fewer than half of the emotions; their "
                    "emotion is normalised away with their mean. Prefer --norm global here.", narrow, len(emotions))


def _rename(utt, corpus_name):
    from dataclasses import replace

    return replace(utt, corpus=corpus_name)


def fit_and_predict(config: RunConfig, X, labels, groups, train, test, callbacks=None, params=None):
    """Normalise with training statistics, fit on ``train``, predict ``test``.

    ``params`` (e.g. tuned hyper-parameters) override the config's model parameters.
    """
    normaliser = Normaliser(config.norm).fit(take(X, train), groups[train])
    X_train = normaliser.transform(take(X, train), groups[train])
    model = get_model(config.model, **{**config.model_kwargs(), **(params or {})})
    if getattr(model, "speed_perturb", False) or getattr(model, "noise_snr_db", None) is not None:
        model.training_copies = augmented.normalised_copies(X, train, groups, normaliser, model)
    model.fit(X_train, labels[train], groups=groups[train], callbacks=callbacks)
    proba = model.predict_proba(normaliser.transform(take(X, test), groups[test])) if len(test) else None
    return model, normaliser, proba


@dataclass
class Inputs:
    """A protocol's data ready for models: features of every readable utterance, and its folds."""

    utterances: list
    X: Any  # list of (frames, features) arrays for sequence models, else (utterances, features)
    labels: np.ndarray
    groups: np.ndarray
    folds: list[Fold]  # indices into the arrays above
    classes: tuple[str, ...]
    skipped: dict[str, str]


def build_inputs(config: RunConfig, runtime: Runtime, feature_set, protocol, data) -> Inputs:
    """Extract (or load from cache) features; drop unreadable files; map the folds onto what is left."""
    extraction = extract_features([(f"{u.id}@{u.corpus}", u.path) for u in data.utterances], feature_set,
                                  cache_dir=runtime.cache_dir, jobs=runtime.jobs, progress=runtime.progress)
    keep = np.array([f"{u.id}@{u.corpus}" in extraction.features for u in data.utterances])
    if not keep.any():
        raise BenchError("no utterance could be read: " + next(iter(extraction.failed.values()), ""))
    index_map = np.cumsum(keep) - 1
    utterances = [u for u, k in zip(data.utterances, keep) if k]
    model_cls = MODELS.lookup(config.model)
    X = model_inputs(model_cls, [extraction.features[f"{u.id}@{u.corpus}"] for u in utterances])
    X = augmented.remember_sources(X, [(f"{u.id}@{u.corpus}", u.path) for u in utterances], feature_set,
                                   runtime.cache_dir, runtime.jobs)  # for audio-augmented training copies
    folds = [Fold(f.name, index_map[f.train][keep[f.train]], index_map[f.test][keep[f.test]])
             for f in protocol.folds(data)]
    return Inputs(utterances, X, data.labels[keep], data.groups[keep], folds, data.classes, extraction.failed)


def run(config: RunConfig, runtime: Runtime = Runtime(), tuned: "TunedParams | None" = None) -> RunResult:
    """Evaluate ``config`` under its protocol; ``tuned`` supplies per-fold hyper-parameters."""
    import mlflow

    from . import tracking

    feature_set, protocol, data, by_corpus = prepare(config, runtime)
    model_cls = MODELS.lookup(config.model)
    tracking.use_store(runtime.tracking_uri, runtime.experiment)
    run_name = runtime.run_name or f"{config.model}-{feature_set.name}-{config.protocol}"
    project_run = tracking.project_run_id()  # set when started by `mlflow run` (MLproject)
    with mlflow.start_run(run_id=project_run, run_name=None if project_run else run_name) as parent:
        try:
            return _run_folds(config, runtime, feature_set, protocol, data, by_corpus, model_cls, parent, tuned)
        except BaseException as exc:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            mlflow.set_tag("error", f"{type(exc).__name__}: {message}"[:5000])
            raise


@dataclass
class TunedParams:
    """Hyper-parameters from an Optuna study: one set per outer fold, and one for the final model."""

    study: str
    by_fold: dict[str, dict[str, Any]]
    final: dict[str, Any]

    def for_fold(self, name: str) -> dict[str, Any]:
        if name not in self.by_fold:
            raise BenchError(f"study {self.study} has no tuned parameters for fold {name}; "
                             f"run `bench tune` with the same protocol options first")
        return self.by_fold[name]


def _run_folds(config, runtime, feature_set, protocol, data, by_corpus, model_cls, parent, tuned):
    import mlflow
    import pandas as pd

    from . import tracking

    resolved = asdict(config)
    resolved["features"] = feature_set.name
    resolved["feature_params"] = asdict(feature_set.config)
    resolved["model_params"] = get_model(config.model, **config.model_kwargs()).get_params()
    resolved["classes_resolved"] = ",".join(data.classes)
    mlflow.log_params(tracking.flat_params(resolved))
    mlflow.set_tags({
        "ser_bench_kind": "run",
        "git_commit": tracking.git_commit(),
        "feature_cache_key": feature_set.cache_key(),
        "model": config.model, "features": feature_set.name, "protocol": config.protocol,
        "classes": ",".join(data.classes), "n_classes": str(len(data.classes)),
        "corpora": ",".join(protocol.corpus_names()),
        **{f"corpus_fingerprint.{name}": fingerprint(utts) for name, utts in by_corpus.items()},
    })

    if tuned is not None:
        mlflow.set_tag("tuned_by_study", tuned.study)
    inputs = build_inputs(config, runtime, feature_set, protocol, data)
    mlflow.log_metrics({"n_skipped_files": len(inputs.skipped), "n_utterances": len(inputs.utterances)})
    if inputs.skipped:
        mlflow.log_text("\n".join(inputs.skipped.values()), "skipped_files.txt")
    utterances, X, labels, groups, folds = inputs.utterances, inputs.X, inputs.labels, inputs.groups, inputs.folds

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    fold_rows, prediction_rows, last_fold = [], [], None
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  disable=not runtime.progress, transient=True) as bar:
        task = bar.add_task(f"{config.model} folds", total=len(folds))
        for fold in folds:
            train, test = fold.train, fold.test
            if len(test) == 0:
                log.warning("fold %s has no readable test utterance; skipped", fold.name)
                continue
            with mlflow.start_run(run_name=fold.name, nested=True):
                mlflow.set_tags({"fold": fold.name, "test_speakers": ",".join(sorted(set(groups[test])))[:5000]})
                start = time.perf_counter()
                callbacks = [tracking.epoch_logger()] if model_cls.input_kind == "sequence" else None
                params = tuned.for_fold(fold.name) if tuned else None
                if params:
                    mlflow.log_params({f"tuned.{k}": v for k, v in params.items()})
                model, normaliser, proba = fit_and_predict(config, X, labels, groups, train, test, callbacks, params)
                predicted = model.classes_[np.argmax(proba, axis=1)]
                metrics = classification_metrics(labels[test], predicted, data.classes)
                mlflow.log_metrics({**metrics, "n_train": len(train), "n_test": len(test),
                                    "fit_seconds": time.perf_counter() - start})
            fold_rows.append({"fold": fold.name, "n_train": len(train), "n_test": len(test), **metrics})
            column = {c: j for j, c in enumerate(model.classes_)}  # a class absent from training scores 0
            for row, i in enumerate(test):
                utt = utterances[i]
                prediction_rows.append({
                    "id": utt.id, "corpus": utt.corpus, "speaker": utt.speaker, "fold": fold.name,
                    "true": labels[i], "predicted": predicted[row],
                    **{f"p_{c}": float(proba[row, column[c]]) if c in column else 0.0 for c in data.classes},
                })
            last_fold = (model, normaliser)
            bar.advance(task)

    predictions = pd.DataFrame(prediction_rows)
    pooled = classification_metrics(predictions["true"], predictions["predicted"], data.classes)
    pooled["uar_ci_low"], pooled["uar_ci_high"] = uar_interval(predictions["true"], predictions["predicted"],
                                                               seed=config.seed)
    pooled["fold_uar_mean"] = float(np.mean([r["uar"] for r in fold_rows]))
    pooled["fold_uar_std"] = float(np.std([r["uar"] for r in fold_rows]))
    mlflow.log_metrics(pooled)
    tracking.log_table(predictions, "predictions.csv")
    tracking.log_table(pd.DataFrame(fold_rows), "folds.csv")
    tracking.log_confusion_matrices(predictions["true"], predictions["predicted"], data.classes)
    from sklearn.metrics import classification_report

    mlflow.log_text(classification_report(predictions["true"], predictions["predicted"], labels=list(data.classes),
                                          zero_division=0, digits=4), "classification_report.txt")

    model_uri = None
    if config.final_model:
        model_uri = _log_final_model(config, runtime, feature_set, model_cls, X, labels, groups, folds, last_fold,
                                     tuned.final if tuned else None)
    return RunResult(parent.info.run_id, data.classes, fold_rows, pooled, len(utterances), inputs.skipped,
                     model_uri)


def _log_final_model(config, runtime, feature_set, model_cls, X, labels, groups, folds, last_fold, final_params):
    """The deployable model: the single fold's model, or a refit on all training data after CV."""
    import mlflow

    from . import tracking

    if len(folds) == 1:  # cross-corpus or a single random split: that fold's model is the model
        model, normaliser = last_fold
    else:
        everything = np.arange(len(labels))
        model, normaliser, _ = fit_and_predict(config, X, labels, groups, everything, everything[:0],
                                               params=final_params)
    sequence = model_cls.input_kind == "sequence"
    n_features = (X[0].shape[1] if sequence else X.shape[1])
    metadata = {"label_map": [str(c) for c in model.classes_], "feature_set": feature_set.name,
                "feature_params": asdict(feature_set.config), "input_kind": model_cls.input_kind,
                "norm": config.norm, "model": config.model, "ser_bench_protocol": config.protocol}
    mlflow.log_dict(normaliser.to_dict(), "preprocessing/normaliser.json")
    mlflow.log_dict({"label_map": metadata["label_map"]}, "label_map.json")
    info = tracking.log_model(model_cls.mlflow_flavor, model.flavor_model(),
                              tracking.tensor_signature(n_features, len(model.classes_), sequence), metadata,
                              registered_name=runtime.register, trusted_types=getattr(model, "trusted_types", ()))
    mlflow.set_tag("model_uri", info.model_uri)
    return info.model_uri
