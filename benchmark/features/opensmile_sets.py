"""The field's standard sets through the ``opensmile`` package: eGeMAPSv02 and ComParE_2016.

``egemaps`` gives the 25 frame-level LLDs for sequence models and, as its utterance-level
statistics, the official 88 eGeMAPS functionals. ``compare`` is utterance-level only: the 6373
ComParE_2016 functionals.

Why not ``opensmile.Smile.process_signal``: one ``Smile`` has one sink, so LLDs and functionals
took two full openSMILE passes per file, although one pass computes both (the functionals are
statistics of the LLDs). The package ships a two-sink output config
(``standard_external_data_output_multi.conf.inc``) that ``Smile`` never uses; :func:`run_smile`
drives openSMILE's own API with it and asks only for the levels a run needs. The values are
those of ``Smile`` bit for bit (same config, same int16 input; tested against a fresh ``Smile``).
"""

from __future__ import annotations

import os
from collections.abc import Collection
from dataclasses import dataclass

import numpy as np

from ..features import register_feature_set
from .base import FeatureConfig, FeatureSet

# our part name -> openSMILE data-memory level
LEVELS = {"frames": "lld", "functionals": "func"}
# the package's output configs: one sink ("extsink", level option "sinkLevel"), or two
SINGLE = ("shared/standard_external_data_output_single.conf.inc", {"frames": ("extsink", "sinkLevel"),
                                                                   "functionals": ("extsink", "sinkLevel")})
MULTI = ("shared/standard_external_data_output_multi.conf.inc", {"frames": ("extsinklld", "sinkLevelLLD"),
                                                                 "functionals": ("extsinkfunc", "sinkLevelFunc")})
_NAMES: dict[tuple[str, str], list[str]] = {}


def config_root() -> str:
    import opensmile

    return os.path.join(os.path.dirname(os.path.realpath(opensmile.__file__)), "core", "config")


def feature_names(smile_set: str, part: str) -> list[str]:
    """Column names of one part, read once per process from openSMILE itself."""
    key = (smile_set, part)
    if key not in _NAMES:
        import opensmile

        level = "LowLevelDescriptors" if part == "frames" else "Functionals"
        _NAMES[key] = list(opensmile.Smile(feature_set=getattr(opensmile.FeatureSet, smile_set),
                                           feature_level=getattr(opensmile.FeatureLevel, level)).feature_names)
    return _NAMES[key]


def run_smile(smile_set: str, signal: np.ndarray, sample_rate: int,
              parts: Collection[str]) -> dict[str, np.ndarray]:
    """One openSMILE pass over ``signal`` with a sink per requested part.

    ``frames`` is (n_frames, n_llds) float32, ``functionals`` (n_functionals,) float32. A signal
    too short for any frame gives NaN rows, as ``Smile`` does (the batch then reports the file).
    """
    from opensmile.core.lib import OpenSMILE

    root = config_root()
    sink_config, sinks = SINGLE if len(parts) == 1 else MULTI
    options = {
        "source": os.path.join(root, "shared/standard_external_wave_input.conf.inc"),
        "sink": os.path.join(root, sink_config),
        "bufferModeRbConf": os.path.join(root, "shared/BufferModeRb.conf.inc"),
        "frameModeFunctionalsConf": os.path.join(root, "shared/FrameModeFunctionals.conf.inc"),
        "sampleRate": sample_rate,
        "nBits": 16,
    }
    for part in parts:
        options[sinks[part][1]] = LEVELS[part]
    rows: dict[str, list[np.ndarray]] = {part: [] for part in parts}
    smile = OpenSMILE()
    smile.initialize(config_file=os.path.join(root, _CONFIG_FILES[smile_set]), options=options, loglevel=0,
                     log_file=None, debug=False)
    try:
        for part in parts:
            smile.external_sink_set_callback_ex(sinks[part][0], lambda data, meta, out=rows[part]: out.append(data.copy()))
        # exactly Smile's conversion: float32 * 32768, truncated to int16
        pcm = (np.asarray(signal, dtype=np.float32) * np.float32(32768)).astype(np.int16)
        smile.external_audio_source_write_data("extsource", pcm.tobytes())
        smile.external_audio_source_set_eoi("extsource")
        smile.run()
    finally:
        smile.free()
    out = {}
    for part in parts:
        values = np.vstack(rows[part]).astype(np.float32) if rows[part] else \
            np.full((1, len(feature_names(smile_set, part))), np.nan, dtype=np.float32)
        out[part] = values if part == "frames" else values[0]
    return out


_CONFIG_FILES = {"eGeMAPSv02": "egemaps/v02/eGeMAPSv02.conf", "ComParE_2016": "compare/ComParE_2016.conf"}


@dataclass(frozen=True)
class OpenSmileConfig(FeatureConfig):
    pass


class OpenSmileSet(FeatureSet):
    config_class = OpenSmileConfig
    # openSMILE's native library corrupts the heap of a process that has loaded TensorFlow
    # ("malloc(): invalid size"), so it runs in a clean worker process, unless the caller of
    # extract_features says no TensorFlow is used in this process (``in_process_ok``: a vector
    # model's run or ``bench predict``), which saves a worker's start-up (~3 s of a one-file predict).
    needs_own_process = True
    libraries = ("numpy", "opensmile")
    min_seconds = 0.06  # openSMILE fills shorter segments with NaN (measured: 55 ms fails, 60 ms works)
    smile_set: str = ""

    @property
    def feature_names(self) -> list[str]:
        return feature_names(self.smile_set, "frames" if self.level == "frame" else "functionals")

    def extract(self, signal: np.ndarray, parts: Collection[str] | None = None) -> dict[str, np.ndarray]:
        wanted = [part for part in self.parts if parts is None or part in parts] or list(self.parts)
        return run_smile(self.smile_set, signal, self.sample_rate, wanted)


@register_feature_set
class EGeMAPS(OpenSmileSet):
    name = "egemaps"
    description = "eGeMAPSv02: 25 frame-level LLDs; 88 official functionals per utterance"
    smile_set = "eGeMAPSv02"
    parts = ("frames", "functionals")


@register_feature_set
class ComParE(OpenSmileSet):
    name = "compare"
    description = "ComParE_2016: 6373 utterance-level functionals"
    level = "utterance"
    smile_set = "ComParE_2016"
    parts = ("functionals",)
