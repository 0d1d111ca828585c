"""``bench run``: one model x feature set x protocol, every fold and the pooled result in MLflow.

Order of work: the config was validated by :func:`benchmark.config.resolve` (typos fail before a
run exists); :func:`prepare` loads the protocol's corpora and its utterances, still before any run;
:func:`build_inputs` extracts features through the cache; :func:`evaluate_folds` trains and
predicts fold by fold and knows nothing of MLflow; :func:`run` logs each fold as it finishes (a
nested run), then the pooled result and the deployable model. Scalers and normalisation are
fitted on each training fold only. A failure marks the parent run FAILED with the error, while the
folds already finished stay logged.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Iterator

import numpy as np

from .config import RunConfig
from .corpora import open_corpus
from .corpora.base import fingerprint
from .errors import BenchError
from .features import augmented
from .features.extract import extract_features
from .features.functionals import parts_needed
from .metrics import classification_metrics, uar_interval
from .models import model_input, tensorflow_free
from .normalise import Normaliser, corpus_of
from .progress import progress as progress_lines
from .protocols import Fold
from .vocabulary import apply_map, parse_map

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """Where things are and how to run; does not change the numbers (not logged as params)."""

    data_dir: str | None = None
    cache_dir: str | None = None
    jobs: int | None = None  # worker processes for extraction and for folds (None: every core)
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
    corpus_problems: int = 0  # entries the corpus scans could not use (not files read and skipped)


@dataclass
class TunedParams:
    """Hyper-parameters from an Optuna study: one set per outer fold, and one for the final model
    (None: the study has no ``@all`` study, tuned with ``--no-final-model`` or stopped before it)."""

    study: str
    by_fold: dict[str, dict[str, Any]]
    final: dict[str, Any] | None

    def for_fold(self, name: str) -> dict[str, Any]:
        if name not in self.by_fold:
            raise BenchError(f"study {self.study} has no tuned parameters for fold {name}; "
                             f"run `bench tune` with the same protocol options first")
        return self.by_fold[name]


def check_final_params(tuned: TunedParams | None, final_model: bool) -> None:
    """A run that refits the deployable model needs the study's parameters for it: say so at once."""
    if tuned is not None and tuned.final is None and final_model:
        raise BenchError(f"study {tuned.study} has no {tuned.study}@all study for the final model (it was tuned with "
                         "--no-final-model, or stopped before @all finished a trial): add --no-final-model to bench "
                         "run, or run the same bench tune without --no-final-model (the per-fold studies are kept; "
                         "only @all is tuned)")


def subsample(utterances: list, per_speaker_class: int | None, max_speakers: int | None = None) -> list:
    """The first N utterances (by id) of every speaker x emotion, of the first M speakers (0: all)."""
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


def take(X, index: np.ndarray):
    if isinstance(X, augmented.FrameSources):  # keeps the files, for audio-augmented training copies
        return X.subset(index)
    return X[index] if isinstance(X, np.ndarray) else [X[i] for i in index]


@dataclass
class Prepared:
    """A validated config with the objects it resolves to and the protocol's utterances."""

    config: RunConfig
    feature_set: Any
    protocol: Any
    data: Any  # ProtocolData
    by_corpus: dict[str, list]
    # what the corpus scans could not use (dangling links, unknown emotion folders, duplicate manifest
    # rows, ...): warned about when found, and counted and logged by the run apart from unreadable files
    scan_skipped: dict[str, str] = field(default_factory=dict)


def prepare(config: RunConfig, runtime: Runtime) -> Prepared:
    """Load the protocol's corpora and select its utterances (before any MLflow run exists)."""
    protocol = config.build_protocol()
    by_corpus, scan_skipped = {}, {}
    for name in protocol.corpus_names():
        corpus = open_corpus(name, runtime.data_dir)
        by_corpus[name] = [u if u.corpus == name else replace(u, corpus=name)
                           for u in subsample(corpus.utterances(), config.slice.max_per_speaker_class,
                                              config.slice.max_speakers)]
        scan_skipped.update({f"{name}:scan:{i}": message for i, message in enumerate(corpus.skipped)})
    by_corpus = apply_map(parse_map(config.task.map), by_corpus)
    data = protocol.select(by_corpus)
    for note in data.notes:  # e.g. the emotions corpora share and what each one drops
        log.warning(note)
    if "speaker" in config.task.norm.split("+"):
        warn_if_speakers_lack_emotions(data, config.task.norm)
    feature_set = config.build_features()
    feature_set.cache_key()  # finds external weights (SSL models) now: a missing one fails before any run
    # the set may pin what it resolved (an SSL model's commit): the logged config says exactly that
    config = replace(config, features=replace(config.features, params=asdict(feature_set.config)))
    return Prepared(config, feature_set, protocol, data, by_corpus, scan_skipped)


