"""Every feature set on edge lengths: it works, or gives one line stating its minimum; no raw warnings."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from benchmark.features import get_feature_set
from benchmark.features.extract import extract_features
from reliability_helpers import bench, write_tone

SETS = ["handcrafted36", "librosa46", "egemaps", "compare"]


@pytest.mark.parametrize("name", SETS)
@pytest.mark.parametrize("seconds", [0.0005, 0.05, 0.06, 0.1, 1.0])
def test_edge_lengths_work_or_name_the_minimum(tmp_path, name, seconds):
    path = write_tone(tmp_path / "clip.wav", seconds)
    feature_set = get_feature_set(name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any raw library warning fails the test
        result = extract_features([("clip", path)], feature_set, cache_dir=tmp_path / "cache", jobs=1, progress=False)
    if seconds >= feature_set.min_seconds:
        assert "clip" in result.features, result.failed
        assert all(np.isfinite(v).all() for v in result.features["clip"].values())
    else:
        message = result.failed["clip"]
        assert "clip.wav" in message and f"{feature_set.min_seconds:g} s" in message and "\n" not in message


def test_short_clip_from_the_command_line_is_one_line_and_quiet(tmp_path):
    write_tone(tmp_path / "audio" / "anger" / "s1" / "a.wav", 0.05)
    write_tone(tmp_path / "audio" / "anger" / "s1" / "b.wav", 1.0)
    result = bench("features", "extract", "--corpus", f"folder:{tmp_path / 'audio'}", "--features", "egemaps",
                   cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Segment too short" not in result.stderr + result.stdout and "Traceback" not in result.stderr
    assert "0.06 s" in result.stderr and "1 ok" in " ".join(result.stdout.split())
