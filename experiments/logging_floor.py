"""The imports that any process logging a vector model's run to MLflow must make, each timed in a
fresh interpreter (issue 9: what bounds a warm `bench run`).

A warm svm + egemaps run computes its folds in a forked child (benchmark/forked.py), so what is
left on its critical path is the run process's own serial chain: the CLI (scikit-learn, needed to
resolve the model and to unpickle the fitted one), MLflow and its SQLAlchemy store, skops (the
model's safe serialiser) and MLflow's map of installed packages (its requirement check). Python
imports hold the GIL, so threads cannot overlap them. Prints each step's median over the rounds
and their sum: a floor under the warm run that no reordering inside one process removes.

    python experiments/logging_floor.py --rounds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

STEPS = """
import time, json
marks = {}
t = time.perf_counter()
import benchmark.cli
marks["CLI (scikit-learn, typer)"] = time.perf_counter() - t; t = time.perf_counter()
import mlflow
marks["mlflow"] = time.perf_counter() - t; t = time.perf_counter()
import mlflow.store.tracking.sqlalchemy_store
marks["MLflow's SQLAlchemy store"] = time.perf_counter() - t; t = time.perf_counter()
from benchmark.models.skops_import import import_skops
import_skops()
marks["skops"] = time.perf_counter() - t; t = time.perf_counter()
from mlflow.utils import requirements_utils
requirements_utils._init_packages_to_modules_map()
marks["MLflow's package map"] = time.perf_counter() - t
print(json.dumps(marks))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    seen: dict[str, list[float]] = {}
    for number in range(1, rounds + 1):
        done = subprocess.run([sys.executable, "-c", STEPS], capture_output=True, text=True, check=True)
        for step, seconds in json.loads(done.stdout.strip().splitlines()[-1]).items():
            seen.setdefault(step, []).append(seconds)
        print(f"round {number}/{rounds} done", flush=True)
    total = 0.0
    for step, values in seen.items():
        median = statistics.median(values)
        total += median
        print(f"{step:30s} {median:5.2f} s   (rounds: {', '.join(f'{v:.2f}' for v in values)})")
    print(f"{'sum of the medians':30s} {total:5.2f} s")


if __name__ == "__main__":
    main()
