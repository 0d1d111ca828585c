"""Audio loading: any WAV/FLAC/OGG, any rate and channel count -> mono float32 at 16 kHz.

Every feature set works on the same canonical signal, so a corpus recorded at 44.1 kHz stereo
and one recorded at 16 kHz mono are compared on equal terms.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf

from .errors import AudioError

TARGET_SR = 16_000
# libsndfile >= 1.1 reads MP3; M4A/AAC would need ffmpeg, which ser-bench does not require.
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg") + ((".mp3",) if "MP3" in sf.available_formats() else ())
# Below this peak amplitude (about -100 dBFS) a file carries no usable speech.
SILENCE_PEAK = 1e-5


def load_audio(path: str | Path, sr: int = TARGET_SR) -> np.ndarray:
    """Read ``path`` as mono float32 in [-1, 1] resampled to ``sr``.

    Raises :class:`AudioError` with a one-line message naming the file for empty, corrupt,
    zero-length, silent or unreadable audio.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such audio file; check the path or the corpus folder")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: file is empty (0 bytes); re-download or remove it")
    try:
        # bytes: libsndfile gets the name as the file system has it (a str name that is not UTF-8
        # would be re-encoded strictly by soundfile and fail)
        name = os.fsencode(path) if os.name == "posix" else str(path)
        signal, file_sr = sf.read(name, dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises several types for broken headers
        # libsndfile's own reason, without its "Error opening b'<the path again>'" prefix
        reason = str(getattr(exc, "error_string", "") or exc).strip()
        first_line = reason.splitlines()[0] if reason else type(exc).__name__
        raise AudioError(
            f"{path}: cannot decode audio ({first_line}); supported formats are "
            f"{', '.join(s[1:].upper() for s in AUDIO_SUFFIXES)} (convert others with ffmpeg)"
        ) from None
    if signal.shape[0] == 0:
        raise AudioError(f"{path}: audio has zero samples; re-record or remove the file")
    mono = signal.mean(axis=1, dtype=np.float64).astype(np.float32) if signal.shape[1] > 1 else signal[:, 0]
    if not np.all(np.isfinite(mono)):
        raise AudioError(f"{path}: audio contains NaN or infinite samples; re-export the file")
    if float(np.max(np.abs(mono))) < SILENCE_PEAK:
        raise AudioError(f"{path}: audio is silent (peak below -100 dBFS); remove it from the corpus")
    if file_sr != sr:
        import soxr

        mono = soxr.resample(mono, file_sr, sr, quality="HQ").astype(np.float32)
    return np.ascontiguousarray(mono, dtype=np.float32)
