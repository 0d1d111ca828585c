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
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from .base import FeatureSet


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


class FeatureCache:
    def __init__(self, root: str | Path, feature_set: FeatureSet):
        self.key = feature_set.cache_key()
        self.directory = Path(root) / feature_set.name / self.key
        self._describe = feature_set.describe()

    def path(self, digest: str) -> Path:
        return self.directory / digest[:2] / f"{digest}.npz"

    def load(self, digest: str) -> dict[str, np.ndarray] | None:
        """Cached arrays, or None if absent or unreadable (then the caller recomputes)."""
        path = self.path(digest)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                return {name: data[name] for name in data.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError):
            return None

    def save(self, digest: str, arrays: dict[str, np.ndarray]) -> None:
        atomic_write(self.path(digest), lambda handle: np.savez(handle, **arrays))
        info = self.directory / "feature_set.json"
        if not info.exists():
            blob = json.dumps(self._describe, indent=2, sort_keys=True).encode()
            atomic_write(info, lambda handle: handle.write(blob))
