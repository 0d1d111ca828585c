"""Run a generator in a forked child process and receive its items here, in order.

Why: a warm ``bench run`` of a vector model spent ~4 s importing MLflow and opening its store and
then ~3 s on its folds, one after the other on one core, while the other core idled. Forked once
the run is prepared, a child computes (features from the cache, folds, the final fit) while this
process imports MLflow and opens the run; it starts with everything already imported, where a
spawned process would first spend seconds importing scikit-learn again.

Fork copies only the calling thread, so it is used only when nothing else runs in this process:
no Python thread but ser-bench's own heartbeat (which the child never touches), and no native
thread beyond OpenBLAS's idle pools and jemalloc's purger (both made safe by their fork handlers). An OpenMP pool that
has run (XGBoost, a scikit-learn estimator), TensorFlow or PyTorch would leave threads the child
lacks, and an OpenMP call in the child could hang; then the generator simply runs here.
``SER_BENCH_FORK=0`` turns it off.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import Any

SAFE_THREADS = ("ser-bench-heartbeat",)  # ours; never used by a child
# jemalloc (loaded with pyarrow) keeps a background purging thread; its fork handlers make it safe
SAFE_NATIVE_THREADS = ("jemalloc_bg_thd",)
_END, _ERROR = "ser-bench:end", "ser-bench:error"


def _expected_native_threads() -> int | None:
    """This process's OS threads if only Python's own and OpenBLAS's idle pools exist; None if unknown."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # pragma: no cover - a dependency
        return None
    extra = 0
    for pool in threadpool_info():
        if pool.get("internal_api") == "openblas":
            extra += max(0, int(pool.get("num_threads") or 1) - 1)
    return threading.active_count() + extra


def fork_is_safe() -> bool:
    """True when forking this process leaves the child nothing half-held (see the module docstring)."""
    if os.environ.get("SER_BENCH_FORK", "1") == "0" or not hasattr(os, "fork") or sys.platform != "linux":
        return False
    if threading.current_thread() is not threading.main_thread():
        return False
    if any(t.name not in SAFE_THREADS for t in threading.enumerate() if t is not threading.main_thread()):
        return False
    if any(name in sys.modules for name in ("tensorflow", "torch", "jax")):
        return False
    expected = _expected_native_threads()
    try:
        tasks = os.listdir("/proc/self/task")
        actual = sum(1 for task in tasks if _thread_name(task) not in SAFE_NATIVE_THREADS)
    except OSError:
        return False
    return expected is not None and actual <= expected


def _thread_name(task: str) -> str:
    with open(f"/proc/self/task/{task}/comm") as comm:
        return comm.read().strip()


def _picklable(exc: BaseException) -> BaseException:
    import pickle

    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - a library's exception that cannot cross: keep its words
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def _child(produce: Callable[[], Iterator[Any]], writer) -> None:
    """The forked side: send every item, then the end (or the error); never return."""
    code = 0
    try:
        from .lifecycle import exit_with_parent

        exit_with_parent(os.getppid())  # a kill -9'd parent leaves no child computing on
        for item in produce():
            writer.send(item)
        writer.send((_END, None))
    except KeyboardInterrupt:  # Ctrl-C reached the whole process group, or the parent's SIGTERM
        code = 130
    except BaseException as exc:  # noqa: BLE001 - every failure goes to the parent, which reports it
        with contextlib.suppress(Exception):
            writer.send((_ERROR, _picklable(exc)))
        code = 1
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def iterate(produce: Callable[[], Iterator[Any]], fork: bool = True) -> Iterator[Any]:
    """The items of ``produce()``, computed in a child forked right now when ``fork`` and
    :func:`fork_is_safe`, else lazily here. An exception in the child is raised here, after the
    items it sent before it. ``close()`` the result when done: it stops a child still computing
    (an error or Ctrl-C while logging) and reaps it."""
    if not (fork and fork_is_safe()):
        return produce()
    return FromChild(produce)


class FromChild:
    """An iterator over what a forked child sends (see :func:`iterate`).

    A thread here reads the pipe as soon as anything arrives, so the child never waits for this
    process to ask (a pipe holds 64 KiB; a run's features are more)."""

    def __init__(self, produce: Callable[[], Iterator[Any]]):
        import queue
        from multiprocessing import Pipe

        reader, writer = Pipe(duplex=False)
        with warnings.catch_warnings():  # Python >= 3.12 warns about any OS thread; OpenBLAS's are fork-safe
            warnings.simplefilter("ignore", DeprecationWarning)
            self.pid = os.fork()
        if self.pid == 0:  # pragma: no cover - the child's coverage is not collected
            reader.close()
            _child(produce, writer)
        writer.close()
        self._received: queue.Queue = queue.Queue()
        self._done = False
        self._reader = reader
        threading.Thread(target=self._read, name="ser-bench-from-child", daemon=True).start()

    def _read(self) -> None:
        try:
            while True:
                item = self._reader.recv()
                self._received.put(item)
                if item[0] in (_END, _ERROR):
                    return
        except (EOFError, OSError):  # the child died without a word, or close() closed the pipe
            self._received.put((_END + ":eof", None))

    def __iter__(self):
        return self

    def __next__(self):
        if self._done:
            raise StopIteration
        kind, value = item = self._received.get()
        if kind == _END + ":eof":
            self.close()
            from .errors import BenchError

            raise BenchError("the process computing this run ended without a result (killed, or out of "
                             "memory?); run again, or set SER_BENCH_FORK=0 to compute in one process")
        if kind in (_END, _ERROR):
            self.close()
            if kind == _ERROR:
                raise value
            raise StopIteration
        return item

    def close(self) -> None:
        if not self._done:
            self._done = True
            _stop(self.pid)
            self._reader.close()


def _stop(pid: int, grace_s: float = 10.0) -> None:
    """End the child (SIGTERM unwinds it like Ctrl-C, stopping its own workers), then reap it."""
    import time

    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG) != (0, 0):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            if os.waitpid(pid, os.WNOHANG) != (0, 0):
                return
            time.sleep(0.02)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
