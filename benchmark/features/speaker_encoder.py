"""``dvector``: the hidden states of a pre-trained speaker encoder, pooled per utterance.

The encoder is Resemblyzer's GE2E d-vector network (Wan et al., ICASSP 2018): 40 mel bands
(25 ms / 10 ms, power, not log) into three 256-unit LSTM layers, trained for speaker verification
on LibriSpeech, VoxCeleb 1 and 2 (English and many other languages). Speaker embeddings carry
much of what emotion recognition needs (Pappagari et al., "x-vectors meet emotions", ICASSP 2020),
and a network trained on thousands of speakers is what a corpus of ten actors cannot learn. This
is the pre-trained representation this machine can get: its weights ship inside the ``resemblyzer``
wheel on PyPI, where the self-supervised models (Hugging Face) cannot be downloaded here.

Why it is built this way:

- The network runs as it was trained: on windows of 1.6 s (160 frames), each from a fresh LSTM
  state, never zero-padded (a shorter utterance or tail is a window of its own length). The
  utterance vector (``functionals``, for SVM/XGBoost) is the mean and standard deviation of each
  chosen layer's outputs over every frame of windows every 0.8 s, the last one ending with the
  utterance. The ``frames`` (for the sequence models) are the chosen layers' outputs over
  back-to-back windows, one per 10 ms, averaged in groups to ``frame_rate`` per second (25 by
  default: about librosa46's 31, so a BLSTM's cost stays near its cost there). All three layers
  by default: which layer carries emotion is a choice to make on training data
  (``--feature-param layers=1,2``), not a property to assume.
- Only the weights file is read from the installed package (its SHA-256 is checked and is part of
  the cache key), never the package's code: ``import resemblyzer`` needs ``webrtcvad``, which needs
  ``pkg_resources`` (gone from setuptools >= 81). The front end is resemblyzer's own, in a few lines:
  the volume raised to -30 dBFS when quieter (never lowered), then librosa's mel spectrogram with
  its parameters. Its voice-activity trimming is left out (utterances, not long recordings).
- torch is imported only inside methods, so ``import benchmark.features`` stays light. At most one
  process extracts (``max_workers = 1``; torch uses every core inside it): a worker where the
  run's other sets need one, else the main process, as for the ``hf`` sets.
- A missing package or a foreign weights file is found in :meth:`describe`, which the feature
  cache calls in the main process before any file, so it is one line, not one warning per file.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..errors import BenchError
from ..features import register_feature_set
from .base import FEATURE_CODE_VERSION, FeatureConfig, FeatureSet, package_version

# resemblyzer 0.1.4's pretrained.pt; any other file is refused rather than silently used
WEIGHTS_SHA256 = "39373b86598fa3da9fcddee6142382efe09777e8d37dc9c0561f41f0070f134e"
N_LAYERS, UNITS, N_MELS = 3, 256, 40
WINDOW_FRAMES, HOP_FRAMES = 160, 80  # 1.6 s windows every 0.8 s, at 100 frames/s
TARGET_DBFS = -30.0
POOLINGS = ("mean_std", "mean")
INSTALL_HINT = 'install it with pip install -e ".[ssl]" (or pip install resemblyzer==0.1.4)'


class SpeakerEncoderError(BenchError):
    """The encoder's weights are missing or not the pinned ones, or an option does not fit."""


@dataclass(frozen=True)
class SpeakerEncoderConfig(FeatureConfig):
    layers: int | tuple[int, ...] | str = "0,1,2"  # LSTM layers (0 = nearest the input), comma-separated; their statistics are concatenated
    pooling: str = "mean_std"  # mean and standard deviation over frames, or the mean alone
    frame_rate: int = 25  # frames per second of the sequence models' input (a divisor of 100)


