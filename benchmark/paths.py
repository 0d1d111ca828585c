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


def configure_numba_cache() -> None:
    """Give numba a per-user cache folder, safe for concurrent processes, before librosa is imported.

    Why: by default numba writes compiled ``librosa`` functions into ``site-packages/.../__pycache__``;
    a per-user folder (``$NUMBA_CACHE_DIR`` wins) keeps the installed package read-only. numba's own
    saves race between processes and leave entries that segfault every later process;
    :mod:`benchmark.numba_cache` serialises them.
    """
    from .numba_cache import make_process_safe

    if not os.environ.get("NUMBA_CACHE_DIR"):
        # "numba-locked": entries written before the saves were locked may be corrupt; never read them
        os.environ["NUMBA_CACHE_DIR"] = str(user_cache_path("ser-bench") / "numba-locked")
    make_process_safe()
