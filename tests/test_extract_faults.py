"""Extraction under faults: a worker that dies, cache entries with wrong contents, a cache that cannot be written."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest

import testing_feature_sets  # noqa: F401  (registers test_crash / test_slow)
from benchmark.features import get_feature_set
from benchmark.features.cache import FeatureCache, content_hash
from benchmark.features.extract import extract_features
from reliability_helpers import read_only_view, tiny_fs, write_tone
from testing_feature_sets import POISON_SECONDS


def clips(folder: Path, n: int = 6, poison: int | None = None) -> list[tuple[str, Path]]:
    items = []
    for i in range(n):
        seconds = POISON_SECONDS if i == poison else 0.5 + 0.01 * i
        items.append((f"u{i}", write_tone(folder / f"u{i}.wav", seconds, 200 + 20 * i)))
    return items


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_worker_that_dies_skips_that_file_and_the_batch_goes_on(tmp_path, jobs):
    items = clips(tmp_path / "audio", n=6, poison=2)
    result = extract_features(items, get_feature_set("test_crash"), cache_dir=tmp_path / "cache", jobs=jobs,
                              progress=False)
    assert set(result.features) == {"u0", "u1", "u3", "u4", "u5"}
    assert list(result.failed) == ["u2"]
    assert "u2.wav" in result.failed["u2"] and "worker died" in result.failed["u2"]
    again = extract_features(items, get_feature_set("test_crash"), cache_dir=tmp_path / "cache", jobs=jobs,
                             progress=False)
    assert again.cached == 5  # nothing computed before the crash was lost


@pytest.mark.parametrize("damage", ["wrong_width", "missing_key", "int_dtype", "empty_frames", "nan"])
def test_cache_entry_with_wrong_contents_is_recomputed_and_replaced(tmp_path, damage):
    items = clips(tmp_path / "audio", n=2)
    feature_set = get_feature_set("librosa46")
    first = extract_features(items, feature_set, cache_dir=tmp_path / "cache", jobs=1, progress=False)
    assert first.computed == 2
    entry = FeatureCache(tmp_path / "cache", feature_set).path(content_hash(items[0][1]))
    good = np.load(entry)["frames"]
    bad = {"wrong_width": {"frames": good[:, :5]}, "missing_key": {"other": good},
           "int_dtype": {"frames": good.astype(np.int64)}, "empty_frames": {"frames": good[:0]},
           "nan": {"frames": np.full_like(good, np.nan)}}[damage]
    np.savez(entry, **bad)
    second = extract_features(items, feature_set, cache_dir=tmp_path / "cache", jobs=1, progress=False)
    assert (second.computed, second.cached, second.failed) == (1, 1, {})
    np.testing.assert_allclose(second.features["u0"]["frames"], good)
    np.testing.assert_allclose(np.load(entry)["frames"], good)  # the entry was replaced


def _unwritable_cache_keeps_features(cache: Path, items, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        result = extract_features(items, get_feature_set("librosa46"), cache_dir=cache, jobs=1, progress=False)
    assert len(result.features) == len(items) and not result.failed  # nothing thrown away
    warnings = [r.getMessage() for r in caplog.records if "cannot be written" in r.getMessage()]
    assert len(warnings) == 1 and str(cache) in warnings[0]
    assert "check permissions" not in caplog.text


def test_read_only_cache_warns_once_and_keeps_every_feature(tmp_path, caplog):
    items = clips(tmp_path / "audio", n=4)
    (tmp_path / "cache").mkdir()
    with read_only_view(tmp_path / "cache", tmp_path / "ro") as view:
        _unwritable_cache_keeps_features(view, items, caplog)


def test_full_disk_cache_warns_once_and_keeps_every_feature(tmp_path, caplog):
    items = clips(tmp_path / "audio", n=4)
    with tiny_fs(tmp_path / "full", "64k") as mount:
        with open(mount / "filler", "wb", buffering=0) as handle:  # leave a few KiB: directories fit, entries do not
            try:
                handle.write(b"\0" * (60 * 1024))
            except OSError:
                pass
        _unwritable_cache_keeps_features(mount, items, caplog)


def test_unwritable_cache_in_worker_processes_keeps_every_feature(tmp_path, caplog):
    items = clips(tmp_path / "audio", n=4)
    (tmp_path / "cache").mkdir()
    with read_only_view(tmp_path / "cache", tmp_path / "ro") as view, caplog.at_level(logging.WARNING):
        result = extract_features(items, get_feature_set("test_slow"), cache_dir=view, jobs=2, progress=False)
    assert len(result.features) == 4 and not result.failed
    assert sum("cannot be written" in r.getMessage() for r in caplog.records) == 1
    assert os.listdir(tmp_path / "cache") == []
