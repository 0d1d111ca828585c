"""The ``dvector`` feature set: resemblyzer's pre-trained GE2E speaker encoder, layer by layer.

The weights are the real ones shipped in the resemblyzer wheel (part of the ``ssl`` extra). The
references are resemblyzer's own code: its front end (volume, mel spectrogram) and its three-layer
``VoiceEncoder`` (its utterance embedding). ``import resemblyzer`` needs ``webrtcvad``, which
needs setuptools' removed ``pkg_resources``; resemblyzer only uses it for voice-activity trimming,
which neither the references nor ser-bench call, so the tests give it an empty stand-in module
when the real one cannot be imported.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
if importlib.util.find_spec("resemblyzer") is None:
    pytest.skip('resemblyzer is not installed (pip install -e ".[ssl]")', allow_module_level=True)

from benchmark.features import get_feature_set  # noqa: E402
from benchmark.features import speaker_encoder as dvec  # noqa: E402

SR = 16_000


@pytest.fixture(scope="module")
def resemblyzer():
    try:
        import webrtcvad  # noqa: F401
    except ImportError:
        sys.modules["webrtcvad"] = types.ModuleType("webrtcvad")  # only its VAD trimming needs it
    return importlib.import_module("resemblyzer")


def voice(seconds: float, seed: int, level: float = 0.1) -> np.ndarray:
    """A gliding harmonic tone with noise and an amplitude envelope: speech-like, different per seed."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = 120 + 40 * rng.random() + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    tone = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * (2 + rng.random()) * t) ** 2
    signal = tone * envelope + 0.05 * rng.standard_normal(len(t))
    return (level * signal / np.abs(signal).max()).astype(np.float32)


def test_front_end_is_resemblyzers_own(resemblyzer):
    from resemblyzer import audio

    for level in (0.001, 0.9):  # quieter than -30 dBFS (raised) and louder (left as it is)
        signal = voice(2.3, seed=1, level=level)
        expected = audio.normalize_volume(signal, audio.audio_norm_target_dBFS, increase_only=True)
        np.testing.assert_allclose(dvec.louder(signal), expected, rtol=1e-5, atol=1e-8)
        np.testing.assert_allclose(dvec.mel_power(signal, SR), audio.wav_to_mel_spectrogram(signal), rtol=1e-5,
                                   atol=1e-6)
    assert np.array_equal(dvec.louder(np.zeros(100, np.float32)), np.zeros(100, np.float32))  # silence: no NaN


def test_layer_by_layer_equals_resemblyzers_three_layer_encoder(resemblyzer):
    """The last layer's last state through the encoder's head is resemblyzer's own embedding."""
    encoder = resemblyzer.VoiceEncoder("cpu", verbose=False)
    mels = torch.from_numpy(dvec.windows(dvec.mel_power(dvec.louder(voice(3.1, seed=2)), SR)))
    assert mels.shape[0] > 1  # several 1.6 s windows
    hidden = mels
    with torch.inference_mode():
        for layer in dvec.encoder_layers():
            hidden, _ = layer(hidden)
        ours = encoder.relu(encoder.linear(hidden[:, -1]))
        ours = ours / torch.norm(ours, dim=1, keepdim=True)
        expected = encoder(mels)
    np.testing.assert_allclose(ours.numpy(), expected.numpy(), rtol=1e-4, atol=1e-5)


