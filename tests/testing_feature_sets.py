"""Feature sets for failure tests only: one that is slow, one whose worker dies on a marked file.

Registered when this module is imported; extraction workers import it too (they import the
module that defines the feature set), so the crash happens in a real worker process.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass

import numpy as np

from benchmark.features import FeatureConfig, FeatureSet, register_feature_set

POISON_SECONDS = 0.777  # a clip of exactly this length kills the worker that reads it


@dataclass(frozen=True)
class TestSetConfig(FeatureConfig):
    pause: float = 0.0


class _Simple(FeatureSet):
    config_class = TestSetConfig

    @property
    def feature_names(self) -> list[str]:
        return ["rms", "peak"]

    def extract(self, signal_: np.ndarray) -> dict[str, np.ndarray]:
        time.sleep(self.config.pause)
        frames = signal_[: len(signal_) // 160 * 160].reshape(-1, 160)
        return {"frames": np.stack([np.sqrt((frames ** 2).mean(axis=1)), np.abs(frames).max(axis=1)], 1)
                .astype(np.float32)}


@register_feature_set
class SlowSet(_Simple):
    name = "test_slow"
    needs_own_process = True


@register_feature_set
class CrashingSet(_Simple):
    name = "test_crash"
    needs_own_process = True

    def extract(self, signal_: np.ndarray) -> dict[str, np.ndarray]:
        if abs(len(signal_) / self.sample_rate - POISON_SECONDS) < 1e-3:
            os.kill(os.getpid(), signal.SIGSEGV)
        return super().extract(signal_)
