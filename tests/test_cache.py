import subprocess
import sys

import numpy as np

from benchmark.corpora import get_corpus
from benchmark.features import get_feature_set
from benchmark.features.cache import FeatureCache, content_hash
from benchmark.features.extract import extract_features


def items_of(root):
    return [(u.id, u.path) for u in get_corpus("emodb", root=root).utterances()]


def test_second_pass_comes_from_cache_with_same_values(small_emodb, tmp_path):
    feature_set = get_feature_set("handcrafted36")
    first = extract_features(items_of(small_emodb), feature_set, cache_dir=tmp_path, jobs=1, progress=False)
    second = extract_features(items_of(small_emodb), feature_set, cache_dir=tmp_path, jobs=1, progress=False)
    assert (first.computed, first.cached) == (14, 0) and (second.computed, second.cached) == (0, 14)
    for uid, arrays in first.features.items():
        np.testing.assert_array_equal(arrays["frames"], second.features[uid]["frames"])


def test_parallel_extraction_equals_serial(small_emodb, tmp_path):
    feature_set = get_feature_set("librosa46")
    serial = extract_features(items_of(small_emodb), feature_set, use_cache=False, jobs=1, progress=False)
    parallel = extract_features(items_of(small_emodb), feature_set, use_cache=False, jobs=2, progress=False)
    assert serial.features.keys() == parallel.features.keys()
    for uid in serial.features:
        np.testing.assert_array_equal(serial.features[uid]["frames"], parallel.features[uid]["frames"])


def test_bad_files_are_skipped_counted_and_cached_work_kept(small_emodb, tmp_path):
    feature_set = get_feature_set("handcrafted36")
    extract_features(items_of(small_emodb), feature_set, cache_dir=tmp_path, jobs=1, progress=False)
    wavs = sorted((small_emodb / "wav").glob("*.wav"))
    wavs[0].write_bytes(b"")  # empty
    wavs[1].write_bytes(b"RIFF" + b"\x00" * 50)  # corrupt
    result = extract_features(items_of(small_emodb), feature_set, cache_dir=tmp_path, jobs=2, progress=False)
    assert len(result.failed) == 2 and result.cached == 12 and result.computed == 0
    assert all(str(small_emodb) in message for message in result.failed.values())


def test_corrupt_cache_entry_is_recomputed(small_emodb, tmp_path):
    feature_set = get_feature_set("handcrafted36")
    items = items_of(small_emodb)[:1]
    extract_features(items, feature_set, cache_dir=tmp_path, jobs=1, progress=False)
    cache = FeatureCache(tmp_path, feature_set)
    cache.path(content_hash(items[0][1])).write_bytes(b"not an npz")
    result = extract_features(items, feature_set, cache_dir=tmp_path, jobs=1, progress=False)
    assert result.computed == 1 and cache.load(content_hash(items[0][1])) is not None


