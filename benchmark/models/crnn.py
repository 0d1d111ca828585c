"""``crnn``: 2-D convolutions over time x frequency -> BLSTM -> attention pooling -> softmax.

After the 3-D attention CRNN of Chen et al. (IEEE SPL 2018, 82.8% UAR on EMO-DB speaker-
independent): the ``logmel`` frames are read as a (bands x 3) image per frame (static, delta,
delta-delta as channels), convolution blocks (5x3 kernels, ReLU, max pooling over frequency and,
in the first ``time_pools`` blocks, over time) feed a projection, a BLSTM and attention pooling.
Sized for CPUs by default (Chen et al. used 128/256 filters, 6 conv layers, 768 projection units).
``growth`` multiplies the filters after the first block (2: doubled, as Chen et al.) and
``first_band_pool`` is the first block's frequency pooling (2 by default; Chen et al. pool 4 after
their first layer): the two levers that cut the convolutions' cost most (README, crnn speed).

Masking is exact, as in the other networks: the (batch, time) mask comes from the input (all-zero
frames are padding), padded frames are zeroed after every convolution so no bias leaks through
the next kernel into valid frames, the mask is max-pooled with every time pooling (ReLU outputs
are >= 0, so a padded zero never wins a max over a valid value), and the BLSTM and attention
take the pooled mask. An utterance's prediction is the same alone or batched (tested).
"""

from __future__ import annotations

from ..errors import BenchError
from ..models import register_model
from typing import Annotated

from annotated_types import Ge, Interval

from ..config import Seed
from .keras_base import (SNR, ClassWeight, Count, Fraction, KerasSequenceClassifier, NonNegative, Positive,
                         recipe_search_space)


@register_model
class CRNN(KerasSequenceClassifier):
    name = "crnn"
    default_features = "logmel"
    description = "2-D conv blocks over time x frequency -> BLSTM -> masked attention pooling (after Chen et al. 2018)"

    def __init__(self, filters: Count = 32, conv_blocks: Count = 3, time_pools: NonNegative = 2, channels: Count = 3,
                 growth: Count = 2, first_band_pool: Count = 2,
                 projection_units: Count = 128, lstm_units: Count = 64, dense_units: Count = 64, dropout: Fraction = 0.3,
                 epochs: Count = 100, batch_size: Count = 32, learning_rate: Positive = 1e-3, patience: NonNegative = 15,
                 validation_fraction: Fraction = 0.15, class_weight: ClassWeight = "balanced", clipnorm: Annotated[float, Ge(0)] = 1.0,
                 lr_patience: NonNegative = 5, lr_factor: Annotated[float, Interval(gt=0, lt=1)] = 0.5, time_masks: NonNegative = 0, time_mask_width: NonNegative = 20,
                 feature_masks: NonNegative = 0, feature_mask_width: NonNegative = 4, mixup_alpha: Annotated[float, Ge(0)] = 0.0,
                 speed_perturb: bool = False, noise_snr_db: SNR = None, ensemble: Count = 1, bucketing: bool = True, jit_compile: bool = False, seed: Seed = 0, verbose: int = 0):
        self.keep_params(locals())

    def build(self, n_features: int, n_classes: int):
        import keras
        from keras import layers

        from .keras_layers import BoolMask, FrameMask, LocalAttentionPooling, PoolFrameMask, ZeroPadded

        if n_features % self.channels:
            raise BenchError(f"crnn: {n_features} features per frame do not split into channels={self.channels}; "
                             "use the logmel features (3 x 64) or --param channels=1")
        bands = n_features // self.channels
        inputs = keras.Input((None, n_features), name="features")
        mask = FrameMask(name="frame_mask")(inputs)
        x = layers.Reshape((-1, self.channels, bands))(inputs)
        x = layers.Permute((1, 3, 2), name="time_band_channel")(x)
        for block in range(self.conv_blocks):
            x = layers.Conv2D(self.filters * (1 if block == 0 else self.growth), (5, 3), padding="same",
                              activation="relu", name=f"conv_{block + 1}")(x)
            x = ZeroPadded(name=f"zero_padded_{block + 1}")([x, mask])
            time_pool = 2 if block < self.time_pools else 1
            band_pool = self.first_band_pool if block == 0 else 2
            x = layers.MaxPooling2D((time_pool, band_pool), padding="same", name=f"pool_{block + 1}")(x)
            if time_pool > 1:
                mask = PoolFrameMask(time_pool, name=f"pool_mask_{block + 1}")(mask)
            bands = -(-bands // band_pool)
        x = layers.Reshape((-1, bands * x.shape[-1]), name="frames")(x)
        x = layers.Dense(self.projection_units, activation="relu", name="projection")(x)
        x = layers.Dropout(self.dropout)(x)
        frame_mask = BoolMask(name="bool_mask")(mask)
        x = layers.Bidirectional(layers.LSTM(self.lstm_units, return_sequences=True), name="blstm")(x, mask=frame_mask)
        x = LocalAttentionPooling(name="attention")(x, mask=frame_mask)
        x = layers.Dense(self.dense_units, activation="relu", name="dense")(x)
        x = layers.Dropout(self.dropout)(x)
        outputs = layers.Dense(n_classes, activation="softmax", name="output")(x)
        return keras.Model(inputs, outputs, name="crnn")

    @staticmethod
    def search_space(trial):
        return {"filters": trial.suggest_categorical("filters", [16, 32, 64]),
                "conv_blocks": trial.suggest_int("conv_blocks", 2, 4),
                "lstm_units": trial.suggest_categorical("lstm_units", [32, 64, 128]),
                "dropout": trial.suggest_float("dropout", 0.1, 0.5), **recipe_search_space(trial)}
