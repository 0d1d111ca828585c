"""``bench models speed``: seconds per training epoch of the Keras networks, old batching vs new.

Variants, alternated round by round in one process so a busy machine slows all of them alike:

* ``pad-to-longest``: the old path (``bucketing=False``): the whole training set padded to its
  longest utterance, Keras' own array input;
* ``buckets``: length buckets, each batch padded to its own longest member, through ``tf.data``;
* ``buckets+xla``: the same compiled with XLA (``jit_compile=True``, lengths padded to a multiple
  of 32 frames so only a few shapes are compiled).

A variant may add model parameters after a colon, ``buckets:filters=16,lstm_units=32``, so that two
sizes of one network are timed against each other in the same run. Speed-ups are against the
first variant given.

Each fit runs ``epochs`` epochs on every utterance (no validation part: only training is timed);
its first epoch (tracing, compilation) is reported apart and left out of the per-epoch median.
TensorFlow is imported only when the benchmark runs: the model registry imports this module.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

VARIANTS = {"pad-to-longest": {"bucketing": False}, "buckets": {"bucketing": True},
            "buckets+xla": {"bucketing": True, "jit_compile": True}}
# The two networks with the features the report paired them with: handcrafted36 keeps every frame
# (variable length); librosa46 pads/cuts to 5 s, i.e. 157 frames.
NETWORKS = {"local_attn_blstm": ("handcrafted36", {}), "attn_blstm": ("librosa46", {}), "crnn": ("logmel", {})}
DEFAULT_NETWORKS = ("local_attn_blstm", "attn_blstm")


@dataclass
class SpeedResult:
    model: str
    features: str
    n_utterances: int
    frames: tuple[int, int, float]  # shortest, longest, mean
    first_epoch_s: dict[str, list[float]] = field(default_factory=dict)
    epoch_s: dict[str, list[float]] = field(default_factory=dict)

    def median(self, variant: str) -> float:
        return float(np.median(self.epoch_s[variant]))

    def ratio(self, variant: str, baseline: str | None = None) -> float:
        """How many times faster per epoch than ``baseline`` (default: the first variant timed)."""
        return self.median(baseline or next(iter(self.epoch_s))) / self.median(variant)


def variant_params(variant: str) -> dict:
    """``"buckets:filters=16"`` -> ``{"bucketing": True, "filters": 16}`` (values read as YAML scalars)."""
    import yaml

    from ..errors import BenchError

    name, _, extra = variant.partition(":")
    if name not in VARIANTS:
        raise BenchError(f"bench models speed: unknown variant {name!r}; variants: {', '.join(VARIANTS)}, "
                         "each optionally followed by :NAME=VALUE,... model parameters")
    params = dict(VARIANTS[name])
    for item in filter(None, extra.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise BenchError(f"bench models speed: --variant {variant!r}: expected {name}:NAME=VALUE, "
                             f"e.g. {name}:filters=16")
        params[key.strip()] = yaml.safe_load(value)
    return params


def epoch_seconds(model, X, y) -> list[float]:
    """Wall time of every epoch of one ``fit`` (between the model's epoch hooks)."""
    times: list[float] = []
    last = [time.perf_counter()]

    def clock(epoch, metrics, _model):
        now = time.perf_counter()
        times.append(now - last[0])
        last[0] = now

    model.fit(X, y, on_epoch=clock)
    return times


def time_network(name: str, X: list[np.ndarray], y: np.ndarray, features: str, epochs: int, rounds: int,
                 variants: list[str], log=print) -> SpeedResult:
    from . import get_model

    lengths = np.array([len(s) for s in X])
    result = SpeedResult(name, features, len(X), (int(lengths.min()), int(lengths.max()), float(lengths.mean())))
    for round_ in range(rounds):
        for variant in variants:
            model = get_model(name, epochs=epochs, validation_fraction=0.0, **variant_params(variant))
            times = epoch_seconds(model, X, y)
            result.first_epoch_s.setdefault(variant, []).append(times[0])
            result.epoch_s.setdefault(variant, []).extend(times[1:])
            log(f"{name} round {round_ + 1}/{rounds} {variant}: first epoch {times[0]:.1f} s, then "
                + ", ".join(f"{t:.1f}" for t in times[1:]) + " s")
    return result


def load_network_inputs(features: str, feature_params: dict, data_dir, limit: int | None, progress: bool):
    """Frames of every EMO-DB utterance (through the feature cache), globally standardised."""
    from ..corpora import open_corpus
    from ..features import get_feature_set
    from ..features.extract import extract_features

    utterances = open_corpus("emodb", data_dir).utterances()[:limit]
    extraction = extract_features([(u.id, u.path) for u in utterances], get_feature_set(features, **feature_params),
                                  progress=progress)
    kept = [u for u in utterances if u.id in extraction.features]
    X = [extraction.features[u.id]["frames"].astype(np.float32) for u in kept]
    stacked = np.concatenate(X)
    mean, std = stacked.mean(axis=0), stacked.std(axis=0) + 1e-8
    return [(x - mean) / std for x in X], np.array([u.emotion for u in kept])


def run_model_speed(data_dir=None, models: list[str] | None = None, epochs: int = 3, rounds: int = 2,
                    variants: list[str] | None = None, limit: int | None = None, progress: bool = True,
                    log=print) -> list[SpeedResult]:
    from ..errors import BenchError

    variants = variants or list(VARIANTS)
    for variant in variants:
        variant_params(variant)  # a misspelt variant fails before any extraction
    unknown = sorted(set(models or []) - set(NETWORKS))
    if unknown:
        raise BenchError(f"bench models speed: unknown model {', '.join(unknown)}; models: {', '.join(NETWORKS)}")
    if epochs < 2:
        raise BenchError("--epochs must be at least 2: the first epoch (tracing, compilation) is timed apart")
    from . import get_model

    models = list(models or DEFAULT_NETWORKS)
    for name in models:
        for variant in variants:
            get_model(name, **variant_params(variant))  # a parameter the network lacks fails here, not after a fit
    results = []
    for name in models:
        features, feature_params = NETWORKS[name]
        X, y = load_network_inputs(features, feature_params, data_dir, limit, progress)
        results.append(time_network(name, X, y, features, epochs, rounds, variants, log))
    return results
