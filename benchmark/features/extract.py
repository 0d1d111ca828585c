"""Batch extraction over a corpus: parallel over cores, cached, with progress a log file can read.

Bad files are skipped and counted (with a one-line reason each) instead of stopping the batch;
every file that succeeds is written to the cache as soon as it is done, so an interrupted or
failing batch loses nothing already computed.

``parts`` says which arrays the caller needs (``("functionals",)`` for a vector model on eGeMAPS,
``("frames",)`` for a sequence model); a set that declares several parts then computes only
those. The cache key does not depend on ``parts``: a cached entry is used only if it holds every
part asked for, else the missing parts are computed and merged into the entry, so a
functionals-only entry is never served to a run that needs frames.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Collection
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..audio import load_audio
from ..errors import BenchError
from ..paths import cache_root
from ..progress import progress as progress_lines
from .base import FeatureSet
from .cache import FeatureCache, content_hash

log = logging.getLogger(__name__)


@dataclass
class ExtractionResult:
    """Features by utterance id, plus what happened to every file."""

    features: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    computed: int = 0
    cached: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # utterance id -> one-line reason
    cache_key: str = ""

    def summary(self) -> str:
        return (f"{len(self.features)} ok ({self.computed} computed, {self.cached} from cache), "
                f"{len(self.failed)} skipped")


def wanted_parts(feature_set: FeatureSet, parts: Collection[str] | None) -> tuple[str, ...] | None:
    """The parts to ask ``feature_set`` for: None (everything) unless it can compute them apart."""
    if parts is None or len(feature_set.parts) < 2:
        return None
    return tuple(part for part in feature_set.parts if part in parts) or None


def features_of_file(path: Path, feature_set: FeatureSet, cache: FeatureCache | None,
                     parts: Collection[str] | None = None):
    """(status, arrays|None, message): status is 'cached', 'computed' or 'failed'."""
    try:
        digest = content_hash(path)
        wanted = wanted_parts(feature_set, parts)
        required = wanted or (feature_set.parts if len(feature_set.parts) > 1 else ())
        hit = cache.load(digest) if cache is not None else None
        if hit is not None and all(part in hit for part in required):
            return "cached", hit, ""
        signal = load_audio(path)
        arrays = feature_set.extract(signal) if wanted is None else feature_set.extract(signal, parts=wanted)
        for name, values in arrays.items():
            if not np.all(np.isfinite(values)):
                raise BenchError(f"{path}: {feature_set.name} produced non-finite {name}; check the audio")
        if cache is not None:
            cache.save(digest, {**(hit or {}), **arrays})  # keep parts cached earlier for other runs
        return "computed", arrays, ""
    except BenchError as exc:
        return "failed", None, str(exc)
    except OSError as exc:
        return "failed", None, f"{path}: cannot read file ({exc.strerror or exc}); check permissions"
    except Exception as exc:  # an extractor's own failure must not stop the batch
        return "failed", None, f"{path}: {feature_set.name} failed ({type(exc).__name__}: {exc})"


_WORKER: dict = {}


def _init_worker(name: str, config, cache_dir: str | None, parts: tuple[str, ...] | None = None) -> None:
    from ..features import get_feature_set

    feature_set = get_feature_set(name)
    feature_set.config = config
    _WORKER["set"] = feature_set
    _WORKER["cache"] = FeatureCache(cache_dir, feature_set) if cache_dir else None
    _WORKER["parts"] = parts


def _work(item: tuple[str, str]):
    uid, path = item
    return (uid, *features_of_file(Path(path), _WORKER["set"], _WORKER["cache"], _WORKER["parts"]))


def default_jobs() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def extract_features(
    items: list[tuple[str, Path]],
    feature_set: FeatureSet,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    jobs: int | None = None,
    progress: bool = True,
    parts: Collection[str] | None = None,
) -> ExtractionResult:
    """Features of ``items`` = [(utterance id, audio path)], in parallel, via the cache.

    ``parts``: the arrays the caller needs (None: all the set gives); see the module docstring.
    """
    root = cache_root(cache_dir) if use_cache else None
    cache = FeatureCache(root, feature_set) if root else None
    result = ExtractionResult(cache_key=cache.key if cache else "")
    jobs = default_jobs() if jobs is None else max(1, jobs)

    def record(uid: str, status: str, arrays, message: str) -> None:
        if status == "failed":
            result.failed[uid] = message
            log.warning("skipped %s", message)
            return
        result.features[uid] = arrays
        if status == "cached":
            result.cached += 1
        else:
            result.computed += 1

    parts = tuple(parts) if parts is not None else None
    with progress_lines(len(items), feature_set.name, enabled=progress) as advance:
        if (jobs == 1 or len(items) < 2) and not feature_set.needs_own_process:
            for uid, path in items:
                record(uid, *features_of_file(Path(path), feature_set, cache, parts))
                advance()
        else:
            method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
            init = (feature_set.name, feature_set.config, str(root) if root else None, parts)
            with ProcessPoolExecutor(
                max_workers=max(1, min(jobs, len(items))), mp_context=multiprocessing.get_context(method),
                initializer=_init_worker, initargs=init,
            ) as pool:
                futures = [pool.submit(_work, (uid, str(path))) for uid, path in items]
                for future in as_completed(futures):
                    record(*future.result())
                    advance()
    return result
