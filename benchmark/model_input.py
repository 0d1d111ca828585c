"""What a model takes, built from extracted features, without importing any model framework:
``bench run`` and ``bench predict`` (also its scikit-learn-free start, see benchmark.portable)
use the same two functions. ``model_cls`` is anything with ``input_kind`` and ``loads_tensorflow``."""

from __future__ import annotations

import sys

import numpy as np


def model_input(model_cls, arrays_list: list[dict[str, np.ndarray]]):
    """Model input from extracted features: frame arrays for sequence models, else one vector per
    utterance (the set's own functionals, or statistics of its frames)."""
    from .features.functionals import utterance_vector

    if model_cls.input_kind == "sequence":
        return [np.asarray(arrays["frames"], dtype=np.float32) for arrays in arrays_list]
    return np.stack([utterance_vector(arrays) for arrays in arrays_list])


def tensorflow_free(model_cls) -> bool:
    """Neither this model nor anything before it loaded TensorFlow into this process (openSMILE
    may then run here; see ``extract_features(in_process_ok=...)``)."""
    return not model_cls.loads_tensorflow and "tensorflow" not in sys.modules
