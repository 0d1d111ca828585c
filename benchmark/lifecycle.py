"""Runs never stay RUNNING: SIGTERM ends a run like Ctrl-C, and runs of dead processes are reaped.

Why: ``timeout``, ``docker stop`` and batch schedulers send SIGTERM, which by default kills Python
without unwinding, so MLflow's ``with start_run()`` never marks the run FAILED. Turning SIGTERM into
:class:`Terminated` (a ``KeyboardInterrupt``) lets the same clean-up as Ctrl-C run. After ``kill -9``
nothing runs in the dying process, so every run records its host, pid, the pid's start time and a
heartbeat; the next ``bench run``/``tune``/``report`` marks RUNNING runs whose process is gone
(same host: pid dead or reused; another host: heartbeat stale) FAILED with ``ser_bench.killed``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time

log = logging.getLogger(__name__)

HOST_TAG, PID_TAG, START_TAG, HEARTBEAT_TAG = ("ser_bench.host", "ser_bench.pid", "ser_bench.pid_start",
                                               "ser_bench.heartbeat")
KILLED_TAG = "ser_bench.killed"


def heartbeat_seconds() -> float:
    return float(os.environ.get("SER_BENCH_HEARTBEAT_S", "30"))


def stale_seconds() -> float:
    """A run on another host is presumed dead after this long without a heartbeat."""
    return float(os.environ.get("SER_BENCH_STALE_S", str(max(600.0, 10 * heartbeat_seconds()))))


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: unwinds like Ctrl-C, so runs end FAILED and worker pools are stopped."""


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Within the block, SIGTERM raises :class:`Terminated`; a second SIGTERM kills at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # clean-up gets one chance; a second TERM is final
        if _HELD["depth"]:
            _HELD["pending"] = True  # raised by SigtermHeld.release(), where it can be recorded
            return
        raise Terminated("SIGTERM received")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


_HELD = {"depth": 0, "pending": False}


class SigtermHeld:
    """Holds a SIGTERM back while a run is being created, until :meth:`release` raises it.

    Why: between MLflow creating a run (visible as RUNNING) and the ``try`` that records an error
    tag there is a window; a SIGTERM in it ended the run FAILED without saying why. Inside this
    block the signal is only noted; ``release()``, called where the error is recorded, raises it.
    """

    def __enter__(self):
        _HELD["depth"] += 1
        self._held = True
        return self

    def release(self) -> None:
        if self._held:
            self._held = False
            _HELD["depth"] -= 1
            if not _HELD["depth"] and _HELD["pending"]:
                _HELD["pending"] = False
                raise Terminated("SIGTERM received")

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.release()
        elif self._held:  # already unwinding: the pending SIGTERM adds nothing, and is dropped
            self._held = False
            _HELD["depth"] -= 1
            if not _HELD["depth"]:
                _HELD["pending"] = False


def _pid_start(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def process_tags() -> dict[str, str]:
    """Who runs this run: the tags :func:`reap_dead_runs` later checks."""
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid()),
            START_TAG: f"{_pid_start(os.getpid()) or 0:.2f}", HEARTBEAT_TAG: f"{time.time():.0f}"}


class Heartbeat:
    """A daemon thread that refreshes the heartbeat tag of the runs this process owns."""

    def __init__(self):
        self.run_ids: dict[str, str] = {}  # run id -> its tracking URI (one process may use several stores)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, run_id: str) -> None:
        with self._lock:
            import mlflow

            self.run_ids[run_id] = mlflow.get_tracking_uri()
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._beat, name="ser-bench-heartbeat", daemon=True)
                self._thread.start()

    def discard(self, run_id: str) -> None:
        with self._lock:
            self.run_ids.pop(run_id, None)

    def _beat(self) -> None:
        from mlflow.tracking import MlflowClient

        last = time.time()
        while not self._stop.wait(0.2):  # short waits: a changed interval or a new run is seen at once
            if time.time() - last < heartbeat_seconds():
                continue
            last = time.time()
            with self._lock:
                owned_runs = list(self.run_ids.items())
            for run_id, uri in owned_runs:
                try:
                    MlflowClient(tracking_uri=uri).set_tag(run_id, HEARTBEAT_TAG, f"{time.time():.0f}")
                except Exception:  # a busy store misses one beat; staleness allows many
                    continue


HEARTBEAT = Heartbeat()


