"""A model is code: refuse model formats that run code when loaded, unless the user trusts the model.

Why: MLflow loads sklearn models with pickle/cloudpickle by default, and unpickling runs arbitrary
code, so a crafted model folder given to ``bench predict --model`` could run anything. ser-bench
logs its own models in formats that load as data: sklearn with skops (typed, restricted), XGBoost
as UBJSON, Keras as ``.keras`` loaded in safe mode. The MLmodel file's flavour configuration says
which format a model uses; it is read before anything is loaded.
"""

from __future__ import annotations

from .errors import BenchError

SAFE_SKLEARN_FORMATS = ("skops",)
SAFE_XGBOOST_FORMATS = ("ubj", "json", "xgb")
CODE_FLAVOURS = {"python_function": ("python_model", "loader_module")}


class UntrustedModelError(BenchError):
    """The model would run code when loaded and --trust-model was not given."""


def unsafe_reason(flavors: dict) -> str | None:
    """Why loading a model with these MLmodel flavours could run code, or None if it loads as data."""
    if "sklearn" in flavors:
        fmt = flavors["sklearn"].get("serialization_format", "pickle")
        return None if fmt in SAFE_SKLEARN_FORMATS else f"its sklearn flavour is serialised with {fmt}"
    if "xgboost" in flavors:
        fmt = flavors["xgboost"].get("model_format", "xgb")
        return None if fmt in SAFE_XGBOOST_FORMATS else f"its xgboost flavour is serialised as {fmt}"
    if "keras" in flavors:
        return None  # .keras archives load in Keras' safe mode (no lambda code)
    pyfunc = flavors.get("python_function", {})
    if "python_model" in pyfunc or "cloudpickle_version" in pyfunc:
        return "it is a custom python_function model (cloudpickled Python code)"
    return f"its flavour(s) {', '.join(sorted(flavors)) or 'none'} are not ones ser-bench logs"


def require_safe_format(flavors: dict, uri: str, trust: bool) -> None:
    reason = unsafe_reason(flavors)
    if reason and not trust:
        raise UntrustedModelError(f"model {uri}: {reason}, which runs code when loaded; ser-bench logs sklearn with "
                                  f"skops, so only pass --trust-model if you trust whoever made this model")
