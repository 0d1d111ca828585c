"""``bench tune``: Optuna studies whose objective never sees the outer test data.

The objective is the mean UAR over speaker-grouped inner folds of a *training* pool. With one
outer fold (cross-corpus, a random split) the pool is that fold's training part and there is one
study. With speaker cross-validation (LOSO, grouped k-fold) tuning is nested: one study per outer
fold, named ``<study>@<fold>``, tuned on that fold's training speakers only, plus ``<study>@all``
on every speaker for the deployable final model (which is never evaluated). ``bench run
--params-from <study>`` then gives each outer fold its own best parameters.

Studies live in an SQLAlchemy storage (default: ``sqlite:///optuna.db``), so a killed study
resumes with the same command and several workers on several machines can share one study: each
worker stops once the study holds ``--trials`` finished or running trials. Every trial is an
MLflow run nested under the study's run.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import sys
import warnings
import zlib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold, StratifiedKFold

from . import lifecycle
from .config import RunConfig
from .errors import BenchError
from .metrics import uar as unweighted_recall
from .progress import duration_text
from .runner import Inputs, Runtime, TunedParams, build_inputs, fit_and_predict, prepare, take
from .study_slots import StudyFull, cap_trials, fail_dead_trials

DEFAULT_STORAGE = "optuna.db"
# A worker beats every HEARTBEAT_S; its running trial counts as dead (FAIL) after GRACE_S of silence.
HEARTBEAT_S = int(os.environ.get("SER_BENCH_OPTUNA_HEARTBEAT", "30"))
GRACE_S = int(os.environ.get("SER_BENCH_OPTUNA_GRACE", "90"))


@dataclass
class TuneOptions:
    trials: int = 20
    timeout: float | None = None  # seconds per study and worker
    study: str | None = None
    storage: str | None = None
    jobs: int = 1  # worker processes sharing the study
    inner_folds: int = 3
    pinned: dict = field(default_factory=dict)  # model parameters given with --param; tune() keeps the searched ones
    final_model: bool = True  # also the <study>@all study (the deployable model's parameters, never evaluated)


def storage_url(storage: str | None) -> str:
    return storage or f"sqlite:///{Path.cwd() / DEFAULT_STORAGE}"


def open_storage(url: str, attempts: int = 5):
    """Optuna's RDB storage; retried because workers starting together race to create its tables."""
    import time

    import optuna

    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    for attempt in range(attempts):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                # heartbeats let a later run mark a killed worker's trials as failed, not running forever
                return optuna.storages.RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=HEARTBEAT_S,
                                                  grace_period=GRACE_S)
        except Exception as exc:  # sqlalchemy OperationalError / IntegrityError while another creates tables
            if attempt == attempts - 1:
                raise BenchError(f"cannot open Optuna storage {url} ({str(exc).splitlines()[0]})") from None
            time.sleep(1.0 + attempt)


def default_study_name(config: RunConfig) -> str:
    """model-features-protocol-<what the protocol reads>-classes, e.g. svm-egemaps-within_corpus-emodb-7."""
    slug = config.build_protocol().slug().replace("->", "-")
    return f"{config.label()}-{slug}-{config.task.classes}"


def inner_splitter(labels: np.ndarray, groups: np.ndarray, folds: int, seed: int):
    speakers = len(np.unique(groups))
    if speakers >= folds:
        return StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    if speakers >= 2:
        return GroupKFold(n_splits=speakers)
    return StratifiedKFold(n_splits=min(folds, int(np.bincount(np.unique(labels, return_inverse=True)[1]).min())),
                           shuffle=True, random_state=seed)


def pools(inputs: Inputs, final_model: bool = True) -> list[tuple[str, np.ndarray]]:
    """(suffix, training indices): one per outer fold, plus "all" after cross-validation unless
    ``final_model`` is False (``bench run --no-final-model`` never uses it, and on the whole corpus
    it is the costliest study)."""
    if len(inputs.folds) == 1:
        return [(inputs.folds[0].name, inputs.folds[0].train)]
    outer = [(f.name, f.train) for f in inputs.folds]
    return outer + [("all", np.arange(len(inputs.labels)))] if final_model else outer


