"""Feature-set base class: a typed config, feature names, and ``extract(signal) -> arrays``.

A feature set returns a dict of arrays: ``"frames"`` (n_frames x n_features) for frame-level
sets, which sequence models consume, and/or ``"functionals"`` (n_features,) for sets that come
with their own utterance-level statistics (eGeMAPS' 88, ComParE's 6373). Frame-level sets without
their own statistics get the generic ones of :mod:`benchmark.features.functionals`.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from collections.abc import Collection
from typing import Any, ClassVar, Literal

import numpy as np

from ..audio import TARGET_SR

# Bump when an extractor's code changes its output: it invalidates every cached feature file.
FEATURE_CODE_VERSION = 1


@dataclass(frozen=True)
class FeatureConfig:
    """Base of every feature-set config; subclasses add their own typed fields."""


def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "absent"


class FeatureSet(ABC):
    name: ClassVar[str]
    description: ClassVar[str] = ""
    level: ClassVar[Literal["frame", "utterance"]] = "frame"
    config_class: ClassVar[type[FeatureConfig]] = FeatureConfig
    # Python packages whose versions change the numbers (part of the cache key).
    libraries: ClassVar[tuple[str, ...]] = ("numpy", "scipy")
    # Extract in a worker process even for one file (a native library that clashes with others).
    needs_own_process: ClassVar[bool] = False
    # Shortest clip the set can describe (seconds); shorter ones fail with a one-line error naming it.
    min_seconds: ClassVar[float] = 0.0
    # The arrays ``extract`` returns. A set that declares several can compute each alone (cheaper)
    # and then takes ``extract(signal, parts=...)``; the batch extractor only asks for a subset then.
    parts: ClassVar[tuple[str, ...]] = ("frames",)
    # At most this many extraction processes (None: one per core); a set holding a large model says 1.
    max_workers: ClassVar[int | None] = None
    # Files handed to one call of ``extract_batch`` (if the set has one); 1 = ``extract`` per file.
    files_per_task: int = 1
    # Options a report row leaves out: how to compute (device, batch size), or what label() shows.
    label_ignores: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: FeatureConfig | None = None, **overrides: Any):
        from ..config import validate_dataclass  # every option type- and range-checked, once

        base = config if config is not None else self.config_class()
        self.config = validate_dataclass(type(base), {**asdict(base), **overrides}, f"feature set {self.name}")
        self.sample_rate = TARGET_SR

    @property
    @abstractmethod
    def feature_names(self) -> list[str]:
        """Names of the columns of ``frames`` (or of ``functionals`` for utterance-level sets)."""

    @abstractmethod
    def extract(self, signal: np.ndarray, parts: Collection[str] | None = None) -> dict[str, np.ndarray]:
        """Features of one mono float32 16 kHz signal: ``parts`` of them (None: all of ``self.parts``).

        Only sets that declare several ``parts`` need to honour the argument.
        """

    def label(self) -> str:
        """How reports name this set (an SSL set adds its model and layers)."""
        return self.name

    def describe(self) -> dict[str, Any]:
        """Everything that determines the numbers: name, config, library versions."""
        return {
            "name": self.name,
            "config": asdict(self.config),
            "code_version": FEATURE_CODE_VERSION,
            "libraries": {lib: package_version(lib) for lib in self.libraries},
        }

    def cache_key(self) -> str:
        blob = json.dumps(self.describe(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]
