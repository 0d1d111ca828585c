"""Feature normalisation per fold: ``none``, ``global`` (training statistics) or ``speaker``.

``global`` standardises with the mean and standard deviation of the training fold only.
``speaker`` standardises every speaker with that speaker's own statistics, computed from its
unlabelled features (the usual per-speaker normalisation; test labels are never used). A speaker
with a single utterance vector has no spread to measure: it falls back to the training
statistics. Works on sequences (statistics over all frames) and on utterance vectors alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import BenchError

MODES = ("none", "global", "speaker")


def _rows(items) -> np.ndarray:
    return np.concatenate([np.atleast_2d(x) for x in items], axis=0).astype(np.float64)


def _stats(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    std = rows.std(axis=0)
    return rows.mean(axis=0), np.where(std > 1e-8, std, 1.0)


@dataclass
class Normaliser:
    mode: str = "global"
    mean_: np.ndarray | None = field(default=None, repr=False)
    std_: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self):
        if self.mode not in MODES:
            raise BenchError(f"--norm {self.mode}: use one of {', '.join(MODES)}")

    def fit(self, items, groups=None) -> "Normaliser":
        """``items``: a list of (frames, features) arrays or a 2-D (utterances, features) array."""
        if self.mode != "none":
            self.mean_, self.std_ = _stats(_rows(items))
        return self

    def transform(self, items, groups=None):
        if self.mode == "none":
            return items
        vectors = isinstance(items, np.ndarray) and items.ndim == 2
        sequences = [np.atleast_2d(x) for x in items]
        if self.mode == "global":
            out = [((x - self.mean_) / self.std_).astype(np.float32) for x in sequences]
        else:
            if groups is None:
                raise BenchError("--norm speaker needs speaker labels")
            groups = np.asarray(groups)
            out = [None] * len(sequences)
            for speaker in np.unique(groups):
                members = np.flatnonzero(groups == speaker)
                rows = _rows([sequences[i] for i in members])
                mean, std = _stats(rows) if rows.shape[0] > 1 or self.mean_ is None else (self.mean_, self.std_)
                for i in members:
                    out[i] = ((sequences[i] - mean) / std).astype(np.float32)
        return np.vstack(out) if vectors else out

    def to_dict(self) -> dict:
        return {"mode": self.mode,
                "mean": None if self.mean_ is None else self.mean_.tolist(),
                "std": None if self.std_ is None else self.std_.tolist()}
