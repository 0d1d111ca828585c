"""Model registry: ``@register_model`` classes, looked up by name."""

from __future__ import annotations

from ..errors import BenchError
from ..registry import Registry
from .base import SERClassifier

MODELS = Registry("model")
register_model = MODELS.register


def get_model(name: str, **params) -> SERClassifier:
    cls = MODELS.lookup(name)
    known = set(cls().get_params())
    unknown = sorted(set(params) - known)
    if unknown:
        raise BenchError(f"model {name}: unknown parameter(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return cls(**params)


# every module of this package joins by its decorator; keras_layers registers Keras layers only and
# imports TensorFlow, so it loads when a Keras model is built or loaded, never for a vector model
MODELS.discover(__name__, __path__, lazy=("keras_layers",))

__all__ = ["MODELS", "SERClassifier", "get_model", "register_model"]