def parse_layers(value: Any) -> tuple[int, ...]:
    """``"1,2"``, ``[1, 2]`` or ``2`` -> sorted unique layers, each 0..2, or a one-line error naming the option."""
    items = value if isinstance(value, (list, tuple)) else str(value).strip("[]() ").split(",")
    try:
        layers = sorted({int(str(item).strip()) for item in items})  # str(): True is "True", refused
    except ValueError:
        layers = []
    if not layers or any(not 0 <= layer < N_LAYERS for layer in layers):
        shown = ",".join(map(str, items)) if isinstance(value, (list, tuple)) else value
        raise SpeakerEncoderError(f"--feature-param layers={shown!r}: use LSTM layers 0, 1 and/or 2, "
                                  f"comma-separated (e.g. layers=1,2)")
    return tuple(layers)


def weights_path() -> Path:
    """pretrained.pt inside the installed resemblyzer package, found without importing it."""
    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or not spec.submodule_search_locations:
        raise SpeakerEncoderError(f"feature set dvector needs the resemblyzer package for its weights; {INSTALL_HINT}")
    path = Path(list(spec.submodule_search_locations)[0]) / "pretrained.pt"
    if not path.is_file():
        raise SpeakerEncoderError(f"{path}: resemblyzer's weights file is missing; reinstall it ({INSTALL_HINT})")
    return path


@lru_cache(maxsize=1)
def checked_weights() -> Path:
    path = weights_path()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != WEIGHTS_SHA256:
        raise SpeakerEncoderError(f"{path}: SHA-256 {digest[:12]}... is not resemblyzer 0.1.4's weights "
                                  f"({WEIGHTS_SHA256[:12]}...); {INSTALL_HINT}")
    return path


def louder(signal: np.ndarray) -> np.ndarray:
    """Resemblyzer's volume normalisation: raised to -30 dBFS when quieter, never lowered."""
    rms = float(np.sqrt(np.mean(np.square(signal, dtype=np.float64)))) if len(signal) else 0.0
    if rms < 1e-10:  # silence (or denormal noise, whose gain would overflow): left as it is
        return signal
    gain_db = TARGET_DBFS - 20.0 * np.log10(rms)
    return (signal * 10.0 ** (gain_db / 20.0)).astype(np.float32) if gain_db > 0 else signal


def mel_power(signal: np.ndarray, sr: int) -> np.ndarray:
    """(n_frames, 40) float32 mel power spectrogram with resemblyzer's parameters (not log)."""
    import librosa

    mel = librosa.feature.melspectrogram(y=signal, sr=sr, n_fft=int(sr * 0.025), hop_length=int(sr * 0.010),
                                         n_mels=N_MELS)
    return mel.astype(np.float32).T


def windows(mel: np.ndarray) -> np.ndarray:
    """(n_windows, frames, 40): 160-frame windows every 80 frames, the last ending with the utterance."""
    n = len(mel)
    if n <= WINDOW_FRAMES:
        return mel[None]
    starts = list(range(0, n - WINDOW_FRAMES + 1, HOP_FRAMES))
    if starts[-1] + WINDOW_FRAMES < n:
        starts.append(n - WINDOW_FRAMES)
    return np.stack([mel[start:start + WINDOW_FRAMES] for start in starts])


def back_to_back(mel: np.ndarray) -> list[np.ndarray]:
    """Consecutive 160-frame windows covering the utterance once; the tail is a window of its own length."""
    return [mel[start:start + WINDOW_FRAMES] for start in range(0, len(mel), WINDOW_FRAMES)]


def group_means(frames: np.ndarray, size: int) -> np.ndarray:
    """Means of consecutive groups of ``size`` frames (the last group may be shorter)."""
    if size == 1:
        return frames
    starts = np.arange(0, len(frames), size)
    return np.add.reduceat(frames, starts, axis=0) / np.diff(np.append(starts, len(frames)))[:, None]