def warn_if_speakers_lack_emotions(data, norm: str = "speaker") -> None:
    """Per-speaker normalisation subtracts each speaker's mean: for a speaker heard in one emotion
    only, that mean *is* the emotion, which is then normalised away (URDU's 26 of 29 speaker codes
    measured below chance with it). Say so loudly."""
    emotions: dict[str, set] = {}
    for group, label in zip(data.groups, data.labels):
        emotions.setdefault(group, set()).add(label)
    narrow = sum(1 for found in emotions.values() if len(found) < max(2, len(data.classes) / 2))
    if narrow > len(emotions) / 4:
        log.warning("--norm %s: %d of %d speakers are heard in fewer than half of the emotions; their "
                    "emotion is normalised away with their mean. Prefer --norm global or corpus here.",
                    norm, narrow, len(emotions))


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


def build_inputs(prepared: Prepared, runtime: Runtime) -> Inputs:
    """Extract (or load from cache) features; drop unreadable files; map the folds onto what is left."""
    data = prepared.data
    keys = [f"{u.id}@{u.corpus}" for u in data.utterances]
    extraction = extract_features(list(zip(keys, (u.path for u in data.utterances))), prepared.feature_set,
                                  cache_dir=runtime.cache_dir, jobs=runtime.jobs, progress=runtime.progress,
                                  parts=parts_needed(prepared.config.model_class().input_kind, prepared.feature_set),
                                  in_process_ok=tensorflow_free(prepared.config.model_class()))
    keep = np.array([key in extraction.features for key in keys])
    if not keep.any():
        raise BenchError("no utterance could be read: " + next(iter(extraction.failed.values()), ""))
    index_map = np.cumsum(keep) - 1  # old index -> index among the kept utterances
    utterances = [u for u, k in zip(data.utterances, keep) if k]
    X = model_input(prepared.config.model_class(), [extraction.features[key] for key, k in zip(keys, keep) if k])
    X = augmented.remember_sources(X, [(key, u.path) for key, u in zip([k for k, kept in zip(keys, keep) if kept],
                                                                        utterances)],
                                   prepared.feature_set, runtime.cache_dir, runtime.jobs)  # for training copies
    folds = []
    for fold in prepared.protocol.folds(data):
        train, test = index_map[fold.train][keep[fold.train]], index_map[fold.test][keep[fold.test]]
        if len(train) == 0:  # every training file unreadable: say which fold, not a library traceback
            raise BenchError(f"fold {fold.name} has no readable training utterance ({len(extraction.failed)} files "
                             f"skipped, see above); fix or remove those files, or choose other speakers/corpora")
        folds.append(Fold(fold.name, train, test))
    return Inputs(utterances, X, data.labels[keep], data.groups[keep], folds, data.classes, extraction.failed)


def fit_and_predict(config: RunConfig, X, labels, groups, train, test, on_epoch=None, params=None):
    """Normalise with training statistics, fit on ``train``, predict ``test``.

    ``params`` (e.g. tuned hyper-parameters) override the config's model parameters.
    """
    normaliser = Normaliser(config.task.norm).fit(take(X, train), groups[train])
    model = config.build_model(params)
    if augmented.model_variants(model):
        model.training_copies = augmented.normalised_copies(X, train, groups, normaliser, model)  # train only
    model.fit(normaliser.transform(take(X, train), groups[train]), labels[train], groups=groups[train],
              on_epoch=on_epoch)
    proba = model.predict_proba(normaliser.transform(take(X, test), groups[test])) if len(test) else None
    return model, normaliser, proba


@dataclass
class FoldResult:
    """What one fold produced; no MLflow involved."""

    fold: Fold
    metrics: dict[str, float]
    predictions: list[dict[str, Any]]
    model: Any
    normaliser: Normaliser
    params: dict[str, Any] | None
    epochs: list[dict[str, float]] = field(default_factory=list)  # per-epoch metrics, if the model has epochs
    seconds: float = 0.0


