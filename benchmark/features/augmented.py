"""Audio-level augmentation of *training* utterances: speed perturbation and additive noise.

``augmented`` is a feature set that wraps another one: it perturbs the signal with audiomentations
(``Resample`` read back at 16 kHz = Kaldi-style speed perturbation, which changes tempo and pitch
together, e.g. 0.9 / 1.1; ``AddGaussianSNR`` at a fixed SNR in dB), then extracts the base set's
features. Its ``describe()`` holds the base set's own description plus the augmentation and its
value, so every variant is cached under its own key, apart from the clean features. The random
noise is seeded by the signal's content, so a file's augmented copy is the same in every fold
and process (and the cache stays coherent).

The runner asks :func:`training_copies` for the copies of the current training fold only and hands
them to the model, which adds to its training part the copies of those originals it trains on:
copies of the utterances it holds out for validation (early stopping) are left out. Test
utterances are never augmented.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np

from ..errors import BenchError
from ..features import get_feature_set, register_feature_set
from .base import FeatureConfig, FeatureSet

KINDS = ("speed", "noise")


@dataclass(frozen=True)
class AugmentedConfig(FeatureConfig):
    base: str = "handcrafted36"
    base_options: tuple = ()  # the base set's options as (name, value) pairs
    kind: str = "noise"  # speed | noise
    value: float = 20.0  # speed factor (0.9 = slower, longer) or SNR in dB


@register_feature_set
class Augmented(FeatureSet):
    name = "augmented"
    description = "another feature set on speed-perturbed or noisy audio (training copies; see --param speed_perturb)"
    config_class = AugmentedConfig
    libraries = ("numpy", "scipy", "librosa", "audiomentations")

    def __init__(self, config=None, **overrides):
        super().__init__(config, **overrides)
        if self.config.kind not in KINDS:
            raise BenchError(f"augmented: kind={self.config.kind!r}; use one of {', '.join(KINDS)}")
        if self.config.kind == "speed" and not 0.5 <= self.config.value <= 2.0:
            raise BenchError(f"augmented: speed factor {self.config.value} outside 0.5..2.0 (e.g. 0.9 or 1.1)")
        if self.config.kind == "noise" and not -20 <= self.config.value <= 80:  # the networks' noise_snr_db range
            raise BenchError(f"augmented: SNR {self.config.value} dB outside -20..80 (e.g. 10 or 20)")

    @property
    def base_set(self) -> FeatureSet:
        return get_feature_set(self.config.base, **dict(self.config.base_options))

    @property
    def level(self):  # noqa: D401 - the base set's level
        return self.base_set.level

    @property
    def needs_own_process(self) -> bool:  # openSMILE copies run where openSMILE itself must
        return self.base_set.needs_own_process

    @property
    def max_workers(self) -> int | None:  # a set holding a large model (dvector, hf) keeps its one process
        return self.base_set.max_workers

    @property
    def feature_names(self) -> list[str]:
        return self.base_set.feature_names

    def describe(self) -> dict:
        return {**super().describe(), "base": self.base_set.describe()}

    def perturb(self, signal: np.ndarray) -> np.ndarray:
        import audiomentations

        sr = self.sample_rate
        if self.config.kind == "speed":
            rate = int(round(sr / self.config.value))
            transform = audiomentations.Resample(min_sample_rate=rate, max_sample_rate=rate, p=1.0)
        else:
            transform = audiomentations.AddGaussianSNR(min_snr_db=self.config.value, max_snr_db=self.config.value,
                                                       p=1.0)
        state = np.random.get_state()
        np.random.seed(zlib.crc32(np.ascontiguousarray(signal).tobytes()))  # audiomentations draws from numpy's global RNG
        try:
            return transform(samples=np.asarray(signal, dtype=np.float32), sample_rate=sr).astype(np.float32)
        finally:
            np.random.set_state(state)

    def extract(self, signal: np.ndarray) -> dict[str, np.ndarray]:
        return self.base_set.extract(self.perturb(signal))


def variants(speed_perturb: bool, noise_snr_db: float | None) -> list[tuple[str, float]]:
    """The augmentations a run asked for, e.g. [("speed", 0.9), ("speed", 1.1), ("noise", 20.0)]."""
    out = [("speed", 0.9), ("speed", 1.1)] if speed_perturb else []
    if noise_snr_db is not None:
        out.append(("noise", float(noise_snr_db)))
    return out


def model_variants(model) -> list[tuple[str, float]]:
    """The audio augmentations a built model asks for (none for models without the options)."""
    return variants(getattr(model, "speed_perturb", False), getattr(model, "noise_snr_db", None))


class FrameSources(list):
    """The runner's list of frame arrays, remembering which file and feature set each came from, so
    augmented copies of a training fold can be extracted (through the cache) when a fold asks."""

    sources: list[tuple[str, str]]
    feature_set: FeatureSet
    cache_dir: str | None
    jobs: int | None

    def subset(self, index) -> "FrameSources":
        return remember_sources([self[i] for i in index], [self.sources[i] for i in index], self.feature_set,
                                self.cache_dir, self.jobs)


def remember_sources(X, sources, feature_set: FeatureSet, cache_dir=None, jobs=None):
    if not isinstance(X, list):
        return X  # utterance vectors: audio augmentation is for the sequence models only
    out = FrameSources(X)
    out.sources, out.feature_set, out.cache_dir, out.jobs = list(sources), feature_set, cache_dir, jobs
    return out


@dataclass
class TrainingCopies:
    """Augmented frames, and for each the position (in the fold's training list) of its original."""

    X: list = field(default_factory=list)
    source: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))

    def __len__(self) -> int:
        return len(self.X)


