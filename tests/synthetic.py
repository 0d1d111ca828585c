"""Small synthetic corpora in the real corpora's layouts, so core tests never need the real data.

The signals are speech-like (a glottal pulse train with a moving F0, two formant resonances,
syllable-rate amplitude modulation, breath noise) and their prosody depends on the emotion and
the speaker, so models can learn something and every feature set sees voiced and unvoiced parts.
They are not speech: numbers measured on them say nothing about SER accuracy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import lfilter

# emotion -> (F0 factor, loudness, syllables per second, F0 movement)
PROSODY = {
    "anger": (1.35, 0.9, 5.0, 0.25), "boredom": (0.85, 0.3, 2.5, 0.05), "disgust": (0.95, 0.5, 3.0, 0.10),
    "fear": (1.5, 0.5, 6.0, 0.30), "happiness": (1.3, 0.7, 4.5, 0.35), "neutral": (1.0, 0.45, 4.0, 0.10),
    "sadness": (0.8, 0.25, 2.8, 0.05),
}
EMODB_LETTERS = {"anger": "W", "boredom": "L", "disgust": "E", "fear": "A", "happiness": "F", "sadness": "T",
                 "neutral": "N"}
URDU_FOLDERS = {"anger": "Angry", "happiness": "Happy", "neutral": "Neutral", "sadness": "Sad"}


def speechlike(emotion: str, speaker_f0: float, seconds: float, sr: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    f0_factor, loudness, rate, movement = PROSODY[emotion]
    n = int(seconds * sr)
    t = np.arange(n) / sr
    f0 = speaker_f0 * f0_factor * (1 + movement * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6)))
    f0 *= 1 + 0.01 * rng.standard_normal(n).cumsum() / np.sqrt(np.arange(1, n + 1))  # slow jitter
    phase = np.cumsum(f0 / sr)
    pulses = (np.diff(np.floor(phase), prepend=0) > 0).astype(np.float64)
    voiced = 0.5 * (1 + np.sin(2 * np.pi * rate * t + rng.uniform(0, 6))) > 0.35  # syllables and pauses
    source = pulses * voiced + 0.02 * rng.standard_normal(n) * (~voiced)
    signal = source
    for formant, bandwidth in ((rng.uniform(500, 800), 90.0), (rng.uniform(1200, 2200), 120.0)):
        r = np.exp(-np.pi * bandwidth / sr)
        theta = 2 * np.pi * formant / sr
        signal = lfilter([1.0 - r], [1.0, -2 * r * np.cos(theta), r * r], signal)
    envelope = np.convolve(voiced.astype(float), np.hanning(int(0.03 * sr)), mode="same")
    signal = signal * (0.2 + envelope / max(envelope.max(), 1e-9)) + 0.002 * rng.standard_normal(n)
    return (loudness * 0.8 * signal / max(np.abs(signal).max(), 1e-9)).astype(np.float32)


def write_emodb(root: Path, speakers=("03", "08", "09", "10", "11"), per_emotion: int = 2) -> Path:
    """EMO-DB layout: ``root/wav/SSTTTEV.wav`` at 16 kHz (speaker 08, 09 female as in EMO-DB)."""
    (root / "wav").mkdir(parents=True, exist_ok=True)
    for s, speaker in enumerate(speakers):
        base_f0 = 210.0 if speaker in ("08", "09", "13", "14", "16") else 120.0
        for e, (emotion, letter) in enumerate(sorted(EMODB_LETTERS.items())):
            for k in range(per_emotion):
                seconds = 1.0 + 0.25 * ((s + e + k) % 5)
                signal = speechlike(emotion, base_f0 * (1 + 0.04 * s), seconds, 16_000, seed=1000 * s + 10 * e + k)
                sf.write(root / "wav" / f"{speaker}a0{k + 1}{letter}{'ab'[k % 2]}.wav", signal, 16_000,
                         subtype="PCM_16")
    return root


def write_urdu(root: Path, speakers=("SM1", "SM2", "SM3", "SF1", "SF2", "SF3"), per_emotion: int = 2) -> Path:
    """URDU layout: ``root/<Angry|Happy|Neutral|Sad>/SG<n>_F<k>_<letter><nnn>.wav`` at 44.1 kHz."""
    number = 0
    for s, speaker in enumerate(speakers):
        base_f0 = 200.0 if speaker[1] == "F" else 115.0
        for e, (emotion, folder) in enumerate(sorted(URDU_FOLDERS.items())):
            (root / folder).mkdir(parents=True, exist_ok=True)
            for k in range(per_emotion):
                number += 1
                signal = speechlike(emotion, base_f0 * (1 + 0.05 * s), 1.0 + 0.2 * k, 44_100, seed=77 + number)
                sf.write(root / folder / f"{speaker}_F{k + 1}_{folder[0]}{number:03d}.wav", signal, 44_100,
                         subtype="PCM_16")
    return root
