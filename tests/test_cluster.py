"""Dask grid plumbing that needs no running servers (the servers are in test_services.py)."""

import os
import subprocess
import sys
from pathlib import Path

from benchmark.cluster import makespan

BENCH = str(Path(sys.executable).parent / "bench")


def test_makespan_bounds_and_longest_first():
    cells = [5.0, 1.0, 4.0, 2.0, 3.0, 3.0]
    assert makespan(cells, 1) == sum(cells)
    assert makespan(cells, len(cells)) == makespan(cells, 100) == max(cells)
    assert makespan(cells, 2) == 9.0  # LPT: 5+3+1 | 4+3+2
    assert makespan(cells, 3) == 6.0  # 5+1 | 4+2 | 3+3


def test_unreachable_scheduler_is_one_line(tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text("name: g\nbase: {model: svm, corpus: folder:/nonexistent.csv}\n")
    env = {**os.environ, "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "2s"}
    done = subprocess.run([BENCH, "run", "--experiment", str(grid), "--scheduler", "tcp://127.0.0.1:9"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and "--scheduler tcp://127.0.0.1:9" in errors[0] and "dask scheduler" in errors[0], done.stderr
    assert "Traceback" not in done.stderr
