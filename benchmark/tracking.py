"""MLflow tracking: the store, run tags, figures, per-epoch metrics and model logging.

Models log and load themselves (``SERClassifier.log_model``); this module knows the store.

Default store: an embedded sqlite database ``./mlflow.db`` with artifacts in ``./mlartifacts``
(``bench ui`` opens it); ``MLFLOW_TRACKING_URI`` or ``--tracking-uri`` point anywhere else.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import warnings
from pathlib import Path


import numpy as np

DEFAULT_DB = "mlflow.db"
DEFAULT_ARTIFACTS = "mlartifacts"


def quiet_mlflow() -> None:
    """SQLAlchemy 2.1 makes MLflow's sqlite store emit SADeprecationWarning: noise, not failure."""
    warnings.filterwarnings("ignore", message=".*SADeprecationWarning.*")
    try:
        from sqlalchemy.exc import SADeprecationWarning

        warnings.filterwarnings("ignore", category=SADeprecationWarning)
    except ImportError:  # pragma: no cover
        pass
    warnings.filterwarnings("ignore", category=FutureWarning, module="mlflow")
    import logging

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # keeps --format json/csv clean


def resolve_tracking_uri(uri: str | None = None) -> str:
    if uri:
        return uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{Path.cwd() / DEFAULT_DB}"


def artifact_root_for(uri: str) -> str | None:
    """For a local sqlite store, keep artifacts in a folder next to the database."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///"):]).parent / DEFAULT_ARTIFACTS).resolve().as_uri()
    return None


def use_store(uri: str | None = None, experiment: str = "ser-bench", attempts: int = 5) -> str:
    """Point MLflow at the store and make sure ``experiment`` exists; returns its id.

    A sqlite store is created under a file lock (see :mod:`benchmark.store`); retried because
    processes starting together may still race to create the experiment.
    """
    import time

    from . import store

    resolved = resolve_tracking_uri(uri)
    store.check_before_open(resolved)
    for attempt in range(attempts):
        try:
            with store.creation_lock(resolved):  # creating/upgrading a sqlite store: one process at a time
                quiet_mlflow()
                store.create_sqlite_atomically(resolved)  # a killed creator leaves no half-made store
                return _use_store(resolved, experiment)
        except store.StoreError:
            raise
        except Exception as exc:
            known = store.explain(exc, resolved)
            if known is not None:
                raise known from None
            if attempt == attempts - 1:
                raise
            time.sleep(1.0 + attempt)
    raise AssertionError("unreachable")


def project_run_id() -> str | None:
    """The run ``mlflow run`` opened for this process (``MLFLOW_RUN_ID``), handed out once.

    Removing it from the environment keeps later ``start_run`` calls (folds, trials) from
    resuming that same run.
    """
    return os.environ.pop("MLFLOW_RUN_ID", None)


def _use_store(uri: str | None, experiment: str) -> str:
    quiet_mlflow()
    import mlflow

    uri = resolve_tracking_uri(uri)
    mlflow.set_tracking_uri(uri)
    if os.environ.get("MLFLOW_RUN_ID"):  # launched by `mlflow run`: stay in that run's experiment
        experiment_id = mlflow.get_run(os.environ["MLFLOW_RUN_ID"]).info.experiment_id
        mlflow.set_experiment(experiment_id=experiment_id)
        return experiment_id
    found = mlflow.get_experiment_by_name(experiment)
    if found is not None:
        mlflow.set_experiment(experiment_id=found.experiment_id)
        return found.experiment_id
    root = artifact_root_for(uri)
    experiment_id = mlflow.create_experiment(experiment, artifact_location=f"{root}/{experiment}" if root else None)
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def git_commit() -> str:
    """The commit of the ser-bench checkout, with ``-dirty`` if it has uncommitted changes."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def warm_up_in_background(model_class, final_model: bool):
    """Import what logging the final model will need (its serialiser, MLflow's map of installed
    packages) in a daemon thread while the folds are computed (in a forked process or workers,
    where this process waits, or here, where a fit's C code leaves the other core free): ~2 s of a
    warm svm run otherwise spent after the folds. Any failure here is ignored; the same imports
    then simply happen when logging. (The confusion matrices are drawn by the computation.)"""
    import threading

    def work() -> None:
        try:
            if final_model:
                model_class.warm_up_logging()
                # MLflow's log_model checks the model's pip requirements against the installed
                # packages, and the first check maps every installed distribution to its modules:
                # 1-3 s here (hundreds of packages in this environment), cached for the process.
                from mlflow.utils import requirements_utils

                getattr(requirements_utils, "_init_packages_to_modules_map", lambda: None)()
        except Exception:  # pragma: no cover - an optimisation only
            pass

    thread = threading.Thread(target=work, daemon=True, name="ser-bench-warm-up")
    thread.start()
    return thread


