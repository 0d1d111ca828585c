"""Attention layers that honour Keras masks: padded frames get exactly zero weight.

Registered as serialisable so a logged model reloads (``import benchmark.models`` first).
"""

from __future__ import annotations

import keras
from keras import ops

NEG_INF = -1e9


def masked_softmax(scores, mask):
    """Softmax over time that gives padded frames (mask False) zero weight."""
    if mask is None:
        return ops.softmax(scores, axis=1)
    mask = ops.cast(mask, "bool")
    weights = ops.softmax(ops.where(mask, scores, ops.full_like(scores, NEG_INF)), axis=1)
    return weights * ops.cast(mask, weights.dtype)


class TimeMaskConsumer(keras.layers.Layer):
    """A layer that takes the time mask in and, having no time axis left (or no use for one), passes none on."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def compute_mask(self, inputs, mask=None):
        return None


@keras.saving.register_keras_serializable(package="ser_bench")
class LocalAttentionPooling(TimeMaskConsumer):
    """Mirsamadi et al. (2017) local attention: alpha_t = softmax_t(u^T y_t), z = sum_t alpha_t y_t.

    ``u`` is a trainable weight of this layer; the report held it in a Dense layer fed by a
    constant input, which is the same function with an extra input to carry around.
    """

    def build(self, input_shape):
        self.u = self.add_weight(name="u", shape=(input_shape[-1],),
                                 initializer=keras.initializers.RandomNormal(stddev=0.05))

    def attention(self, inputs, mask=None):
        return masked_softmax(ops.tensordot(inputs, self.u, axes=[[2], [0]]), mask)

    def call(self, inputs, mask=None):
        return ops.sum(self.attention(inputs, mask)[:, :, None] * inputs, axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])


@keras.saving.register_keras_serializable(package="ser_bench")
class MaskedTimeSoftmax(TimeMaskConsumer):
    """(batch, time, 1) scores -> (batch, time) attention weights; the seed's Flatten+Softmax."""

    def call(self, scores, mask=None):
        return masked_softmax(ops.squeeze(scores, axis=-1), mask)

    def compute_output_shape(self, input_shape):
        return input_shape[:2]


@keras.saving.register_keras_serializable(package="ser_bench")
class WeightedSum(TimeMaskConsumer):
    """sum_t alpha_t y_t for inputs [y (batch, time, dim), alpha (batch, time)]; the seed's Dot."""

    def call(self, inputs, mask=None):
        sequence, weights = inputs
        return ops.sum(sequence * weights[:, :, None], axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], input_shape[0][2])