def make_objective(config: RunConfig, inputs: Inputs, pool: np.ndarray, options: TuneOptions, study_run_id: str,
                   tracking_uri: str):
    import mlflow
    import optuna

    model_cls = config.model_class()
    labels, groups = inputs.labels[pool], inputs.groups[pool]
    X = take(inputs.X, pool)
    splits = list(inner_splitter(labels, groups, options.inner_folds, config.task.seed)
                  .split(np.zeros((len(labels), 1)), labels, groups))
    # steps an inner fold may report: every epoch of every ensemble member (models without epochs: 1)
    epochs = int(config.model.params.get("epochs", 1)) * int(config.model.params.get("ensemble", 1))

    def objective(trial: optuna.Trial) -> float:
        params = model_cls.search_space(PinnedTrial(trial, options.pinned))
        mlflow.set_tracking_uri(tracking_uri)
        # nested under the study's run by tag: that run is not active in this (maybe other) process
        with mlflow.start_run(run_name=f"trial-{trial.number}",
                              tags={"mlflow.parentRunId": study_run_id, "optuna_trial": str(trial.number),
                                    "optuna_study": trial.study.study_name, "ser_bench_kind": "trial",
                                    **lifecycle.process_tags()}), lifecycle.pruned_trial_is_not_a_failure():
            mlflow.log_params(params)
            scores = []
            for k, (train, valid) in enumerate(splits):
                try:
                    model, normaliser, proba = fit_and_predict(
                        config, X, labels, groups, train, valid,
                        epoch_pruner(trial, X, labels, groups, valid, config, k * epochs), params)
                except optuna.TrialPruned:
                    mlflow.set_tag("pruned", "true")
                    raise
                uar = unweighted_recall(labels[valid], model.classes_[np.argmax(proba, axis=1)])
                scores.append(uar)
                mlflow.log_metric("inner_uar", uar, step=k)
                if "epochs" not in config.model.params:
                    trial.report(float(np.mean(scores)), step=k)
                    if trial.should_prune():
                        mlflow.set_tag("pruned", "true")
                        raise optuna.TrialPruned()
            value = float(np.mean(scores))
            mlflow.log_metric("mean_inner_uar", value)
            return value

    return objective


def epoch_pruner(trial, X, labels, groups, valid, config: RunConfig, offset: int):
    """An epoch hook: report the inner validation UAR every epoch and prune bad trials early.

    Framework-free: it asks the model being trained for probabilities. The validation part is
    normalised with the training part's statistics once, up front.
    """
    import optuna

    from .normalise import Normaliser

    train = np.setdiff1d(np.arange(len(labels)), valid)
    normaliser = Normaliser(config.task.norm).fit(take(X, train), groups[train])
    batch = normaliser.transform(take(X, valid), groups[valid])

    def on_epoch(epoch: int, metrics: dict, model) -> None:
        predicted = model.classes_[np.argmax(model.predict_proba(batch), axis=1)]
        trial.report(unweighted_recall(labels[valid], predicted), step=offset + epoch)
        if trial.should_prune():
            raise optuna.TrialPruned()

    return on_epoch


def study_run(study, tags: dict[str, str]) -> str:
    """The MLflow run that stands for a study: created once, its id kept in the study's attributes.

    Two workers starting at the same moment may both create one; the last id written wins and
    the loser deletes its own, so every trial ends up under one run.
    """
    import time

    import mlflow

    from . import tracking

    existing = study.user_attrs.get("mlflow_run_id")
    if existing:
        return existing
    project_run = tracking.project_run_id()  # `mlflow run -e tune`: the project's run is the study's
    with mlflow.start_run(run_id=project_run, run_name=None if project_run else f"study {study.study_name}",
                          tags={"optuna_study": study.study_name, "ser_bench_kind": "study", **tags}) as run:
        mine = run.info.run_id
    study.set_user_attr("mlflow_run_id", mine)
    time.sleep(1.0)
    winner = study.user_attrs["mlflow_run_id"]
    if winner != mine:
        mlflow.delete_run(mine)
    return winner


def shared(options: TuneOptions) -> bool:
    """A study other workers may join: several local jobs, or an explicitly given storage."""
    return options.jobs > 1 or options.storage is not None


def sampler_seed(config: RunConfig, options: TuneOptions, study_name: str) -> int:
    """The run's seed mixed with the study's name, so that the studies of the outer folds do not all
    try the same first points (seen: 12 trials over six studies covered three points); for a lone
    worker that is reproducible; for a shared study also mixed with the process id, or every worker
    would propose the same points."""
    seed = zlib.crc32(f"{config.task.seed}:{study_name}".encode())
    return seed % 2**31 if not shared(options) else (seed * 1_000_003 + os.getpid()) % 2**31


def finished_or_running(study) -> int:
    import optuna

    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.RUNNING)
    return len(study.get_trials(deepcopy=False, states=states))