def test_windows_cover_the_utterance_as_the_encoder_was_trained():
    mel = np.arange(410 * 40, dtype=np.float32).reshape(410, 40)
    cut = dvec.windows(mel)
    assert cut.shape == (5, 160, 40)
    assert [int(w[0, 0]) // 40 for w in cut] == [0, 80, 160, 240, 250]  # the last one ends with the utterance
    assert np.array_equal(cut[-1][-1], mel[-1])
    short = dvec.windows(mel[:100])
    assert short.shape == (1, 100, 40)  # one window of its own length, never zero-padded
    assert dvec.windows(mel[:160]).shape == (1, 160, 40)


def test_shapes_layers_and_pooling():
    signal = voice(2.4, seed=3)
    full = get_feature_set("dvector")
    arrays = full.extract(signal)
    vector = arrays["functionals"]
    assert vector.shape == (1536,) == (len(full.functional_names),) and vector.dtype == np.float32
    assert np.isfinite(vector).all() and vector[:256].std() > 0
    assert full.functional_names[0] == "lstm0_mean_0" and full.functional_names[-1] == "lstm2_std_255"
    n_mel = 1 + len(signal) // 160  # 241 frames of 10 ms
    assert arrays["frames"].shape == (-(-n_mel // 4), 768) == (61, len(full.feature_names))  # 25 per second
    assert full.feature_names[0] == "lstm0_0" and full.feature_names[-1] == "lstm2_255"
    assert set(full.extract(signal, parts=("frames",))) == {"frames"}
    assert set(full.extract(signal, parts=("functionals",))) == {"functionals"}

    upper = get_feature_set("dvector", layers="2, 1")
    assert upper.config.layers == "1,2" and upper.cache_key() == get_feature_set("dvector", layers="1,2").cache_key()
    np.testing.assert_allclose(upper.extract(signal)["functionals"], vector[512:], rtol=1e-5, atol=1e-6)
    means = get_feature_set("dvector", pooling="mean").extract(signal)["functionals"]
    assert means.shape == (768,)
    np.testing.assert_allclose(means, np.concatenate([vector[0:256], vector[512:768], vector[1024:1280]]),
                               rtol=1e-5, atol=1e-6)
    keys = {get_feature_set("dvector", **options).cache_key()
            for options in ({}, {"layers": "1,2"}, {"pooling": "mean"}, {"frame_rate": 50})}
    assert len(keys) == 4 and full.cache_key() in keys
    described = full.describe()
    assert described["weights"].startswith("resemblyzer-0.1.4:") and {"torch", "librosa"} <= set(described["libraries"])
    assert get_feature_set("dvector", layers=[2, 1]).config.layers == "1,2" == get_feature_set("dvector", layers=(1, 2)).config.layers
    assert get_feature_set("dvector", layers=2).config.layers == "2"
    other = full.extract(voice(2.4, seed=4))["functionals"]
    assert not np.allclose(other, vector)  # the vector describes the signal


def test_frames_are_back_to_back_windows_averaged_to_the_frame_rate(resemblyzer):
    """Each 1.6 s piece runs from a fresh state as trained; the 10 ms outputs are averaged in groups."""
    signal = voice(3.7, seed=5)
    mel = dvec.mel_power(dvec.louder(signal), SR)
    encoder = resemblyzer.VoiceEncoder("cpu", verbose=False)
    expected = []
    with torch.inference_mode():
        for start in range(0, len(mel), 160):  # the three-layer LSTM itself, one window at a time
            outputs, _ = encoder.lstm(torch.from_numpy(mel[start:start + 160])[None])
            expected.append(outputs[0].numpy())
    expected = np.concatenate(expected)
    every = get_feature_set("dvector", layers="2", frame_rate=100).extract(signal, parts=("frames",))["frames"]
    np.testing.assert_allclose(every, expected, rtol=1e-4, atol=1e-5)
    fifty = get_feature_set("dvector", layers="2", frame_rate=50).extract(signal, parts=("frames",))["frames"]
    assert len(fifty) == -(-len(expected) // 2)
    np.testing.assert_allclose(fifty[0], expected[:2].mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(fifty[-1], expected[2 * (len(fifty) - 1):].mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dvec.group_means(np.arange(10.0)[:, None], 4)[:, 0], [1.5, 5.5, 8.5])


def test_silent_tiny_and_empty_signals_give_finite_vectors():
    full = get_feature_set("dvector")
    for signal in (np.zeros(16_000, np.float32), np.full(8000, 1e-42, np.float32), np.zeros(5, np.float32),
                   np.zeros(0, np.float32), voice(0.05, seed=6)):
        arrays = full.extract(signal)
        assert arrays["functionals"].shape == (1536,) and np.isfinite(arrays["functionals"]).all()
        assert arrays["frames"].shape[1] == 768 and len(arrays["frames"]) >= 1 and np.isfinite(arrays["frames"]).all()


def test_vector_columns_are_named_after_the_functionals_even_when_as_wide_as_the_frames():
    from benchmark.feature_shift import column_names

    means = get_feature_set("dvector", pooling="mean")
    assert len(means.functional_names) == len(means.feature_names) == 768
    assert column_names(means, 768)[0] == "lstm0_mean_0"
    assert column_names(means, 768, vectors=False)[0] == "lstm0_0"
    assert get_feature_set("augmented", base="dvector", kind="noise", value=10.0).max_workers == 1  # one torch process


def test_bad_options_and_foreign_weights_are_one_line_errors(tmp_path, monkeypatch):
    for bad in ({"layers": "3"}, {"layers": "1,x"}, {"layers": ""}, {"layers": [1, 5]}, {"layers": "-1"}):
        with pytest.raises(dvec.SpeakerEncoderError, match="--feature-param layers="):
            get_feature_set("dvector", **bad)
    with pytest.raises(dvec.SpeakerEncoderError, match="--feature-param pooling='max': use mean_std or mean"):
        get_feature_set("dvector", pooling="max")
    for rate in (0, 30, 200):
        with pytest.raises(dvec.SpeakerEncoderError, match=f"--feature-param frame_rate={rate}: use a divisor of 100"):
            get_feature_set("dvector", frame_rate=rate)

    foreign = tmp_path / "pretrained.pt"
    foreign.write_bytes(b"not the weights")
    monkeypatch.setattr(dvec, "weights_path", lambda: foreign)
    dvec.checked_weights.cache_clear()
    try:
        with pytest.raises(dvec.SpeakerEncoderError, match=r"is not resemblyzer 0\.1\.4's weights"):
            get_feature_set("dvector").describe()  # what the feature cache asks first, before any file
    finally:
        dvec.checked_weights.cache_clear()
    monkeypatch.undo()

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(dvec.importlib.util, "find_spec",
                        lambda name, *a: None if name == "resemblyzer" else real_find_spec(name, *a))
    dvec.checked_weights.cache_clear()
    try:
        with pytest.raises(dvec.SpeakerEncoderError, match=r"needs the resemblyzer package for its weights; install"):
            get_feature_set("dvector").cache_key()
    finally:
        monkeypatch.undo()
        dvec.checked_weights.cache_clear()


def test_a_run_with_foreign_weights_stops_before_any_file(tmp_path, monkeypatch):
    from benchmark.config import resolve
    from benchmark.runner import Runtime, run as run_config

    corpus = write_folder_corpus(tmp_path / "corpus", speakers=2, per_class=1)
    foreign = tmp_path / "pretrained.pt"
    foreign.write_bytes(b"not the weights")
    monkeypatch.setattr(dvec, "weights_path", lambda: foreign)
    dvec.checked_weights.cache_clear()
    cache = tmp_path / "cache"
    try:
        config = resolve(dict(model="svm", features="dvector", corpus=f"folder:{corpus}", final_model=False))
        with pytest.raises(dvec.SpeakerEncoderError, match="is not resemblyzer 0.1.4's weights"):
            run_config(config, Runtime(tracking_uri=f"sqlite:///{tmp_path / 'm.db'}", cache_dir=str(cache),
                                       progress=False))
    finally:
        dvec.checked_weights.cache_clear()
    assert not any(path.suffix == ".npz" for path in cache.rglob("*"))  # nothing extracted


# the README's commands, as typed there (the data folder comes from SER_BENCH_DATA)
README_CROSS_CORPUS = ("bench run --protocol cross_corpus --train-corpus emodb --test-corpus urdu --classes 4 "
                       "--model svm --features dvector --norm corpus")
README_EMODB = "bench run --model svm --features dvector --corpus emodb --classes 7 --norm speaker"


def bench(*args: str, cwd: Path, data: Path | None = None) -> subprocess.CompletedProcess:
    """``bench ARGS`` in a fresh process in ``cwd``, with its own feature cache and MLflow store there
    (and SER_BENCH_DATA=``data`` when given)."""
    env = {**os.environ, "COLUMNS": "200", "SER_BENCH_CACHE": str(cwd / "cache"),
           "MLFLOW_TRACKING_URI": f"sqlite:///{cwd / 'mlflow.db'}", **({"SER_BENCH_DATA": str(data)} if data else {})}
    return subprocess.run([sys.executable, "-m", "benchmark", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=600)


def test_the_readmes_dvector_commands_as_typed(data_dir, tmp_path):
    """The README's two commands on the synthetic corpora; a bad layer is one line before any file."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert README_CROSS_CORPUS in readme and README_EMODB + "\n" in readme  # what the tests run is what it shows
    result = bench(*README_CROSS_CORPUS.split()[1:], cwd=tmp_path, data=data_dir)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "emodb->urdu" in result.stdout and "pooled" in result.stdout
    result = bench(*README_EMODB.split()[1:], cwd=tmp_path, data=data_dir)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "speaker-03" in result.stdout and "pooled" in result.stdout

    fresh = tmp_path / "bad"
    fresh.mkdir()
    bad = bench("run", "--protocol", "cross_corpus", "--train-corpus", "emodb", "--test-corpus", "urdu",
                "--classes", "4", "--model", "svm", "--features", "dvector", "--feature-param", "layers=5",
                "--data-dir", str(data_dir), cwd=fresh)
    assert bad.returncode != 0
    assert "Traceback" not in bad.stderr
    lines = [line for line in bad.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--feature-param layers=5" in lines[0], bad.stderr
    assert not any(path.is_file() for path in (fresh / "cache").rglob("*"))  # refused before any file


def test_emodb_to_urdu_with_the_speaker_encoder_on_the_real_corpora(real_data_dir, real_emodb_dir, real_urdu_dir,
                                                                      tmp_path):
    """The README's cross-corpus command on the real corpora, as typed: above the 0.445 of egemaps."""
    import re

    result = bench(*README_CROSS_CORPUS.split()[1:], cwd=tmp_path, data=real_data_dir)
    assert result.returncode == 0, result.stderr[-2000:]
    pooled = re.search(r"pooled\s*│\s*400\s*│\s*([\d.]+)\s*│\s*([\d.]+)", result.stdout)
    assert pooled, result.stdout[-2000:]
    assert float(pooled.group(2)) >= 0.50, result.stdout[-2000:]


def write_folder_corpus(root: Path, speakers: int = 3, per_class: int = 2) -> Path:
    """``<emotion>/<speaker>/file.wav``: anger louder and higher than sadness."""
    import soundfile as sf

    for e, emotion in enumerate(("anger", "sadness")):
        for s in range(speakers):
            folder = root / emotion / f"spk{s}"
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(per_class):
                signal = voice(1.0 + 0.4 * k, seed=100 * e + 10 * s + k, level=0.3 if emotion == "anger" else 0.05)
                sf.write(folder / f"{emotion}_{s}_{k}.wav", signal, SR)
    return root


def test_final_model_predicts_a_new_file_and_a_sequence_model_trains_on_the_frames(tmp_path):
    import json

    corpus = write_folder_corpus(tmp_path / "corpus")
    run = bench("run", "--model", "svm", "--features", "dvector", "--corpus", f"folder:{corpus}", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    (parent,) = [r for r in client.search_runs([e.experiment_id for e in client.search_experiments()])
                 if "mlflow.parentRunId" not in r.data.tags and r.data.tags.get("ser_bench_kind") == "run"]
    assert parent.info.status == "FINISHED" and parent.data.params["features.name"] == "dvector"
    wav = sorted(corpus.rglob("*.wav"))[0]
    predicted = bench("predict", str(wav), "--model", f"runs:/{parent.info.run_id}/model", "--format", "json",
                      cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    answer = json.loads(predicted.stdout)
    assert answer["predictions"][0]["top1"] in ("anger", "sadness") and not answer["failed"]

    from benchmark.config import resolve
    from benchmark.runner import Runtime, run as run_config

    config = resolve(dict(model="attn_blstm", features="dvector", corpus=f"folder:{corpus}", epochs=1, batch_size=4,
                          model_params={"units": 4}, final_model=False))
    result = run_config(config, Runtime(tracking_uri=f"sqlite:///{tmp_path / 'seq.db'}", progress=False))
    assert len(result.folds) == 3 and all(0.0 <= row["uar"] <= 1.0 for row in result.folds)  # one per speaker
