"""Utterance-level statistics of any frame-level feature set, for SVM and XGBoost.

Sequence models read the frames; static classifiers need one vector per utterance. Sets that
ship their own statistics (eGeMAPS' 88) use those instead.
"""

from __future__ import annotations

import numpy as np

STATISTICS = ("mean", "std", "min", "max", "p10", "p25", "p50", "p75", "p90", "iqr")


def frame_functionals(frames: np.ndarray) -> np.ndarray:
    """(n_features * len(STATISTICS),) vector, statistic-major within each feature."""
    frames = np.asarray(frames, dtype=np.float64)
    p10, p25, p50, p75, p90 = np.percentile(frames, [10, 25, 50, 75, 90], axis=0)
    stats = [frames.mean(0), frames.std(0), frames.min(0), frames.max(0), p10, p25, p50, p75, p90, p75 - p25]
    return np.stack(stats, axis=1).reshape(-1).astype(np.float32)


def functional_names(feature_names: list[str]) -> list[str]:
    return [f"{name}__{stat}" for name in feature_names for stat in STATISTICS]


def parts_needed(input_kind: str, feature_set) -> tuple[str, ...]:
    """The arrays a model reads (``extract_features(..., parts=...)``): a sequence model the frames;
    a vector model the set's own functionals if it has them, else its frames (for their statistics)."""
    if input_kind != "sequence" and "functionals" in feature_set.parts:
        return ("functionals",)
    return ("frames",)


def utterance_vector(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """The set's own functionals if it has them, else statistics of its frames."""
    if "functionals" in arrays:
        return np.asarray(arrays["functionals"], dtype=np.float32)
    return frame_functionals(arrays["frames"])