class _OneLine(logging.Filter):
    """Optuna logs a failed trial with its traceback; for the failures ser-bench expects (a
    BenchError, Ctrl-C, SIGTERM) the message alone says it all (`Trial 3 failed ... because of the
    following error: Terminated(...)`), so it is printed on one line. Anything else keeps its
    traceback: it is a bug, and the traceback is how it gets fixed."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, (BenchError, KeyboardInterrupt)):
            record.exc_info, record.exc_text = None, None
        return True


def quiet_optuna() -> None:
    """Optuna's warnings only, each on one line."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for handler in logging.getLogger("optuna").handlers:
        if not any(isinstance(f, _OneLine) for f in handler.filters):
            handler.addFilter(_OneLine())


class TrialLines:
    """One plain line on stderr per finished trial, from every worker: trials of the networks take
    minutes each, so a tune redirected to a file (or run by several workers, which show no bars)
    would otherwise say nothing until its last study ends."""

    def __init__(self, trials: int):
        self.trials = trials

    def __call__(self, study, trial) -> None:
        import optuna

        text = f"tune {study.study_name}: trial {trial.number} {trial.state.name.lower()}"
        if trial.value is not None:
            text += f", inner UAR {trial.value:.3f}"
        states = optuna.trial.TrialState
        done = study.get_trials(deepcopy=False, states=(states.COMPLETE, states.PRUNED, states.FAIL))
        complete = [t.value for t in done if t.state == states.COMPLETE]
        if complete:
            text += f" (best {max(complete):.3f})"
        if trial.duration is not None:
            text += f", {duration_text(trial.duration.total_seconds())}"
        print(f"{text}; {len(done)} of {self.trials} trials ended", file=sys.stderr, flush=True)


def optimise(config: RunConfig, runtime: Runtime, options: TuneOptions, base_name: str) -> dict[str, dict]:
    """One worker: run every study of the protocol until each holds ``options.trials`` trials."""
    import mlflow
    import optuna

    from . import tracking

    quiet_optuna()
    prepared = prepare(config, runtime)
    inputs = build_inputs(prepared, runtime)
    tracking.use_store(runtime.tracking_uri, runtime.experiment)
    lifecycle.reap_dead_runs()  # trials of killed workers: FAILED, not RUNNING forever
    tracking_uri = mlflow.get_tracking_uri()
    storage = open_storage(storage_url(options.storage))
    tags = {"model": config.model.name, "features": config.features.name, "protocol": config.protocol.name}
    # load_tuned adds the pins back, and with one outer fold takes that fold's study for the final model
    attrs = {**tags, "config": config.to_dict(), "pinned_params": options.pinned, "outer_folds": len(inputs.folds)}
    best = {}
    for suffix, pool in pools(inputs, options.final_model):
        name = f"{base_name}@{suffix}"
        study = optuna.create_study(
            study_name=name, storage=storage, direction="maximize", load_if_exists=True,
            sampler=optuna.samplers.TPESampler(seed=sampler_seed(config, options, name), constant_liar=shared(options)),
            pruner=optuna.pruners.MedianPruner(n_startup_trials=3))
        for key, value in attrs.items():
            study.set_user_attr(key, value)
        run_id = study_run(study, tags)
        stop = optuna.study.MaxTrialsCallback(
            options.trials, states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED,
                                    optuna.trial.TrialState.RUNNING))
        fail_dead_trials(study, storage, GRACE_S)  # a killed worker's trials stop counting as running
        cap_trials(study, storage, options.trials, finished_or_running)
        with contextlib.suppress(StudyFull):
            study.optimize(make_objective(config, inputs, pool, options, run_id, tracking_uri), n_trials=None,
                           timeout=options.timeout, callbacks=[stop, TrialLines(options.trials)],
                           catch=(BenchError,))
        completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if completed:
            best_params = {**options.pinned, **study.best_params}
            study.set_user_attr("best_params", best_params)
            with mlflow.start_run(run_id=run_id):
                mlflow.log_metric("best_inner_uar", study.best_value)
                mlflow.log_dict(best_params, "best_params.json")
            best[suffix] = {"params": best_params, "value": study.best_value, "trials": len(study.trials)}
    return best


def _worker(config: RunConfig, runtime: Runtime, options: TuneOptions, base_name: str) -> dict:
    with lifecycle.sigterm_as_interrupt():
        return optimise(config, runtime, options, base_name)


