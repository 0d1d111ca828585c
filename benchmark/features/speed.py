"""Speed benchmark: our extractors against the implementations they replace, same files, one run.

* ``handcrafted36`` (vectorised, all 36 features) vs pyAudioAnalysis 0.3.14
  ``ShortTermFeatures.feature_extraction`` (per-frame loop, its 34 features), and vs our own
  previous code (:mod:`.handcrafted_v1`), so a change is judged old vs new under the same load;
* ``librosa46`` (one STFT) vs the seed's recipe (a librosa call per feature).

Audio is decoded once beforehand and excluded from every timing; each method runs over all files
``repeat`` times, the methods' passes alternating, and the fastest pass counts (the usual guards
against a busy machine).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import BenchError
from . import handcrafted_v1
from .handcrafted import Handcrafted36Config, short_term_features
from .librosa_set import Librosa46Config, one_stft_features, seed_recipe


@dataclass
class SpeedRow:
    name: str
    ours_s: float
    reference: str
    reference_s: float

    @property
    def ratio(self) -> float:
        return self.reference_s / self.ours_s


def best_times(functions: dict[str, Callable], signals, repeat: int) -> dict[str, float]:
    """Fastest pass of each function over all ``signals``, in CPU seconds of this process.

    Passes alternate between the functions (A B C, A B C, ...) so that a change of load on a shared
    machine hits every method alike, and CPU time leaves out the time spent waiting for a core
    (on a loaded machine wall-clock passes measured the scheduler: 15x slower than idle for one
    method, 6x for another, in the same run).
    """
    for function in functions.values():
        function(signals[0])  # warm-up: caches, lazy imports, compilation
    timings: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeat):
        for name, function in functions.items():
            start = time.process_time()
            for signal in signals:
                function(signal)
            timings[name].append(time.process_time() - start)
    return {name: min(values) for name, values in timings.items()}


def run_speed_benchmark(signals: list[np.ndarray], sr: int = 16_000, repeat: int = 3) -> list[SpeedRow]:
    try:
        from pyAudioAnalysis import ShortTermFeatures
    except ImportError:
        raise BenchError("the speed benchmark needs pyAudioAnalysis; install the test extras: "
                         "pip install -e '.[test]'") from None
    hc = Handcrafted36Config()
    window, step = int(round(hc.window_s * sr)), int(round(hc.step_s * sr))
    lc = Librosa46Config()
    from ..threads import limit_threads

    with limit_threads(1):  # one thread each, as pyAudioAnalysis: CPU seconds then compare work
        seconds = best_times({
            "handcrafted36": lambda s: short_term_features(s, sr, window, step),
            # pyAudioAnalysis expects int16-scaled samples
            "pyaudioanalysis": lambda s: ShortTermFeatures.feature_extraction(s * 32768.0, sr, window, step,
                                                                              deltas=False),
            "handcrafted_v1": lambda s: handcrafted_v1.short_term_features(s, sr, window, step),
            "librosa46": lambda s: one_stft_features(s, sr, lc),
            "seed_recipe": lambda s: seed_recipe(s, sr, lc),
        }, signals, repeat)
    return [
        SpeedRow("handcrafted36", seconds["handcrafted36"], "pyAudioAnalysis feature_extraction",
                 seconds["pyaudioanalysis"]),
        SpeedRow("handcrafted36", seconds["handcrafted36"], "handcrafted36, previous code (handcrafted_v1)",
                 seconds["handcrafted_v1"]),
        SpeedRow("librosa46", seconds["librosa46"], "seed recipe (separate librosa calls)", seconds["seed_recipe"]),
    ]
