"""numba's on-disk cache made safe for several processes at once (extraction workers, fold workers,
two ``bench run`` commands on one machine).

Why: librosa's and handcrafted36's compiled functions are cached with ``cache=True``. numba names a
new entry's data file by reading the index, taking the first free number and writing the index, with
no lock between processes. Two workers compiling different signatures of one function at once both
take ``.1.nbc``; the index then maps one signature to the other's machine code, and every later
process that loads it segfaults (seen here: librosa46 extraction workers dying on every file, in
every run after the first, until the cache folder was deleted). Here each save holds an exclusive
``flock`` on the function's index, re-reads the index under it, and writes the data before the index,
so a reader never finds an index entry whose file holds something else.

The fix is installed as a post-import hook: ``bench`` start-up does not import numba for it.
"""

from __future__ import annotations

import fcntl
import importlib.abc
import importlib.machinery
import itertools
import os
import sys

TARGET = "numba.core.caching"


def locked_save(self, key, data) -> None:
    """``IndexDataCacheFile.save`` under an exclusive lock on ``<index>.lock``, data before index.

    A lock file this process cannot open (another user's, in a shared cache folder) falls back to
    numba's own unlocked save (open to the race, as numba is alone) rather than failing the compilation."""
    try:  # read-only is enough for flock, and opens another user's lock file too
        lock = os.open(self._index_path + ".lock", os.O_RDONLY | os.O_CREAT, 0o666)
    except OSError:
        return ORIGINAL_SAVE[0](self, key, data)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the descriptor closes
        overloads = self._load_index()
        data_name = overloads.get(key)
        if data_name is None:
            taken = set(overloads.values())
            data_name = next(name for name in map(self._data_name, itertools.count(1)) if name not in taken)
        self._save_data(data_name, data)
        if overloads.get(key) != data_name:
            overloads[key] = data_name
            self._save_index(overloads)
    finally:
        os.close(lock)


ORIGINAL_SAVE: list = []  # numba's own save, kept for the fallback above


def patch(caching_module) -> None:
    cache_file = caching_module.IndexDataCacheFile
    if cache_file.save is not locked_save:
        ORIGINAL_SAVE[:] = [cache_file.save]
        cache_file.save = locked_save


class _PatchOnImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``numba.core.caching`` like the normal finders do, then patches it once it has run."""

    def find_spec(self, fullname, path, target=None):
        if fullname != TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        self._loader = spec.loader
        spec.loader = self
        return spec

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        patch(module)


def make_process_safe() -> None:
    """Patch numba's cache now if numba is loaded, else as soon as it is (idempotent)."""
    if TARGET in sys.modules:
        patch(sys.modules[TARGET])
    elif not any(isinstance(finder, _PatchOnImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _PatchOnImport())