def log_confusion_matrices(y_true, y_pred, labels, prefix: str = "") -> None:
    """Counts and row-normalised matrices as PNG (sklearn's ConfusionMatrixDisplay) and CSV."""
    from .figures import confusion_matrix_files

    log_files(confusion_matrix_files(y_true, y_pred, labels, prefix))


def log_files(files: dict[str, bytes]) -> None:
    """Artifacts given as bytes (e.g. :mod:`benchmark.figures`), written as they are."""
    import tempfile

    import mlflow

    with tempfile.TemporaryDirectory(prefix="ser-bench-artifacts-") as folder:
        for name, content in files.items():
            (Path(folder) / name).write_bytes(content)
        mlflow.log_artifacts(folder)


def log_table(frame, artifact_file: str) -> None:
    import mlflow

    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    mlflow.log_text(buffer.getvalue(), artifact_file)


def log_epoch_metrics(epoch: int, metrics: dict, model=None) -> None:
    """An epoch hook (see ``models.base.EpochHook``): every epoch's metrics into the active fold run."""
    import mlflow

    if metrics:
        mlflow.log_metrics({f"epoch_{k}": float(v) for k, v in metrics.items()}, step=epoch)


def requirements(*packages: str) -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for package in packages:
        try:
            out.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            continue
    return out


def tensor_signature(n_features: int, n_classes: int, sequence: bool):
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    shape = (-1, -1, n_features) if sequence else (-1, n_features)
    # unnamed tensors: pyfunc then hands the array itself to the flavour (not a {name: array} dict)
    return ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.float32), shape)]),
                          outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, n_classes))]))


# -- what `bench run` logs: the header of a run, each fold, the pooled result, the final model -----
def log_run_header(config, protocol, classes, feature_cache_key: str, fingerprints: dict[str, str],
                   tuned=None, notes=(), features_label: str | None = None) -> None:
    """Params (the config's one serialised form, flattened), the tags reports filter on, and the
    protocol's notes (shared emotions, what each corpus dropped) as ``protocol_notes.txt``."""
    import json

    import mlflow

    params = config.mlflow_params()
    tags = {
        "ser_bench_kind": "run", "git_commit": git_commit(), "feature_cache_key": feature_cache_key,
        "model": config.model.name, "features": features_label or config.features.name,
        "protocol": config.protocol.name,
        "norm": config.task.norm, "classes": ",".join(classes), "n_classes": str(len(classes)),
        "corpora": ",".join(protocol.corpus_names()), "report_column": protocol.column(classes),
        **{f"corpus_fingerprint.{name}": digest for name, digest in fingerprints.items()},
    }
    tuned_keys = {k for fold in tuned.by_fold.values() for k in fold} | set(tuned.final or {}) if tuned is not None else set()
    # the recipe, for a report row of its own: "patience=8, time_masks=2" (empty: the defaults)
    tags["model_changes"] = ", ".join(f"{k}={v}" for k, v in config.changed_model_params(tuned_keys).items())[:5000]
    if tuned is not None:
        # the parent must not show default values for what was tuned: say where the real ones are
        for key in tuned_keys:
            params[f"model.{key}"] = "tuned (see tuned_params.json)"
        params.update({f"tuned.final.{k}": str(v) for k, v in (tuned.final or {}).items()})
        tags["tuned_by_study"] = tuned.study
        mlflow.log_text(json.dumps({"study": tuned.study, "by_fold": tuned.by_fold, "final": tuned.final},
                                   indent=2, sort_keys=True, default=str), "tuned_params.json")
    if notes:
        mlflow.log_text("\n".join(notes) + "\n", "protocol_notes.txt")
        tags["protocol_notes"] = " | ".join(notes)[:5000]
    mlflow.log_params(params)
    mlflow.set_tags(tags)


