"""``logmel``: log-mel spectrogram with deltas and delta-deltas, the input of the ``crnn`` model.

64 mel bands from one power STFT (25 ms Hann window, 10 ms hop, 16 kHz: 100 frames/s), in dB
without the per-utterance ``top_db`` clipping (which would make a frame's value depend on the
loudest frame of its utterance), then librosa's 9-frame deltas of order 1 and 2. Columns are
grouped [64 static | 64 delta | 64 delta-delta], so a model can read them as a (bands, 3) image
per frame, the three channels of Chen et al.'s 3-D ACRNN (IEEE SPL 2018).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated

from annotated_types import Interval

import numpy as np

from ..features import register_feature_set
from .base import FeatureConfig, FeatureSet

DELTA_WIDTH = 9  # librosa.feature.delta's default window; shorter signals are padded to it


@dataclass(frozen=True)
class LogMelConfig(FeatureConfig):
    n_mels: Annotated[int, Interval(ge=1, le=256)] = 64
    window_s: Annotated[float, Interval(ge=0.002, le=1.0)] = 0.025
    hop_s: Annotated[float, Interval(ge=0.001, le=1.0)] = 0.010
    deltas: bool = True  # False: the 64 static bands only


@lru_cache(maxsize=8)
def mel_filterbank(sr: int, n_fft: int, n_mels: int) -> np.ndarray:
    import librosa

    return librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels)


def log_mel_frames(signal: np.ndarray, sr: int, config: LogMelConfig) -> np.ndarray:
    """(n_frames, n_mels x 3) float32: log-mel, delta, delta-delta (or (n_frames, n_mels))."""
    import librosa

    window, hop = int(round(config.window_s * sr)), int(round(config.hop_s * sr))
    shortest = hop * (DELTA_WIDTH - 1)
    y = signal if signal.shape[0] >= shortest else np.pad(signal, (0, shortest - signal.shape[0]))
    power = np.abs(librosa.stft(y, n_fft=window, hop_length=hop, win_length=window, window="hann")) ** 2
    mel = mel_filterbank(sr, window, config.n_mels) @ power
    log_mel = librosa.power_to_db(mel, amin=1e-10, top_db=None)
    rows = [log_mel]
    if config.deltas:
        rows += [librosa.feature.delta(log_mel, width=DELTA_WIDTH, order=1),
                 librosa.feature.delta(log_mel, width=DELTA_WIDTH, order=2)]
    return np.vstack(rows).T.astype(np.float32)


@register_feature_set
class LogMel(FeatureSet):
    name = "logmel"
    description = "64 log-mel bands + deltas + delta-deltas, 25 ms / 10 ms, one STFT (input of crnn)"
    config_class = LogMelConfig
    libraries = ("numpy", "scipy", "librosa")

    @property
    def feature_names(self) -> list[str]:
        bands = range(1, self.config.n_mels + 1)
        names = [f"logmel_{b}" for b in bands]
        if self.config.deltas:
            names += [f"logmel_delta_{b}" for b in bands] + [f"logmel_delta2_{b}" for b in bands]
        return names

    def extract(self, signal: np.ndarray) -> dict[str, np.ndarray]:
        return {"frames": log_mel_frames(signal, self.sample_rate, self.config)}
