"""How many threads a fit may use: the cores actually free, not the cores the machine has.

Threaded libraries (XGBoost's OpenMP, OpenBLAS under NumPy/scikit-learn) start one thread per
core by default. On a shared or busy machine, or when folds already run in parallel processes,
that oversubscribes the cores and a fit gets *slower*: XGBoost with 2 threads on 2 loaded cores
took 15.0 s per fit here, against 2.5 s with 1 thread. So a fit asks :func:`fit_threads`:

* the cores this process may run on (``os.sched_getaffinity``, which honours ``taskset`` and
  container CPU sets),
* minus the cores other processes keep busy (the 1-minute load average, less this process),
* at most ``OMP_NUM_THREADS`` when set (joblib/loky sets it in its worker processes so that
  parallel folds share the cores),
* at least 1.

:func:`limit_threads` caps the BLAS/OpenMP pools of an already-imported library for a block
(threadpoolctl), for code that has no ``n_jobs`` of its own.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


def cores_available() -> int:
    """Cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def busy_cores() -> int:
    """Cores other processes keep busy: the 1-minute load average, less this process's own one."""
    try:
        load = os.getloadavg()[0]
    except OSError:  # not available on this platform
        return 0
    return max(0, round(load - 1.0))


def fit_threads(processes: int = 1) -> int:
    """Threads for one fit when ``processes`` fits run at once: free cores shared out, at least 1."""
    free = max(1, cores_available() - busy_cores()) // max(1, processes)
    cap = os.environ.get("OMP_NUM_THREADS", "")
    if cap.isdigit() and int(cap) > 0:
        free = min(free, int(cap))
    return max(1, free)


@contextmanager
def limit_threads(threads: int | None = None) -> Iterator[int]:
    """Cap BLAS and OpenMP thread pools to ``threads`` (default: :func:`fit_threads`) in this block."""
    from threadpoolctl import threadpool_limits

    threads = fit_threads() if threads is None else max(1, threads)
    with threadpool_limits(limits=threads):
        yield threads
