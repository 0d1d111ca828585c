"""Numpy-only forward passes of the seed's two attention BLSTMs, so that ``bench predict`` of a
network starts without TensorFlow.

Why: importing TensorFlow and Keras was ~8 s of a 16.5-18.4 s one-file ``bench predict`` of an
attn_blstm model on this machine; issue 9 asks for < 6 s. At inference the networks are a few
matrix products and one LSTM recursion per direction, written out below from Keras 3's own
definitions (LSTM gates in the order input, forget, cell, output; sigmoid recurrent activation;
``Masking`` hides every all-zero frame: the LSTM carries its state over a hidden frame and the
attention gives it weight exactly zero; so zero padding changes nothing and utterances of similar
length go through in batches, as in Keras). Dropout is the identity at inference.
An ensemble (``--param ensemble=K``) is the mean of its members' probabilities, as in its joined
Keras model.

Keras stays the reference: :meth:`benchmark.models.keras_base.KerasSequenceClassifier.portable`
reads the trained weights and keeps this form only if it reproduces the Keras model's own
``predict_proba`` on probe sequences to ``PARITY_ATOL`` (Keras computes in float32, this in
float64). A network it does not know (``crnn``, another layer stack) has no portable form and
loads through Keras as before.
"""

from __future__ import annotations

import numpy as np

KIND = "keras_network"
FORMAT_VERSION = 1  # bump when the arrays' meaning changes: older files then fall back to the model
PARITY_ATOL = 1e-4  # on probabilities; float32 (Keras) against float64 (here) over hundreds of steps
ARCHITECTURES = ("attn_blstm", "local_attn_blstm")

# weights each architecture needs, per member: name -> number of dimensions
_WEIGHTS = {
    "attn_blstm": {"forward_kernel": 2, "forward_recurrent": 2, "forward_bias": 1, "backward_kernel": 2,
                   "backward_recurrent": 2, "backward_bias": 1, "attention_dense": 2, "attention_score": 2,
                   "output_kernel": 2, "output_bias": 1},
    "local_attn_blstm": {"dense1_kernel": 2, "dense1_bias": 1, "dense2_kernel": 2, "dense2_bias": 1,
                         "forward_kernel": 2, "forward_recurrent": 2, "forward_bias": 1, "backward_kernel": 2,
                         "backward_recurrent": 2, "backward_bias": 1, "attention_u": 1,
                         "output_kernel": 2, "output_bias": 1},
}


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # = 1 / (1 + exp(-x)), without overflow


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _masked_softmax(scores, mask):
    """Keras' ``masked_softmax`` over time: hidden frames get a score of -1e9, then weight exactly zero."""
    return _softmax(np.where(mask, scores, -1e9)) * mask


def _lstm(x, mask, kernel, recurrent, bias, reverse: bool):
    """One direction of a Keras LSTM over (batch, time, features): outputs (batch, time, units) and
    the final h (batch, units). A hidden frame (padding included) leaves the state as it was."""
    units = recurrent.shape[0]
    inputs = x @ kernel + bias
    h, c = np.zeros((len(x), units)), np.zeros((len(x), units))
    out = np.zeros(x.shape[:2] + (units,))
    for t in (range(x.shape[1] - 1, -1, -1) if reverse else range(x.shape[1])):
        z = inputs[:, t] + h @ recurrent
        new_c = _sigmoid(z[:, units:2 * units]) * c + _sigmoid(z[:, :units]) * np.tanh(z[:, 2 * units:3 * units])
        new_h = _sigmoid(z[:, 3 * units:]) * np.tanh(new_c)
        keep = mask[:, t, None]
        h, c = np.where(keep, new_h, h), np.where(keep, new_c, c)
        out[:, t] = h
    return out, h


def _blstm(x, mask, w):
    forward, forward_h = _lstm(x, mask, w["forward_kernel"], w["forward_recurrent"], w["forward_bias"], False)
    backward, backward_h = _lstm(x, mask, w["backward_kernel"], w["backward_recurrent"], w["backward_bias"], True)
    return np.concatenate([forward, backward], axis=2), forward_h, backward_h


def _pool(alpha, sequence):
    return np.einsum("bt,btd->bd", alpha, sequence)


def _attn_blstm(x, mask, w):
    sequence, forward_h, backward_h = _blstm(x, mask, w)
    alpha = _masked_softmax((np.tanh(sequence @ w["attention_dense"]) @ w["attention_score"])[:, :, 0], mask)
    combined = np.concatenate([_pool(alpha, sequence), forward_h, backward_h], axis=1)
    return _softmax(combined @ w["output_kernel"] + w["output_bias"])


