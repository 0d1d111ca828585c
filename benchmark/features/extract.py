"""Batch extraction over a corpus: parallel over cores, cached, with a progress bar.

Bad files are skipped and counted (with a one-line reason each) instead of stopping the batch;
every file that succeeds is written to the cache as soon as it is done, so an interrupted or
failing batch loses nothing already computed.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..audio import load_audio
from ..errors import BenchError
from ..paths import cache_root
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


def features_of_file(path: Path, feature_set: FeatureSet, cache: FeatureCache | None):
    """(status, arrays|None, message): status is 'cached', 'computed' or 'failed'."""
    try:
        digest = content_hash(path)
        if cache is not None:
            hit = cache.load(digest)
            if hit is not None:
                return "cached", hit, ""
        return "computed", checked_and_saved(path, digest, feature_set.extract(load_audio(path)), feature_set, cache), ""
    except Exception as exc:  # an extractor's own failure must not stop the batch
        return "failed", None, failure_message(path, feature_set, exc)


def checked_and_saved(path: Path, digest: str, arrays, feature_set: FeatureSet, cache: FeatureCache | None):
    for name, values in arrays.items():
        if not np.all(np.isfinite(values)):
            raise BenchError(f"{path}: {feature_set.name} produced non-finite {name}; check the audio")
    if cache is not None:
        cache.save(digest, arrays)
    return arrays


def failure_message(path: Path, feature_set: FeatureSet, exc: Exception) -> str:
    if isinstance(exc, BenchError):
        return str(exc)
    if isinstance(exc, OSError):
        return f"{path}: cannot read file ({exc.strerror or exc}); check permissions"
    return f"{path}: {feature_set.name} failed ({type(exc).__name__}: {exc})"


def features_of_files(items: list[tuple[str, str]], feature_set: FeatureSet, cache: FeatureCache | None):
    """[(uid, status, arrays|None, message)] of several files, through the set's batch API if it has one.

    Cached and unreadable files are settled one by one; the rest go through one ``extract_batch``
    call. If that call fails, the files are redone one by one so only the bad file is skipped.
    """
    if len(items) == 1 or not hasattr(feature_set, "extract_batch"):
        return [(uid, *features_of_file(Path(path), feature_set, cache)) for uid, path in items]
    settled, pending = {}, []
    for uid, path in items:
        try:
            digest = content_hash(path)
            hit = cache.load(digest) if cache is not None else None
            if hit is not None:
                settled[uid] = ("cached", hit, "")
            else:
                pending.append((uid, Path(path), digest, load_audio(path)))
        except Exception as exc:
            settled[uid] = ("failed", None, failure_message(Path(path), feature_set, exc))
    try:
        batch = feature_set.extract_batch([signal for *_, signal in pending]) if pending else []
    except Exception:
        batch = None
    for index, (uid, path, digest, _) in enumerate(pending):
        if batch is None:
            settled[uid] = features_of_file(path, feature_set, cache)
            continue
        try:
            settled[uid] = ("computed", checked_and_saved(path, digest, batch[index], feature_set, cache), "")
        except Exception as exc:
            settled[uid] = ("failed", None, failure_message(path, feature_set, exc))
    return [(uid, *settled[uid]) for uid, _ in items]


_WORKER: dict = {}


def _init_worker(name: str, config, cache_dir: str | None) -> None:
    from ..features import get_feature_set

    feature_set = get_feature_set(name)
    feature_set.config = config
    _WORKER["set"] = feature_set
    _WORKER["cache"] = FeatureCache(cache_dir, feature_set) if cache_dir else None


def _work(items: list[tuple[str, str]]):
    return features_of_files(items, _WORKER["set"], _WORKER["cache"])


def default_jobs() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def extract_features(
    items: list[tuple[str, Path]],
    feature_set: FeatureSet,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    jobs: int | None = None,
    progress: bool = True,
) -> ExtractionResult:
    """Features of ``items`` = [(utterance id, audio path)], in parallel, via the cache."""
    root = cache_root(cache_dir) if use_cache else None
    cache = FeatureCache(root, feature_set) if root else None
    result = ExtractionResult(cache_key=cache.key if cache else "")
    jobs = default_jobs() if jobs is None else max(1, jobs)
    jobs = min(jobs, feature_set.max_workers or jobs)  # a set holding a large model caps its processes
    per_task = max(1, int(feature_set.files_per_task))
    tasks = [[(uid, str(path)) for uid, path in items[i:i + per_task]] for i in range(0, len(items), per_task)]

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

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not progress, transient=True) as bar:
        task = bar.add_task(f"{feature_set.name}", total=len(items))
        if (jobs == 1 or len(items) < 2) and not feature_set.needs_own_process:
            for batch in tasks:
                for outcome in features_of_files(batch, feature_set, cache):
                    record(*outcome)
                bar.advance(task, len(batch))
        else:
            method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
            init = (feature_set.name, feature_set.config, str(root) if root else None)
            with ProcessPoolExecutor(
                max_workers=max(1, min(jobs, len(tasks))), mp_context=multiprocessing.get_context(method),
                initializer=_init_worker, initargs=init,
            ) as pool:
                futures = [pool.submit(_work, batch) for batch in tasks]
                for future in as_completed(futures):
                    outcomes = future.result()
                    for outcome in outcomes:
                        record(*outcome)
                    bar.advance(task, len(outcomes))
    return result
