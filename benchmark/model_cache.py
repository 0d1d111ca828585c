"""A local copy of each logged model ``bench predict`` has used, so the next call needs no MLflow.

Why: importing MLflow and opening its store took ~3 s of a 7.6 s one-file ``bench predict``
(issue 9's target is < 3 s). A model URI that names one model for ever (``models:/m-<id>``, the
URI ``bench run`` prints, or ``runs:/<run id>/<path>``: both ids are random and never reused) can
be copied once: its artifact folder, MLmodel flavours, metadata and the normaliser's training
statistics go into ``<feature cache>/models/<key>/`` (``SER_BENCH_CACHE``). Later calls read that folder and never import MLflow.
Names, versions and aliases (``models:/name@champion``, ``models:/name/3``) can move or be re-created,
so they are resolved through MLflow every time and never served from the copy.

An entry is written to a temporary folder and renamed into place, so concurrent processes never
see half of one; ``manifest.json`` is written last. Deleting ``<cache>/models`` is always safe.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .paths import cache_root

IMMUTABLE_URI = re.compile(r"^(models:/m-[0-9a-f]{32}|runs:/[0-9a-f]{32}/[^@]+)$")
MANIFEST = "manifest.json"


@dataclass
class CachedModel:
    """What ``bench predict`` needs of a logged model, from MLflow or from the local copy."""

    uri: str
    flavors: dict
    metadata: dict
    normaliser: dict | None  # the run's training statistics (``preprocessing/normaliser.json``)
    model_dir: Path | None  # the artifact folder on this machine (None: load through MLflow)


def is_immutable(uri: str) -> bool:
    return bool(IMMUTABLE_URI.match(uri))


def entry_dir(uri: str, tracking_uri: str, cache_dir: str | Path | None = None) -> Path:
    key = hashlib.sha256(f"{tracking_uri}\n{uri}".encode()).hexdigest()[:32]
    return cache_root(cache_dir) / "models" / key


def lookup(uri: str, tracking_uri: str, cache_dir: str | Path | None = None) -> CachedModel | None:
    """The local copy of ``uri`` (from ``tracking_uri``), or None when there is none (or it is damaged)."""
    if not is_immutable(uri):
        return None
    folder = entry_dir(uri, tracking_uri, cache_dir)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        return CachedModel(uri, manifest["flavors"], manifest["metadata"], manifest.get("normaliser"),
                           folder / "model")
    except (OSError, ValueError, KeyError):
        return None


def save(model: CachedModel, tracking_uri: str, download, cache_dir: str | Path | None = None) -> CachedModel:
    """Copy ``model`` (``download(folder)`` fills ``folder`` with its artifacts) into the cache.

    Returns the cached entry; on any failure (read-only disk, a full disk) ``model`` unchanged:
    the copy is an optimisation, never a reason for ``bench predict`` to fail.
    """
    if not is_immutable(model.uri):
        return model
    final = entry_dir(model.uri, tracking_uri, cache_dir)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=".partial-", dir=final.parent))
        try:
            download(scratch / "model")
            manifest = {"uri": model.uri, "tracking_uri": tracking_uri, "flavors": model.flavors,
                        "metadata": model.metadata, "normaliser": model.normaliser}
            (scratch / MANIFEST).write_text(json.dumps(manifest))
            try:
                os.rename(scratch, final)
            except OSError:  # another process copied it first: theirs is as good
                pass
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    except OSError:
        return model
    return lookup(model.uri, tracking_uri, cache_dir) or model
