"""A local copy of each logged model ``bench predict`` has used, so the next call needs no MLflow.

Why: importing MLflow and opening its store took ~3 s of a 7.6 s one-file ``bench predict``
(issue 9's target is < 3 s). ``models:/m-<id>``, the URI ``bench run`` prints, names one logged
model for ever (the id is random and never reused), so it can be copied once: its artifact folder,
MLmodel flavours, metadata and the normaliser's training statistics go into
``<feature cache>/models/<key>/`` (``SER_BENCH_CACHE``). Later calls read that folder and never
import MLflow. Every other URI is resolved through MLflow every time and never copied: names,
versions and aliases (``models:/name@champion``, ``models:/name/3``) can move or be re-created,
and ``runs:/<run>/<path>`` is looked up among the run's logged models, which can change.

An entry is written to a temporary folder and renamed into place, so concurrent processes never
see half of one; ``manifest.json`` is written last. An entry that cannot be read is removed and
copied again. Deleting ``<cache>/models`` is always safe.

An entry may also hold ``portable.npz``: a numpy-only form of the model (:mod:`benchmark.portable`),
added by the first ``bench predict`` that loaded the model (written to a temporary file and renamed,
so readers see all of it or none). With it, ``bench predict`` does not import scikit-learn either.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .paths import cache_root

IMMUTABLE_URI = re.compile(r"^models:/m-[0-9a-f]{32}$")
MANIFEST = "manifest.json"
PORTABLE = "portable.npz"
STALE_PARTIAL_S = 3600  # a copy still unfinished after an hour belongs to a dead process


@dataclass
class CachedModel:
    """What ``bench predict`` needs of a logged model, from MLflow or from the local copy."""

    uri: str
    flavors: dict
    metadata: dict
    normaliser: dict | None  # the run's training statistics (``preprocessing/normaliser.json``)
    model_dir: Path | None  # the artifact folder on this machine (None: load through MLflow)
    portable: Path | None = None  # numpy-only form of the model (benchmark.portable), when there is one


def is_immutable(uri: str) -> bool:
    return bool(IMMUTABLE_URI.match(uri))


def entry_dir(uri: str, tracking_uri: str, cache_dir: str | Path | None = None) -> Path:
    key = hashlib.sha256(f"{tracking_uri}\n{uri}".encode()).hexdigest()[:32]
    return cache_root(cache_dir) / "models" / key


def lookup(uri: str, tracking_uri: str, cache_dir: str | Path | None = None) -> CachedModel | None:
    """The local copy of ``uri`` (from ``tracking_uri``), or None when there is none. A damaged
    entry (unreadable manifest) is removed, so the caller's fresh copy can take its place."""
    if not is_immutable(uri):
        return None
    folder = entry_dir(uri, tracking_uri, cache_dir)
    if not folder.exists():
        return None
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        portable = folder / PORTABLE
        return CachedModel(uri, manifest["flavors"], manifest["metadata"], manifest.get("normaliser"),
                           folder / "model", portable if portable.is_file() else None)
    except (OSError, ValueError, KeyError, TypeError):
        forget(uri, tracking_uri, cache_dir)
        return None


def save_portable(model: CachedModel, arrays: dict) -> None:
    """Add the numpy-only form of a copied model beside its copy (best effort, like :func:`save`)."""
    if model.model_dir is None:
        return
    from . import portable

    folder = model.model_dir.parent
    try:
        handle, scratch = tempfile.mkstemp(prefix=".portable-", suffix=".npz", dir=folder)
        os.close(handle)
        try:
            portable.save(Path(scratch), arrays)
            os.chmod(scratch, 0o644)
            os.replace(scratch, folder / PORTABLE)
        finally:
            if os.path.exists(scratch):
                os.unlink(scratch)
    except OSError:
        pass


def forget_portable(model: CachedModel) -> None:
    """Drop a portable form that would not load; the model copy itself stays."""
    if model.portable is not None:
        try:
            model.portable.unlink()
        except OSError:
            pass
        model.portable = None  # so that the caller can write a good one again


def forget(uri: str, tracking_uri: str, cache_dir: str | Path | None = None) -> None:
    """Remove the local copy of ``uri`` (damaged, or its model would not load)."""
    shutil.rmtree(entry_dir(uri, tracking_uri, cache_dir), ignore_errors=True)


def save(model: CachedModel, tracking_uri: str, download, cache_dir: str | Path | None = None) -> CachedModel:
    """Copy ``model`` into the cache; ``download(folder)`` fills ``folder`` with its artifact
    folder (MLmodel, model file) and returns that folder's path.

    Returns the cached entry; on any failure (read-only or full disk, a download error) ``model``
    unchanged: the copy is an optimisation, never a reason for ``bench predict`` to fail.
    """
    if not is_immutable(model.uri):
        return model
    final = entry_dir(model.uri, tracking_uri, cache_dir)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        for stale in final.parent.glob(".partial-*"):  # left by a process killed while copying
            if time.time() - stale.stat().st_mtime > STALE_PARTIAL_S:
                shutil.rmtree(stale, ignore_errors=True)
        scratch = Path(tempfile.mkdtemp(prefix=".partial-", dir=final.parent))
        try:
            os.chmod(scratch, 0o755)  # mkdtemp's 0700 would hide a shared cache from its other users
            downloaded = Path(download(scratch / "download"))
            if not (downloaded / "MLmodel").is_file():
                return model
            downloaded.rename(scratch / "model")
            manifest = {"uri": model.uri, "tracking_uri": tracking_uri, "flavors": model.flavors,
                        "metadata": model.metadata, "normaliser": model.normaliser}
            (scratch / MANIFEST).write_text(json.dumps(manifest))
            shutil.rmtree(scratch / "download", ignore_errors=True)
            try:
                os.rename(scratch, final)
            except OSError:  # another process copied it first: theirs is as good
                pass
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    except Exception:  # noqa: BLE001 - see the docstring
        return model
    return lookup(model.uri, tracking_uri, cache_dir) or model
