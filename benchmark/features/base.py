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
from dataclasses import asdict, dataclass, fields, replace
from importlib.metadata import PackageNotFoundError, version
from typing import Any, ClassVar, Literal

import numpy as np

from ..audio import TARGET_SR
from ..errors import BenchError

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
    # At most this many extraction processes (None: one per core); a set holding a large model says 1.
    max_workers: ClassVar[int | None] = None
    # Files handed to one call of ``extract_batch`` (if the set has one); 1 = ``extract`` per file.
    files_per_task: int = 1

    def __init__(self, config: FeatureConfig | None = None, **overrides: Any):
        base = config if config is not None else self.config_class()
        known = {f.name for f in fields(base)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise BenchError(
                f"feature set {self.name}: unknown option(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known)) or 'none'}"
            )
        self.config = replace(base, **overrides)
        self.sample_rate = TARGET_SR

    @property
    @abstractmethod
    def feature_names(self) -> list[str]:
        """Names of the columns of ``frames`` (or of ``functionals`` for utterance-level sets)."""

    @abstractmethod
    def extract(self, signal: np.ndarray) -> dict[str, np.ndarray]:
        """Features of one mono float32 16 kHz signal."""

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
