"""``handcrafted36``: the report's 36 hand-written short-term features, vectorised over frames.

The first 34 reproduce pyAudioAnalysis 0.3.14 ``ShortTermFeatures.feature_extraction`` (zero-crossing
rate, energy, energy entropy, spectral centroid/spread/entropy/flux/roll-off, 13 MFCCs over its 40
triangular filters, 12 chroma bins and chroma deviation) including its quirks, so numbers compare
with the many papers that used it. The last two are harmonic ratio and F0 from pyAudioAnalysis'
``harmonic`` (normalised autocorrelation), which ``feature_extraction`` leaves out.

How it is fast (1 Python call per file, no per-frame Python loop): SciPy's FFTs for every frame at
once (the spectrum, and the autocorrelation through a short zero-padded FFT and a DCT-I), a BLAS
product for the MFCC filterbank, and all other statistics in one compiled pass over each frame
(:mod:`._frame_kernel`, numba). :func:`harmonic_ratio_f0` is the same harmonic ratio in NumPy,
kept as the readable reference the compiled pass is tested against.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated

from annotated_types import Interval

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..features import register_feature_set
from .base import FeatureConfig, FeatureSet

EPS = sys.float_info.epsilon
N_MFCC = 13
ROLLOFF = 0.90
N_BLOCKS = 10

FEATURE_NAMES = (
    ["zcr", "energy", "energy_entropy", "spectral_centroid", "spectral_spread",
     "spectral_entropy", "spectral_flux", "spectral_rolloff"]
    + [f"mfcc_{i}" for i in range(1, N_MFCC + 1)]
    + [f"chroma_{i}" for i in range(1, 13)]
    + ["chroma_std", "harmonic_ratio", "f0"]
)


@dataclass(frozen=True)
class Handcrafted36Config(FeatureConfig):
    # pyAudioAnalysis' chroma mapping needs a window of at least 12.5 ms at 16 kHz (see chroma_matrix)
    window_s: Annotated[float, Interval(ge=0.0125, le=1.0)] = 0.050
    step_s: Annotated[float, Interval(ge=0.001, le=1.0)] = 0.025


@lru_cache(maxsize=8)
def mfcc_filterbank(sr: int, num_fft: int) -> np.ndarray:
    """40 triangular filters (13 linear, 27 log-spaced) over ``num_fft`` bins, as pyAudioAnalysis.

    pyAudioAnalysis places bin k at k*sr/num_fft although its bins span 0..sr/2; the quirk is kept
    so values match.
    """
    lowfreq, linc, logsc, n_lin, n_log = 133.33, 200 / 3, 1.0711703, 13, 27
    edges = np.zeros(n_lin + n_log + 2)
    edges[:n_lin] = lowfreq + np.arange(n_lin) * linc
    edges[n_lin:] = edges[n_lin - 1] * logsc ** np.arange(1, n_log + 3)
    heights = 2.0 / (edges[2:] - edges[:-2])
    bin_freqs = np.arange(num_fft) / num_fft * sr
    bank = np.zeros((n_lin + n_log, num_fft))
    for i, (low, centre, high) in enumerate(zip(edges[:-2], edges[1:-1], edges[2:])):
        rising = np.arange(np.floor(low * num_fft / sr) + 1, np.floor(centre * num_fft / sr) + 1, dtype=int)
        falling = np.arange(np.floor(centre * num_fft / sr) + 1, np.floor(high * num_fft / sr) + 1, dtype=int)
        bank[i, rising] = heights[i] / (centre - low) * (bin_freqs[rising] - low)
        bank[i, falling] = heights[i] / (high - centre) * (high - bin_freqs[falling])
    return bank


@lru_cache(maxsize=8)
def chroma_matrix(sr: int, num_fft: int) -> np.ndarray:
    """Linear map (num_fft x 12) from a power spectrum to pyAudioAnalysis' unnormalised chroma.

    pyAudioAnalysis writes each bin's power into slot ``round(12 log2(f/27.5))`` of a length-num_fft
    buffer (a later bin overwrites an earlier one; negative slots wrap around), divides every slot
    by a per-bin count and folds slots modulo 12. All of that is linear, so it becomes one matrix.
    """
    freqs = (np.arange(num_fft) + 1) * sr / (2 * num_fft)
    slots = np.round(12.0 * np.log2(freqs / 27.50)).astype(int)
    if slots.max() >= num_fft:
        raise ValueError("window too short for pyAudioAnalysis-compatible chroma (use window_s >= 0.0125)")
    counts = np.zeros(num_fft)
    for slot in np.unique(slots):
        members = np.nonzero(slots == slot)[0]
        counts[members] = members.shape[0]
    source_of_slot = {}
    for k, slot in enumerate(slots):  # later bins overwrite earlier ones, as numpy assignment does
        source_of_slot[slot % num_fft] = k
    divisor = counts[slots]
    matrix = np.zeros((num_fft, 12))
    for slot, k in source_of_slot.items():
        matrix[k, slot % 12] += 1.0 / divisor[slot]
    return matrix


def sign_changes(rows: np.ndarray, axis: int = -1) -> np.ndarray:
    """``abs(diff(sign(rows)))`` as int8: the same integers as the float version, in an eighth of the memory."""
    signs = (rows > 0).view(np.int8) - (rows < 0).view(np.int8)
    return np.abs(np.diff(signs, axis=axis))


def zero_crossing_rate(rows: np.ndarray) -> np.ndarray:
    return np.sum(sign_changes(rows), axis=1, dtype=np.int64) / 2 / (rows.shape[1] - 1.0)


def harmonic_max_lag(sr: int, width: int) -> int:
    max_lag = int(np.round(0.016 * sr) - 1)
    return width - 3 if max_lag > width - 2 else max_lag


def autocorrelation(frames: np.ndarray, max_lag: int) -> np.ndarray:
    """Lags 0..max_lag+1 of each frame's autocorrelation.

    Only lags 1..max_lag+1 matter (a zero crossing further out leaves gamma all zero), so the FFT
    needs padding to width + max_lag + 1 rather than 2 * width to avoid circular wrap-around. The
    power spectrum is real and even, so its inverse FFT is a DCT-I (about 3x faster).
    """
    from scipy.fft import dct, next_fast_len, rfft  # here, not at import: bench predict's start-up
    size = next_fast_len(frames.shape[1] + max_lag + 2, real=True)
    size += size % 2
    padded = np.zeros((frames.shape[0], size))  # not rfft(n=size): SciPy pads a strided view 5x slower
    padded[:, : frames.shape[1]] = frames
    spectrum = rfft(padded, axis=1, overwrite_x=True)
    power = np.square(spectrum.real)
    power += np.square(spectrum.imag)
    return dct(power, type=1, axis=1, overwrite_x=True)[:, : max_lag + 2] / size


def harmonic_ratio_f0(frames: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """Harmonic ratio and F0 per frame, pyAudioAnalysis' ``harmonic`` for all frames at once.

    The autocorrelation is normalised by the energy of the overlapping part; lags start at the
    first zero crossing of the autocorrelation; frames whose normalised autocorrelation is noisy
    (ZCR > 0.15) or weakly periodic (ratio < 0.1) are unvoiced: F0 = 0.
    """
    n_frames, width = frames.shape
    max_lag = harmonic_max_lag(sr, width)
    if max_lag <= 0:
        return np.ones(n_frames), np.zeros(n_frames)
    autocorr = autocorrelation(frames, max_lag)
    lag0, r = autocorr[:, 0], autocorr[:, 1:]
    changes = sign_changes(r) != 0
    first_zero = np.where(changes.any(axis=1), np.argmax(changes, axis=1), width - 3)
    # gamma[l] = r[l] / sqrt(lag0 * energy[max_lag + first_zero - l]) for l >= first_zero, else 0
    lags = np.arange(max_lag)
    energy_index = np.clip(max_lag + first_zero[:, None] - lags[None, :], 0, max_lag)
    energy = np.cumsum(frames[:, : max_lag + 1] ** 2, axis=1)
    denominator = np.sqrt(lag0[:, None] * np.take_along_axis(energy, energy_index, axis=1)) + EPS
    gamma = np.where(lags[None, :] >= first_zero[:, None], r[:, :max_lag] / denominator, 0.0)
    ratio = gamma.max(axis=1)
    f0 = sr / (np.argmax(gamma, axis=1) + EPS)
    f0[(f0 > 5000) | (ratio < 0.1)] = 0.0
    noisy = zero_crossing_rate(gamma) > 0.15
    ratio[noisy] = 0.0
    f0[noisy] = 0.0
    return ratio, f0


@lru_cache(maxsize=8)
def _constants(sr: int, num_fft: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Bin frequencies, the MFCC filterbank (bins x 40) and the chroma map as (class, weight) per bin."""
    bin_hz = np.arange(1, num_fft + 1) * (sr / (2.0 * num_fft))
    chroma = chroma_matrix(sr, num_fft)  # at most one non-zero per bin (row)
    chroma_class = np.where(chroma.any(axis=1), np.argmax(chroma != 0, axis=1), -1).astype(np.int64)
    return bin_hz, np.ascontiguousarray(mfcc_filterbank(sr, num_fft).T), chroma_class, chroma.sum(axis=1)