def tune(config: RunConfig, runtime: Runtime, options: TuneOptions) -> tuple[str, dict[str, dict]]:
    """Run the protocol's studies with ``options.jobs`` worker processes; returns (study name, best)."""
    searched = search_space_names(config.model_class())
    if not searched:
        raise BenchError(f"model {config.model.name} declares no search space")
    options = replace(options, pinned=pinned_params(config, options.pinned))  # once, before any worker
    if options.pinned:
        print(f"bench tune: pinned with --param: {', '.join(f'{k}={v}' for k, v in options.pinned.items())}; "
              f"searched: {', '.join(sorted(searched - set(options.pinned)))}", file=sys.stderr, flush=True)
    name = options.study or default_study_name(config)
    if options.jobs <= 1:
        return name, _worker(config, runtime, options, name)
    from concurrent.futures import ProcessPoolExecutor

    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    quiet = Runtime(**{**asdict(runtime), "progress": False})
    with lifecycle.sigterm_as_interrupt(), ProcessPoolExecutor(  # workers exit if we are kill -9'd
            options.jobs, mp_context=multiprocessing.get_context(method), initializer=lifecycle.exit_with_parent,
            initargs=(os.getpid(),)) as pool:
        try:
            results = [pool.submit(_worker, config, quiet, options, name) for _ in range(options.jobs)]
            outcome = [r.result() for r in results]
        except BaseException:  # Ctrl-C / SIGTERM: workers end their trials FAILED and exit, none orphaned
            lifecycle.stop_pool(pool)
            raise
    return name, outcome[-1]


class _Probe:
    """Stands in for a trial to read which hyper-parameters a model searches."""

    def __init__(self):
        self.names: set[str] = set()

    def suggest_float(self, name, low, high, **kw):
        self.names.add(name)
        return low

    def suggest_int(self, name, low, high, **kw):
        self.names.add(name)
        return low

    def suggest_categorical(self, name, choices):
        self.names.add(name)
        return choices[0]


def search_space_names(model_cls) -> set[str]:
    probe = _Probe()
    model_cls.search_space(probe)
    return probe.names


def pinned_params(config: RunConfig, given: dict) -> dict:
    """The searched hyper-parameters the user gave with ``--param`` (or ``--batch-size``): held at
    that value in every trial instead of searched, e.g. a CPU-sized network (``--param filters=16``)
    or a tiny one in a test. Without this a given value was silently replaced by the search's."""
    searched = search_space_names(config.model_class())
    pinned = {name: value for name, value in given.items() if name in searched}  # epochs, seed...: not searched
    if pinned and len(pinned) == len(searched):
        raise BenchError(f"every hyper-parameter {config.model.name} searches is pinned with --param "
                         f"({', '.join(pinned)}); nothing is left to tune: use bench run")
    return pinned


class PinnedTrial:
    """A trial whose suggestions for pinned names return the pinned value; Optuna never sees those
    names (a pin may lie outside the search's range or choices), so the study keeps them in its
    ``pinned_params`` attribute and :func:`load_tuned` adds them to every fold's best parameters."""

    def __init__(self, trial, pinned: dict):
        self._trial, self._pinned = trial, pinned

    def _suggest(self, kind: str, name: str, *args, **kwargs):
        if name in self._pinned:
            return self._pinned[name]
        return getattr(self._trial, kind)(name, *args, **kwargs)

    def suggest_float(self, name, *args, **kwargs):
        return self._suggest("suggest_float", name, *args, **kwargs)

    def suggest_int(self, name, *args, **kwargs):
        return self._suggest("suggest_int", name, *args, **kwargs)

    def suggest_categorical(self, name, *args, **kwargs):
        return self._suggest("suggest_categorical", name, *args, **kwargs)


def load_tuned(study: str, storage: str | None = None) -> TunedParams:
    """Best parameters of ``study`` (per outer fold, and for the final model) for ``bench run``."""
    import optuna

    summaries = optuna.get_all_study_summaries(open_storage(storage_url(storage)), include_best_trial=True)
    ours = [s for s in summaries if s.study_name.startswith(f"{study}@")]
    by_fold = {s.study_name.split("@", 1)[1]: {**s.user_attrs.get("pinned_params", {}), **s.best_trial.params}
               for s in ours if s.best_trial is not None}
    if not by_fold:
        known = sorted({s.study_name.split("@")[0] for s in summaries})
        raise BenchError(f"no finished study {study!r} in {storage_url(storage)}; known: {', '.join(known) or 'none'}")
    # one training pool (cross-corpus, a random split): its study also gives the final model's parameters;
    # several outer folds: only <study>@all does (absent after `bench tune --no-final-model`, or when a
    # tune stopped before it). Studies from before "outer_folds" was recorded: one study = one pool.
    folds = {s.user_attrs.get("outer_folds") for s in ours} - {None}
    one_pool = folds == {1} if folds else len(by_fold) == 1
    final = by_fold.get("all") or (next(iter(by_fold.values())) if one_pool else None)
    return TunedParams(study, by_fold, final)
