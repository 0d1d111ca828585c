"""Self-supervised speech embeddings (wav2vec 2.0, HuBERT, WavLM, any Hugging Face audio encoder).

``wav2vec2``, ``hubert`` and ``wavlm`` are presets of the generic ``hf`` set, whose ``model`` option
is a Hugging Face hub id or a local folder (``--features hf:<id or folder>`` sets it). Each file
gives the chosen hidden layer(s) per frame (``frames``, 50 per second, for the sequence models)
and their mean and standard deviation over time (``functionals``, for SVM/XGBoost).

Why it is built this way:

- torch and transformers are an optional extra (``pip install -e ".[ssl]"``) and are imported
  only inside methods (:mod:`._ssl_torch`), so ``import benchmark.features`` stays light.
- The cache key names the *weights*, not just the name: a hub model is pinned to the commit of
  its snapshot (and the logged model's metadata carries that commit), a local folder to a SHA-256
  of its files. The layer choice and pooling are in the key; batch size and device are not (they
  change speed, not the numbers beyond float rounding).
- One model per machine: extraction runs in one worker process (torch already uses every core
  inside it, and a second copy of a 95M-360M parameter model would only cost memory), which
  embeds ``batch_size`` files per call.
- Hub access happens in the main process before any worker starts: a model already in the
  Hugging Face cache loads with no network; a missing one is downloaded once, or, offline, gives
  one line saying what to download and where it goes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, ClassVar

import numpy as np

from ..errors import BenchError
from ..features import register_feature_set
from .base import FEATURE_CODE_VERSION, FeatureConfig, FeatureSet, package_version
from .ssl_weights import ModelSource, SSLModelError, resolve_source

__all__ = ["HFEmbeddings", "SSLConfig", "SSLModelError", "hf_feature_set"]


HF_PREFIX = "hf:"
POOLINGS = ("mean_std", "mean")


@dataclass(frozen=True)
class SSLConfig(FeatureConfig):
    model: str = ""  # hub id (facebook/wav2vec2-base) or local folder saved with save_pretrained
    revision: str | None = None  # hub branch, tag or commit; None = main (pinned to its commit when resolved)
    # index into the hidden states transformers returns (0 = CNN/input embedding, 1..N = transformer
    # layers, negative from the end), a list of indices (concatenated), or "mean" of all of them
    layers: int | tuple[int, ...] | str = "mean"
    frames: bool = True  # keep per-frame embeddings (sequence models); False stores only the pooled vector
    pooling: str = "mean_std"  # utterance vector: mean and std over frames, or mean alone
    max_chunk_s: float = 20.0  # longer files are cut into equal chunks of at most this length
    device: str = "auto"  # cpu, cuda, cuda:N, or auto (cuda when a GPU is visible)
    batch_size: int = 8  # files per forward pass


def parse_layers(value: Any) -> int | tuple[int, ...] | str:
    """``6``, ``-1``, ``[4, 8]``, ``"4,8"`` or ``"mean"`` -> the config's canonical form."""
    if isinstance(value, str):
        text = value.strip().strip("[]()")
        if text == "mean":
            return "mean"
        try:
            value = [int(part) for part in text.split(",")]
        except ValueError:
            raise BenchError(f"--feature-param layers={value!r}: use an index (6, -1), a list (4,8) or mean") from None
    if isinstance(value, bool):
        raise BenchError(f"--feature-param layers={value!r}: use an index (6, -1), a list (4,8) or mean")
    if isinstance(value, int):
        return value
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return value[0] if len(value) == 1 else tuple(value)
    raise BenchError(f"--feature-param layers={value!r}: use an index (6, -1), a list (4,8) or mean")


