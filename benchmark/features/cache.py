"""On-disk feature cache, keyed by feature-set config + library versions and by file content.

Layout: ``<cache root>/<set name>/<config key>/<content hash[:2]>/<content hash>.npz``. A key that
includes the file's *content* (not its path) means renamed or copied corpora hit the cache, and
an edited file never returns stale features. Writes go to a temporary file in the same folder and
are renamed into place, so a reader never sees half a file and two processes extracting the same
file at once just both write the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from .base import FeatureSet

log = logging.getLogger(__name__)


def content_hash(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write(path: Path, write) -> None:
    """Call ``write(file_object)`` on a temporary sibling of ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class CacheWriteError(OSError):
    """The cache folder cannot be written (read-only, full disk): features are kept, not cached."""


def validation_problem(arrays: dict[str, np.ndarray], expected: dict[str, int],
                       parts: tuple[str, ...] = ()) -> str | None:
    """Why ``arrays`` cannot be this feature set's output (keys, rank, dtype, width, finiteness), or None.

    A set that computes several ``parts`` apart may have cached only some of them (the extractor
    asks for the missing ones); then at least one of its parts must be there."""
    missing = sorted(set(expected) - set(arrays))
    if len(parts) > 1:
        missing = [] if set(parts) & set(arrays) else sorted(parts)
    if missing:
        return f"missing {', '.join(missing)}"
    for name, values in arrays.items():
        if values.dtype.kind != "f":
            return f"{name} has dtype {values.dtype}, not float"
        if name == "frames" and (values.ndim != 2 or values.shape[0] == 0):
            return f"frames has shape {values.shape}, not (n_frames > 0, n_features)"
        if name == "functionals" and values.ndim != 1:
            return f"functionals has shape {values.shape}, not (n_features,)"
        if name in expected and values.shape[-1] != expected[name]:
            return f"{name} has {values.shape[-1]} features, not {expected[name]}"
        if not np.all(np.isfinite(values)):
            return f"{name} holds non-finite values"
    return None


class FeatureCache:
    def __init__(self, root: str | Path, feature_set: FeatureSet):
        self.key = feature_set.cache_key()
        self.directory = Path(root) / feature_set.name / self.key
        self._describe = feature_set.describe()
        self._feature_set = feature_set
        self._expected: dict[str, int] | None = None

    @property
    def expected(self) -> dict[str, int]:
        """Key -> number of features every entry must have (from the set's feature names)."""
        if self._expected is None:
            key = "frames" if self._feature_set.level == "frame" else "functionals"
            # remembered beside the entries: asking openSMILE for its names builds a Smile (~1 s)
            remembered = self.directory / "feature_count.json"
            try:
                self._expected = {key: int(json.loads(remembered.read_text())[key])}
            except (OSError, ValueError, KeyError, TypeError):
                self._expected = {key: len(self._feature_set.feature_names)}
                try:
                    self.directory.mkdir(parents=True, exist_ok=True)
                    partial = remembered.with_suffix(f".{os.getpid()}.tmp")
                    partial.write_text(json.dumps(self._expected))
                    os.replace(partial, remembered)  # atomic: a concurrent reader sees all or nothing
                except OSError:
                    pass  # a read-only cache: ask the set again next time
        return self._expected

    def path(self, digest: str) -> Path:
        return self.directory / digest[:2] / f"{digest}.npz"

    def load(self, digest: str) -> dict[str, np.ndarray] | None:
        """Cached arrays, or None if absent, unreadable or of the wrong shape (the caller then
        recomputes and replaces the entry: a valid file with wrong contents must not crash a run)."""
        path = self.path(digest)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {name: data[name] for name in data.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError):
            return None
        problem = validation_problem(arrays, self.expected, tuple(self._feature_set.parts))
        if problem:
            log.info("cache entry %s is invalid (%s); recomputing it", path, problem)
            return None
        return arrays

    def save(self, digest: str, arrays: dict[str, np.ndarray]) -> None:
        """Write one entry; raises :class:`CacheWriteError` (one line) if the folder cannot be written."""
        try:
            atomic_write(self.path(digest), lambda handle: np.savez(handle, **arrays))
            info = self.directory / "feature_set.json"
            if not info.exists():
                blob = json.dumps(self._describe, indent=2, sort_keys=True).encode()
                atomic_write(info, lambda handle: handle.write(blob))
        except OSError as exc:
            raise CacheWriteError(exc.errno, f"feature cache {self.directory} cannot be written "
                                             f"({exc.strerror or exc}); going on without caching (free space, "
                                             f"fix permissions or pass --cache-dir)") from None
