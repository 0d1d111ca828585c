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
