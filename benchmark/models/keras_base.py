"""Shared training loop for the Keras sequence models: fast on CPUs, and a careful recipe.

Speed. Utterances of similar length are batched together (length buckets, reshuffled every
epoch) and each batch is padded only to its own longest member, then fed through ``tf.data``
with prefetch. EMO-DB runs from 1.2 s to 8.9 s, so padding every batch to the corpus' longest
utterance (``bucketing=False``, the old path, kept for the speed benchmark) makes most of an
LSTM's work padding. Masking stays exact: a ``Masking`` layer (or the model's own frame mask)
hides the padding from every later layer, so an utterance's prediction does not depend on what
it is batched with. ``predict_proba`` sorts by length, pads per batch and restores the order.

Recipe. Up to ``epochs`` epochs with early stopping on the *UAR* of a validation part carved
from whole training speakers (never the test fold), best weights restored; learning rate reduced
on a UAR plateau; gradient-norm clipping; balanced class weights. Training batches only (never
validation or test data) may be augmented: SpecAugment-style time and feature masks and mixup.
A masked time span is zeroed, which the models treat as padding: those frames are hidden, as
SpecAugment's mean-valued frames are uninformative after per-feature standardisation.
"""

from __future__ import annotations

import os
from typing import Annotated, Any, Callable, Literal

from annotated_types import Ge, Gt, Interval

import numpy as np
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import GroupShuffleSplit, StratifiedShuffleSplit
from sklearn.utils.class_weight import compute_class_weight

from ..config import member_seeds
from ..errors import BenchError
from .base import SERClassifier

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
_TF_CONFIGURED = False

# Parameter types with their ranges, for the models' signatures (validated before any run exists).
Count = Annotated[int, Ge(1)]
NonNegative = Annotated[int, Ge(0)]
Positive = Annotated[float, Gt(0)]
Fraction = Annotated[float, Interval(ge=0, lt=1)]
ClassWeight = Literal["balanced", "none"] | None
SNR = Annotated[float, Interval(ge=-20, le=80)] | None

# Defaults of the training recipe; every Keras model lists these in its ``__init__`` (scikit-learn
# reads parameters from the signature) and stores them with ``keep_params(locals())``.
RECIPE_DEFAULTS: dict[str, Any] = {
    "epochs": 100, "batch_size": 32, "learning_rate": 1e-3, "patience": 15, "validation_fraction": 0.15,
    "class_weight": "balanced", "clipnorm": 1.0, "lr_patience": 5, "lr_factor": 0.5,
    "time_masks": 0, "time_mask_width": 20, "feature_masks": 0, "feature_mask_width": 4, "mixup_alpha": 0.0,
    "speed_perturb": False, "noise_snr_db": None,
    "ensemble": 1, "bucketing": True, "jit_compile": False, "seed": 0, "verbose": 0,
}


def recipe_search_space(trial) -> dict[str, Any]:
    """The recipe's searchable part, shared by every Keras model's ``search_space``."""
    return {
        "learning_rate": trial.suggest_float("learning_rate", 1e-4, 3e-3, log=True),
        "batch_size": trial.suggest_categorical("batch_size", [16, 32, 64]),
        "clipnorm": trial.suggest_categorical("clipnorm", [0.0, 1.0, 5.0]),
        "time_masks": trial.suggest_int("time_masks", 0, 2),
        "feature_masks": trial.suggest_int("feature_masks", 0, 2),
        "mixup_alpha": trial.suggest_categorical("mixup_alpha", [0.0, 0.2, 0.4]),
        "speed_perturb": trial.suggest_categorical("speed_perturb", [False, True]),
        "noise_snr_db": trial.suggest_categorical("noise_snr_db", [None, 10.0, 20.0]),
    }


