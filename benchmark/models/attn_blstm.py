"""``attn_blstm``: the report's code 2 "Attention_BLSTM", layer for layer.

BLSTM(256, sequences + states) -> Dense 256 (no bias, tanh) -> Dense 1 (no bias) -> softmax over
time ("alpha") -> weighted sum of BLSTM outputs, concatenated with the final forward/backward
hidden states -> Dense softmax. With input (157, 46) and 6 classes: 758,022 trainable parameters.
A Masking layer (no parameters) keeps padded frames out of the attention.
"""

from __future__ import annotations

from ..models import register_model
from typing import Annotated

from annotated_types import Ge, Interval

from ..config import Seed
from .keras_base import (SNR, ClassWeight, Count, Fraction, KerasSequenceClassifier, NonNegative, Positive,
                         recipe_search_space)


@register_model
class AttentionBLSTM(KerasSequenceClassifier):
    name = "attn_blstm"
    default_features = "librosa46"
    description = "BLSTM + attention over time + final states (seed code 2, 758,022 params at 157x46, 6 classes)"

    def __init__(self, units: Count = 256,
                 epochs: Count = 100, batch_size: Count = 32, learning_rate: Positive = 1e-3, patience: NonNegative = 15,
                 validation_fraction: Fraction = 0.15, class_weight: ClassWeight = "balanced", clipnorm: Annotated[float, Ge(0)] = 1.0,
                 lr_patience: NonNegative = 5, lr_factor: Annotated[float, Interval(gt=0, lt=1)] = 0.5, time_masks: NonNegative = 0, time_mask_width: NonNegative = 20,
                 feature_masks: NonNegative = 0, feature_mask_width: NonNegative = 4, mixup_alpha: Annotated[float, Ge(0)] = 0.0,
                 speed_perturb: bool = False, noise_snr_db: SNR = None, ensemble: Count = 1, bucketing: bool = True, jit_compile: bool = False, seed: Seed = 0, verbose: int = 0):
        self.keep_params(locals())

    def build(self, n_features: int, n_classes: int, n_frames: int | None = None):
        import keras
        from keras import layers

        from .keras_layers import MaskedTimeSoftmax, WeightedSum

        inputs = keras.Input((n_frames, n_features), name="features")
        masked = layers.Masking(mask_value=0.0)(inputs)
        sequence, forward_h, _, backward_h, _ = layers.Bidirectional(
            layers.LSTM(self.units, return_sequences=True, return_state=True), name="blstm")(masked)
        scores = layers.Dense(self.units, use_bias=False, activation="tanh", name="attention_dense")(sequence)
        scores = layers.Dense(1, use_bias=False, name="attention_score")(scores)
        alpha = MaskedTimeSoftmax(name="alpha")(scores)
        context = WeightedSum(name="dot")([sequence, alpha])
        states = layers.Concatenate(name="final_states")([forward_h, backward_h])
        combined = layers.Concatenate(name="context_and_states")([context, states])
        outputs = layers.Dense(n_classes, activation="softmax", name="output")(combined)
        return keras.Model(inputs, outputs, name="attn_blstm")

    def portable_weights(self, member):
        forward_kernel, forward_recurrent, forward_bias, backward_kernel, backward_recurrent, backward_bias = \
            member.get_layer("blstm").get_weights()
        output_kernel, output_bias = member.get_layer("output").get_weights()
        return {"forward_kernel": forward_kernel, "forward_recurrent": forward_recurrent, "forward_bias": forward_bias,
                "backward_kernel": backward_kernel, "backward_recurrent": backward_recurrent,
                "backward_bias": backward_bias, "attention_dense": member.get_layer("attention_dense").get_weights()[0],
                "attention_score": member.get_layer("attention_score").get_weights()[0],
                "output_kernel": output_kernel, "output_bias": output_bias}

    @staticmethod
    def search_space(trial):
        return {"units": trial.suggest_categorical("units", [32, 64, 128, 256]), **recipe_search_space(trial)}
