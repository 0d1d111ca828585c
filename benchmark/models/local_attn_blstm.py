"""``local_attn_blstm``: the report's code 1 (after Mirsamadi et al., ICASSP 2017).

Masking -> Dense -> Dropout -> Dense -> Dropout -> BLSTM -> local attention pooling -> softmax.
"""

from __future__ import annotations

from ..models import register_model
from typing import Annotated

from annotated_types import Ge, Interval

from ..config import Seed
from .keras_base import (SNR, ClassWeight, Count, Fraction, KerasSequenceClassifier, NonNegative, Positive,
                         recipe_search_space)


@register_model
class LocalAttentionBLSTM(KerasSequenceClassifier):
    name = "local_attn_blstm"
    default_features = "handcrafted36"
    description = "Masked dense layers + BLSTM + local attention pooling (seed code 1)"

    def __init__(self, dense_units: Count = 512, lstm_units: Count = 128, dropout: Fraction = 0.5,
                 epochs: Count = 100, batch_size: Count = 32, learning_rate: Positive = 1e-3, patience: NonNegative = 15,
                 validation_fraction: Fraction = 0.15, class_weight: ClassWeight = "balanced", clipnorm: Annotated[float, Ge(0)] = 1.0,
                 lr_patience: NonNegative = 5, lr_factor: Annotated[float, Interval(gt=0, lt=1)] = 0.5, time_masks: NonNegative = 0, time_mask_width: NonNegative = 20,
                 feature_masks: NonNegative = 0, feature_mask_width: NonNegative = 4, mixup_alpha: Annotated[float, Ge(0)] = 0.0,
                 speed_perturb: bool = False, noise_snr_db: SNR = None, ensemble: Count = 1, bucketing: bool = True, jit_compile: bool = False, seed: Seed = 0, verbose: int = 0):
        self.keep_params(locals())

    def build(self, n_features: int, n_classes: int):
        import keras
        from keras import layers

        from .keras_layers import LocalAttentionPooling

        inputs = keras.Input((None, n_features), name="features")
        x = layers.Masking(mask_value=0.0)(inputs)
        x = layers.Dense(self.dense_units, activation="relu")(x)
        x = layers.Dropout(self.dropout)(x)
        x = layers.Dense(self.dense_units, activation="relu")(x)
        x = layers.Dropout(self.dropout)(x)
        x = layers.Bidirectional(layers.LSTM(self.lstm_units, return_sequences=True))(x)
        x = LocalAttentionPooling(name="local_attention")(x)
        outputs = layers.Dense(n_classes, activation="softmax")(x)
        return keras.Model(inputs, outputs, name="local_attn_blstm")

    def portable_weights(self, member):
        def of_type(name):
            return [layer for layer in member.layers if type(layer).__name__ == name]

        (first, second, output), (blstm,), (attention,) = (of_type("Dense"), of_type("Bidirectional"),
                                                            of_type("LocalAttentionPooling"))
        names = ("forward_kernel", "forward_recurrent", "forward_bias", "backward_kernel", "backward_recurrent",
                 "backward_bias")
        return {"dense1_kernel": first.get_weights()[0], "dense1_bias": first.get_weights()[1],
                "dense2_kernel": second.get_weights()[0], "dense2_bias": second.get_weights()[1],
                **dict(zip(names, blstm.get_weights())), "attention_u": attention.get_weights()[0],
                "output_kernel": output.get_weights()[0], "output_bias": output.get_weights()[1]}

    @staticmethod
    def search_space(trial):
        return {"dense_units": trial.suggest_categorical("dense_units", [64, 128, 256, 512]),
                "lstm_units": trial.suggest_categorical("lstm_units", [32, 64, 128, 256]),
                "dropout": trial.suggest_float("dropout", 0.1, 0.6), **recipe_search_space(trial)}