def test_two_processes_extracting_at_once_corrupt_nothing(small_emodb, tmp_path):
    script = (
        "import sys\n"
        "from benchmark.corpora import get_corpus\n"
        "from benchmark.features import get_feature_set\n"
        "from benchmark.features.extract import extract_features\n"
        "if __name__ == '__main__':\n"
        "    items = [(u.id, u.path) for u in get_corpus('emodb', root=sys.argv[1]).utterances()]\n"
        "    r = extract_features(items, get_feature_set('handcrafted36'), cache_dir=sys.argv[2], jobs=1, progress=False)\n"
        "    assert not r.failed, r.failed\n"
    )
    (tmp_path / "job.py").write_text(script)
    cache_dir = tmp_path / "shared-cache"
    procs = [subprocess.Popen([sys.executable, str(tmp_path / "job.py"), str(small_emodb), str(cache_dir)])
             for _ in range(2)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    feature_set = get_feature_set("handcrafted36")
    cache = FeatureCache(cache_dir, feature_set)
    assert not list(cache.directory.rglob("*.tmp"))
    for _, path in items_of(small_emodb):
        cached = cache.load(content_hash(path))
        assert cached is not None
        from benchmark.audio import load_audio

        np.testing.assert_array_equal(cached["frames"], feature_set.extract(load_audio(path))["frames"])


def test_a_warm_pass_starts_no_worker_process(small_emodb, tmp_path, monkeypatch):
    """Cached files are read in the calling process: a warm run or a repeated `bench predict`
    pays no worker start-up, even for a set that extracts in its own processes."""
    import benchmark.features.extract as extract

    feature_set = get_feature_set("librosa46")
    first = extract_features(items_of(small_emodb), feature_set, cache_dir=tmp_path, jobs=2, progress=False)

    def no_workers(*args, **kwargs):
        raise AssertionError("a worker pool was started for cached files")

    monkeypatch.setattr(extract, "extract_in_workers", no_workers)
    second = extract_features(items_of(small_emodb), feature_set, cache_dir=tmp_path, jobs=2, progress=False)
    assert second.cached == len(first.features) == 14 and second.computed == 0
    for uid, arrays in first.features.items():
        np.testing.assert_array_equal(arrays["frames"], second.features[uid]["frames"])


def test_opensmile_stays_out_of_a_process_that_may_load_tensorflow():
    """openSMILE (and its audio-augmented copies) extract in worker processes unless the caller
    says no TensorFlow is used here (a vector model's run, `bench predict` of one)."""
    from benchmark.models import get_model, tensorflow_free

    assert get_feature_set("egemaps").needs_own_process
    assert get_feature_set("augmented", base="egemaps", kind="noise", value=10.0).needs_own_process
    assert not get_feature_set("augmented", base="librosa46", kind="noise", value=10.0).needs_own_process
    assert not tensorflow_free(type(get_model("local_attn_blstm")))


BARRIER = """
def wait_for_all(spec):
    import os, pathlib, time
    folder, n = spec.rsplit(":", 1)
    pathlib.Path(folder, str(os.getpid())).touch()
    while len(os.listdir(folder)) < int(n):
        time.sleep(0.005)
"""

NUMBA_SAVE_RACE = BARRIER + """
import sys, time
import numba.core.caching as caching
from benchmark.numba_cache import make_process_safe

safe = sys.argv[2] == "safe"
if safe:
    make_process_safe()
slow_index = caching.IndexDataCacheFile._load_index
def load_index_slowly(self):  # widen the window between reading the index and writing it
    overloads = slow_index(self)
    if safe:  # under the lock: the others wait for it, so no barrier (it would deadlock)
        time.sleep(0.2)
    else:  # unlocked: every process has read the index before any writes it, the race each time
        wait_for_all(sys.argv[5])
    return overloads
caching.IndexDataCacheFile._load_index = load_index_slowly
cache = caching.IndexDataCacheFile(sys.argv[1], "module.function-1.py311", "stamp")
wait_for_all(sys.argv[4])  # every process saves at the same moment
cache.save(("signature", sys.argv[3]), "machine code of " + sys.argv[3])
"""


def _race_numba_saves(folder, mode: str, n: int = 4):
    folder.mkdir()
    (folder.parent / f"{folder.name}_ready").mkdir()
    (folder.parent / f"{folder.name}_read").mkdir()
    start = f"{folder.parent / (folder.name + '_ready')}:{n}"  # once every interpreter has imported numba
    read = f"{folder.parent / (folder.name + '_read')}:{n}"  # once every process has read the index
    workers = [subprocess.Popen([sys.executable, "-c", NUMBA_SAVE_RACE, str(folder), mode, str(i), start, read])
               for i in range(n)]
    assert [worker.wait(timeout=120) for worker in workers] == [0] * n
    import numba.core.caching as caching

    cache = caching.IndexDataCacheFile(str(folder), "module.function-1.py311", "stamp")
    return {str(i): cache.load(("signature", str(i))) for i in range(n)}


def test_numba_cache_saves_from_concurrent_processes_keep_each_signature_its_own_code(tmp_path):
    """numba's own save gives two signatures one data file (the librosa46 segfaults); ours cannot."""
    unsafe = _race_numba_saves(tmp_path / "numba_as_shipped", "unsafe")
    assert any(code != f"machine code of {i}" for i, code in unsafe.items())  # the race is real
    safe = _race_numba_saves(tmp_path / "ser_bench", "safe")
    assert safe == {str(i): f"machine code of {i}" for i in range(4)}


def test_a_numba_lock_file_that_cannot_be_opened_falls_back_to_numbas_own_save(tmp_path):
    """Another user's lock file in a shared cache folder (here: a folder in its place, which no
    process can open as a file) must not fail the compilation: numba's own save is used instead."""
    import numba.core.caching as caching

    from benchmark.numba_cache import make_process_safe

    make_process_safe()
    cache = caching.IndexDataCacheFile(str(tmp_path), "module.function-1.py311", "stamp")
    (tmp_path / "module.function-1.py311.nbi.lock").mkdir()
    cache.save(("signature", "a"), "machine code of a")
    assert cache.load(("signature", "a")) == "machine code of a"


def test_numba_functions_compiled_by_concurrent_processes_load_and_run(tmp_path):
    """Four processes compile four signatures of one cached function at once through the hook that
    ``benchmark.features`` installs; fresh processes then load each from disk and get right answers."""
    (tmp_path / "kernel.py").write_text(
        "from numba import njit\n@njit(cache=True)\ndef twice(x):\n    return x * 2\n")
    compile_one = BARRIER + (
        "import sys, time\n"
        "import benchmark.features\n"
        "import numpy as np, kernel\n"
        "wait_for_all(sys.argv[2])\n"
        "value = np.dtype(sys.argv[1]).type(3)\n"
        "assert kernel.twice(value) == 6\n"
        "print(sorted(kernel.twice.stats.cache_hits.values()) or [0])\n")
    env = {**__import__("os").environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": str(tmp_path)}
    dtypes = ["int64", "float64", "float32", "complex128"]
    for round_ in ("compile", "load"):
        (tmp_path / round_).mkdir()
        start = f"{tmp_path / round_}:4"
        workers = [subprocess.Popen([sys.executable, "-c", compile_one, dtype, start], env=env,
                                    stdout=subprocess.PIPE, text=True) for dtype in dtypes]
        outputs = [worker.communicate(timeout=180)[0] for worker in workers]
        assert [worker.returncode for worker in workers] == [0] * 4, outputs
    assert all(output.strip() == "[1]" for output in outputs), outputs  # the second round read the cache
    assert len(list((tmp_path / "cache").rglob("*.nbc"))) == 4
