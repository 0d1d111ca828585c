"""Batch extraction over a corpus: parallel over cores, cached, with progress a log file can read.

Bad files are skipped and counted (with a one-line reason each) instead of stopping the batch;
every file that succeeds is written to the cache as soon as it is done, so an interrupted or
failing batch loses nothing already computed. A cache that cannot be written is reported once
and the batch goes on without it; a worker process that dies costs only the file it was reading.

``parts`` says which arrays the caller needs (``("functionals",)`` for a vector model on eGeMAPS,
``("frames",)`` for a sequence model); a set that declares several parts then computes only
those. The cache key does not depend on ``parts``: a cached entry is used only if it holds every
part asked for, else the missing parts are computed and merged into the entry, so a
functionals-only entry is never served to a run that needs frames.

A set with a batch API (``extract_batch``, e.g. the SSL embeddings) gets ``files_per_task`` files
per call, and ``max_workers`` caps its processes (one large model per worker, not one per core).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import warnings
from collections.abc import Collection
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..audio import load_audio
from ..errors import BenchError, printable
from ..paths import cache_root
from ..progress import progress as progress_lines
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


def wanted_parts(feature_set: FeatureSet, parts: Collection[str] | None) -> tuple[str, ...] | None:
    """The parts to ask ``feature_set`` for: None (everything) unless it can compute them apart."""
    if parts is None or len(feature_set.parts) < 2:
        return None
    return tuple(part for part in feature_set.parts if part in parts) or None


def failure_message(path: Path, feature_set: FeatureSet, exc: BaseException) -> str:
    if isinstance(exc, BenchError):
        return str(exc)
    if isinstance(exc, OSError):
        return f"{path}: cannot read file ({exc.strerror or exc}); check permissions"
    return f"{path}: {feature_set.name} failed ({type(exc).__name__}: {exc})"


class _Pending:
    """A file that is not in the cache (with the parts asked for): read, checked, to be extracted."""

    def __init__(self, path: Path, feature_set: FeatureSet, cache: FeatureCache | None, parts):
        self.path, self.digest = path, content_hash(path)
        self.wanted = wanted_parts(feature_set, parts)
        required = self.wanted or (feature_set.parts if len(feature_set.parts) > 1 else ())
        self.hit = cache.load(self.digest) if cache is not None else None
        self.cached = self.hit is not None and all(part in self.hit for part in required)
        if self.cached:
            return
        self.signal = load_audio(path)
        self.seconds = len(self.signal) / feature_set.sample_rate
        if self.seconds < feature_set.min_seconds:
            raise BenchError(f"{path}: {self.seconds:.3f} s is shorter than the {feature_set.min_seconds:g} s that "
                             f"{feature_set.name} needs; use a longer clip or handcrafted36/librosa46 (any length)")

    def finish(self, arrays, feature_set: FeatureSet, cache: FeatureCache | None):
        """(status, arrays, message) once extracted: checked, then cached (merged with earlier parts)."""
        for name, values in arrays.items():
            if not np.all(np.isfinite(values)):
                raise BenchError(f"{self.path}: {feature_set.name} produced non-finite {name} for this "
                                 f"{self.seconds:.3f} s clip; check the audio")
        if cache is not None and not cache_unwritable.get(cache.directory):
            try:
                cache.save(self.digest, {**(self.hit or {}), **arrays})  # keep parts cached for other runs
            except CacheWriteError as exc:  # keep the features; the parent warns once
                cache_unwritable[cache.directory] = True
                return "computed", arrays, exc.strerror
        return "computed", arrays, ""


def cache_hit(path: Path, feature_set: FeatureSet, cache: FeatureCache, parts) -> dict | None:
    """The cached arrays of ``path`` if the cache holds every part asked for, else None (also when
    the file cannot be read: extraction then reports why)."""
    wanted = wanted_parts(feature_set, parts)
    required = wanted or (feature_set.parts if len(feature_set.parts) > 1 else ())
    try:
        hit = cache.load(content_hash(path))
    except Exception:
        return None
    return hit if hit is not None and all(part in hit for part in required) else None


def _quietly(call, *args, **kwargs):
    with warnings.catch_warnings():  # raw library warnings never reach the screen; bad output is caught after
        warnings.simplefilter("ignore")
        return call(*args, **kwargs)


def features_of_file(path: Path, feature_set: FeatureSet, cache: FeatureCache | None,
                     parts: Collection[str] | None = None):
    """(status, arrays|None, message): status is 'cached', 'computed' or 'failed'.

    A 'computed' result with a message means the cache could not be written (the features are fine).
    """
    try:
        item = _Pending(Path(path), feature_set, cache, parts)
        if item.cached:
            return "cached", item.hit, ""
        kwargs = {} if item.wanted is None else {"parts": item.wanted}
        return item.finish(_quietly(feature_set.extract, item.signal, **kwargs), feature_set, cache)
    except Exception as exc:  # an extractor's own failure must not stop the batch
        return "failed", None, failure_message(Path(path), feature_set, exc)


def features_of_files(items: list[tuple[str, str]], feature_set: FeatureSet, cache: FeatureCache | None,
                      parts: Collection[str] | None = None):
    """[(uid, status, arrays|None, message)] of several files, through the set's batch API if it has one.

    Cached and unreadable files are settled one by one; the rest go through one ``extract_batch``
    call. If that call fails, the files are redone one by one so only the bad file is skipped.
    """
    if len(items) == 1 or not hasattr(feature_set, "extract_batch"):
        return [(uid, *features_of_file(Path(path), feature_set, cache, parts)) for uid, path in items]
    settled, pending = {}, []
    for uid, path in items:
        try:
            item = _Pending(Path(path), feature_set, cache, parts)
            if item.cached:
                settled[uid] = ("cached", item.hit, "")
            else:
                pending.append((uid, item))
        except Exception as exc:
            settled[uid] = ("failed", None, failure_message(Path(path), feature_set, exc))
    try:
        batch = _quietly(feature_set.extract_batch, [item.signal for _, item in pending]) if pending else []
    except Exception:
        batch = None
    for index, (uid, item) in enumerate(pending):
        if batch is None:
            settled[uid] = features_of_file(item.path, feature_set, cache, parts)
            continue
        try:
            settled[uid] = item.finish(batch[index], feature_set, cache)
        except Exception as exc:
            settled[uid] = ("failed", None, failure_message(item.path, feature_set, exc))
    return [(uid, *settled[uid]) for uid, _ in items]


_WORKER: dict = {}


def _init_worker(name: str, module: str, config, cache_dir: str | None, parent_pid: int,
                 parts: tuple[str, ...] | None = None) -> None:
    import importlib

    from ..features import get_feature_set
    from ..lifecycle import exit_with_parent

    exit_with_parent(parent_pid)  # a kill -9'd parent leaves no worker behind
    importlib.import_module(module)  # a feature set registered outside the package (a plugin) joins too
    feature_set = get_feature_set(name)
    feature_set.config = config
    _WORKER["set"] = feature_set
    _WORKER["cache"] = FeatureCache(cache_dir, feature_set) if cache_dir else None
    _WORKER["parts"] = parts


def _work(items: list[tuple[str, str]]):
    return features_of_files(items, _WORKER["set"], _WORKER["cache"], _WORKER["parts"])


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
    in_process_ok: bool = False,
) -> ExtractionResult:
    """Features of ``items`` = [(utterance id, audio path)], in parallel, via the cache.

    ``parts``: the arrays the caller needs (None: all the set gives); see the module docstring.
    ``in_process_ok``: the caller will not load TensorFlow in this process, so even a set that
    ``needs_own_process`` (openSMILE) may read its cache and extract single files here.
    """
    root = cache_root(cache_dir) if use_cache else None
    cache = FeatureCache(root, feature_set) if root else None
    result = ExtractionResult(cache_key=cache.key if cache else "")
    jobs = default_jobs() if jobs is None else max(1, jobs)
    jobs = min(jobs, feature_set.max_workers or jobs)  # a set holding a large model caps its processes
    per_task = max(1, int(feature_set.files_per_task))
    warned = []

    def record(uid: str, status: str, arrays, message: str) -> None:
        if status == "failed":
            result.failed[uid] = message = printable(message)  # a non-UTF-8 file name must not break the log
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

    parts = tuple(parts) if parts is not None else None
    items = [(uid, str(path)) for uid, path in items]
    own_process = feature_set.needs_own_process and not in_process_ok
    with progress_lines(len(items), feature_set.name, enabled=progress) as advance:
        if cache is not None and not own_process:  # cached files are read here: no worker process started
            uncached = []
            for uid, path in items:
                hit = cache_hit(Path(path), feature_set, cache, parts)
                if hit is None:
                    uncached.append((uid, path))
                else:
                    record(uid, "cached", hit, "")
                    advance()
            items = uncached
        if (jobs == 1 or len(items) < 2) and not own_process:
            for start in range(0, len(items), per_task):
                for outcome in features_of_files(items[start:start + per_task], feature_set, cache, parts):
                    record(*outcome)
                    advance()
        elif items:
            init = (feature_set.name, type(feature_set).__module__, feature_set.config, str(root) if root else None,
                    os.getpid(), parts)
            for outcome in extract_in_workers(items, init, jobs, per_task):
                record(*outcome)
                advance()
    return result


def standard_start_method(method: str) -> None:
    """Make ``method`` this process's default start method if the default is not a standard one.

    Why: inside a joblib/loky worker (a fold run in parallel) the default is "loky", and every child
    of a standard pool is told to use the parent's default before it runs anything; a forkserver or
    spawn child cannot resolve "loky" and dies, so the pool broke before its first file (seen: a
    network's folds with speed perturbation, whose training copies are extracted inside the fold).
    """
    current = multiprocessing.get_start_method(allow_none=True)  # None: not chosen yet, leave it so
    if current is not None and current not in multiprocessing.get_all_start_methods():
        multiprocessing.set_start_method(method, force=True)


def extract_in_workers(items: list[tuple[str, str]], init: tuple, jobs: int, per_task: int = 1):
    """Yield (uid, status, arrays, message) from worker processes; survive workers that die.

    A worker killed by a segfault or a signal breaks the whole pool (BrokenProcessPool). What
    finished is kept; the rest is retried in a fresh pool with one worker and one file per task,
    where the file being processed when a worker dies is known: it is reported in one line and
    skipped. An exception here (Ctrl-C, SIGTERM) stops the pool at once instead of waiting for
    the queued work.
    """
    from concurrent.futures.process import BrokenProcessPool

    from ..lifecycle import stop_pool

    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    standard_start_method(method)
    pending = list(items)
    workers = max(1, min(jobs, -(-len(pending) // per_task)))
    while pending:
        tasks = [tuple(pending[i:i + per_task]) for i in range(0, len(pending), per_task)]
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(method),
                                   initializer=_init_worker, initargs=init)
        broken = False
        try:
            futures = {}
            try:
                for task in tasks:
                    futures[pool.submit(_work, list(task))] = task
            except BrokenProcessPool:  # a worker died while work was still being handed out
                broken = True
            done = set()
            for future in (as_completed(futures) if workers > 1 else list(futures)):
                try:
                    outcomes = future.result()
                except BrokenProcessPool:
                    broken = True
                    break
                done.update(futures[future])
                yield from outcomes
            if broken and workers == 1 and per_task == 1:  # in order: the first unfinished item killed it
                culprit = next(item for item in pending if item not in done)
                done.add(culprit)
                yield (culprit[0], "failed", None, f"{culprit[1]}: the extraction worker died while reading this "
                                                   f"file (crash or kill); skipped it, the batch goes on")
            pending = [item for item in pending if item not in done]
            if broken and (workers > 1 or per_task > 1):
                log.warning("an extraction worker died; retrying the %d remaining file(s) one at a time", len(pending))
            if broken:
                workers, per_task = 1, 1
        except BaseException:
            stop_pool(pool)
            raise
        if broken:
            stop_pool(pool)
        else:
            pool.shutdown(wait=True)
