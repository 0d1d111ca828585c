"""Model registry: ``@register_model`` classes, looked up by name."""

from __future__ import annotations

from ..errors import BenchError
from .base import SERClassifier

MODELS: dict[str, type[SERClassifier]] = {}


def register_model(cls: type[SERClassifier]) -> type[SERClassifier]:
    MODELS[cls.name] = cls
    return cls


def get_model(name: str, **params) -> SERClassifier:
    if name not in MODELS:
        raise BenchError(f"unknown model {name!r}; choose one of {', '.join(sorted(MODELS))}")
    cls = MODELS[name]
    known = set(cls().get_params())
    unknown = sorted(set(params) - known)
    if unknown:
        raise BenchError(f"model {name}: unknown parameter(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return cls(**params)


from . import attn_blstm, local_attn_blstm, sklearn_models  # noqa: E402,F401  (self-registration)

__all__ = ["MODELS", "SERClassifier", "get_model", "register_model"]