def configure_tensorflow() -> None:
    """Thread settings measured with ``bench models speed`` (README); ``SER_BENCH_TF_THREADS=intra,inter``
    overrides them, which is how the alternatives were measured (threads are fixed per process)."""
    global _TF_CONFIGURED
    if _TF_CONFIGURED:
        return
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # retracing notices for every new fold model are expected
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 2
    intra, inter = max(1, cores // 2), 2
    if os.environ.get("SER_BENCH_THREADS", "").isdigit():  # a fold worker process: one thread each
        intra, inter = int(os.environ["SER_BENCH_THREADS"]), 1
    if os.environ.get("SER_BENCH_TF_THREADS"):
        try:
            intra, inter = (int(v) for v in os.environ["SER_BENCH_TF_THREADS"].split(","))
        except ValueError:
            raise BenchError(f"SER_BENCH_TF_THREADS={os.environ['SER_BENCH_TF_THREADS']!r}: "
                             "use two integers, intra,inter (e.g. 1,2)") from None
    try:
        tf.config.threading.set_intra_op_parallelism_threads(intra)
        tf.config.threading.set_inter_op_parallelism_threads(inter)
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


def round_up(length: int, multiple: int) -> int:
    return int(-(-length // multiple) * multiple)


def fill_rows(batch: np.ndarray, rows: int) -> np.ndarray:
    """Append all-zero rows up to ``rows``: fully masked inputs, zero targets and zero weights."""
    return np.concatenate([batch, np.zeros((rows - batch.shape[0], *batch.shape[1:]), batch.dtype)])


def length_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator | None = None) -> list[np.ndarray]:
    """Indices in batches of similar length. With ``rng`` (training): lengths are jittered by up to
    10% before sorting, so batch mates change between epochs, and the batch order is shuffled."""
    lengths = np.asarray(lengths, dtype=np.float64)
    keys = lengths if rng is None else lengths * (1.0 + 0.1 * rng.random(lengths.size))
    order = np.argsort(keys, kind="stable")
    batches = [order[i : i + batch_size] for i in range(0, order.size, batch_size)]
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


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


def spec_augment(batch: np.ndarray, lengths: np.ndarray, rng: np.random.Generator, time_masks: int,
                 time_width: int, feature_masks: int, feature_width: int) -> np.ndarray:
    """SpecAugment-style masks on a padded training batch, in place: zeroed time spans (at most half of
    an utterance) and zeroed feature bands, drawn independently for every utterance."""
    n_features = batch.shape[2]
    for row, length in enumerate(lengths):
        for _ in range(time_masks):
            width = int(rng.integers(0, min(time_width, length // 2) + 1))
            start = int(rng.integers(0, max(1, length - width + 1)))
            batch[row, start : start + width] = 0.0
        for _ in range(feature_masks):
            width = int(rng.integers(0, min(feature_width, n_features - 1) + 1))
            start = int(rng.integers(0, n_features - width + 1))
            batch[row, :length, start : start + width] = 0.0
    return batch


def epoch_callback(on_epoch, owner):
    """A Keras callback that hands every epoch's metrics to a framework-free hook (see models.base)."""
    import keras

    class EpochHookCallback(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            on_epoch(epoch, {k: float(v) for k, v in (logs or {}).items()}, owner)

    return EpochHookCallback()


class KerasSequenceClassifier(SERClassifier):
    input_kind = "sequence"
    loads_tensorflow = True
    common_params = tuple(RECIPE_DEFAULTS)
    # Tests set this to a callable(kind, batch) to see exactly what the network is fed:
    # kind is "train", "validation" or "predict".
    observe_batches: Callable[[str, np.ndarray], None] | None = None
    # Audio-augmented copies of the training utterances (features/augmented.py), set by the runner
    # when speed_perturb / noise_snr_db ask for them: the model itself only decides which to use.
    training_copies = None

    def keep_params(self, values: dict[str, Any]) -> None:
        """Store ``__init__``'s arguments as attributes (scikit-learn's convention)."""
        for name, value in values.items():
            if name not in ("self", "__class__"):
                setattr(self, name, value)

    def build(self, n_features: int, n_classes: int):  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def pad_multiple(self) -> int:
        """Pad lengths to a multiple of this: few distinct shapes, so XLA compiles a few programs only."""
        return 32 if self.jit_compile else 1

    def _observe(self, kind: str, batch: np.ndarray) -> None:
        if self.observe_batches is not None:
            self.observe_batches(kind, batch)

    # ----------------------------------------------------------------------------------- training
    def fit(self, X, y, groups=None, on_epoch=None):
        """Train ``ensemble`` members (seeds ``seed``, ``seed + 1``, ...; each with its own validation
        speakers, initial weights and batch order); several members are joined into one Keras model
        that averages their probabilities, so saving, loading and prediction do not change. Runs
        with ``--seed 0`` and ``--seed 1`` share K - 1 members: compare ensembles K seeds apart."""
        configure_tensorflow()
        import keras

        target = self.encode(y)
        sequences = list(X)
        if not sequences:
            raise BenchError("no training utterances: check the corpus and --classes")
        groups = None if groups is None else np.asarray(groups)
        members, histories = [], []
        for k, seed in enumerate(member_seeds(self.seed, self.ensemble)):
            hook = on_epoch if on_epoch is None or k == 0 else (  # epochs numbered on across members
                lambda epoch, metrics, owner, start=k * self.epochs: on_epoch(start + epoch, metrics, owner))
            members.append(self._fit_member(sequences, target, groups, seed, hook))
            histories.append(self.history_)
        if len(members) > 1:
            for k, member in enumerate(members):
                member.name = f"member_{k}"  # layer names must be unique inside the joined model
            inputs = keras.Input(members[0].inputs[0].shape[1:], name="features")
            self.model_ = keras.Model(inputs, keras.layers.Average(name="mean_probability")(
                [member(inputs) for member in members]), name=f"{self.name}_ensemble")
            self._infer = None
            self.history_ = {key: [v for h in histories for v in h.get(key, [])] for key in histories[0]}
            self.member_histories_ = histories
        return self

    def _fit_member(self, sequences: list, target: np.ndarray, groups, seed: int, on_epoch):
        """One network trained with the recipe; ``self.model_`` is that network, also while it trains
        (the epoch hook predicts with it)."""
        import keras

        keras.utils.set_random_seed(seed)
        train, val = validation_split(target, groups, self.validation_fraction, seed)
        n_classes = len(self.classes_)
        self.model_ = self.build(sequences[0].shape[1], n_classes)
        self.model_.compile(optimizer=keras.optimizers.Adam(self.learning_rate, clipnorm=self.clipnorm or None),
                            loss="categorical_crossentropy", metrics=["accuracy"], jit_compile=self.jit_compile)
        self._infer = None
        weight_of_class = np.ones(n_classes, dtype=np.float32)
        if self.class_weight == "balanced":
            present = np.unique(target[train])
            weight_of_class[present] = compute_class_weight("balanced", classes=present, y=target[train])
        elif self.class_weight not in (None, "none"):
            raise BenchError(f"class_weight={self.class_weight!r}: use balanced or none")
        onehot_of_class = np.eye(n_classes, dtype=np.float32)  # row c: the target of class c

        fit_callbacks = []
        if val.size:
            fit_callbacks.append(validation_uar_callback(self, [sequences[i] for i in val], target[val]))
            fit_callbacks.append(keras.callbacks.EarlyStopping(
                monitor="val_uar", mode="max", patience=self.patience, restore_best_weights=True))
        if self.lr_patience:
            fit_callbacks.append(keras.callbacks.ReduceLROnPlateau(
                monitor="val_uar" if val.size else "loss", mode="max" if val.size else "min",
                factor=self.lr_factor, patience=self.lr_patience, min_lr=1e-5))
        if on_epoch is not None:  # the caller's hook sees val_uar and the restored weights' history
            fit_callbacks.append(epoch_callback(on_epoch, self))

        train_sequences, train_targets = [sequences[i] for i in train], target[train]
        copies = self.training_copies
        if copies is not None and len(copies):  # copies of held-out validation utterances stay out
            use = np.flatnonzero(np.isin(copies.source, train))
            train_sequences += [copies.X[k] for k in use]
            train_targets = np.concatenate([train_targets, target[copies.source[use]]])
        if self.bucketing:
            data = self._training_dataset(train_sequences, onehot_of_class[train_targets],
                                          weight_of_class[train_targets], seed)
            history = self.model_.fit(data, epochs=self.epochs, callbacks=fit_callbacks, verbose=self.verbose,
                                      shuffle=False)  # the buckets are reshuffled every epoch already
        else:
            if self.time_masks or self.feature_masks or self.mixup_alpha:
                raise BenchError("augmentation (time_masks, feature_masks, mixup_alpha) needs bucketing=true")
            padded = pad_batch(train_sequences, round_up(max(len(s) for s in train_sequences), self.pad_multiple))
            self._observe("train", padded)
            history = self.model_.fit(padded, onehot_of_class[train_targets], sample_weight=weight_of_class[train_targets],
                                      batch_size=self.batch_size, epochs=self.epochs, shuffle=True,
                                      callbacks=fit_callbacks, verbose=self.verbose)
        self.history_ = history.history
        return self.model_

    def _training_dataset(self, sequences, onehot, weights, seed: int):
        """``tf.data`` pipeline over length buckets; a fresh shuffle (and augmentation) every epoch."""
        import tensorflow as tf

        rng = np.random.default_rng(seed)
        lengths = np.array([len(s) for s in sequences])
        n_features, n_classes = sequences[0].shape[1], onehot.shape[1]

        def batches():
            for index in length_batches(lengths, self.batch_size, rng):
                x = pad_batch([sequences[i] for i in index], round_up(lengths[index].max(), self.pad_multiple))
                y, w = onehot[index], weights[index]
                if self.time_masks or self.feature_masks:
                    spec_augment(x, lengths[index], rng, self.time_masks, self.time_mask_width,
                                 self.feature_masks, self.feature_mask_width)
                if self.mixup_alpha and len(index) > 1:
                    share, partner = rng.beta(self.mixup_alpha, self.mixup_alpha), rng.permutation(len(index))
                    x = (share * x + (1 - share) * x[partner]).astype(np.float32)
                    y = share * y + (1 - share) * y[partner]
                    w = share * w + (1 - share) * w[partner]
                if self.jit_compile and len(index) < self.batch_size:  # one batch shape per length for XLA:
                    x, y, w = (fill_rows(a, self.batch_size) for a in (x, y, w))  # empty rows weigh 0
                self._observe("train", x)
                yield x, y.astype(np.float32), w.astype(np.float32)

        signature = (tf.TensorSpec((None, None, n_features), tf.float32),
                     tf.TensorSpec((None, n_classes), tf.float32), tf.TensorSpec((None,), tf.float32))
        n_batches = -(-len(sequences) // self.batch_size)
        dataset = tf.data.Dataset.from_generator(batches, output_signature=signature)
        return dataset.apply(tf.data.experimental.assert_cardinality(n_batches)).prefetch(2)

    # ---------------------------------------------------------------------------------- inference
    def predict_proba(self, X, batch_size: int = 64) -> np.ndarray:
        return self._predict(list(X), "predict", batch_size)

    def _predict(self, sequences: list, kind: str, batch_size: int = 64) -> np.ndarray:
        """Sorted by length, padded per batch, returned in the input order."""
        import tensorflow as tf

        if getattr(self, "_infer", None) is None:
            self._infer = tf.function(lambda x: self.model_(x, training=False), reduce_retracing=True,
                                      jit_compile=bool(getattr(self, "jit_compile", False)))
        lengths = np.array([len(s) for s in sequences])
        out = np.zeros((len(sequences), len(self.classes_)), dtype=np.float32)
        for index in length_batches(lengths, batch_size):
            x = pad_batch([sequences[i] for i in index], round_up(lengths[index].max(), self.pad_multiple))
            if self.jit_compile:
                x = fill_rows(x, batch_size)
            self._observe(kind, x)
            out[index] = np.asarray(self._infer(tf.constant(x)))[: len(index)]
        return out

    # ------------------------------------------------------------------- numpy-only form (predict)
    def portable_weights(self, member) -> dict[str, np.ndarray] | None:
        """One trained network's weights under the names :mod:`benchmark.portable_network` reads;
        None: this architecture has no numpy form."""
        return None

    def portable(self) -> dict[str, np.ndarray] | None:
        """The numpy-only form of the trained network(s), kept only if it reproduces this model's
        own ``predict_proba`` on probe sequences (:data:`benchmark.portable_network.PARITY_ATOL`)."""
        import keras

        from .. import portable_network

        if self.name not in portable_network.ARCHITECTURES or getattr(self, "model_", None) is None:
            return None
        try:
            members = [layer for layer in self.model_.layers if isinstance(layer, keras.Model)] or [self.model_]
            weights = [self.portable_weights(member) for member in members]
            if any(w is None for w in weights):
                return None
            n_features = int(self.model_.inputs[0].shape[-1])
            arrays = {"kind": np.array(portable_network.KIND), "format_version": np.array(portable_network.FORMAT_VERSION),
                      "architecture": np.array(self.name), "n_members": np.array(len(members)),
                      "n_features": np.array(n_features)}
            for k, member_weights in enumerate(weights):
                arrays.update({f"member{k}.{name}": np.asarray(value) for name, value in member_weights.items()})
            probes = probe_sequences(n_features)
            expected = np.asarray(self.predict_proba(probes), dtype=np.float64)
            got = portable_network.validated(arrays, "the exported network").predict_proba(probes)
        except Exception:  # noqa: BLE001 - any layer or shape it does not know: no portable form
            return None
        if got.shape != expected.shape or not np.allclose(got, expected, rtol=0, atol=portable_network.PARITY_ATOL):
            return None
        return arrays

    @classmethod
    def warm_up_logging(cls) -> None:
        pass  # the .keras format needs nothing beyond TensorFlow, already loaded by training

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
        state.pop("training_copies", None)  # training data, not part of the model
        return state


def probe_sequences(n_features: int, seed: int = 0) -> list[np.ndarray]:
    """Inputs to check a numpy form on: standardised-looking frames of several lengths, one with
    all-zero (hidden) frames inside and at its end, as padding and SpecAugment leave them."""
    rng = np.random.default_rng(seed)
    probes = [rng.standard_normal((length, n_features)).astype(np.float32) for length in (1, 3, 17, 64, 160)]
    holes = rng.standard_normal((40, n_features)).astype(np.float32)
    holes[10:14] = 0.0
    holes[-5:] = 0.0
    return probes + [holes]


def validation_uar_callback(owner: KerasSequenceClassifier, sequences: list, target: np.ndarray):
    """Adds ``val_uar`` and ``val_loss`` of the held-out training speakers to each epoch's logs, before
    early stopping, the learning-rate schedule and the caller's callbacks read them."""
    import keras

    class ValidationUAR(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            proba = owner._predict(sequences, "validation")
            logs = logs if logs is not None else {}
            logs["val_uar"] = float(balanced_accuracy_score(target, np.argmax(proba, axis=1)))
            logs["val_loss"] = float(-np.mean(np.log(np.clip(proba[np.arange(target.size), target], 1e-7, 1))))

    return ValidationUAR()