@contextlib.contextmanager
def owned(run_id: str):
    """Tag ``run_id`` with this process and keep its heartbeat going while the block runs."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    for key, value in process_tags().items():
        client.set_tag(run_id, key, value)
    HEARTBEAT.add(run_id)
    try:
        yield
    finally:
        HEARTBEAT.discard(run_id)


def death_reason(tags: dict[str, str], now: float | None = None) -> str | None:
    """Why the process behind a run with these tags is gone, or None while it may be alive."""
    if PID_TAG not in tags:
        return None
    now = time.time() if now is None else now
    if tags.get(HOST_TAG) == socket.gethostname():
        pid = int(tags[PID_TAG])
        started = _pid_start(pid)
        if started is None:
            return f"killed: process {pid} on {tags[HOST_TAG]} is gone"
        recorded = float(tags.get(START_TAG) or 0)
        if recorded and abs(started - recorded) > 2:
            return f"killed: process {pid} on {tags[HOST_TAG]} is gone (its pid now belongs to another process)"
        return None
    beat = float(tags.get(HEARTBEAT_TAG) or 0)
    if now - beat > stale_seconds():
        return f"killed: no heartbeat from {tags.get(HOST_TAG)} pid {tags[PID_TAG]} for {now - beat:.0f} s"
    return None


def reap_dead_runs(experiment_ids: list[str] | None = None, tracking_uri: str | None = None) -> int:
    """Mark RUNNING runs whose process is gone FAILED (tag ``ser_bench.killed``); returns how many.

    A run without its own process tags (a fold) follows its parent run.
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    if experiment_ids is None:
        experiment_ids = [e.experiment_id for e in client.search_experiments()]
    if not experiment_ids:
        return 0
    running = client.search_runs(experiment_ids, "attributes.status = 'RUNNING'", max_results=50_000)
    by_id = {r.info.run_id: r for r in running}
    reasons: dict[str, str | None] = {}

    def reason_for(run) -> str | None:
        run_id = run.info.run_id
        if run_id not in reasons:
            reasons[run_id] = None
            tags = run.data.tags
            if PID_TAG in tags:
                reasons[run_id] = death_reason(tags)
            elif "mlflow.parentRunId" in tags:
                parent_id = tags["mlflow.parentRunId"]
                parent = by_id.get(parent_id)
                if parent is None:
                    with contextlib.suppress(Exception):
                        parent = client.get_run(parent_id)
                if parent is not None:
                    if parent.info.status == "RUNNING":
                        reasons[run_id] = reason_for(parent)
                    elif PID_TAG in parent.data.tags:  # parent ended (or was reaped): a child left RUNNING is dead
                        reasons[run_id] = death_reason(parent.data.tags) or (
                            f"killed: its parent run ended {parent.info.status}")
        return reasons[run_id]

    reaped = 0
    for run in running:
        reason = reason_for(run)
        if reason is None:
            continue
        try:
            client.set_tag(run.info.run_id, KILLED_TAG, reason)
            client.set_tag(run.info.run_id, "error", reason)
            client.set_terminated(run.info.run_id, "FAILED")
            reaped += 1
        except Exception as exc:  # another process reaped it first, or the store is busy
            log.debug("could not reap %s: %s", run.info.run_id, exc)
    if reaped:
        log.warning("marked %d run(s) FAILED whose process was killed (tag %s says why)", reaped, KILLED_TAG)
    return reaped


def stop_pool(pool) -> None:
    """Stop a ProcessPoolExecutor now: cancel queued work, terminate its workers, reap them.

    ``with ProcessPoolExecutor()`` would wait for every queued item on an exception, which is how
    an interrupted batch used to leave workers running for minutes.
    """
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        with contextlib.suppress(Exception):
            process.terminate()
    deadline = time.monotonic() + 5
    for process in processes:
        with contextlib.suppress(Exception):
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(1)


def exit_with_parent(parent_pid: int, interval: float = 1.0) -> None:
    """In a worker: exit as soon as ``parent_pid`` is gone or a zombie, or this worker was orphaned.

    A kill -9'd ``bench run`` then leaves no extraction worker behind, even one forked by a
    forkserver (whose own parent is the dead process).
    """
    import psutil

    first_ppid = os.getppid()

    def gone() -> bool:
        if os.getppid() != first_ppid:  # re-parented: whoever started us has exited
            return True
        try:
            return psutil.Process(parent_pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True
        except psutil.Error:
            return False

    def watch():
        while not gone():
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, name="ser-bench-parent-watch", daemon=True).start()


@contextlib.contextmanager
def pruned_trial_is_not_a_failure():
    """Inside an MLflow trial run: a pruned Optuna trial ends KILLED with tag ``pruned``, not FAILED.

    Why: 15 of 55 runs showed red in the UI after a tuning session although nothing failed.
    """
    import mlflow
    import optuna

    try:
        yield
    except optuna.TrialPruned:
        mlflow.set_tag("pruned", "true")
        mlflow.end_run("KILLED")
        raise


def run_process_group(command: list[str], grace: float = 10.0) -> int:
    """Run ``command`` in its own process group and stop the whole group when we stop.

    Why: ``mlflow ui`` starts a server with worker processes; killing ``bench ui`` used to leave
    them serving. Ctrl-C, SIGTERM or any exit here now terminates every process of the group.
    """
    import subprocess

    process = subprocess.Popen(command, start_new_session=True)
    try:
        with sigterm_as_interrupt():
            return process.wait()
    except KeyboardInterrupt as exc:
        return 143 if isinstance(exc, Terminated) else 0
    finally:
        _stop_group(process, grace)


def _stop_group(process, grace: float) -> None:
    import subprocess

    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except (ProcessLookupError, PermissionError):
            break
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            continue
        deadline = time.monotonic() + grace  # the leader is gone; give its group the same grace
        while time.monotonic() < deadline:
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