def evaluate_fold(config: RunConfig, inputs: Inputs, fold: Fold, tuned: TunedParams | None = None) -> FoldResult:
    """Train on one fold's training part and predict its test part (pure: no logging)."""
    start, epochs = time.perf_counter(), []
    params = tuned.for_fold(fold.name) if tuned else None
    model, normaliser, proba = fit_and_predict(
        config, inputs.X, inputs.labels, inputs.groups, fold.train, fold.test,
        on_epoch=lambda epoch, metrics, _model: epochs.append(metrics), params=params)
    predicted = model.classes_[np.argmax(proba, axis=1)]
    metrics = classification_metrics(inputs.labels[fold.test], predicted, inputs.classes)
    column = {c: j for j, c in enumerate(model.classes_)}  # a class absent from training scores 0
    rows = []
    for row, i in enumerate(fold.test):
        utt = inputs.utterances[i]
        rows.append({"id": utt.id, "corpus": utt.corpus, "speaker": utt.speaker, "fold": fold.name,
                     "true": inputs.labels[i], "predicted": predicted[row],
                     **{f"p_{c}": float(proba[row, column[c]]) if c in column else 0.0 for c in inputs.classes}})
    return FoldResult(fold, metrics, rows, model, normaliser, params, epochs, time.perf_counter() - start)


def _evaluate_fold_in_worker(config, inputs, fold, tuned) -> FoldResult:
    """A fold in a worker process: one thread (the workers already use every core), no model back
    (after cross-validation the deployable model is refitted on all the data anyway)."""
    os.environ["SER_BENCH_THREADS"] = "1"
    result = evaluate_fold(config, inputs, fold, tuned)
    result.model = None
    return result


# A loky worker's start-up (interpreter, numpy, sklearn, this package): folds cheaper than this
# are not worth sending to other processes (measured: a warm svm + eGeMAPS LOSO run took 20 s with
# 2 workers against 15-17 s in one process, its folds costing ~0.3 s each).
WORKER_START_S = 2.0


def evaluate_folds(config: RunConfig, inputs: Inputs, tuned: TunedParams | None = None,
                   jobs: int | None = 1) -> Iterator[FoldResult]:
    """Every fold's result, in fold order, as soon as it (and those before it) exist.

    With ``jobs`` > 1 independent folds run in joblib's loky worker processes, one thread each
    (processes, not threads: the fits are CPU-bound and their libraries' own threads oversubscribe
    small machines); the results are the same as with one job. ``jobs=None`` (automatic) times
    the first fold here and sends the rest to one worker per core only if a fold costs more than
    a worker's start-up (:data:`WORKER_START_S`). A TensorFlow model's folds go to the workers
    untimed: one costs minutes, and a first fold timed here leaves a core idle for all of them.
    """
    folds = [f for f in inputs.folds if len(f.test)]
    for fold in inputs.folds:
        if not len(fold.test):
            log.warning("fold %s has no readable test utterance; skipped", fold.name)
    automatic = jobs is None
    jobs = min(available_cores() if automatic else jobs, len(folds))
    if automatic and jobs > 1 and not config.model_class().loads_tensorflow:
        start = time.perf_counter()
        first = evaluate_fold(config, inputs, folds[0], tuned)
        if time.perf_counter() - start < WORKER_START_S:  # timed before the caller logs it
            jobs = 1
        yield first
        folds = folds[1:]
        jobs = min(jobs, len(folds))
    if jobs <= 1:
        for fold in folds:
            yield evaluate_fold(config, inputs, fold, tuned)
        return
    from joblib import Parallel, delayed, parallel_config

    with parallel_config(backend="loky", inner_max_num_threads=1):
        yield from Parallel(n_jobs=jobs, return_as="generator")(
            delayed(_evaluate_fold_in_worker)(config, inputs, fold, tuned) for fold in folds)