def _local_attn_blstm(x, mask, w):
    x = np.maximum(x @ w["dense1_kernel"] + w["dense1_bias"], 0.0)
    x = np.maximum(x @ w["dense2_kernel"] + w["dense2_bias"], 0.0)
    sequence, _, _ = _blstm(x, mask, w)
    alpha = _masked_softmax(sequence @ w["attention_u"], mask)
    return _softmax(_pool(alpha, sequence) @ w["output_kernel"] + w["output_bias"])


_FORWARD = {"attn_blstm": _attn_blstm, "local_attn_blstm": _local_attn_blstm}


def member_arrays(arrays: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """The per-member weights stored as ``member<k>.<name>``."""
    n_members = int(arrays["n_members"])
    if not 0 < n_members <= sum(name.endswith(".output_bias") for name in arrays):
        raise ValueError(f"{n_members} networks announced, fewer stored")
    members = []
    for k in range(n_members):
        prefix = f"member{k}."
        members.append({name[len(prefix):]: np.asarray(value, np.float64) for name, value in arrays.items()
                        if name.startswith(prefix)})
    return members


class PortableNetwork:
    """``predict_proba`` of an exported attn_blstm / local_attn_blstm (or an ensemble of them), numpy only."""

    input_kind = "sequence"  # what benchmark.model_input asks of a model
    loads_tensorflow = False

    def __init__(self, arrays: dict[str, np.ndarray]):
        self.architecture = str(arrays["architecture"])
        self.members = member_arrays(arrays)
        self.n_features = int(arrays["n_features"])
        self.n_classes = self.members[0]["output_bias"].shape[0]

    def predict_proba(self, sequences, batch_size: int = 32) -> np.ndarray:
        """Utterances of similar length batched together and zero-padded, as Keras' own
        ``predict_proba`` does; the padding is hidden like any all-zero frame."""
        from .errors import BenchError

        sequences = [np.atleast_2d(np.asarray(x, np.float64)) for x in sequences]
        for x in sequences:
            if x.shape[1] != self.n_features:
                raise BenchError(f"the model takes {self.n_features} features per frame, got {x.shape[1]}")
            if not np.isfinite(x).all():
                raise BenchError("features contain NaN or infinity; check the audio files")
        forward = _FORWARD[self.architecture]
        out = np.zeros((len(sequences), self.n_classes))
        order = np.argsort([len(x) for x in sequences], kind="stable")
        for start in range(0, len(order), batch_size):
            index = order[start:start + batch_size]
            batch = np.zeros((len(index), max(len(sequences[i]) for i in index), self.n_features))
            for row, i in enumerate(index):
                batch[row, :len(sequences[i])] = sequences[i]
            mask = np.any(batch != 0.0, axis=2)
            out[index] = np.mean([forward(batch, mask, w) for w in self.members], axis=0)
        return out


def validated(arrays: dict[str, np.ndarray], path) -> PortableNetwork:
    """A :class:`PortableNetwork` after checking the file's version, architecture and shapes."""
    if int(arrays.get("format_version", 0)) != FORMAT_VERSION:
        raise ValueError(f"{path}: portable format {arrays.get('format_version')}, this version reads {FORMAT_VERSION}")
    architecture = str(arrays.get("architecture"))
    if architecture not in _WEIGHTS:
        raise ValueError(f"{path}: unknown network architecture {architecture!r}")
    members = member_arrays(arrays)
    if not members:
        raise ValueError(f"{path}: no network in the file")
    for weights in members:
        if {name: weights[name].ndim for name in weights} != _WEIGHTS[architecture]:
            raise ValueError(f"{path}: the weights do not match a {architecture}")
        if not _shapes_fit(weights, architecture, int(arrays["n_features"]), members[0]["output_bias"].shape[0]):
            raise ValueError(f"{path}: inconsistent array shapes")
    return PortableNetwork(arrays)


def _shapes_fit(w: dict[str, np.ndarray], architecture: str, n_features: int, n_classes: int) -> bool:
    """Every weight's shape follows from the input width, the layer sizes and the class count."""
    units = w["forward_recurrent"].shape[0]
    if architecture == "local_attn_blstm":
        dense = w["dense1_kernel"].shape[1]
        lstm_in = dense
        expected = {"dense1_kernel": (n_features, dense), "dense1_bias": (dense,), "dense2_kernel": (dense, dense),
                    "dense2_bias": (dense,), "attention_u": (2 * units,), "output_kernel": (2 * units, n_classes)}
    else:
        lstm_in = n_features
        expected = {"attention_dense": (2 * units, w["attention_dense"].shape[1]),
                    "attention_score": (w["attention_dense"].shape[1], 1), "output_kernel": (4 * units, n_classes)}
    for direction in ("forward", "backward"):
        expected.update({f"{direction}_kernel": (lstm_in, 4 * units), f"{direction}_recurrent": (units, 4 * units),
                         f"{direction}_bias": (4 * units,)})
    expected["output_bias"] = (n_classes,)
    return all(w[name].shape == shape for name, shape in expected.items())
