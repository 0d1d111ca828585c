"""Feature-set registry: ``@register_feature_set`` classes, looked up by name."""

from __future__ import annotations

from ..paths import configure_numba_cache
from ..registry import Registry

configure_numba_cache()  # before any feature module imports librosa (numba)

from .base import FeatureConfig, FeatureSet  # noqa: E402

FEATURE_SETS = Registry("feature set")
register_feature_set = FEATURE_SETS.register


def get_feature_set(name: str, **config) -> FeatureSet:
    return FEATURE_SETS.lookup(name)(**config)


FEATURE_SETS.discover(__name__, __path__)  # every module joins by its decorator

__all__ = ["FEATURE_SETS", "FeatureConfig", "FeatureSet", "get_feature_set", "register_feature_set"]
