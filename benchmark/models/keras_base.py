"""Shared training loop for the Keras sequence models.

Variable-length input: each batch is zero-padded and a ``Masking`` layer hides the padding from
every later layer (attention included), so an utterance's prediction does not depend on what it
is batched with. Early stopping watches a validation part carved from the *training speakers*
(never from the test fold). Inference runs through a ``tf.function`` (~10x faster than
``model.predict`` for small batches).
"""

from __future__ import annotations

import os

import numpy as np
from sklearn.model_selection import GroupShuffleSplit, StratifiedShuffleSplit
from sklearn.utils.class_weight import compute_class_weight

from .base import SERClassifier

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
_TF_CONFIGURED = False


def configure_tensorflow() -> None:
    """Few intra-op threads: on small CPUs TF trains these RNNs ~1.5-2x faster that way."""
    global _TF_CONFIGURED
    if _TF_CONFIGURED:
        return
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # retracing notices for every new fold model are expected
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 2
    if os.environ.get("SER_BENCH_THREADS", "").isdigit():  # a fold worker process: one thread
        cores = 2 * int(os.environ["SER_BENCH_THREADS"])
    try:
        tf.config.threading.set_intra_op_parallelism_threads(max(1, cores // 2))
        tf.config.threading.set_inter_op_parallelism_threads(min(2, max(1, cores // 2)))
    except RuntimeError:  # TF already initialised by someone else: keep its settings
        pass
    _TF_CONFIGURED = True


def pad_batch(sequences, length: int | None = None) -> np.ndarray:
    """Zero-pad a list of (frames, features) arrays to (batch, length, features) float32."""
    length = length or max(s.shape[0] for s in sequences)
    batch = np.zeros((len(sequences), length, sequences[0].shape[1]), dtype=np.float32)
    for row, seq in enumerate(sequences):
        batch[row, : min(length, seq.shape[0])] = seq[:length]
    return batch


def validation_split(target: np.ndarray, groups, fraction: float, seed: int):
    """Indices (train, validation); whole speakers go to validation when speakers are known."""
    everything = np.arange(target.shape[0])
    if fraction <= 0 or target.shape[0] < 4:
        return everything, everything[:0]
    if groups is not None and len(np.unique(groups)) >= 3:
        splitter = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
        return next(splitter.split(everything, target, groups))
    try:
        splitter = StratifiedShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
        return next(splitter.split(everything, target))
    except ValueError:  # a class with a single example: fall back to an unstratified split
        rng = np.random.default_rng(seed)
        order = rng.permutation(everything)
        cut = max(1, int(round(fraction * order.size)))
        return np.sort(order[cut:]), np.sort(order[:cut])


def epoch_callback(on_epoch, owner):
    """A Keras callback that hands every epoch's metrics to a framework-free hook."""
    import keras

    class EpochHookCallback(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            on_epoch(epoch, {k: float(v) for k, v in (logs or {}).items()}, owner)

    return EpochHookCallback()


class KerasSequenceClassifier(SERClassifier):
    input_kind = "sequence"
    common_params = ("epochs", "batch_size", "learning_rate", "patience", "validation_fraction",
                     "class_weight", "seed", "verbose")

    def build(self, n_features: int, n_classes: int):  # pragma: no cover - abstract
        raise NotImplementedError

    def fit(self, X, y, groups=None, on_epoch=None):
        configure_tensorflow()
        import keras

        keras.utils.set_random_seed(self.seed)
        target = self.encode(y)
        sequences = list(X)
        train, val = validation_split(target, None if groups is None else np.asarray(groups),
                                      self.validation_fraction, self.seed)
        self.model_ = self.build(sequences[0].shape[1], len(self.classes_))
        self.model_.compile(optimizer=keras.optimizers.Adam(self.learning_rate),
                            loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        weights = None
        if self.class_weight == "balanced":
            present = np.unique(target[train])
            weights = dict(zip(present.tolist(), compute_class_weight("balanced", classes=present, y=target[train])))
        self._infer = None
        fit_callbacks = [epoch_callback(on_epoch, self)] if on_epoch else []
        validation = None
        if val.size:
            validation = (pad_batch([sequences[i] for i in val]), target[val])
            fit_callbacks.append(keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=self.patience, restore_best_weights=True))
        history = self.model_.fit(
            pad_batch([sequences[i] for i in train]), target[train], validation_data=validation,
            epochs=self.epochs, batch_size=self.batch_size, class_weight=weights,
            callbacks=fit_callbacks, verbose=self.verbose, shuffle=True,
        )
        self.history_ = history.history
        self._infer = None
        return self

    def predict_proba(self, X, batch_size: int = 64) -> np.ndarray:
        import tensorflow as tf

        if getattr(self, "_infer", None) is None:
            self._infer = tf.function(lambda x: self.model_(x, training=False), reduce_retracing=True)
        sequences = list(X)
        out = [np.asarray(self._infer(tf.constant(pad_batch(sequences[i : i + batch_size]))))
               for i in range(0, len(sequences), batch_size)]
        return np.concatenate(out, axis=0)

    def log_model(self, signature, metadata, registered_name=None):
        import mlflow

        from ..tracking import requirements

        return mlflow.keras.log_model(self.model_, name="model", signature=signature, metadata=metadata,
                                      registered_model_name=registered_name,
                                      pip_requirements=requirements("tensorflow-cpu", "keras", "ser-bench"))

    @classmethod
    def load_model(cls, uri, classes):
        configure_tensorflow()
        import mlflow

        from . import keras_layers  # noqa: F401  (registers the custom layers the saved model uses)

        model = cls()
        model.model_, model.classes_, model._infer = mlflow.keras.load_model(uri), np.asarray(classes), None
        return model

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_infer", None)
        return state
