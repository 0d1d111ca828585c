"""The torch side of the SSL feature sets: one model per process, signals embedded in batches.

Imported only when features are computed (the registry skips ``_`` modules), so listing or
importing feature sets never loads torch.

Batching must not change the numbers. Models whose CNN front end normalises per *layer*
(``feat_extract_norm == "layer"``: the large wav2vec2/HuBERT/WavLM) accept zero-padded batches
with an attention mask and return the same frames as one by one. Those with *group* norm (the base
models) normalise over the whole padded length, so padding would leak into every frame: they are
only ever batched with chunks of exactly the same length (in practice mostly one by one).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .ssl_weights import SSLModelError

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000


def split_signal(signal: np.ndarray, max_samples: int) -> list[np.ndarray]:
    """Equal chunks of at most ``max_samples`` (no short tail that would give a frame or two)."""
    n_chunks = max(1, -(-len(signal) // max_samples))
    size = -(-len(signal) // n_chunks)
    return [signal[start:start + size] for start in range(0, len(signal), size)]


def receptive_field(config) -> int:
    """Samples the CNN front end needs for one output frame (400 = 25 ms for the usual models)."""
    field, stride = 1, 1
    for kernel, step in zip(config.conv_kernel, config.conv_stride):
        field += (kernel - 1) * stride
        stride *= step
    return field


@dataclass
class Encoder:
    model: Any
    processor: Any
    device: str
    masked: bool  # padded batches with an attention mask give the same frames as one by one
    min_samples: int
    n_layers: int

    def embed(self, signals: list[np.ndarray], layers, max_chunk_s: float, batch_size: int) -> list[np.ndarray]:
        """(frames x features) of every signal: its chunks embedded, then joined in time."""
        max_samples = int(round(max_chunk_s * SAMPLE_RATE))
        chunks = []  # (signal index, chunk index, samples)
        for i, signal in enumerate(signals):
            for j, chunk in enumerate(split_signal(np.asarray(signal, dtype=np.float32), max_samples)):
                if len(chunk) < self.min_samples:  # shorter than one frame's receptive field: zero-pad
                    chunk = np.pad(chunk, (0, self.min_samples - len(chunk)))
                chunks.append((i, j, chunk))
        done: dict[tuple[int, int], np.ndarray] = {}
        for batch in self.batches(chunks, batch_size):
            for (i, j, _), frames in zip(batch, self.forward([c for _, _, c in batch], layers)):
                done[(i, j)] = frames
        return [np.concatenate([done[key] for key in sorted(k for k in done if k[0] == i)]) for i in range(len(signals))]

    def batches(self, chunks: list, batch_size: int):
        """Similar lengths together (less padding); equal lengths only for group-norm models."""
        ordered = sorted(chunks, key=lambda c: len(c[2]))
        group: list = []
        for chunk in ordered:
            if group and (len(group) == batch_size or (not self.masked and len(chunk[2]) != len(group[0][2]))):
                yield group
                group = []
            group.append(chunk)
        if group:
            yield group

    def forward(self, arrays: list[np.ndarray], layers) -> list[np.ndarray]:
        inputs = self.processor(arrays, sampling_rate=SAMPLE_RATE, padding=True, return_attention_mask=self.masked,
                                return_tensors="pt")
        values = inputs["input_values"].to(self.device)
        mask = inputs["attention_mask"].to(self.device) if self.masked else None
        with torch.inference_mode():
            hidden = self.model(values, attention_mask=mask, output_hidden_states=True).hidden_states
            chosen = select_layers(hidden, layers)
            lengths = self.model._get_feat_extract_output_lengths(torch.tensor([len(a) for a in arrays]))
            return [chosen[b, : int(lengths[b])].float().cpu().numpy() for b in range(len(arrays))]


def select_layers(hidden: tuple, layers) -> torch.Tensor:
    """One hidden state, several concatenated along features, or the mean of all of them."""
    if layers == "mean":
        return torch.stack(hidden).mean(0)
    if isinstance(layers, int):
        return hidden[layers]
    return torch.cat([hidden[index] for index in layers], dim=-1)


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SSLModelError(f"--feature-param device={device}: torch sees no GPU here (torch {torch.__version__}); "
                            f"use device=cpu, or install a CUDA build of torch")
    return device


@lru_cache(maxsize=2)
def load_encoder(folder: Path, device: str, label: str) -> Encoder:
    """The model and its feature extractor from a local folder (never the network), in eval mode."""
    import transformers
    from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, Wav2Vec2FeatureExtractor

    transformers.utils.logging.disable_progress_bar()
    device = resolve_device(device)
    if device.startswith("cuda"):
        torch.backends.cudnn.allow_tf32 = False  # keep GPU numbers within float rounding of the CPU's
    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
        model, info = AutoModel.from_pretrained(folder, local_files_only=True, output_loading_info=True)
    except (OSError, ValueError, KeyError) as exc:
        raise SSLModelError(f"model {label} ({folder}) cannot be loaded by transformers "
                            f"{transformers.__version__}: {str(exc).splitlines()[0][:200]}") from None
    missing = [key for key in info.get("missing_keys", []) if "masked_spec_embed" not in key]
    if missing:
        log.warning("model %s: %d weights missing from the checkpoint and randomly initialised (%s ...); "
                    "the embeddings are not the pre-trained ones", label, len(missing), missing[0])
    if not hasattr(config, "conv_kernel") or not hasattr(model, "_get_feat_extract_output_lengths"):
        raise SSLModelError(f"model {label} ({type(model).__name__}) is not a wav2vec2-style speech encoder "
                            f"(raw waveform in, CNN front end); use wav2vec2, HuBERT, WavLM or a relative")
    try:
        processor = AutoFeatureExtractor.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError):  # some hub repos ship no preprocessor_config.json (HuBERT base)
        log.info("model %s has no preprocessor_config.json: raw waveform, no normalisation", label)
        processor = Wav2Vec2FeatureExtractor(do_normalize=False)
    if getattr(processor, "sampling_rate", SAMPLE_RATE) != SAMPLE_RATE:
        raise SSLModelError(f"model {label} expects {processor.sampling_rate} Hz audio; ser-bench feeds 16 kHz")
    model.eval().to(device)
    masked = getattr(config, "feat_extract_norm", "group") == "layer"
    return Encoder(model, processor, device, masked, receptive_field(config), int(config.num_hidden_layers))
