"""Where data and caches live: an explicit option, else an environment variable, else a per-user dir."""

from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_cache_path

DATA_ENV = "SER_BENCH_DATA"
CACHE_ENV = "SER_BENCH_CACHE"


def data_root(data_dir: str | Path | None = None) -> Path:
    """Root that holds one folder per corpus (``emodb/``, ``shemo/``, ``urdu/``...)."""
    if data_dir:
        return Path(data_dir).expanduser()
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser()
    return user_cache_path("ser-bench") / "data"


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """Root of the feature cache (safe to delete: everything in it can be recomputed)."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return user_cache_path("ser-bench") / "features"
