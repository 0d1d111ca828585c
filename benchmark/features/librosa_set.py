"""``librosa46``: the report's code-2 features, 46 per frame, from a single STFT.

Per frame: spectral centroid, spectral contrast (first band), spectral bandwidth, spectral
roll-off, zero-crossing rate, RMS, 20 MFCCs and their 20 deltas. The seed computed each with a
separate librosa call (six STFTs and a mel filterbank per file); here one magnitude STFT and one
cached mel filterbank feed them all, giving the same values (see :func:`seed_recipe`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated

from annotated_types import Interval

import numpy as np

from ..features import register_feature_set
from .base import FeatureConfig, FeatureSet

DELTA_WIDTH = 9  # librosa.feature.delta's default window, needs at least this many frames


@dataclass(frozen=True)
class Librosa46Config(FeatureConfig):
    # Ranges: where the single-STFT recipe gives finite values (some a little conservative),
    # checked once when the set is built, so a bad --feature-param fails before any file is read.
    duration_s: Annotated[float, Interval(gt=0, le=600)] | None = 5.0  # pad/cut to this length (the seed's 5 s); None keeps every frame
    n_fft: Annotated[int, Interval(ge=128, le=16384)] = 512  # below ~80 spectral contrast is not finite; 128 keeps a margin
    hop_length: Annotated[int, Interval(ge=16, le=16384)] = 512
    n_mfcc: Annotated[int, Interval(ge=1, le=128)] = 20  # at most the 128 mel bands it is computed from


def fit_length(signal: np.ndarray, sr: int, config: Librosa46Config) -> np.ndarray:
    """Pad/cut to ``duration_s`` as the seed did, or pad very short signals to 9 frames.

    A cut shorter than 5 frames (a tiny ``duration_s`` or a huge ``hop_length``) is padded to 5, the
    fewest the deltas take; longer cuts are left exactly as before (their cached features stay valid).
    """
    import librosa

    if config.duration_s is not None:
        cut = librosa.util.fix_length(signal, size=int(round(sr * config.duration_s)))
        fewest = config.hop_length * 4  # 1 + 4 frames with librosa's centred frames
        return cut if cut.shape[0] >= fewest else np.pad(cut, (0, fewest - cut.shape[0]))
    shortest = config.hop_length * (DELTA_WIDTH - 1)
    return signal if signal.shape[0] >= shortest else np.pad(signal, (0, shortest - signal.shape[0]))


@lru_cache(maxsize=8)
def mel_basis(sr: int, n_fft: int) -> np.ndarray:
    import librosa

    return librosa.filters.mel(sr=sr, n_fft=n_fft)


def seed_recipe(signal: np.ndarray, sr: int, config: Librosa46Config = Librosa46Config()) -> np.ndarray:
    """The seed's recipe, one librosa call per feature: the reference for tests and speed checks."""
    import librosa

    y = fit_length(signal, sr, config)
    kw = {"sr": sr, "n_fft": config.n_fft, "hop_length": config.hop_length}
    magnitude, _ = librosa.magphase(librosa.stft(y, n_fft=config.n_fft, hop_length=config.hop_length))
    mfcc = librosa.feature.mfcc(y=y, n_mfcc=config.n_mfcc, **kw)
    rows = [
        librosa.feature.spectral_centroid(y=y, **kw),
        librosa.feature.spectral_contrast(y=y, **kw)[:1],
        librosa.feature.spectral_bandwidth(y=y, **kw),
        librosa.feature.spectral_rolloff(y=y, **kw),
        librosa.feature.zero_crossing_rate(y, frame_length=config.n_fft, hop_length=config.hop_length),
        librosa.feature.rms(S=magnitude, frame_length=config.n_fft, hop_length=config.hop_length),
        mfcc,
        librosa.feature.delta(mfcc),
    ]
    return np.vstack(rows).T


def linear_delta(features: np.ndarray) -> np.ndarray:
    """``librosa.feature.delta(features)`` (width 9, order 1, mode "interp") in closed form.

    librosa fits a degree-1 Savitzky-Golay filter, whose derivative is the least-squares slope
    sum_k k x[t+k] / 60 over k = -4..4; at the edges ("interp") it is the slope of the first and
    last 9 frames, i.e. the interior value at frames 4 and T-5. Same numbers, without SciPy's
    per-call polynomial fits (the costliest step of the recipe).
    """
    half = DELTA_WIDTH // 2
    weights = np.arange(-half, half + 1, dtype=features.dtype)
    norm = features.dtype.type(np.sum(weights**2))
    padded = np.pad(features, ((0, 0), (half, half)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, DELTA_WIDTH, axis=1)
    delta = windows @ weights / norm
    delta[:, :half] = delta[:, half : half + 1]
    delta[:, -half:] = delta[:, -half - 1 : -half]
    return delta


def one_stft_features(signal: np.ndarray, sr: int, config: Librosa46Config) -> np.ndarray:
    """Same values as :func:`seed_recipe`, from one STFT and a cached mel filterbank."""
    import librosa

    y = fit_length(signal, sr, config)
    n_fft, hop = config.n_fft, config.hop_length
    magnitude = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop))
    kw = {"S": magnitude, "sr": sr, "n_fft": n_fft, "hop_length": hop}
    mel = np.einsum("...ft,mf->...mt", magnitude**2, mel_basis(sr, n_fft), optimize=True)
    mfcc = librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=config.n_mfcc)
    centroid = librosa.feature.spectral_centroid(**kw)
    rows = [
        centroid,
        librosa.feature.spectral_contrast(**kw)[:1],
        librosa.feature.spectral_bandwidth(centroid=centroid, **kw),
        librosa.feature.spectral_rolloff(**kw),
        librosa.feature.zero_crossing_rate(y, frame_length=n_fft, hop_length=hop),
        librosa.feature.rms(S=magnitude, frame_length=n_fft, hop_length=hop),
        mfcc,
        linear_delta(mfcc),
    ]
    return np.vstack(rows).T


@register_feature_set
class Librosa46(FeatureSet):
    name = "librosa46"
    description = "46 librosa features per frame (seed code 2), 5 s pad/cut, hop 512 -> 157 frames"
    config_class = Librosa46Config
    libraries = ("numpy", "scipy", "librosa")

    @property
    def feature_names(self) -> list[str]:
        n = self.config.n_mfcc
        return (
            ["spectral_centroid", "spectral_contrast_1", "spectral_bandwidth", "spectral_rolloff",
             "zcr", "rms"]
            + [f"mfcc_{i}" for i in range(1, n + 1)]
            + [f"mfcc_delta_{i}" for i in range(1, n + 1)]
        )

    def extract(self, signal: np.ndarray) -> dict[str, np.ndarray]:
        return {"frames": one_stft_features(signal, self.sample_rate, self.config).astype(np.float32)}
