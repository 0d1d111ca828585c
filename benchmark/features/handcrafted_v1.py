"""The previous vectorised ``handcrafted36`` code, frozen, so ``bench features speed`` can time old vs new.

Not used for extraction. The numbers equal :mod:`benchmark.features.handcrafted` to rtol 1e-6 (both
are tested against pyAudioAnalysis); only the speed differs.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .handcrafted import EPS, N_BLOCKS, N_MFCC, ROLLOFF, chroma_matrix, mfcc_filterbank


def block_entropy(squares: np.ndarray) -> np.ndarray:
    """Entropy of the energy spread over 10 equal consecutive blocks of each row (of squares)."""
    total = np.sum(squares, axis=1, keepdims=True)
    length = squares.shape[1] // N_BLOCKS
    blocks = squares[:, : length * N_BLOCKS].reshape(squares.shape[0], N_BLOCKS, length)
    share = np.sum(blocks, axis=2) / (total + EPS)
    return -np.sum(share * np.log2(share + EPS), axis=1)


def zero_crossing_rate(rows: np.ndarray) -> np.ndarray:
    return np.sum(np.abs(np.diff(np.sign(rows), axis=1)), axis=1) / 2 / (rows.shape[1] - 1.0)


def framed_zero_crossing_rate(x: np.ndarray, window: int, step: int, n_frames: int) -> np.ndarray:
    """ZCR of every frame from one pass over the signal (frames overlap, so this halves the work)."""
    changes = np.concatenate([[0.0], np.cumsum(np.abs(np.diff(np.sign(x))))])
    starts = np.arange(n_frames) * step
    return (changes[starts + window - 1] - changes[starts]) / 2 / (window - 1.0)


def harmonic_ratio_f0(frames: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """Harmonic ratio and F0 per frame, pyAudioAnalysis' ``harmonic`` for all frames at once.

    The autocorrelation is normalised by the energy of the overlapping part; lags start at the
    first zero crossing of the autocorrelation; frames whose normalised autocorrelation is noisy
    (ZCR > 0.15) or weakly periodic (ratio < 0.1) are unvoiced: F0 = 0.
    """
    from scipy.fft import dct, next_fast_len, rfft  # here, not at import: bench predict's start-up
    n_frames, width = frames.shape
    max_lag = int(np.round(0.016 * sr) - 1)
    if max_lag > width - 2:
        max_lag = width - 3
    # Only lags 1..max_lag+1 matter (a zero crossing further out leaves gamma all zero), so the
    # FFT needs padding to width + max_lag + 1 rather than 2 * width to avoid circular wrap-around.
    # The power spectrum is real and even, so its inverse FFT is a DCT-I (about 3x faster).
    size = next_fast_len(width + max_lag + 2, real=True)
    size += size % 2
    padded = np.zeros((n_frames, size))
    padded[:, :width] = frames
    spectrum = rfft(padded, axis=1, overwrite_x=True)
    autocorr = dct(spectrum.real**2 + spectrum.imag**2, type=1, axis=1) / size
    lag0 = autocorr[:, 0]
    r = autocorr[:, 1 : max_lag + 2]
    changes = np.diff(np.sign(r), axis=1) != 0
    first_zero = np.where(changes.any(axis=1), np.argmax(changes, axis=1), width - 3)
    lags = np.arange(max_lag)
    valid = lags[None, :] >= first_zero[:, None]
    energy_index = np.clip(max_lag + first_zero[:, None] - lags[None, :], 0, max_lag)
    cumulative = np.cumsum(frames[:, : max_lag + 1] ** 2, axis=1)
    denominator = np.sqrt(lag0[:, None] * np.take_along_axis(cumulative, energy_index, axis=1)) + EPS
    gamma = np.where(valid, r[:, :max_lag] / denominator, 0.0)
    if max_lag == 0:
        return np.ones(n_frames), np.zeros(n_frames)
    ratio = gamma.max(axis=1)
    f0 = sr / (np.argmax(gamma, axis=1) + EPS)
    f0[(f0 > 5000) | (ratio < 0.1)] = 0.0
    noisy = zero_crossing_rate(gamma) > 0.15
    ratio[noisy] = 0.0
    f0[noisy] = 0.0
    return ratio, f0


def short_term_features(signal: np.ndarray, sr: int, window: int, step: int) -> np.ndarray:
    """(n_frames, 36) features of ``signal`` (float in [-1, 1]); see the module docstring."""
    from scipy.fft import dct, rfft  # here, not at import: bench predict's start-up
    x = np.asarray(signal, dtype=np.float64)
    x = x - x.mean()
    x = x / (np.abs(x).max() + 1e-10)
    if x.shape[0] < window:
        x = np.pad(x, (0, window - x.shape[0]))
    frames = sliding_window_view(x, window)[::step]
    num_fft = window // 2
    magnitude = np.abs(rfft(frames, axis=1))[:, :num_fft] / num_fft
    power = magnitude**2

    peak = magnitude.max(axis=1, keepdims=True)
    weights = magnitude / np.where(peak == 0, EPS, peak)
    bin_hz = np.arange(1, num_fft + 1) * (sr / (2.0 * num_fft))
    denominator = weights.sum(axis=1) + EPS
    centroid = weights @ bin_hz / denominator
    spread = np.sqrt(np.sum((bin_hz[None, :] - centroid[:, None]) ** 2 * weights, axis=1) / denominator)

    shares = magnitude / np.sum(magnitude + EPS, axis=1, keepdims=True)
    flux = np.zeros(frames.shape[0])
    flux[1:] = np.sum(np.diff(shares, axis=0) ** 2, axis=1)

    above = np.cumsum(power, axis=1) + EPS > ROLLOFF * power.sum(axis=1, keepdims=True)
    rolloff = np.where(above.any(axis=1), np.argmax(above, axis=1) / num_fft, 0.0)

    mel_log = np.log10(magnitude @ mfcc_filterbank(sr, num_fft).T + EPS)
    mfcc = dct(mel_log, type=2, norm="ortho", axis=1)[:, :N_MFCC]

    chroma = power @ chroma_matrix(sr, num_fft)
    total = power.sum(axis=1, keepdims=True)
    chroma = chroma / np.where(total == 0, EPS, total)

    ratio, f0 = harmonic_ratio_f0(frames, sr)
    squares = frames * frames
    columns = [
        framed_zero_crossing_rate(x, window, step, frames.shape[0]), np.sum(squares, axis=1) / window,
        block_entropy(squares), centroid / (sr / 2.0), spread / (sr / 2.0), block_entropy(power),
        flux, rolloff,
    ]
    return np.column_stack(columns + [mfcc, chroma, chroma.std(axis=1), ratio, f0])
