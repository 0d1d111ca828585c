"""The per-frame statistics of ``handcrafted36`` in one compiled pass (numba), for speed.

Why: profiling the NumPy version showed the FFTs were only about a quarter of the time; the rest
was some forty whole-array NumPy operations per file (sums, cumulative sums, signs, gathers,
temporaries of n_frames x 400 or x 800), each a pass over memory. Here every frame's spectrum,
samples and autocorrelation are read once, in cache, and all statistics except the FFTs and the
MFCC filterbank (a BLAS product) come out of that one pass. The formulas are those of
:mod:`benchmark.features.handcrafted` (pyAudioAnalysis 0.3.14), sums in a different order only.

Underscore module: the feature registry does not import it, so ``bench`` start-up never pays for
numba; it is compiled on first use and cached on disk (``cache=True``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

EPS = np.finfo(np.float64).eps


@njit(cache=True, nogil=True)
def _sign(value):
    return 1 if value > 0 else (-1 if value < 0 else 0)


@njit(cache=True, nogil=True, error_model="numpy")  # numpy: no zero-division checks in the loops
def frame_statistics(x, step, window, spectrum, autocorr, max_lag, bin_hz, chroma_class, chroma_weight,
                     rolloff_share, n_blocks, sr, out, magnitude):
    """Fill ``out`` (n_frames x 36, MFCC columns 8..20 left alone) and ``magnitude`` (n x num_fft).

    ``spectrum``: rfft of each frame; ``autocorr``: lags 0..max_lag+1 of each frame.
    """
    n_frames = out.shape[0]
    num_fft = magnitude.shape[1]
    eps = EPS
    inverse_fft = 1.0 / num_fft
    half_sr = sr / 2.0
    previous = np.empty(num_fft)
    power = np.empty(num_fft)
    chroma = np.empty(12)
    energy = np.empty(max_lag + 1)
    gamma = np.zeros(max(max_lag, 1))
    time_blocks = np.empty(n_blocks)
    spectral_blocks = np.empty(n_blocks)
    spectral_block = num_fft // n_blocks
    time_block = window // n_blocks
    for i in range(n_frames):
        start = i * step
        # --- time domain, one pass: ZCR, energy, energy per block, cumulative energy (harmonic ratio)
        changes = 0
        total = 0.0
        last = _sign(x[start])
        for b in range(n_blocks):
            block = 0.0
            for t in range(b * time_block, (b + 1) * time_block):
                sample = x[start + t]
                square = sample * sample
                block += square
                total += square
                current = _sign(sample)
                changes += abs(current - last)
                last = current
                if t <= max_lag:
                    energy[t] = total
            time_blocks[b] = block
        for t in range(n_blocks * time_block, window):  # a window that 10 does not divide
            sample = x[start + t]
            total += sample * sample
            current = _sign(sample)
            changes += abs(current - last)
            last = current
            if t <= max_lag:
                energy[t] = total
        out[i, 0] = changes / 2 / (window - 1.0)
        out[i, 1] = total / window
        entropy = 0.0
        for b in range(n_blocks):
            share = time_blocks[b] / (total + eps)
            entropy -= share * math.log2(share + eps)
        out[i, 2] = entropy

        # --- spectrum, pass 1: magnitude, power, totals, peak, power per block
        peak = 0.0
        spectrum_sum = 0.0
        power_total = 0.0
        for b in range(n_blocks):
            block = 0.0
            for k in range(b * spectral_block, (b + 1) * spectral_block):
                re, im = spectrum[i, k].real, spectrum[i, k].imag
                value = math.sqrt(re * re + im * im) * inverse_fft
                magnitude[i, k] = value
                square = value * value
                power[k] = square
                block += square
                spectrum_sum += value + eps
                if value > peak:
                    peak = value
            spectral_blocks[b] = block
            power_total += block
        for k in range(n_blocks * spectral_block, num_fft):
            re, im = spectrum[i, k].real, spectrum[i, k].imag
            value = math.sqrt(re * re + im * im) * inverse_fft
            magnitude[i, k] = value
            power[k] = value * value
            power_total += power[k]
            spectrum_sum += value + eps
            if value > peak:
                peak = value
        entropy = 0.0
        for b in range(n_blocks):
            share = spectral_blocks[b] / (power_total + eps)
            entropy -= share * math.log2(share + eps)
        out[i, 5] = entropy

        # --- pass 2: centroid sums, flux, roll-off, chroma
        scale = 1.0 / (peak if peak != 0 else eps)
        weight_sum = 0.0
        weighted = 0.0
        flux = 0.0
        threshold = rolloff_share * power_total
        cumulative = 0.0
        rolloff = -1.0
        for c in range(12):
            chroma[c] = 0.0
        inverse_sum = 1.0 / spectrum_sum
        for k in range(num_fft):
            value = magnitude[i, k]
            weight = value * scale
            weight_sum += weight
            weighted += weight * bin_hz[k]
            share = value * inverse_sum
            if i > 0:
                flux += (share - previous[k]) ** 2
            previous[k] = share
            cumulative += power[k]
            if rolloff < 0 and cumulative + eps > threshold:
                rolloff = k / num_fft
            if chroma_class[k] >= 0:
                chroma[chroma_class[k]] += power[k] * chroma_weight[k]
        centroid = weighted / (weight_sum + eps)
        spread = 0.0
        for k in range(num_fft):  # pass 3: spread needs the centroid
            spread += (bin_hz[k] - centroid) ** 2 * (magnitude[i, k] * scale)
        out[i, 3] = centroid / half_sr
        out[i, 4] = math.sqrt(spread / (weight_sum + eps)) / half_sr
        out[i, 6] = flux
        out[i, 7] = max(rolloff, 0.0)
        divisor = power_total if power_total != 0 else eps
        mean = 0.0
        for c in range(12):
            chroma[c] /= divisor
            out[i, 21 + c] = chroma[c]
            mean += chroma[c]
        mean /= 12
        variance = 0.0
        for c in range(12):
            variance += (chroma[c] - mean) ** 2
        out[i, 33] = math.sqrt(variance / 12)

        # --- harmonic ratio and F0 from the normalised autocorrelation (lags 1..max_lag+1)
        if max_lag <= 0:
            out[i, 34], out[i, 35] = 1.0, 0.0
            continue
        lag0 = autocorr[i, 0]
        first_zero = window - 3
        for lag in range(max_lag):
            if _sign(autocorr[i, lag + 2]) != _sign(autocorr[i, lag + 1]):
                first_zero = lag
                break
        best, ratio = 0, -np.inf
        for lag in range(max_lag):
            value = 0.0
            if lag >= first_zero:
                value = autocorr[i, lag + 1] / (math.sqrt(lag0 * energy[max_lag + first_zero - lag]) + eps)
            gamma[lag] = value
            if value > ratio:
                best, ratio = lag, value
        crossings = 0
        for lag in range(1, max_lag):
            crossings += abs(_sign(gamma[lag]) - _sign(gamma[lag - 1]))
        f0 = sr / (best + eps)
        if f0 > 5000 or ratio < 0.1:
            f0 = 0.0
        if crossings / 2 / (max_lag - 1.0) > 0.15:
            ratio, f0 = 0.0, 0.0
        out[i, 34], out[i, 35] = ratio, f0
