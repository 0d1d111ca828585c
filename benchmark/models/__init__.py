"""Model registry: ``@register_model`` classes, one per module, discovered by name."""

from __future__ import annotations

from ..registry import Registry
from ..model_input import model_input, tensorflow_free
from .base import SERClassifier

MODELS = Registry("model")
register_model = MODELS.register


def get_model(name: str, **params) -> SERClassifier:
    """Model ``name`` with ``params`` checked against its declared types and ranges."""
    from ..config import validate_params

    cls = MODELS.lookup(name)
    return cls(**validate_params(cls, params, f"model {name}"))


# every module of this package joins by its decorator; keras_layers registers Keras layers only and
# imports TensorFlow, so it loads when a Keras model is built or loaded, never for a vector model
MODELS.discover(__name__, __path__, lazy=("keras_layers",))

__all__ = ["MODELS", "SERClassifier", "get_model", "model_input", "register_model", "tensorflow_free"]
