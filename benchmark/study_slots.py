"""Exactly the requested number of trials when several workers share one Optuna study.

Why: ``study.optimize`` with a ``MaxTrialsCallback`` checks the count *after* a trial and asks
for the next one later; two workers that check at the same moment both see room for one more
and the study ends with a trial too many. Here the check and the creation of the trial are one
step under a lock that every worker takes: a PostgreSQL advisory lock (workers on any machine),
a file lock beside a SQLite file (workers on one machine). When the study is full, ``ask``
raises :class:`StudyFull`, which ends that worker's ``optimize`` before any surplus trial exists.
"""

from __future__ import annotations

import contextlib
import hashlib
import warnings
from datetime import datetime, timedelta
from pathlib import Path

from .errors import BenchError


class StudyFull(Exception):
    """The study holds the requested trials (finished or running): this worker is done."""


@contextlib.contextmanager
def study_lock(storage, study_name: str):
    """Serialise "count the trials, then create one" across every worker of ``study_name``."""
    url = str(getattr(storage, "url", ""))
    if url.startswith("postgresql"):
        from sqlalchemy import text

        key = int.from_bytes(hashlib.sha256(f"ser-bench:{study_name}".encode()).digest()[:8], "big", signed=True)
        # a transaction-level lock: released when the transaction ends, however it ends (or the
        # connection dies), so a pooled connection can never go back to the pool holding it
        with storage.engine.begin() as connection:
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
            yield
        return
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        from filelock import FileLock
        from sqlalchemy.engine import make_url

        database = Path(make_url(url).database).resolve()  # one lock file however the URL spells the path
        path = f"{database}.{hashlib.sha256(study_name.encode()).hexdigest()[:12]}.lock"
        lock = FileLock(path)
        try:
            lock.acquire()
        except OSError as exc:
            raise BenchError(f"cannot create the study lock {path} ({exc.strerror or exc}); make the folder of "
                             f"the Optuna database writable") from None
        try:
            yield
        finally:
            lock.release()
        return
    yield  # another database: the callback's check only (at most one surplus trial per extra worker)


def cap_trials(study, storage, trials: int, counted) -> None:
    """Make ``study.ask`` (which ``study.optimize`` calls for every trial) refuse once ``counted(study)``
    reaches ``trials``, atomically with creating the trial."""
    ask = study.ask

    def ask_within_budget(*args, **kwargs):
        with study_lock(storage, study.study_name):
            if counted(study) >= trials:
                raise StudyFull(study.study_name)
            return ask(*args, **kwargs)

    study.ask = ask_within_budget


def fail_dead_trials(study, storage, grace_s: float) -> int:
    """Mark the running trials of killed workers FAIL, so that they stop counting against the budget.

    Optuna's ``fail_stale_trials`` only judges trials that have sent a heartbeat; a worker killed
    between creating a trial and its first heartbeat (milliseconds, but a ``kill -9`` can land
    there) leaves a trial RUNNING for ever. Such a trial is dead once it is older than the grace
    period without a single heartbeat. Returns how many heartbeat-less trials were failed."""
    import optuna

    with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna since 2.9
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    engine = getattr(storage, "engine", None)
    if engine is None:
        return 0
    from sqlalchemy import text

    with engine.connect() as connection:
        beating = {row[0] for row in connection.execute(text("SELECT trial_id FROM trial_heartbeats"))}
    oldest = datetime.now() - timedelta(seconds=grace_s)  # Optuna stamps datetime_start with local time
    failed = 0
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if trial._trial_id in beating or trial.datetime_start is None or trial.datetime_start > oldest:
            continue
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            failed += bool(storage.set_trial_state_values(trial._trial_id, state=optuna.trial.TrialState.FAIL))
    return failed