def log_feature_shift(message: str, table) -> None:
    """The out-of-distribution warning (``benchmark.feature_shift``) as a tag and a table."""
    import mlflow

    mlflow.set_tag("feature_shift_warning", message[:5000])
    log_table(table, "feature_shift.csv")


def log_fold(result, test_speakers: list[str], train_corpora: list[str] = ()) -> None:
    """One nested run per fold: its metrics, per-epoch metrics and the parameters it really used.
    ``train_corpora``/``test_corpora`` tags place the fold in ``bench report --matrix``.

    Written as one run creation, one batch and one status change (three store transactions, not
    one per call of the fluent API): logging ten folds this way takes half the time.
    """
    import time

    import mlflow
    from mlflow.entities import Metric, Param
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    parent = mlflow.active_run()
    client = mlflow.MlflowClient()
    test_corpora = sorted({speaker.split(":", 1)[0] for speaker in test_speakers})
    tags = {MLFLOW_PARENT_RUN_ID: parent.info.run_id, "fold": result.fold.name,
            "test_speakers": ",".join(test_speakers)[:5000], "train_corpora": ",".join(train_corpora),
            "test_corpora": ",".join(test_corpora)}
    run = client.create_run(parent.info.experiment_id, tags=tags, run_name=result.fold.name)
    now = int(time.time() * 1000)
    metrics = [Metric(f"epoch_{key}", float(value), now, epoch)
               for epoch, values in enumerate(result.epochs) for key, value in values.items()]
    final = {**result.metrics, "n_train": len(result.fold.train), "n_test": len(result.fold.test),
             "fit_seconds": result.seconds}
    metrics += [Metric(key, float(value), now, 0) for key, value in final.items()]
    params = [Param(f"tuned.{key}", str(value)) for key, value in (result.params or {}).items()]
    try:
        client.log_batch(run.info.run_id, metrics=metrics, params=params)
    except BaseException:
        with contextlib.suppress(Exception):  # the logging error is the one to report
            client.set_terminated(run.info.run_id, "FAILED")
        raise
    client.set_terminated(run.info.run_id, "FINISHED")


def log_pooled(pooled: dict, predictions, fold_rows: list[dict], classes, figures: dict[str, bytes] | None = None) -> None:
    """The pooled metrics and tables; ``figures``: the confusion matrices already drawn (else drawn here)."""
    import mlflow
    import pandas as pd
    from sklearn.metrics import classification_report

    mlflow.log_metrics(pooled)
    log_table(predictions, "predictions.csv")
    log_table(pd.DataFrame(fold_rows), "folds.csv")
    if figures is None:
        log_confusion_matrices(predictions["true"], predictions["predicted"], classes)
    else:
        log_files(figures)
    mlflow.log_text(classification_report(predictions["true"], predictions["predicted"], labels=list(classes),
                                          zero_division=0, digits=4), "classification_report.txt")


def log_final_model(model, normaliser, config, X, registered_name: str | None = None) -> str:
    """The deployable model in its own flavour, with the run's config and label map in its metadata."""
    import mlflow

    sequence = model.input_kind == "sequence"
    n_features = X[0].shape[1] if sequence else X.shape[1]
    metadata = {"label_map": [str(c) for c in model.classes_], "input_kind": model.input_kind,
                "model": config.model.name, "feature_set": config.features.name,
                "ser_bench_config": config.to_dict()}
    mlflow.log_dict(normaliser.to_dict(), "preprocessing/normaliser.json")
    mlflow.log_dict({"label_map": metadata["label_map"]}, "label_map.json")
    info = model.log_model(tensor_signature(n_features, len(model.classes_), sequence), metadata, registered_name)
    mlflow.set_tag("model_uri", info.model_uri)
    return info.model_uri
