"""The field's standard sets through the ``opensmile`` package: eGeMAPSv02 and ComParE_2016.

``egemaps`` gives the 25 frame-level LLDs for sequence models and, as its utterance-level
statistics, the official 88 eGeMAPS functionals. ``compare`` is utterance-level only: the 6373
ComParE_2016 functionals.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..features import register_feature_set
from .base import FeatureConfig, FeatureSet

_SMILES: dict[tuple[str, str], object] = {}


def smile(feature_set: str, level: str):
    """One openSMILE instance per (set, level) and process: building one costs more than using it."""
    import opensmile

    key = (feature_set, level)
    if key not in _SMILES:
        _SMILES[key] = opensmile.Smile(
            feature_set=getattr(opensmile.FeatureSet, feature_set),
            feature_level=getattr(opensmile.FeatureLevel, level),
        )
    return _SMILES[key]


@dataclass(frozen=True)
class OpenSmileConfig(FeatureConfig):
    pass


class OpenSmileSet(FeatureSet):
    config_class = OpenSmileConfig
    # openSMILE's native library corrupts the heap of a process that has loaded TensorFlow
    # ("malloc(): invalid size"), so it always runs in a clean worker process.
    needs_own_process = True
    libraries = ("numpy", "opensmile")
    min_seconds = 0.06  # openSMILE fills shorter segments with NaN (measured: 55 ms fails, 60 ms works)
    smile_set: str = ""

    def _process(self, level: str, signal: np.ndarray) -> np.ndarray:
        return smile(self.smile_set, level).process_signal(signal, self.sample_rate).to_numpy(np.float32)

    @property
    def feature_names(self) -> list[str]:
        level = "LowLevelDescriptors" if self.level == "frame" else "Functionals"
        return list(smile(self.smile_set, level).feature_names)


@register_feature_set
class EGeMAPS(OpenSmileSet):
    name = "egemaps"
    description = "eGeMAPSv02: 25 frame-level LLDs; 88 official functionals per utterance"
    smile_set = "eGeMAPSv02"

    def extract(self, signal: np.ndarray) -> dict[str, np.ndarray]:
        return {
            "frames": self._process("LowLevelDescriptors", signal),
            "functionals": self._process("Functionals", signal)[0],
        }


@register_feature_set
class ComParE(OpenSmileSet):
    name = "compare"
    description = "ComParE_2016: 6373 utterance-level functionals"
    level = "utterance"
    smile_set = "ComParE_2016"

    def extract(self, signal: np.ndarray) -> dict[str, np.ndarray]:
        return {"functionals": self._process("Functionals", signal)[0]}