def available_cores() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def pooled_result(results: list[FoldResult], classes, seed: int):
    """(predictions table, pooled metrics) over every fold's test utterances."""
    import pandas as pd

    predictions = pd.DataFrame([row for r in results for row in r.predictions])
    pooled = classification_metrics(predictions["true"], predictions["predicted"], classes)
    pooled["uar_ci_low"], pooled["uar_ci_high"] = uar_interval(predictions["true"], predictions["predicted"],
                                                               seed=seed)
    pooled["fold_uar_mean"] = float(np.mean([r.metrics["uar"] for r in results]))
    pooled["fold_uar_std"] = float(np.std([r.metrics["uar"] for r in results]))
    return predictions, pooled


def run(config: RunConfig, runtime: Runtime = Runtime(), tuned: TunedParams | None = None) -> RunResult:
    """Evaluate ``config`` under its protocol; ``tuned`` supplies per-fold hyper-parameters."""
    from . import forked, lifecycle, store, tracking

    store.check_before_open(tracking.resolve_tracking_uri(runtime.tracking_uri))  # a bad store: one line, first
    check_final_params(tuned, config.final_model)  # before any fold is computed
    prepared = prepare(config, runtime)
    with lifecycle.sigterm_as_interrupt():
        # a vector model's computation starts now, in a forked process, while this one imports MLflow
        # and opens the run (benchmark.forked); folds are logged here as they arrive
        fork = available_cores() > 1 and tensorflow_free(config.model_class())
        computed = forked.iterate(lambda: computation(prepared, runtime, tuned), fork=fork)
        warm_up: list = []  # threads importing what logging needs, started once MLflow is imported
        try:
            import mlflow

            tracking.use_store(runtime.tracking_uri, runtime.experiment)
            lifecycle.reap_dead_runs()  # runs of killed processes: FAILED, not RUNNING forever
            run_name = runtime.run_name or config.label() + ("-tuned" if tuned else "")
            project_run = tracking.project_run_id()  # set when started by `mlflow run` (MLproject)
            # a SIGTERM while the run is created waits for the try below, which records it
            with lifecycle.SigtermHeld() as held, \
                    mlflow.start_run(run_id=project_run, run_name=None if project_run else run_name) as parent:
                try:
                    with lifecycle.owned(parent.info.run_id):
                        held.release()
                        return _logged_run(prepared, runtime, parent.info.run_id, tuned, computed, warm_up)
                except BaseException as exc:
                    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    mlflow.set_tag("error", f"{type(exc).__name__}: {message}"[:5000])
                    raise
        finally:
            computed.close()  # a forked computation still running (an error here, Ctrl-C) is stopped
            for thread in warm_up:
                thread.join()  # no import left running in another thread while this process goes on


def computation(prepared: Prepared, runtime: Runtime, tuned: TunedParams | None) -> Iterator[tuple[str, Any]]:
    """Everything a run computes, in the order it is logged: ``("inputs", Inputs)``, then
    ``("fold", FoldResult)`` per fold, ``("pooled", (predictions, metrics, confusion-matrix files))``
    and ``("final", (model, normaliser, config))`` for the deployable model. Touches no MLflow, so
    it can run in another process (:mod:`benchmark.forked`)."""
    from .figures import confusion_matrix_files

    config = prepared.config
    inputs = build_inputs(prepared, runtime)
    yield "inputs", inputs
    _training_copies_ahead(config, inputs, tuned, runtime.progress)
    results = []
    for result in evaluate_folds(config, inputs, tuned, runtime.jobs):
        results.append(replace(result, model=None))  # only the final model is logged; not sent twice
        yield "fold", results[-1]
    if not results:
        return
    predictions, pooled = pooled_result(results, inputs.classes, config.task.seed)
    figures = confusion_matrix_files(predictions["true"], predictions["predicted"], inputs.classes)
    yield "pooled", (predictions, pooled, figures)
    if config.final_model:
        yield "final", _final_model(config, inputs, result, tuned.final if tuned else None)


def _training_copies_ahead(config: RunConfig, inputs: Inputs, tuned: TunedParams | None, progress: bool) -> None:
    """Audio-augmented copies (speed perturbation, noise) of every utterance some fold trains on,
    extracted once here before the folds read them from the cache (augmented.extract_ahead)."""
    folds = [fold for fold in inputs.folds if len(fold.test)]  # the folds evaluate_folds will run
    wanted: set = set()
    for fold in folds:
        model = config.build_model(tuned.for_fold(fold.name) if tuned else None)
        wanted.update(augmented.model_variants(model))
    if wanted:
        training = np.unique(np.concatenate([fold.train for fold in folds]))
        augmented.extract_ahead(inputs.X, training, sorted(wanted), progress)