def augmented_sets(base: FeatureSet, wanted: list[tuple[str, float]]) -> list["Augmented"]:
    """One ``augmented`` feature set per (kind, value) over ``base`` with its options."""
    options = tuple(sorted(vars(base.config).items()))
    return [Augmented(base=base.name, base_options=options, kind=kind, value=value) for kind, value in wanted]


def extract_ahead(X, indices: np.ndarray, wanted: list[tuple[str, float]], progress: bool = True) -> None:
    """Extract the copies of the utterances at ``indices`` into the cache now, with every core and a
    progress line, before the folds ask :func:`training_copies` for them.

    Why: a network's folds run two at a time in worker processes, and each extracted its own
    training copies: under LOSO nine tenths of the same files per fold, twice at once, silently.
    ``indices`` must be training utterances only (the union of the folds' training parts)."""
    from .extract import extract_features

    if not wanted or not isinstance(X, FrameSources) or not len(indices):
        return
    items = [X.sources[i] for i in indices]
    for feature_set in augmented_sets(X.feature_set, wanted):
        extract_features(items, feature_set, cache_dir=X.cache_dir, jobs=X.jobs, progress=progress)


def training_copies(X, train: np.ndarray, speed_perturb: bool = False,
                    noise_snr_db: float | None = None) -> TrainingCopies:
    """Augmented copies of the utterances at ``train`` (indices into ``X``) only; none if not asked."""
    from .extract import extract_features

    wanted = variants(speed_perturb, noise_snr_db)
    if not wanted:
        return TrainingCopies()
    if not isinstance(X, FrameSources):
        raise BenchError("audio augmentation (speed_perturb, noise_snr_db) needs a frame-level feature set and a "
                         "sequence model")
    frames, source = [], []
    items = [X.sources[i] for i in train]
    for feature_set in augmented_sets(X.feature_set, wanted):
        result = extract_features(items, feature_set, cache_dir=X.cache_dir, jobs=X.jobs, progress=False)
        for position, (uid, _) in enumerate(items):
            if uid in result.features:  # a copy that failed is skipped, as a bad file is
                frames.append(result.features[uid]["frames"].astype(np.float32))
                source.append(position)
    return TrainingCopies(frames, np.asarray(source, dtype=int))


def normalised_copies(X, train: np.ndarray, groups, normaliser, model) -> TrainingCopies:
    """The runner's hook: the fold's training copies, normalised with the fold's training statistics."""
    copies = training_copies(X, train, model.speed_perturb, model.noise_snr_db)
    if len(copies):
        copies.X = normaliser.transform(copies.X, groups[train][copies.source])
    return copies