@lru_cache(maxsize=1)
def encoder_layers() -> list:
    """The three LSTM layers as separate one-layer modules, so each layer's outputs can be read."""
    import torch

    state = torch.load(checked_weights(), map_location="cpu", weights_only=True)["model_state"]
    layers = []
    for index in range(N_LAYERS):
        layer = torch.nn.LSTM(N_MELS if index == 0 else UNITS, UNITS, 1, batch_first=True)
        layer.load_state_dict({f"{name}_l0": state[f"lstm.{name}_l{index}"]
                               for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")})
        layers.append(layer.eval())
    return layers


@register_feature_set
class SpeakerEncoder(FeatureSet):
    name = "dvector"
    description = ("pre-trained GE2E speaker encoder (resemblyzer; LibriSpeech + VoxCeleb): "
                   "its 3 LSTM layers, 768 per frame (25/s); their mean/std, 1536 per utterance")
    parts = ("frames", "functionals")
    config_class = SpeakerEncoderConfig
    libraries = ("numpy", "scipy", "librosa", "torch")
    needs_own_process = True  # torch's threads and memory stay out of the process that trains the models
    max_workers: ClassVar[int] = 1  # one model per machine; torch uses every core inside it

    def __init__(self, config: SpeakerEncoderConfig | None = None, **overrides: Any):
        super().__init__(config, **overrides)
        self.layer_indices = parse_layers(self.config.layers)
        if not 1 <= self.config.frame_rate <= 100 or 100 % self.config.frame_rate:
            raise SpeakerEncoderError(f"--feature-param frame_rate={self.config.frame_rate}: use a divisor of 100 "
                                      f"(the encoder's 100 frames per second), e.g. 25, 50 or 100")
        if self.config.pooling not in POOLINGS:
            raise SpeakerEncoderError(f"--feature-param pooling={self.config.pooling!r}: use {' or '.join(POOLINGS)}")
        self.config = replace(self.config, layers=",".join(map(str, self.layer_indices)))  # one spelling, one key

    def describe(self) -> dict[str, Any]:
        if importlib.util.find_spec("torch") is None:
            raise SpeakerEncoderError(f"feature set dvector needs torch; {INSTALL_HINT}")
        checked_weights()  # missing or foreign weights: one line here, in the main process, before any file
        return {
            "name": self.name,
            "config": asdict(self.config),
            "weights": f"resemblyzer-0.1.4:{WEIGHTS_SHA256[:16]}",
            "code_version": FEATURE_CODE_VERSION,
            "libraries": {lib: package_version(lib) for lib in self.libraries},
        }

    @property
    def feature_names(self) -> list[str]:
        """The columns of ``frames``: each chosen layer's units."""
        return [f"lstm{layer}_{unit}" for layer in self.layer_indices for unit in range(UNITS)]

    @property
    def functional_names(self) -> list[str]:
        """The columns of ``functionals``: each chosen layer's mean (and std) of each unit."""
        stats = ("mean", "std") if self.config.pooling == "mean_std" else ("mean",)
        return [f"lstm{layer}_{stat}_{unit}" for layer in self.layer_indices for stat in stats for unit in range(UNITS)]

    def extract(self, signal: np.ndarray, parts=None) -> dict[str, np.ndarray]:
        mel = mel_power(louder(np.asarray(signal, dtype=np.float32)), self.sample_rate)
        out = {}
        if parts is None or "functionals" in parts:
            outputs = self._layer_outputs(windows(mel))
            with_std = self.config.pooling == "mean_std"
            pooled = [stat for frames in outputs for stat in ((frames.mean(0), frames.std(0)) if with_std
                                                              else (frames.mean(0),))]
            out["functionals"] = np.concatenate(pooled).astype(np.float32)
        if parts is None or "frames" in parts:
            cut = back_to_back(mel)
            full, tail = (cut, []) if len(cut[-1]) == WINDOW_FRAMES else (cut[:-1], cut[-1:])
            pieces = [np.concatenate(self._layer_outputs(np.stack(batch)), axis=1) for batch in (full, tail) if batch]
            out["frames"] = group_means(np.concatenate(pieces), 100 // self.config.frame_rate).astype(np.float32)
        return out

    def _layer_outputs(self, batch: np.ndarray) -> list[np.ndarray]:
        """Each chosen layer's outputs, (windows x frames, 256), for windows of one length."""
        import torch

        chosen = self.layer_indices
        hidden, outputs = torch.from_numpy(np.ascontiguousarray(batch)), []
        with torch.inference_mode():
            for index, layer in enumerate(encoder_layers()[: max(chosen) + 1]):
                hidden, _ = layer(hidden)
                if index in chosen:
                    outputs.append(hidden.reshape(-1, UNITS).numpy().astype(np.float64))
        return outputs
