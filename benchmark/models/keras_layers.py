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


# --- frame masks carried by hand through 2-D convolutions (crnn) -------------------------------
# Conv2D and pooling layers drop Keras masks, so the crnn computes the (batch, time) mask from its
# input once, zeroes padded frames after every convolution (else a bias would leak into the valid
# frames beside them through the next kernel) and downsamples the mask with every time pooling.


@keras.saving.register_keras_serializable(package="ser_bench")
class FrameMask(keras.layers.Layer):
    """(batch, time, features) -> (batch, time) float mask: 1 where a frame is not all zeros (padding)."""

    def call(self, inputs):
        return ops.cast(ops.any(ops.not_equal(inputs, 0.0), axis=-1), inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape[:2]


@keras.saving.register_keras_serializable(package="ser_bench")
class ZeroPadded(keras.layers.Layer):
    """[x (batch, time, ...), mask (batch, time)] -> x with padded frames set to exactly zero."""

    def call(self, inputs):
        values, mask = inputs
        return values * ops.reshape(mask, ops.shape(mask) + (1,) * (len(values.shape) - 2))

    def compute_output_shape(self, input_shape):
        return input_shape[0]


@keras.saving.register_keras_serializable(package="ser_bench")
class PoolFrameMask(keras.layers.Layer):
    """Downsample a (batch, time) mask as ``MaxPooling2D((pool, .), padding="same")`` does time:
    a pooled frame is valid when any frame it covers is."""

    def __init__(self, pool: int, **kwargs):
        super().__init__(**kwargs)
        self.pool = pool

    def call(self, frame_mask):  # not named ``mask``: Keras reserves that argument for its own masks
        pooled = ops.max_pool(frame_mask[:, :, None], pool_size=self.pool, strides=self.pool, padding="same")
        return pooled[:, :, 0]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], None if input_shape[1] is None else -(-input_shape[1] // self.pool))

    def get_config(self):
        return {**super().get_config(), "pool": self.pool}


@keras.saving.register_keras_serializable(package="ser_bench")
class BoolMask(keras.layers.Layer):
    """Float (batch, time) mask -> bool, the form LSTM and attention layers take as ``mask=``."""

    def call(self, frame_mask):
        return ops.cast(frame_mask, "bool")

    def compute_output_shape(self, input_shape):
        return input_shape
