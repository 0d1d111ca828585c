"""Feature-set registry: ``@register_feature_set`` classes, looked up by name."""

from __future__ import annotations

from ..registry import Registry
from .base import FeatureConfig, FeatureSet

FEATURE_SETS = Registry("feature set")
register_feature_set = FEATURE_SETS.register


def get_feature_set(name: str, **config) -> FeatureSet:
    return FEATURE_SETS.lookup(name)(**config)


from . import handcrafted, librosa_set, opensmile_sets  # noqa: E402,F401  (self-registration)

__all__ = ["FEATURE_SETS", "FeatureConfig", "FeatureSet", "get_feature_set", "register_feature_set"]
