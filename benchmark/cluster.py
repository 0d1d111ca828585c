"""``bench cluster speedup``: the same grid on 1 and on N Dask workers, timed in one run.

One local Dask cluster (a real scheduler and N worker processes, one thread each, on 127.0.0.1)
runs the grid alternately restricted to one worker and spread over all of them, so both timings
see the same machine load; the ratio of the wall times is the speed-up. A warm-up cell on every
worker first fills the feature cache and imports the libraries, so the passes time the cells only.
Every cell goes through the same task as ``bench run --scheduler`` (distributed.run_cell_attempt).

From the single-worker per-cell times it also projects, on paper, the wall time on 10 and 100
machines: longest-processing-time-first scheduling of the measured cells, one worker per machine,
no data-transfer or start-up costs. That is a projection, not a measurement.
"""

from __future__ import annotations

import heapq
import logging
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable

from .distributed import prepare_store, run_cell_attempt


@dataclass
class Pass:
    workers: int
    wall_s: float
    cell_s: list[float] = field(default_factory=list)
    failed: int = 0


@dataclass
class Speedup:
    cells: int
    workers: int
    passes: list[Pass]

    def wall(self, workers: int) -> float:
        return sum(p.wall_s for p in self.passes if p.workers == workers)

    @property
    def ratio(self) -> float:
        return self.wall(1) / self.wall(self.workers)

    def cell_times(self) -> list[float]:
        """Per-cell seconds on one worker (mean over repeats): the projection's input."""
        single = [p.cell_s for p in self.passes if p.workers == 1]
        return [sum(times) / len(times) for times in zip(*single)]


def timed_attempt(cell_id: str, grid_id: str, cell: dict, runtime: dict) -> tuple[float, dict]:
    start = time.perf_counter()
    result = run_cell_attempt(cell_id, grid_id, cell, runtime)
    return time.perf_counter() - start, result


def makespan(cell_seconds: list[float], machines: int) -> float:
    """Wall time of the cells on ``machines`` single-worker machines, longest cells first (LPT)."""
    loads = [0.0] * min(machines, len(cell_seconds)) or [0.0]
    for seconds in sorted(cell_seconds, reverse=True):
        heapq.heapreplace(loads, loads[0] + seconds)
    return max(loads)


def measure_speedup(cells: list[dict], runtime: dict, workers: int = 2, repeat: int = 1,
                    say: Callable[[str], None] = print) -> Speedup:
    import dask
    from distributed import Client, LocalCluster, as_completed

    dask.config.set({"distributed.worker.daemon": False})  # feature sets that need their own process
    logging.getLogger("distributed").setLevel(logging.WARNING)
    runtime = {**runtime, "progress": False}
    if not runtime.get("tracking_uri"):
        runtime["tracking_uri"] = f"sqlite:///{tempfile.mkdtemp(prefix='ser-bench-speedup-')}/mlflow.db"
    prepare_store(runtime)
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        addresses = sorted(client.nthreads())
        say(f"cluster: scheduler {cluster.scheduler_address}, {len(addresses)} workers; MLflow {runtime['tracking_uri']}")
        warm = [client.submit(timed_attempt, f"warm-{i}", "warm-up", cells[0], runtime, workers=[a], pure=False)
                for i, a in enumerate(addresses)]
        client.gather(warm)
        say("warm-up done (libraries imported, feature cache filled on every worker)")
        passes = []
        for round_ in range(repeat):
            order = (1, workers) if round_ % 2 == 0 else (workers, 1)  # alternate which goes first
            for n in order:
                grid_id = uuid.uuid4().hex[:12]
                allowed = addresses[:n]
                start = time.perf_counter()
                futures = {client.submit(timed_attempt, f"{grid_id}-{i:04d}", grid_id, cell, runtime,
                                         workers=allowed, pure=False): i for i, cell in enumerate(cells)}
                seconds, failed = [0.0] * len(cells), 0
                for done, future in enumerate(as_completed(futures), start=1):
                    seconds[futures[future]], result = future.result()
                    failed += "error" in result
                    say(f"round {round_ + 1}, {n} worker(s): {done}/{len(cells)} cells, "
                        f"{time.perf_counter() - start:.1f} s")
                passes.append(Pass(n, time.perf_counter() - start, seconds, failed))
    return Speedup(len(cells), workers, passes)
