"""Feature-set registry: ``@register_feature_set`` classes, looked up by name."""

from __future__ import annotations

from ..errors import BenchError
from .base import FeatureConfig, FeatureSet

FEATURE_SETS: dict[str, type[FeatureSet]] = {}


def register_feature_set(cls: type[FeatureSet]) -> type[FeatureSet]:
    FEATURE_SETS[cls.name] = cls
    return cls


def get_feature_set(name: str, **config) -> FeatureSet:
    if name not in FEATURE_SETS:
        raise BenchError(f"unknown feature set {name!r}; choose one of {', '.join(sorted(FEATURE_SETS))}")
    return FEATURE_SETS[name](**config)


from . import handcrafted, librosa_set, opensmile_sets  # noqa: E402,F401  (self-registration)

__all__ = ["FEATURE_SETS", "FeatureConfig", "FeatureSet", "get_feature_set", "register_feature_set"]
