"""Batch extraction over a corpus: parallel over cores, cached, with a progress bar.

Bad files are skipped and counted (with a one-line reason each) instead of stopping the batch;
every file that succeeds is written to the cache as soon as it is done, so an interrupted or
failing batch loses nothing already computed.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..audio import load_audio
from ..errors import BenchError
from ..paths import cache_root
from .base import FeatureSet
from .cache import CacheWriteError, FeatureCache, content_hash

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


# cache folders found unwritable in this process: not tried again for every file
cache_unwritable: dict[Path, bool] = {}


def features_of_file(path: Path, feature_set: FeatureSet, cache: FeatureCache | None):
    """(status, arrays|None, message): status is 'cached', 'computed' or 'failed'.

    A 'computed' result with a message means the cache could not be written (the features are fine).
    """
    try:
        digest = content_hash(path)
        if cache is not None:
            hit = cache.load(digest)
            if hit is not None:
                return "cached", hit, ""
        signal = load_audio(path)
        seconds = len(signal) / feature_set.sample_rate
        if seconds < feature_set.min_seconds:
            raise BenchError(f"{path}: {seconds:.3f} s is shorter than the {feature_set.min_seconds:g} s that "
                             f"{feature_set.name} needs; use a longer clip or handcrafted36/librosa46 (any length)")
        with warnings.catch_warnings():  # raw library warnings never reach the screen; bad output is caught below
            warnings.simplefilter("ignore")
            arrays = feature_set.extract(signal)
        for name, values in arrays.items():
            if not np.all(np.isfinite(values)):
                raise BenchError(f"{path}: {feature_set.name} produced non-finite {name} for this "
                                 f"{seconds:.3f} s clip; check the audio")
        if cache is not None and not cache_unwritable.get(cache.directory):
            try:
                cache.save(digest, arrays)
            except CacheWriteError as exc:  # keep the features; the parent warns once
                cache_unwritable[cache.directory] = True
                return "computed", arrays, exc.strerror
        return "computed", arrays, ""
    except BenchError as exc:
        return "failed", None, str(exc)
    except OSError as exc:
        return "failed", None, f"{path}: cannot read file ({exc.strerror or exc}); check permissions"
    except Exception as exc:  # an extractor's own failure must not stop the batch
        return "failed", None, f"{path}: {feature_set.name} failed ({type(exc).__name__}: {exc})"


_WORKER: dict = {}


def _init_worker(name: str, module: str, config, cache_dir: str | None, parent_pid: int) -> None:
    import importlib

    from ..features import get_feature_set
    from ..lifecycle import exit_with_parent

    exit_with_parent(parent_pid)  # a kill -9'd parent leaves no worker behind
    importlib.import_module(module)  # a feature set registered outside the package (a plugin) joins too
    feature_set = get_feature_set(name)
    feature_set.config = config
    _WORKER["set"] = feature_set
    _WORKER["cache"] = FeatureCache(cache_dir, feature_set) if cache_dir else None


def _work(item: tuple[str, str]):
    uid, path = item
    return (uid, *features_of_file(Path(path), _WORKER["set"], _WORKER["cache"]))


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

    warned = []

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
            if message and not warned:  # the cache cannot be written: say so once, keep going
                warned.append(message)
                log.warning("%s", message)

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not progress, transient=True) as bar:
        task = bar.add_task(f"{feature_set.name}", total=len(items))
        if (jobs == 1 or len(items) < 2) and not feature_set.needs_own_process:
            for uid, path in items:
                record(uid, *features_of_file(Path(path), feature_set, cache))
                bar.advance(task)
        else:
            init = (feature_set.name, type(feature_set).__module__, feature_set.config, str(root) if root else None,
                    os.getpid())
            for outcome in extract_in_workers(items, init, jobs):
                record(*outcome)
                bar.advance(task)
    return result


def extract_in_workers(items: list[tuple[str, Path]], init: tuple, jobs: int):
    """Yield (uid, status, arrays, message) from worker processes; survive workers that die.

    A worker killed by a segfault or a signal breaks the whole pool (BrokenProcessPool). What
    finished is kept; the rest is retried in a fresh pool with one worker, where the file being
    processed when a worker dies is known: it is reported in one line and skipped. An exception
    here (Ctrl-C, SIGTERM) stops the pool at once instead of waiting for the queued work.
    """
    from concurrent.futures.process import BrokenProcessPool

    from ..lifecycle import stop_pool

    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    pending = [(uid, str(path)) for uid, path in items]
    workers = max(1, min(jobs, len(pending)))
    while pending:
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(method),
                                   initializer=_init_worker, initargs=init)
        broken = False
        try:
            futures = {pool.submit(_work, item): item for item in pending}
            done = set()
            for future in (as_completed(futures) if workers > 1 else list(futures)):
                try:
                    outcome = future.result()
                except BrokenProcessPool:
                    broken = True
                    break
                done.add(futures[future])
                yield outcome
            if broken and workers == 1:  # in submission order: the first unfinished item killed the worker
                culprit = next(item for item in pending if item not in done)
                done.add(culprit)
                yield (culprit[0], "failed", None, f"{culprit[1]}: the extraction worker died while reading this "
                                                   f"file (crash or kill); skipped it, the batch goes on")
            pending = [item for item in pending if item not in done]
            if broken and workers > 1:
                log.warning("an extraction worker died; retrying the %d remaining file(s) one at a time", len(pending))
            workers = 1 if broken else workers
        except BaseException:
            stop_pool(pool)
            raise
        if broken:
            stop_pool(pool)
        else:
            pool.shutdown(wait=True)