def short_term_features(signal: np.ndarray, sr: int, window: int, step: int) -> np.ndarray:
    """(n_frames, 36) features of ``signal`` (float in [-1, 1]); see the module docstring."""
    from scipy.fft import dct, rfft  # here, not at import: bench predict's start-up
    from ._frame_kernel import frame_statistics  # numba: loaded on first use, not at start-up

    x = np.array(signal, dtype=np.float64)
    x -= x.mean()
    x /= max(x.max(), -x.min()) + 1e-10
    if x.shape[0] < window:
        x = np.pad(x, (0, window - x.shape[0]))
    frames = sliding_window_view(x, window)[::step]
    n_frames, num_fft = frames.shape[0], window // 2
    bin_hz, mel_bank, chroma_class, chroma_weight = _constants(sr, num_fft)
    max_lag = harmonic_max_lag(sr, window)
    autocorr = autocorrelation(frames, max_lag) if max_lag > 0 else np.zeros((n_frames, 2))
    out = np.empty((n_frames, 36))
    magnitude = np.empty((n_frames, num_fft))
    frame_statistics(x, step, window, rfft(frames, axis=1), autocorr, max_lag, bin_hz, chroma_class,
                     chroma_weight, ROLLOFF, N_BLOCKS, float(sr), out, magnitude)
    mel_log = magnitude @ mel_bank
    mel_log += EPS
    np.log10(mel_log, out=mel_log)
    out[:, 8 : 8 + N_MFCC] = dct(mel_log, type=2, norm="ortho", axis=1, overwrite_x=True)[:, :N_MFCC]
    return out


@register_feature_set
class Handcrafted36(FeatureSet):
    name = "handcrafted36"
    description = "36 hand-written short-term features (pyAudioAnalysis-compatible + harmonic ratio, F0)"
    config_class = Handcrafted36Config

    @property
    def window(self) -> int:
        return int(round(self.config.window_s * self.sample_rate))

    @property
    def step(self) -> int:
        return int(round(self.config.step_s * self.sample_rate))

    @property
    def feature_names(self) -> list[str]:
        return list(FEATURE_NAMES)

    def extract(self, signal: np.ndarray) -> dict[str, np.ndarray]:
        frames = short_term_features(signal, self.sample_rate, self.window, self.step)
        return {"frames": frames.astype(np.float32)}
