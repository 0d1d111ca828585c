"""``local_attn_blstm``: the report's code 1 (after Mirsamadi et al., ICASSP 2017).

Masking -> Dense -> Dropout -> Dense -> Dropout -> BLSTM -> local attention pooling -> softmax.
"""

from __future__ import annotations

from ..models import register_model
from .keras_base import KerasSequenceClassifier


@register_model
class LocalAttentionBLSTM(KerasSequenceClassifier):
    name = "local_attn_blstm"
    default_features = "handcrafted36"
    description = "Masked dense layers + BLSTM + local attention pooling (seed code 1)"

    def __init__(self, dense_units: int = 512, lstm_units: int = 128, dropout: float = 0.5,
                 epochs: int = 30, batch_size: int = 32, learning_rate: float = 1e-3, patience: int = 10,
                 validation_fraction: float = 0.15, class_weight: str | None = "balanced", seed: int = 0,
                 verbose: int = 0):
        self.dense_units, self.lstm_units, self.dropout = dense_units, lstm_units, dropout
        self.epochs, self.batch_size, self.learning_rate, self.patience = epochs, batch_size, learning_rate, patience
        self.validation_fraction, self.class_weight, self.seed, self.verbose = validation_fraction, class_weight, seed, verbose

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

    @staticmethod
    def search_space(trial):
        return {"dense_units": trial.suggest_categorical("dense_units", [64, 128, 256, 512]),
                "lstm_units": trial.suggest_categorical("lstm_units", [32, 64, 128, 256]),
                "dropout": trial.suggest_float("dropout", 0.1, 0.6),
                "learning_rate": trial.suggest_float("learning_rate", 1e-4, 3e-3, log=True)}
