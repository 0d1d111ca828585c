"""Grid cells as tasks on a Dask distributed cluster (``bench run --experiment F --scheduler tcp://HOST:8786``).

Dask does the scheduling, load balancing and the re-running of a task whose worker died
(``distributed.scheduler.allowed-failures``, 3 by default); this module only adds what Dask cannot
know about: the MLflow run a dead worker left half-finished. Every attempt of a cell opens its
MLflow run *before* any work, tagged with the grid id, the cell id and the attempt number; when an
attempt starts it marks the earlier RUNNING runs of its cell (and their fold runs) FAILED "worker
died". Dask only re-runs a task once the scheduler has dropped its worker, so such a run can no
longer change. The grid therefore ends with exactly one FINISHED run per cell that succeeded.

Workers need the same code (``pip install`` of the same commit) and the same data and cache paths
(shared storage, or ``bench data download`` on each worker); see docs/cluster.md.
"""

from __future__ import annotations

import os
import threading
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from .errors import BenchError

CELL_TAG, GRID_TAG, ATTEMPT_TAG = "ser_bench_cell", "ser_bench_grid", "ser_bench_attempt"
WORKER_DIED = "worker died: a later attempt of this cell re-ran it"

# MLflow's active run and MLFLOW_RUN_ID are per process: one cell at a time per worker process,
# even if a worker was started with several threads.
_ONE_CELL_AT_A_TIME = threading.Lock()


class SchedulerError(BenchError):
    """The Dask scheduler cannot be reached, or a cell's workers kept dying."""


def execute_cell(cell: dict, runtime: dict) -> dict:
    """Run one grid cell and return its result as plain data.

    The one place that turns a cell (settings for ``config.resolve``) into a run, locally or on a
    Dask worker; adapt it here when the configuration object changes.
    """
    from .config import resolve
    from .runner import Runtime, run

    # the cluster is the parallelism: a cell's folds run one after another in its worker
    return asdict(run(resolve(cell), Runtime(**{**runtime, "jobs": runtime.get("jobs") or 1})))


def cell_title(cell: dict) -> str:
    from .config import resolve

    try:
        config = resolve(cell)
    except BenchError:  # the cell itself will fail with this error; name it as it was written
        return " / ".join(str(cell.get(k, "-")) for k in ("model", "features", "protocol"))
    return f"{config.model.name} / {config.features.name} / {config.protocol.name}"


def mark_dead_attempts(client, experiment_id: str, cell_id: str, reason: str = WORKER_DIED) -> list[str]:
    """Set every RUNNING run of ``cell_id`` (and their RUNNING fold runs) to FAILED; returns their ids."""
    dead = client.search_runs([experiment_id], f"tags.{CELL_TAG} = '{cell_id}' and attributes.status = 'RUNNING'")
    marked = []
    for run in dead:
        children = client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}' "
                                                       "and attributes.status = 'RUNNING'")
        for stale in [*children, run]:
            client.set_tag(stale.info.run_id, "error", reason)
            client.set_terminated(stale.info.run_id, status="FAILED")
            marked.append(stale.info.run_id)
    return marked


def run_cell_attempt(cell_id: str, grid_id: str, cell: dict, runtime: dict) -> dict:
    """A Dask task: open this attempt's tagged run, fail the dead attempts' runs, run the cell.

    A ``BenchError`` (bad input) is returned as ``{"error": ...}``, not raised: it is not a worker
    fault, so Dask must not retry it, and the grid goes on with the other cells.
    """
    from mlflow import MlflowClient

    from . import tracking

    with _ONE_CELL_AT_A_TIME:
        experiment_id = tracking.use_store(runtime.get("tracking_uri"), runtime.get("experiment", "ser-bench"))
        client = MlflowClient(tracking.resolve_tracking_uri(runtime.get("tracking_uri")))
        mark_dead_attempts(client, experiment_id, cell_id)
        attempt = 1 + len(client.search_runs([experiment_id], f"tags.{CELL_TAG} = '{cell_id}'"))
        name = runtime.get("run_name") or cell_title(cell).replace(" / ", "-")
        opened = client.create_run(experiment_id, run_name=name, tags={
            CELL_TAG: cell_id, GRID_TAG: grid_id, ATTEMPT_TAG: str(attempt), "dask_worker": _worker_name()})
        os.environ["MLFLOW_RUN_ID"] = opened.info.run_id  # the runner resumes it (tracking.project_run_id)
        try:
            return execute_cell(cell, {**runtime, "progress": False})
        except BenchError as exc:
            close_failed(client, opened.info.run_id, str(exc))
            return {"error": str(exc), "run_id": opened.info.run_id}
        except Exception as exc:
            close_failed(client, opened.info.run_id, f"{type(exc).__name__}: {exc}")
            raise
        finally:
            os.environ.pop("MLFLOW_RUN_ID", None)


def close_failed(client, run_id: str, message: str) -> None:
    """A cell that failed before the runner opened its run (bad input is caught before any run
    starts) leaves this attempt's run RUNNING: close it FAILED with the error."""
    if client.get_run(run_id).info.status == "RUNNING":
        client.set_tag(run_id, "error", message.splitlines()[0][:5000] if message else "failed")
        client.set_terminated(run_id, status="FAILED")


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().name)
    except (ImportError, ValueError):
        return "local"


