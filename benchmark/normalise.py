"""Feature normalisation per fold: ``none``, ``global``, ``speaker``, ``corpus`` or ``corpus+speaker``.

``global`` standardises with the mean and standard deviation of the training fold only.
``speaker`` standardises every speaker with that speaker's own statistics, computed from its
unlabelled features (the usual per-speaker normalisation; test labels are never used). A speaker
with a single utterance vector has no spread to measure: it falls back to the training
statistics. Works on sequences (statistics over all frames) and on utterance vectors alike.

``corpus`` standardises every corpus with its own statistics (Schuller et al. 2010): the training
corpora with theirs, and a test corpus with the statistics of *its utterances in the set being
transformed*, i.e. the test fold. That is transductive -- the test set's unlabelled features are
looked at as a whole before predicting -- but labels are never used: permuting the test labels
changes nothing. It removes what differs between corpora as a whole (recording level, microphone,
language), which is what sinks ``global`` across corpora. Inside one corpus (``within_corpus``) the
test side is the test fold only (one speaker under leave-one-speaker-out), so there it acts like
``speaker`` on the test side.

``corpus+speaker`` subtracts every speaker's own mean and divides by its corpus's spread (of the
speaker-centred features): speaker levels go, as in ``speaker``, but the scale comes from a whole
corpus rather than from a speaker's few utterances. (A per-speaker z-score after a per-corpus one
would just equal ``speaker``.) Like ``speaker`` it normalises emotion away where speakers and
emotions are confounded (URDU); the runner warns about that.

Groups are ``"corpus:speaker"`` strings (``ProtocolData.groups``), so the corpus of every item is
known here; a group without ``:`` is its own corpus (``bench predict``: the files given together).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import BenchError

MODES = ("none", "global", "speaker", "corpus", "corpus+speaker")


def _rows(items) -> np.ndarray:
    return np.concatenate([np.atleast_2d(x) for x in items], axis=0).astype(np.float64)


def _stats(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    std = rows.std(axis=0)
    return rows.mean(axis=0), np.where(std > 1e-8, std, 1.0)


def corpus_of(groups) -> np.ndarray:
    """``"emodb:03"`` -> ``"emodb"`` for every group."""
    return np.array([str(g).split(":", 1)[0] for g in groups])


@dataclass
class Normaliser:
    mode: str = "global"
    mean_: np.ndarray | None = field(default=None, repr=False)
    std_: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self):
        if self.mode not in MODES:
            raise BenchError(f"--norm {self.mode}: use one of {', '.join(MODES)}")

    def fit(self, items, groups=None) -> "Normaliser":
        """``items``: a list of (frames, features) arrays or a 2-D (utterances, features) array.

        Keeps the training statistics: ``global`` uses them, the other modes fall back on them
        for a group of a single utterance vector (no spread to measure)."""
        if self.mode != "none":
            self.mean_, self.std_ = _stats(_rows(items))
        return self

    def transform(self, items, groups=None):
        if self.mode == "none":
            return items
        vectors = isinstance(items, np.ndarray) and items.ndim == 2
        sequences = [np.atleast_2d(x).astype(np.float64) for x in items]
        if self.mode == "global":
            out = [((x - self.mean_) / self.std_).astype(np.float32) for x in sequences]
        else:
            if groups is None:
                raise BenchError(f"--norm {self.mode} needs speaker/corpus labels")
            groups = np.asarray(groups).astype(str)
            if self.mode == "speaker":
                out = self._standardise(sequences, groups)
            elif self.mode == "corpus":
                out = self._standardise(sequences, corpus_of(groups))
            else:
                centred = self._standardise(sequences, groups, scale=False)
                out = self._standardise(centred, corpus_of(groups), centre=False)
        return np.vstack(out) if vectors else out

    def _standardise(self, sequences, keys, centre: bool = True, scale: bool = True) -> list:
        """Standardise the members of every key with their own statistics (labels never enter)."""
        out = [None] * len(sequences)
        for key in np.unique(keys):
            members = np.flatnonzero(keys == key)
            rows = _rows([sequences[i] for i in members])
            if rows.shape[0] > 1 or self.mean_ is None:
                mean, std = _stats(rows)
            else:
                mean, std = self.mean_, self.std_
            for i in members:
                x = sequences[i]
                if centre:
                    x = x - mean
                if scale:
                    x = x / std
                out[i] = x.astype(np.float32) if scale else x  # float64 between the two steps
        return out

    def to_dict(self) -> dict:
        return {"mode": self.mode,
                "mean": None if self.mean_ is None else self.mean_.tolist(),
                "std": None if self.std_ is None else self.std_.tolist()}