def _logged_run(prepared: Prepared, runtime: Runtime, run_id: str, tuned: TunedParams | None,
                computed: Iterator[tuple[str, Any]], warm_up: list) -> RunResult:
    import mlflow

    from . import feature_shift, forked, tracking

    config = prepared.config
    tracking.log_run_header(config, prepared.protocol, prepared.data.classes, prepared.feature_set.cache_key(),
                            {name: fingerprint(utts) for name, utts in prepared.by_corpus.items()}, tuned,
                            prepared.data.notes, prepared.feature_set.label())
    _, inputs = next(computed)
    shift = feature_shift.check_run(config.task.norm, inputs, prepared.feature_set)
    if shift:  # before training: a model fitted on data the test set does not resemble is worth a warning
        log.warning(shift.message())
        tracking.log_feature_shift(shift.message(), shift.table())
    mlflow.log_metrics({"n_skipped_files": len(inputs.skipped), "n_utterances": len(inputs.utterances)})
    mlflow.set_tag("computed_in", "forked process" if isinstance(computed, forked.FromChild) else "run process")
    if inputs.skipped:
        mlflow.log_text("\n".join(inputs.skipped.values()), "skipped_files.txt")
    if prepared.scan_skipped:
        mlflow.log_metric("n_corpus_problems", len(prepared.scan_skipped))
        mlflow.log_text("\n".join(prepared.scan_skipped.values()), "corpus_problems.txt")

    results, final, pooled_parts = [], None, None
    # logging's imports (the model's serialiser, MLflow's package map) in a thread while the folds
    # are computed (in another process, or here largely in C code). Not before MLflow is imported,
    # and nothing the computation imports (matplotlib): two threads importing one package can see
    # it half-initialised.
    if available_cores() > 1:
        warm_up.append(tracking.warm_up_in_background(config.model_class(), config.final_model))

    # a bar on a terminal, one plain line per finished fold in a log file
    with progress_lines(sum(1 for f in inputs.folds if len(f.test)), f"{config.model.name} folds", unit="folds", enabled=runtime.progress,
                        every_percent=0.1) as advance:
        for kind, value in computed:
            if kind == "pooled":
                pooled_parts = value
            elif kind == "final":
                final = value
            else:
                tracking.log_fold(value, sorted(set(inputs.groups[value.fold.test])),
                                  sorted(set(corpus_of(inputs.groups[value.fold.train]))))
                results.append(value)
                advance()

    for thread in warm_up:
        thread.join()  # no import still running in another thread while logging uses those libraries
    if pooled_parts is None:
        raise BenchError("no fold has a readable test utterance (see the warnings above); nothing to score")
    predictions, pooled, figures = pooled_parts
    tracking.log_pooled(pooled, predictions, [{"fold": r.fold.name, "n_train": len(r.fold.train),
                                               "n_test": len(r.fold.test), **r.metrics} for r in results],
                        inputs.classes, figures)
    model_uri = None
    if final is not None:
        model, normaliser, final_config = final
        model_uri = tracking.log_final_model(model, normaliser, final_config, inputs.X, runtime.register)
    fold_rows = [{"fold": r.fold.name, "n_train": len(r.fold.train), "n_test": len(r.fold.test), **r.metrics}
                 for r in results]
    return RunResult(run_id, inputs.classes, fold_rows, pooled, len(inputs.utterances), inputs.skipped, model_uri,
                     len(prepared.scan_skipped))


def _final_model(config: RunConfig, inputs: Inputs, last: FoldResult, final_params: dict | None):
    """The deployable model: the single fold's model, or a refit on all the data after CV; with the
    config it really is (tuned parameters written in)."""
    if len(inputs.folds) == 1:  # cross-corpus or a single random split: that fold's model is the model
        model, normaliser = last.model, last.normaliser
        final_params = last.params
    else:
        everything = np.arange(len(inputs.labels))
        model, normaliser, _ = fit_and_predict(config, inputs.X, inputs.labels, inputs.groups, everything,
                                               everything[:0], params=final_params)
    if final_params:  # what the logged model really is, in the config's one form
        config = replace(config, model=replace(config.model, params={**config.model.params, **final_params}))
    return model, normaliser, config