def run_grid_on_dask(cells: list[dict], runtime: dict, scheduler: str,
                     on_result: Callable[[int, dict], None] | None = None, timeout: float | None = None) -> list[dict]:
    """Submit every cell to the cluster at ``scheduler``; results in cell order as they arrive.

    ``on_result(index, result)`` is called as each cell finishes. ``timeout`` (s) to reach the
    scheduler defaults to Dask's ``distributed.comm.timeouts.connect``. A cell whose workers kept dying
    (``KilledWorker``) comes back as ``{"error": ...}``, its runs marked FAILED.
    """
    try:
        from distributed import Client, as_completed
        from distributed.scheduler import KilledWorker
    except ImportError:
        raise SchedulerError("--scheduler needs dask distributed: pip install 'dask[distributed]'") from None
    try:
        client = Client(scheduler, **({"timeout": timeout} if timeout else {}))
    except (OSError, TimeoutError) as exc:
        raise SchedulerError(f"--scheduler {scheduler}: cannot reach the Dask scheduler ({exc}); start it with "
                             f"`dask scheduler --host HOST` and workers with `dask worker {scheduler}`") from None
    prepare_store(runtime)
    grid_id = uuid.uuid4().hex[:12]
    results: list[dict[str, Any]] = [{} for _ in cells]
    with client:
        futures = {client.submit(run_cell_attempt, f"{grid_id}-{index:04d}", grid_id, cell, runtime,
                                 key=f"cell-{grid_id}-{index:04d}", pure=False): index
                   for index, cell in enumerate(cells)}
        for future in as_completed(futures):
            index = futures[future]
            try:
                results[index] = future.result()
            except KilledWorker as exc:
                results[index] = {"error": f"workers kept dying while running this cell ({exc})"}
            except BenchError as exc:
                results[index] = {"error": str(exc)}
            except Exception as exc:  # a bug in a cell: report it, keep the other cells
                message = str(exc).splitlines()[0] if str(exc) else ""
                results[index] = {"error": f"{type(exc).__name__}: {message}"}
            if on_result:
                on_result(index, results[index])
    _fail_leftovers(runtime, grid_id, accepted={r["run_id"] for r in results if r.get("run_id")})
    return results


def prepare_store(runtime: dict) -> str:
    """Create the store's schema and the experiment once, here, before workers race to (sqlite
    migrations run by two processes at once leave a broken schema behind)."""
    from . import tracking

    return tracking.use_store(runtime.get("tracking_uri"), runtime.get("experiment", "ser-bench"))


def _fail_leftovers(runtime: dict, grid_id: str, accepted: set[str]) -> None:
    """After the grid: a run still RUNNING belongs to an attempt that died for good; a FINISHED run
    whose result Dask did not accept came from a worker the scheduler had already given up on
    (e.g. one that stopped answering but kept computing): FAILED too, so one run per cell stands."""
    from mlflow import MlflowClient

    from . import tracking

    experiment_id = tracking.use_store(runtime.get("tracking_uri"), runtime.get("experiment", "ser-bench"))
    client = MlflowClient(tracking.resolve_tracking_uri(runtime.get("tracking_uri")))
    for run in client.search_runs([experiment_id], f"tags.{GRID_TAG} = '{grid_id}'", max_results=50_000):
        if run.info.status == "RUNNING":
            mark_dead_attempts(client, experiment_id, run.data.tags[CELL_TAG])
        elif run.info.status == "FINISHED" and run.info.run_id not in accepted:
            client.set_tag(run.info.run_id, "error", "superseded: Dask accepted another attempt of this cell")
            client.set_terminated(run.info.run_id, status="FAILED")


def run_grid_command(cells: list[dict], runtime: dict, scheduler: str, tuned, print_summary) -> None:
    """``bench run --scheduler``: submit the grid, print each cell's table as it finishes, count failures."""
    from rich.console import Console

    from .runner import RunResult

    if tuned is not None:
        raise BenchError("--params-from cannot be combined with --scheduler yet; run the tuned grid without it")
    if runtime.get("register"):
        raise BenchError("--register cannot be combined with --scheduler (cells would race for model versions); "
                         "register the best run's model afterwards")
    # workers resolve paths in their own working folder: hand them absolute ones (same paths everywhere)
    runtime = {**runtime, **{key: str(Path(runtime[key]).resolve()) for key in ("data_dir", "cache_dir")
                             if runtime.get(key)}}
    err = Console(stderr=True)
    err.print(f"{len(cells)} cells -> Dask scheduler {scheduler}", highlight=False)
    failures = 0

    def show(index: int, result: dict) -> None:
        nonlocal failures
        title = f"[{index + 1}/{len(cells)}] {cell_title(cells[index])}"
        if "error" in result:
            failures += 1
            err.print(f"[bold red]error[/] in {title}: {result['error']}", highlight=False, soft_wrap=True)
        else:
            print_summary(RunResult(**result), title)

    run_grid_on_dask(cells, runtime, scheduler, on_result=show)
    if failures:
        raise BenchError(f"{failures} of {len(cells)} runs failed; see the messages above (their runs are FAILED in MLflow)")
