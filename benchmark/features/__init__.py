"""Feature-set registry: ``@register_feature_set`` classes, looked up by name."""

from __future__ import annotations

from ..paths import configure_numba_cache
from ..registry import Registry

configure_numba_cache()  # before any feature module imports librosa (numba)

from .base import FeatureConfig, FeatureSet  # noqa: E402

FEATURE_SETS = Registry("feature set")
register_feature_set = FEATURE_SETS.register


def split_spec(name: str, options: dict) -> tuple[str, dict]:
    """A registered name and its options; ``hf:<model id or folder>`` is the generic ``hf`` set with
    that ``model`` option (any Hugging Face speech encoder)."""
    if name.startswith("hf:"):
        from .ssl import hf_feature_set

        return hf_feature_set(name, options)
    return name, options


def get_feature_set(name: str, **config) -> FeatureSet:
    name, config = split_spec(name, config)
    return FEATURE_SETS.lookup(name)(**config)


FEATURE_SETS.discover(__name__, __path__)  # every module joins by its decorator

__all__ = ["FEATURE_SETS", "FeatureConfig", "FeatureSet", "get_feature_set", "register_feature_set", "split_spec"]
