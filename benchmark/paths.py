"""Where data and caches live: an explicit option, else an environment variable, else a per-user dir."""

from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_cache_path

DATA_ENV = "SER_BENCH_DATA"
CACHE_ENV = "SER_BENCH_CACHE"


def _resolve(explicit: str | Path | None, env: str, default: str) -> Path:
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get(env):
        return Path(os.environ[env]).expanduser()
    return user_cache_path("ser-bench") / default


def data_root(data_dir: str | Path | None = None) -> Path:
    """Root that holds one folder per corpus (``emodb/``, ``shemo/``, ``urdu/``...)."""
    return _resolve(data_dir, DATA_ENV, "data")


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """Root of the feature cache (safe to delete: everything in it can be recomputed)."""
    return _resolve(cache_dir, CACHE_ENV, "features")