@register_feature_set
class HFEmbeddings(FeatureSet):
    """Hidden states of a Hugging Face speech encoder (wav2vec2/HuBERT/WavLM architectures)."""

    name = "hf"
    description = "hidden states of any Hugging Face speech encoder: --features hf:<hub id or folder>"
    level = "frame"
    config_class = SSLConfig
    label_ignores = ("model", "layers", "revision", "device", "batch_size")  # label() names model and layers
    libraries = ("numpy", "torch", "transformers")
    needs_own_process = True  # torch's threads and memory stay out of the process that trains the models
    max_workers: ClassVar[int] = 1  # one model per machine; torch uses every core inside it
    default_model: ClassVar[str] = ""
    nominal_width: ClassVar[int | None] = None  # hidden size of default_model, to list the set offline

    def __init__(self, config: SSLConfig | None = None, **overrides: Any):
        if config is None and "model" not in overrides and self.default_model:
            overrides["model"] = self.default_model
        super().__init__(config, **overrides)
        self.config = validated(self.config)
        self.level = "frame" if self.config.frames else "utterance"
        self._source: ModelSource | None = None
        self._encoder = None

    # --- identity --------------------------------------------------------------------------
    @property
    def source(self) -> ModelSource:
        if self._source is None:
            self._source = resolve_source(self.config.model, self.config.revision, self.name)
            if self._source.commit and self.config.revision != self._source.commit:
                # pin: the logged model's metadata then names the exact weights it was trained on
                self.config = replace(self.config, revision=self._source.commit)
            self._check_layers(self._model_shape()[1])  # a bad index fails here, before any file
        return self._source

    def label(self) -> str:
        return f"{self.name}[{self.config.model}, layers {self.config.layers}]"

    def describe(self) -> dict[str, Any]:
        config = {k: v for k, v in asdict(self.config).items() if k not in ("device", "batch_size", "revision")}
        return {
            "name": self.name,
            "config": config,
            "weights": self.source.identity,
            "code_version": FEATURE_CODE_VERSION,
            "libraries": {lib: package_version(lib) for lib in self.libraries},
        }

    @property
    def files_per_task(self) -> int:
        return self.config.batch_size

    @property
    def feature_names(self) -> list[str]:
        if not self.config.model:
            return []
        if self._source is None and self.config.model == self.default_model and self.nominal_width:
            width = self.nominal_width  # listing the presets needs no download
        else:
            width = self._model_shape()[0]
        return [f"layer{layer}_{i}" for layer in self._chosen_layers() for i in range(width)]

    def _chosen_layers(self) -> list[int | str]:
        layers = self.config.layers
        return [layers] if isinstance(layers, int) else list(layers) if isinstance(layers, tuple) else ["mean"]

    def _check_layers(self, n_layers: int) -> None:
        for index in self._chosen_layers():
            if isinstance(index, int):
                check_layer(index, n_layers, self.config.model)

    def _model_shape(self) -> tuple[int, int]:
        import json

        info = json.loads((self.source.folder / "config.json").read_text())
        if "hidden_size" not in info or "num_hidden_layers" not in info:
            raise SSLModelError(f"model {self.config.model}: its config.json has no hidden_size/num_hidden_layers; "
                                f"use a speech encoder such as wav2vec2, HuBERT or WavLM")
        return int(info["hidden_size"]), int(info["num_hidden_layers"])

    # --- extraction ------------------------------------------------------------------------
    def encoder(self):
        if self._encoder is None:
            from ._ssl_torch import load_encoder

            self._encoder = load_encoder(self.source.folder, self.config.device, self.config.model)
            self._check_layers(self._encoder.n_layers)
        return self._encoder

    def extract(self, signal: np.ndarray) -> dict[str, np.ndarray]:
        return self.extract_batch([signal])[0]

    def extract_batch(self, signals: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Embeddings of several signals in few forward passes; equal to one-by-one results."""
        frames = self.encoder().embed(signals, self.config.layers, self.config.max_chunk_s, self.config.batch_size)
        return [self._arrays(f) for f in frames]

    def _arrays(self, frames: np.ndarray) -> dict[str, np.ndarray]:
        pooled = [frames.mean(0)] + ([frames.std(0)] if self.config.pooling == "mean_std" else [])
        out = {"functionals": np.concatenate(pooled).astype(np.float32)}
        if self.config.frames:
            out["frames"] = frames.astype(np.float32)
        return out


def check_layer(index: int, n_layers: int, model: str) -> None:
    """transformers returns n_layers + 1 hidden states: 0 (input embedding) .. n_layers."""
    if not -(n_layers + 1) <= index <= n_layers:
        raise SSLModelError(f"--feature-param layers={index}: model {model} has hidden states 0..{n_layers} "
                            f"(0 = input embedding, {n_layers} = last layer; negative counts from the end)")


def validated(config: SSLConfig) -> SSLConfig:
    """Check options that need no model (the layer range is checked once the model is known)."""
    if config.pooling not in POOLINGS:
        raise BenchError(f"--feature-param pooling={config.pooling!r}: use {' or '.join(POOLINGS)}")
    if not (config.device in ("auto", "cpu", "cuda") or str(config.device).startswith("cuda:")):
        raise BenchError(f"--feature-param device={config.device!r}: use auto, cpu, cuda or cuda:N")
    if not isinstance(config.max_chunk_s, (int, float)) or config.max_chunk_s < 1:
        raise BenchError(f"--feature-param max_chunk_s={config.max_chunk_s!r}: use a number of seconds >= 1")
    if not isinstance(config.batch_size, int) or config.batch_size < 1:
        raise BenchError(f"--feature-param batch_size={config.batch_size!r}: use a whole number >= 1")
    model = str(config.model)
    if model.startswith(HF_PREFIX):
        model = model[len(HF_PREFIX):]
    revision = None if config.revision in (None, "") else str(config.revision)
    return replace(config, model=model, revision=revision, layers=parse_layers(config.layers),
                   max_chunk_s=float(config.max_chunk_s), frames=bool(config.frames))


@register_feature_set
class Wav2Vec2Embeddings(HFEmbeddings):
    name = "wav2vec2"
    description = "wav2vec 2.0 base (facebook/wav2vec2-base, 95M parameters) hidden states, 768 per frame"
    default_model = "facebook/wav2vec2-base"
    nominal_width = 768


@register_feature_set
class HubertEmbeddings(HFEmbeddings):
    name = "hubert"
    description = "HuBERT base (facebook/hubert-base-ls960, 95M parameters) hidden states, 768 per frame"
    default_model = "facebook/hubert-base-ls960"
    nominal_width = 768


@register_feature_set
class WavLMEmbeddings(HFEmbeddings):
    name = "wavlm"
    description = "WavLM base+ (microsoft/wavlm-base-plus, 95M parameters) hidden states, 768 per frame"
    default_model = "microsoft/wavlm-base-plus"
    nominal_width = 768


def hf_feature_set(name: str, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``hf:<model>`` -> ("hf", options with that model); a different ``model`` option is an error."""
    model = name[len(HF_PREFIX):]
    given = options.get("model")
    if given not in (None, "", model, f"{HF_PREFIX}{model}"):
        raise BenchError(f"--features {name} and --feature-param model={given} name two models; give one")
    return HFEmbeddings.name, {**options, "model": model}
