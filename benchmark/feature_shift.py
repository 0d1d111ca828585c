"""Warn when a test set sits far outside the training distribution (before any model is fitted).

Measured on this machine: a model trained on EMO-DB with ``--norm global`` predicted one emotion
for nearly every utterance of another corpus, whose level and silence statistics lay many training
standard deviations away. The check runs on the features *as the model will see them* (after the
run's normalisation, fitted on the training fold): for every feature, how many training standard
deviations the median test utterance lies from the training mean. When many features lie beyond
``sd`` of them the fold is flagged, naming the worst features; ``--norm corpus`` standardises each
corpus with its own statistics and removes exactly this shift. Labels are never used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .normalise import Normaliser

SD = 2.0  # a feature is "far" when the median test utterance lies beyond this many training SDs
MIN_FRACTION = 0.05  # ... and a fold is flagged when at least this share of its features is far
# Calibrated with --norm global (median test utterance beyond 2 training SDs): matched folds --
# EMO-DB and URDU leave-one-speaker-out / speaker-grouped folds -- have at most 3.4% of eGeMAPS'
# 88 and 0% of ComParE's 6373 features that far; EMO-DB -> URDU has 7.9% on ComParE (worst 22.6
# SD; svm then scores UAR 0.268, near chance) but only 1.1% on eGeMAPS (URDU is not far from
# EMO-DB there). Commands and numbers: README, "Across corpora".


@dataclass
class Shift:
    fold: str
    norm: str
    distances: np.ndarray  # per feature: |median test - training mean| / training SD
    names: list[str]
    sd: float

    @property
    def far(self) -> np.ndarray:
        return self.distances > self.sd

    @property
    def fraction(self) -> float:
        return float(self.far.mean()) if len(self.distances) else 0.0

    def worst(self, n: int = 5) -> list[tuple[str, float]]:
        order = np.argsort(-self.distances)[:n]
        return [(self.names[j], float(self.distances[j])) for j in order]

    def message(self) -> str:
        worst = ", ".join(f"{name} ({d:.1f} SD)" for name, d in self.worst())
        hint = ("try --norm corpus (each corpus standardised with its own unlabelled statistics)"
                if self.norm != "corpus" else "the corpora differ beyond their level and scale")
        return (f"fold {self.fold}: {int(self.far.sum())} of {len(self.distances)} features of the test set lie "
                f"more than {self.sd:g} training standard deviations from the training mean (--norm {self.norm}); "
                f"worst: {worst}. The model will see data unlike its training data; {hint}.")

    def table(self):
        import pandas as pd

        order = np.argsort(-self.distances)
        return pd.DataFrame({"feature": [self.names[j] for j in order], "distance_sd": self.distances[order]})


def _vectors(items) -> np.ndarray:
    """Utterance vectors (sequences: the mean frame)."""
    if isinstance(items, np.ndarray) and items.ndim == 2:
        return items.astype(np.float64)
    return np.vstack([np.atleast_2d(x).mean(axis=0) for x in items]).astype(np.float64)


def distances(train, test) -> np.ndarray:
    """Per feature: how many training standard deviations the median test row lies from the training mean."""
    train, test = _vectors(train), _vectors(test)
    std = train.std(axis=0)
    std = np.where(std > 1e-8, std, 1.0)
    return np.abs(np.median(test, axis=0) - train.mean(axis=0)) / std


def measure(norm: str, X, groups, train: np.ndarray, test: np.ndarray, fold: str, names: list[str],
            sd: float | None = None) -> Shift:
    """The shift of one fold after normalising as ``fit_and_predict`` does (training statistics)."""
    take = (lambda idx: X[idx]) if isinstance(X, np.ndarray) else (lambda idx: [X[i] for i in idx])
    normaliser = Normaliser(norm).fit(take(train), groups[train])
    d = distances(normaliser.transform(take(train), groups[train]), normaliser.transform(take(test), groups[test]))
    if len(names) != len(d):
        names = [f"feature_{j}" for j in range(len(d))]
    return Shift(fold, norm, d, list(names), SD if sd is None else sd)


def column_names(feature_set, n_columns: int, vectors: bool = True) -> list[str]:
    """Names of the model-input columns, whichever list has the right length (else ``feature_<j>``):
    for utterance vectors the set's own functionals' names first (dvector's may be as wide as its
    frames), then the set's names, its frame statistics' names, or its openSMILE functionals' names."""
    from .features.functionals import functional_names

    names = list(feature_set.feature_names)
    own = list(getattr(feature_set, "functional_names", [])) if vectors else []
    candidates = [own, names, functional_names(names)]
    if getattr(feature_set, "smile_set", None):  # eGeMAPS: 25 LLD names, 88 functionals as vectors
        try:
            from .features.opensmile_sets import smile

            candidates.append(list(smile(feature_set.smile_set, "Functionals").feature_names))
        except Exception:  # names are a courtesy; never fail a run over them
            pass
    return next((c for c in candidates if len(c) == n_columns), [f"feature_{j}" for j in range(n_columns)])


def check_folds(norm: str, inputs, names: list[str], min_fraction: float | None = None) -> Shift | None:
    """The most shifted fold of a run if at least ``min_fraction`` of its features lie far out, else None."""
    min_fraction = MIN_FRACTION if min_fraction is None else min_fraction
    worst = None
    for fold in inputs.folds:
        if len(fold.test) == 0 or len(fold.train) < 2:
            continue
        shift = measure(norm, inputs.X, inputs.groups, fold.train, fold.test, fold.name, names)
        if worst is None or shift.fraction > worst.fraction:
            worst = shift
    return worst if worst is not None and worst.fraction >= min_fraction and worst.far.any() else None


def check_run(norm: str, inputs, feature_set) -> Shift | None:
    """:func:`check_folds` on a run's inputs, with the feature set's column names."""
    vectors = isinstance(inputs.X, np.ndarray)
    n_columns = inputs.X.shape[1] if vectors else inputs.X[0].shape[1]
    worst = check_folds(norm, inputs, [f"feature_{j}" for j in range(n_columns)])
    if worst is not None:  # names only when there is a warning to give: openSMILE's cost ~2 s to ask for
        worst.names = column_names(feature_set, n_columns, vectors)
    return worst
