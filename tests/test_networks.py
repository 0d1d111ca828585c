"""The Keras networks' training recipe: length buckets, exact masking, augmentation on training
batches only, early stopping on validation UAR, the crnn model, the logmel features, and
``bench models speed``. Tiny networks and a handful of epochs keep each test to a few seconds."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from benchmark.models import get_model
from benchmark.models.keras_base import length_batches, validation_split

TINY = {"local_attn_blstm": {"dense_units": 8, "lstm_units": 4},
        "attn_blstm": {"units": 4},
        "crnn": {"filters": 4, "conv_blocks": 2, "projection_units": 8, "lstm_units": 4, "dense_units": 8}}


def toy_data(n=36, n_features=6, seed=0, shortest=5, longest=60):
    """Three learnable classes, lengths spread widely (so buckets differ), 6 speakers."""
    rng = np.random.default_rng(seed)
    labels = np.array(["anger", "neutral", "sadness"] * (n // 3))
    sequences = [(rng.standard_normal((rng.integers(shortest, longest), n_features)) + 1.5 * "ans".index(lab[0]))
                 .astype(np.float32) for lab in labels]
    return sequences, labels, np.repeat(np.arange(6), n // 6)


def unpadded(row: np.ndarray) -> np.ndarray:
    """A padded batch row without its trailing all-zero frames."""
    valid = np.flatnonzero(np.any(row != 0, axis=1))
    return row[: valid[-1] + 1] if valid.size else row[:0]


def test_length_batches_cover_every_index_once_and_group_similar_lengths():
    lengths = np.random.default_rng(1).integers(10, 400, size=101)
    batches = length_batches(lengths, 8)
    assert sorted(np.concatenate(batches).tolist()) == list(range(101))
    spread = np.mean([np.ptp(lengths[b]) for b in batches])
    assert spread < 0.25 * np.ptp(lengths)  # buckets, not random batches
    rng = np.random.default_rng(0)
    first, second = length_batches(lengths, 8, rng), length_batches(lengths, 8, rng)
    assert sorted(np.concatenate(first).tolist()) == list(range(101))
    assert [b.tolist() for b in first] != [b.tolist() for b in second]  # reshuffled every epoch


@pytest.mark.parametrize("name", sorted(TINY))
def test_bucketed_predict_proba_equals_one_by_one_inference(name):
    sequences, labels, groups = toy_data()
    model = get_model(name, epochs=2, batch_size=8, **TINY[name]).fit(sequences, labels, groups=groups)
    together = model.predict_proba(sequences, batch_size=7)  # sorted by length, padded per batch
    alone = np.concatenate([model.predict_proba([s]) for s in sequences])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    assert together.shape == (len(sequences), 3)


@pytest.mark.parametrize("jit", [False, True])
def test_xla_path_pads_to_fixed_shapes_and_predicts_the_same(jit):
    sequences, labels, groups = toy_data(n=18)
    model = get_model("attn_blstm", epochs=2, batch_size=8, jit_compile=jit, **TINY["attn_blstm"])
    shapes = set()
    model.observe_batches = lambda kind, batch: shapes.add((kind, batch.shape))
    model.fit(sequences, labels, groups=groups)
    together = model.predict_proba(sequences)
    alone = np.concatenate([model.predict_proba([s]) for s in sequences])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    train_shapes = {shape for kind, shape in shapes if kind == "train"}
    if jit:  # full batches, lengths a multiple of 32: few programs to compile
        assert all(shape[0] == 8 and shape[1] % 32 == 0 for shape in train_shapes)


def test_augmentation_touches_training_batches_only():
    """Record every batch the network is fed: validation and test batches hold the original frames
    exactly, while training batches (time/feature masks, mixup) do not."""
    sequences, labels, groups = toy_data()
    train_part, test_part = np.arange(30), np.arange(30, 36)
    model = get_model("local_attn_blstm", epochs=3, batch_size=8, time_masks=2, time_mask_width=5,
                      feature_masks=1, feature_mask_width=2, mixup_alpha=0.4, **TINY["local_attn_blstm"])
    fed = []
    model.observe_batches = lambda kind, batch: fed.append((kind, batch.copy()))
    model.fit([sequences[i] for i in train_part], labels[train_part], groups=groups[train_part])
    model.predict_proba([sequences[i] for i in test_part])

    _, val = validation_split(model.encode(labels[train_part]), groups[train_part], model.validation_fraction, 0)
    originals = {kind: [sequences[i] for i in part] for kind, part in
                 (("validation", train_part[val]), ("predict", test_part), ("train", train_part))}

    def is_original(row, kind):
        return any(s.shape == unpadded(row).shape and np.array_equal(s, unpadded(row)) for s in originals[kind])

    rows = {kind: [row for k, batch in fed if k == kind for row in batch] for kind in originals}
    assert len(rows["validation"]) == 3 * val.size and val.size > 0  # every epoch, every validation utterance
    assert len(rows["predict"]) == test_part.size
    assert all(is_original(row, "validation") for row in rows["validation"])
    assert all(is_original(row, "predict") for row in rows["predict"])
    assert len(rows["train"]) == 3 * (train_part.size - val.size)
    assert not any(is_original(row, "train") for row in rows["train"])  # mixup changes every row


def test_early_stopping_on_validation_uar_restores_the_best_epoch():
    sequences, labels, groups = toy_data(seed=3)
    snapshots = []

    def snapshot(epoch, metrics, model):  # the framework-free epoch hook sees the model being trained
        snapshots.append([w.copy() for w in model.model_.get_weights()])

    model = get_model("local_attn_blstm", epochs=12, patience=3, lr_patience=0, learning_rate=0.03,
                      batch_size=8, **TINY["local_attn_blstm"])
    model.fit(sequences, labels, groups=groups, on_epoch=snapshot)
    history = model.history_["val_uar"]
    best = int(np.argmax(history))  # the first epoch reaching the best validation UAR
    assert "val_uar" in model.history_ and len(snapshots) == len(history)
    for kept, best_weights in zip(model.model_.get_weights(), snapshots[best]):
        np.testing.assert_array_equal(kept, best_weights)
    if best < len(history) - 1:  # the last epoch's weights were not simply kept
        assert any(not np.array_equal(a, b) for a, b in zip(model.model_.get_weights(), snapshots[-1]))
    _, val = validation_split(model.encode(labels), groups, model.validation_fraction, 0)
    from sklearn.metrics import balanced_accuracy_score

    predicted = model.predict([sequences[i] for i in val])
    assert balanced_accuracy_score(labels[val], predicted) == pytest.approx(history[best])


def test_learning_rate_is_reduced_on_a_validation_plateau():
    sequences, labels, groups = toy_data()
    model = get_model("attn_blstm", epochs=6, patience=10, lr_patience=1, lr_factor=0.5, learning_rate=1e-4,
                      batch_size=8, **TINY["attn_blstm"]).fit(sequences, labels, groups=groups)
    rates = model.history_["learning_rate"]
    assert rates[-1] < rates[0]  # a learning rate this small cannot move UAR: it plateaus and is cut


def test_crnn_zeroes_padded_frames_after_every_convolution():
    import keras

    model = get_model("crnn", **TINY["crnn"]).build(6, 3)
    batch = np.zeros((2, 20, 6), dtype=np.float32)
    batch[0, :7] = np.random.default_rng(0).standard_normal((7, 6))
    batch[1] = np.random.default_rng(1).standard_normal((20, 6))
    probe = keras.Model(model.input, [model.get_layer("zero_padded_1").output,
                                      model.get_layer("zero_padded_2").output, model.get_layer("bool_mask").output])
    first, second, mask = (keras.ops.convert_to_numpy(t) for t in probe(batch))
    assert first.shape[:2] == (2, 20) and second.shape[:2] == (2, 10)  # time halved by the first pooling
    assert np.all(first[0, 7:] == 0) and np.all(second[0, 4:] == 0)
    # two time poolings (time_pools=2): ceil(ceil(7 / 2) / 2) = 2 valid frames of 5
    assert mask.shape == (2, 5) and mask[0].tolist() == [True] * 2 + [False] * 3 and mask[1].all()
    assert model.output_shape == (None, 3)


def test_crnn_pooling_and_growth_options_keep_masking_exact():
    """first_band_pool (frequency pooling of the first block) and growth (filters after it) change
    the shapes as stated, and a bucketed prediction still equals one-by-one inference."""
    import keras

    options = {**TINY["crnn"], "first_band_pool": 4, "growth": 1}
    sequences, labels, groups = toy_data(n_features=24)  # 3 channels x 8 bands
    model = get_model("crnn", epochs=2, batch_size=8, **options).fit(sequences, labels, groups=groups)
    together = model.predict_proba(sequences, batch_size=7)
    alone = np.concatenate([model.predict_proba([s]) for s in sequences])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    built = get_model("crnn", **options).build(24, 3)
    probe = keras.Model(built.input, [built.get_layer("pool_1").output, built.get_layer("zero_padded_2").output])
    first, second = (keras.ops.convert_to_numpy(t) for t in probe(np.ones((1, 12, 24), np.float32)))
    assert first.shape == (1, 6, 2, 4)  # time / 2, bands 8 / 4, filters 4
    assert second.shape[-1] == 4  # growth 1: the second block keeps the first block's filters
    doubled = get_model("crnn", **TINY["crnn"]).build(24, 3).get_layer("zero_padded_2").output.shape
    assert doubled[-1] == 8 and doubled[-2] == 4  # the defaults: filters doubled, bands 8 / 2


def test_crnn_saves_and_reloads_with_its_mask_layers(tmp_path):
    import keras

    import benchmark.models.keras_layers  # noqa: F401 - registers the layers, as `bench predict` does

    sequences, labels, groups = toy_data(n=12)
    model = get_model("crnn", epochs=1, batch_size=4, validation_fraction=0.0, **TINY["crnn"])
    model.fit(sequences, labels, groups=groups)
    model.model_.save(tmp_path / "crnn.keras")
    reloaded = keras.saving.load_model(tmp_path / "crnn.keras")
    batch = np.stack([s[:5] for s in sequences[:3]])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(reloaded(batch)),
                               keras.ops.convert_to_numpy(model.model_(batch)), atol=1e-6)


def test_an_ensemble_averages_members_trained_with_their_own_seeds(tmp_path):
    """Shared by the three networks (keras_base); one of them, tiny, keeps CI short."""
    import keras

    import benchmark.models.keras_layers  # noqa: F401 - registers the layers, as `bench predict` does

    sequences, labels, groups = toy_data(n=24)
    epochs_seen = []
    model = get_model("attn_blstm", epochs=2, batch_size=8, ensemble=2, patience=5, **TINY["attn_blstm"])
    model.fit(sequences, labels, groups=groups, on_epoch=lambda epoch, metrics, _m: epochs_seen.append(epoch))
    members = [layer for layer in model.model_.layers if isinstance(layer, keras.Model)]
    assert [m.name for m in members] == ["member_0", "member_1"]
    assert epochs_seen == [0, 1, 2, 3]  # the hook's epochs go on across members (Optuna steps stay unique)
    assert len(model.member_histories_) == 2
    batch = np.stack([s[:5] for s in sequences[:4]])
    each = [keras.ops.convert_to_numpy(member(batch)) for member in members]
    assert not np.allclose(each[0], each[1])  # different seeds, validation speakers and batch orders
    np.testing.assert_allclose(model.predict_proba(list(batch)), (each[0] + each[1]) / 2, atol=1e-6)
    model.model_.save(tmp_path / "ensemble.keras")  # one model: logs and loads like a single network
    reloaded = keras.saving.load_model(tmp_path / "ensemble.keras")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(reloaded(batch)), (each[0] + each[1]) / 2, atol=1e-6)


def test_crnn_rejects_features_that_do_not_split_into_channels():
    from benchmark.errors import BenchError

    with pytest.raises(BenchError, match="channels"):
        get_model("crnn").build(7, 3)


def test_logmel_shapes_names_and_deltas():
    from benchmark.features import get_feature_set

    signal = (0.1 * np.sin(2 * np.pi * 440 * np.arange(16_000) / 16_000)).astype(np.float32)
    logmel = get_feature_set("logmel")
    frames = logmel.extract(signal)["frames"]
    assert frames.shape == (101, 192) and frames.dtype == np.float32  # 1 s at a 10 ms hop, centred frames
    assert len(logmel.feature_names) == 192 and logmel.feature_names[64] == "logmel_delta_1"
    assert np.all(np.isfinite(frames))
    static, delta = frames[:, :64], frames[:, 64:128]
    assert np.argmax(static[50]) == np.argmax(np.abs(static[50] - static[50].min()))  # 440 Hz band dominates
    assert np.abs(delta[20:80]).max() < 1.0 < np.ptp(static[50])  # a steady tone: deltas near zero inside
    assert get_feature_set("logmel", deltas=False).extract(signal)["frames"].shape == (101, 64)
    assert get_feature_set("logmel").extract(signal[:400])["frames"].shape[0] >= 9  # short: still deltas
    assert get_feature_set("logmel", n_mels=40).cache_key() != logmel.cache_key()


def fake_emodb(root, n_per_emotion=2):
    """An EMO-DB-named folder of short synthetic WAVs (two speakers, seven emotions)."""
    wav = root / "emodb" / "wav"
    wav.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for k, letter in enumerate("WLEAFTN"):
        for i in range(n_per_emotion):
            seconds = 0.4 + 0.3 * i + 0.1 * k
            t = np.arange(int(seconds * 16_000)) / 16_000
            signal = 0.3 * np.sin(2 * np.pi * (150 + 40 * k) * t) + 0.02 * rng.standard_normal(t.size)
            sf.write(wav / f"{3 + i % 2:02d}a0{i + 1}{letter}a.wav", signal.astype(np.float32), 16_000)
    return root


def test_bench_models_speed_reports_a_ratio(tmp_path):
    data = fake_emodb(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "benchmark.cli", "models", "speed", "--data-dir", str(data), "--model", "attn_blstm",
         "--epochs", "2", "--rounds", "1", "--variant", "pad-to-longest", "--variant", "buckets"],
        capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"}, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "attn_blstm round 1/1 buckets" in result.stdout
    assert "1.00x" in result.stdout  # the baseline row against itself
    bad = subprocess.run([sys.executable, "-m", "benchmark.cli", "models", "speed", "--data-dir", str(data),
                          "--variant", "turbo"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "unknown variant 'turbo'" in bad.stderr and "Traceback" not in bad.stderr


def test_bench_models_speed_times_two_sizes_of_one_network_in_one_run(tmp_path):
    """`--variant buckets:filters=4` passes model parameters; ratios are against the first variant;
    a parameter the network lacks is a one-line error before anything is extracted or fitted."""
    data = fake_emodb(tmp_path)
    command = [sys.executable, "-m", "benchmark.cli", "models", "speed", "--data-dir", str(data), "--model", "crnn",
               "--epochs", "2", "--rounds", "1"]
    result = subprocess.run(command + ["--variant", "buckets:filters=8,lstm_units=8", "--variant", "buckets:filters=4,lstm_units=8"],
                            capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"}, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "crnn round 1/1 buckets:filters=4,lstm_units=8" in result.stdout
    assert "1.00x" in result.stdout  # the first variant against itself
    bad = subprocess.run(command + ["--variant", "buckets:filterz=4"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "filterz" in bad.stderr and "Traceback" not in bad.stderr
    assert "logmel" not in bad.stdout  # failed before extraction


def test_speed_variants_read_model_parameters_after_a_colon():
    from benchmark.errors import BenchError
    from benchmark.models.speed import variant_params

    assert variant_params("buckets:filters=16,dropout=0.2") == {"bucketing": True, "filters": 16, "dropout": 0.2}
    assert variant_params("pad-to-longest") == {"bucketing": False}
    with pytest.raises(BenchError, match="expected buckets:NAME=VALUE"):
        variant_params("buckets:filters")


def test_audio_augmentation_adds_copies_of_training_utterances_only(tmp_path, monkeypatch):
    """Through the runner's fit_and_predict: speed-perturbed and noisy copies of the training fold's
    files are added to what the network trains on; validation and test batches are the originals."""
    from benchmark.features import get_feature_set
    from benchmark.features.augmented import Augmented, remember_sources
    from benchmark.features.extract import extract_features
    from benchmark.models.keras_base import KerasSequenceClassifier
    from benchmark.normalise import Normaliser
    from benchmark.config import resolve
    from benchmark.runner import fit_and_predict

    wavs = sorted((fake_emodb(tmp_path, n_per_emotion=3) / "emodb" / "wav").glob("*.wav"))
    feature_set = get_feature_set("handcrafted36")
    sources = [(p.stem, p) for p in wavs]
    extraction = extract_features(sources, feature_set, progress=False)
    X = remember_sources([extraction.features[uid]["frames"] for uid, _ in sources], sources, feature_set)
    labels = np.array([p.stem[5] for p in wavs])
    groups = np.array([f"s{i % 3}" for i in range(len(wavs))])  # three speakers: s2 is the test speaker
    train, test = np.flatnonzero(groups != "s2"), np.flatnonzero(groups == "s2")

    fed = []
    monkeypatch.setattr(KerasSequenceClassifier, "observe_batches",
                        staticmethod(lambda kind, batch: fed.append((kind, batch.copy()))))
    config = resolve(dict(model="local_attn_blstm", epochs=2, batch_size=4,
                          model_params={**TINY["local_attn_blstm"], "speed_perturb": True, "noise_snr_db": 10.0,
                                        "validation_fraction": 0.0}))
    from benchmark.runner import take

    subset = take(X, np.arange(len(X)))  # as tuning slices it: the files stay known
    assert subset.sources == X.sources and subset.feature_set is feature_set
    model, normaliser, proba = fit_and_predict(config, subset, labels, groups, train, test)
    assert proba.shape[0] == test.size
    rows = {kind: [unpadded(r) for k, b in fed if k == kind for r in b] for kind in ("train", "predict")}
    assert len(rows["train"]) == 2 * 4 * train.size  # 2 epochs x (original + 0.9 + 1.1 + noise)
    clean_test = normaliser.transform([X[i] for i in test], groups[test])
    assert len(rows["predict"]) == test.size
    assert all(any(np.array_equal(r, t) for t in clean_test) for r in rows["predict"])
    # exactly the fold's training utterances and their copies (normalised as training data), nothing else
    from benchmark.features.augmented import normalised_copies

    expected = normaliser.transform([X[i] for i in train], groups[train]) + normalised_copies(
        X, train, groups, normaliser, model).X
    first_epoch = rows["train"][: len(rows["train"]) // 2]
    key = lambda a: (a.shape, a.tobytes())  # noqa: E731
    assert sorted(map(key, first_epoch)) == sorted(map(key, expected))
    test_copies = [c for c in normalised_copies(X, test, groups, normaliser, model).X]
    assert not {key(c) for c in test_copies} & {key(r) for r in rows["train"]}
    # cached under their own keys, apart from the clean features
    keys = {Augmented(base="handcrafted36", base_options=tuple(sorted(vars(feature_set.config).items())),
                      kind=k, value=v).cache_key() for k, v in (("speed", 0.9), ("speed", 1.1), ("noise", 10.0))}
    assert len(keys | {feature_set.cache_key()}) == 4


def test_audio_augmentation_perturbs_deterministically():
    from benchmark.features.augmented import Augmented

    signal = (0.3 * np.sin(2 * np.pi * 200 * np.arange(16_000) / 16_000)).astype(np.float32)
    slower = Augmented(kind="speed", value=0.9).perturb(signal)
    assert abs(len(slower) - 16_000 / 0.9) <= 2
    noisy = Augmented(kind="noise", value=10.0)
    first, second = noisy.perturb(signal), noisy.perturb(signal)
    np.testing.assert_array_equal(first, second)  # the same copy in every fold and process
    snr = 10 * np.log10(np.mean(signal**2) / np.mean((first - signal) ** 2))
    assert 9.0 < snr < 11.0


def _extract_in_two_workers(paths):
    """Run inside a joblib/loky worker: a standard extraction pool of two processes."""
    from pathlib import Path

    from benchmark.features import get_feature_set
    from benchmark.features.extract import extract_features

    result = extract_features([(Path(p).stem, p) for p in paths], get_feature_set("handcrafted36"),
                              use_cache=False, jobs=2, progress=False)
    return len(result.features), len(result.failed)


def test_a_fold_worker_can_start_an_extraction_pool(tmp_path):
    """Inside a loky worker the default start method is "loky", which children of a standard pool
    could not resolve: every extraction worker died and the fold failed (a network's folds with
    speed perturbation extract their copies there)."""
    from joblib import Parallel, delayed, parallel_config

    paths = [str(p) for p in sorted((fake_emodb(tmp_path) / "emodb" / "wav").glob("*.wav"))[:4]]
    with parallel_config(backend="loky", inner_max_num_threads=1):
        outcomes = Parallel(n_jobs=2)(delayed(_extract_in_two_workers)(paths) for _ in range(2))
    assert outcomes == [(4, 0), (4, 0)]


def test_network_with_speed_perturbation_runs_its_folds_in_two_workers(tmp_path):
    """`bench run` with audio augmentation and the folds in worker processes: the training copies
    are extracted once, before the folds (a progress line for them), and every fold finishes."""
    from mlflow import MlflowClient

    data = fake_emodb(tmp_path, n_per_emotion=2)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    params = [arg for name, value in TINY["attn_blstm"].items() for arg in ("--param", f"{name}={value}")]
    done = subprocess.run(
        [str(os.path.join(os.path.dirname(sys.executable), "bench")), "run", "--model", "attn_blstm",
         "--features", "librosa46", "--corpus", "emodb", "--classes", "7", "--norm", "speaker", "--no-final-model",
         "--param", "speed_perturb=true", "--param", "epochs=2", "--param", "validation_fraction=0",
         *params, "--jobs", "2", "--data-dir", str(data), "--cache-dir", str(tmp_path / "cache"),
         "--tracking-uri", uri],
        capture_output=True, text=True, timeout=900, env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "augmented: 14/14 files (100%)" in done.stderr + done.stdout  # both speeds, ahead of the folds
    client = MlflowClient(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert sum("mlflow.parentRunId" in r.data.tags for r in runs) == 2  # the two speakers' folds
    assert parent.info.status == "FINISHED" and parent.data.metrics["n_utterances"] == 14
    assert len(list((tmp_path / "cache").rglob("*.npz"))) >= 14 * 3  # clean + two speeds
