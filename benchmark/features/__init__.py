"""Feature-set registry: ``@register_feature_set`` classes, looked up by name."""

from __future__ import annotations

from ..registry import Registry
from .base import FeatureConfig, FeatureSet

FEATURE_SETS = Registry("feature set")
register_feature_set = FEATURE_SETS.register


def get_feature_set(name: str, **config) -> FeatureSet:
    if name.startswith("hf:"):  # any Hugging Face model: the generic "hf" set with that model option
        from .ssl import hf_feature_set

        name, config = hf_feature_set(name, config)
    return FEATURE_SETS.lookup(name)(**config)


FEATURE_SETS.discover(__name__, __path__)  # every module joins by its decorator

__all__ = ["FEATURE_SETS", "FeatureConfig", "FeatureSet", "get_feature_set", "register_feature_set"]
