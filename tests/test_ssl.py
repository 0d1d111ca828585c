"""SSL embedding feature sets on tiny randomly initialised wav2vec2 / HuBERT / WavLM models.

No model hub is reachable here: every model is built from its config inside the test, saved with
``save_pretrained`` and loaded by path, exactly as a user's downloaded folder would be. The
reference for every number is what ``transformers`` itself returns for the same model and input.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from benchmark.audio import load_audio  # noqa: E402
from benchmark.errors import BenchError  # noqa: E402
from benchmark.features import get_feature_set  # noqa: E402
from benchmark.features.extract import extract_features  # noqa: E402
from benchmark.features.ssl import SSLModelError  # noqa: E402

SR = 16_000
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(16, 16),
            conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
ARCHITECTURES = ("wav2vec2", "hubert", "wavlm")


def save_tiny_model(folder: Path, architecture: str, seed: int = 0, layer_norm: bool = False,
                    preprocessor: bool = True) -> Path:
    """A randomly initialised model of ``architecture`` saved like a downloaded checkpoint."""
    from transformers import AutoModel, HubertConfig, Wav2Vec2Config, Wav2Vec2FeatureExtractor, WavLMConfig

    config_class = {"wav2vec2": Wav2Vec2Config, "hubert": HubertConfig, "wavlm": WavLMConfig}[architecture]
    extra = {"feat_extract_norm": "layer", "do_stable_layer_norm": True} if layer_norm else {}
    torch.manual_seed(seed)
    AutoModel.from_config(config_class(**TINY, **extra)).save_pretrained(folder)
    if preprocessor:
        Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=layer_norm).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ssl-models")
    models = {arch: save_tiny_model(root / arch, arch) for arch in ARCHITECTURES}
    models["wav2vec2-layernorm"] = save_tiny_model(root / "wav2vec2-layernorm", "wav2vec2", layer_norm=True)
    models["wavlm-layernorm"] = save_tiny_model(root / "wavlm-layernorm", "wavlm", layer_norm=True)
    return models


def speechlike(seconds: float, seed: int) -> np.ndarray:
    """Noise through a varying amplitude envelope: not silent, different every seed."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    envelope = 0.2 + 0.2 * np.sin(2 * np.pi * rng.uniform(1, 5) * np.arange(n) / SR)
    return (envelope * rng.standard_normal(n)).astype(np.float32)


def reference_hidden_states(folder: Path, signal: np.ndarray) -> tuple:
    """What transformers returns for one signal: its feature extractor, then the model."""
    from transformers import AutoFeatureExtractor, AutoModel

    processor = AutoFeatureExtractor.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    inputs = processor(signal, sampling_rate=SR, return_tensors="pt")
    with torch.no_grad():
        return tuple(h[0].numpy() for h in model(**inputs, output_hidden_states=True).hidden_states)


def test_importing_feature_sets_does_not_import_torch():
    code = ("import sys, benchmark.features as f; assert {'hf', 'wav2vec2', 'hubert', 'wavlm'} <= set(f.FEATURE_SETS); "
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_layers_equal_the_hidden_states_transformers_returns(tiny_models, architecture):
    folder = tiny_models[architecture]
    signal = speechlike(0.7, seed=1)
    reference = reference_hidden_states(folder, signal)
    assert len(reference) == TINY["num_hidden_layers"] + 1
    for layers, expected in [(0, reference[0]), (-1, reference[-1]), (1, reference[1]),
                             ("mean", np.mean(reference, axis=0)),
                             ([0, 2], np.concatenate([reference[0], reference[2]], axis=1))]:
        arrays = get_feature_set(f"hf:{folder}", layers=layers).extract(signal)
        np.testing.assert_allclose(arrays["frames"], expected, rtol=1e-5, atol=1e-5, err_msg=f"layers={layers}")


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_shapes_and_pooling(tiny_models, architecture):
    from transformers import AutoModel

    folder = tiny_models[architecture]
    signal = speechlike(1.0, seed=2)
    n_frames = int(AutoModel.from_pretrained(folder)._get_feat_extract_output_lengths(torch.tensor(len(signal))))
    feature_set = get_feature_set(f"hf:{folder}", layers=[1, 2])
    arrays = feature_set.extract(signal)
    assert arrays["frames"].shape == (n_frames, 2 * TINY["hidden_size"]) == (n_frames, len(feature_set.feature_names))
    frames = arrays["frames"].astype(np.float64)
    np.testing.assert_allclose(arrays["functionals"], np.concatenate([frames.mean(0), frames.std(0)]), rtol=1e-5,
                               atol=1e-6)
    assert len(get_feature_set(f"hf:{folder}").feature_names) == TINY["hidden_size"]  # layers=mean
    pooled_only = get_feature_set(f"hf:{folder}", layers=[1, 2], frames=False, pooling="mean")
    assert pooled_only.level == "utterance"
    only = pooled_only.extract(signal)
    assert set(only) == {"functionals"}
    np.testing.assert_allclose(only["functionals"], frames.mean(0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("model", ["wav2vec2", "wav2vec2-layernorm", "wavlm-layernorm", "hubert"])
def test_batches_equal_one_by_one(tiny_models, model):
    """Padded batches (layer-norm models, with the attention mask) or equal-length batches
    (group-norm models) give the frames each file gives alone."""
    feature_set = get_feature_set(f"hf:{tiny_models[model]}", batch_size=4)
    signals = [speechlike(s, seed=i) for i, s in enumerate([0.4, 1.3, 0.4, 0.9, 0.25, 0.4])]
    batched = feature_set.extract_batch(signals)
    assert feature_set.encoder().masked == model.endswith("layernorm")
    for signal, together in zip(signals, batched):
        alone = feature_set.extract(signal)
        assert together["frames"].shape == alone["frames"].shape
        np.testing.assert_allclose(together["frames"], alone["frames"], rtol=1e-4, atol=1e-5)


def test_long_files_are_cut_into_equal_chunks(tiny_models):
    folder = tiny_models["wavlm"]
    signal = speechlike(2.5, seed=3)  # max 1 s -> three chunks of 0.8333 s
    chunked = get_feature_set(f"hf:{folder}", max_chunk_s=1).extract(signal)["frames"]
    whole = get_feature_set(f"hf:{folder}").extract
    size = -(-len(signal) // 3)
    expected = np.concatenate([whole(signal[i:i + size])["frames"] for i in range(0, len(signal), size)])
    np.testing.assert_allclose(chunked, expected, rtol=1e-5, atol=1e-5)


def test_bad_options_are_one_line_errors(tiny_models):
    folder = tiny_models["hubert"]
    with pytest.raises(SSLModelError, match=r"hidden states 0\.\.2"):
        get_feature_set(f"hf:{folder}", layers=5).extract(speechlike(0.3, seed=0))
    for option in ({"layers": "top"}, {"pooling": "max"}, {"device": "tpu"}, {"max_chunk_s": 0}):
        with pytest.raises(BenchError, match=next(iter(option))):
            get_feature_set(f"hf:{folder}", **option)
    with pytest.raises(BenchError, match="two models"):
        get_feature_set(f"hf:{folder}", model="facebook/wav2vec2-base")
    with pytest.raises(SSLModelError, match="no config.json"):
        get_feature_set(f"hf:{folder.parent / 'missing'}").cache_key()


def test_cache_keys_name_model_weights_and_layers(tiny_models, tmp_path):
    folder = tiny_models["wav2vec2"]
    key = get_feature_set(f"hf:{folder}").cache_key()
    assert key == get_feature_set("hf", model=str(folder), batch_size=2, device="cpu").cache_key()  # speed only
    assert key != get_feature_set(f"hf:{tiny_models['hubert']}").cache_key()  # another model
    assert key != get_feature_set(f"hf:{folder}", layers=-1).cache_key()  # another layer
    assert key != get_feature_set(f"hf:{folder}", pooling="mean").cache_key()
    retrained = save_tiny_model(tmp_path / "same-name", "wav2vec2", seed=0)
    copy_key = get_feature_set(f"hf:{retrained}").cache_key()
    save_tiny_model(retrained, "wav2vec2", seed=1)  # same folder, new weights
    assert get_feature_set(f"hf:{retrained}").cache_key() != copy_key


def fake_hub_cache(cache: Path, repo: str, snapshots: dict[str, Path], main: str) -> None:
    """The Hugging Face cache layout (models--org--name/snapshots/<commit>, refs/main)."""
    import shutil

    root = cache / f"models--{repo.replace('/', '--')}"
    for commit, folder in snapshots.items():
        shutil.copytree(folder, root / "snapshots" / commit)
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(main)


def test_hub_name_loads_from_the_cache_offline_and_pins_its_commit(tiny_models, tmp_path, monkeypatch):
    from huggingface_hub import constants

    first, second = "a" * 40, "b" * 40
    fake_hub_cache(tmp_path / "hub", "facebook/wav2vec2-base",
                   {first: tiny_models["wav2vec2"], second: tiny_models["wav2vec2-layernorm"]}, main=first)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    preset = get_feature_set("wav2vec2")
    assert preset.config.model == "facebook/wav2vec2-base" and preset.config.revision is None
    key = preset.cache_key()
    assert preset.config.revision == first  # pinned: a logged model names the exact weights
    assert preset.describe()["weights"] == f"commit:{first}"
    assert get_feature_set("wav2vec2", revision=second).cache_key() != key
    signal = speechlike(0.5, seed=4)
    np.testing.assert_allclose(preset.extract(signal)["frames"],
                               np.mean(reference_hidden_states(tiny_models["wav2vec2"], signal), axis=0),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("command", [["features", "extract"], ["run", "--model", "svm"]])
def test_missing_hub_model_offline_is_one_line_naming_what_to_download(tmp_path, command):
    corpus = write_corpus(tmp_path / "corpus", speakers=2, per_class=1)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf-home")}
    out = subprocess.run(["bench", *command, "--corpus", f"folder:{corpus}", "--features", "wavlm"],
                         capture_output=True, text=True, env=env, cwd=tmp_path)
    lines = [line for line in (out.stdout + out.stderr).splitlines() if line.strip()]
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert len(lines) == 1, lines
    assert "hf download microsoft/wavlm-base-plus" in lines[0] and str(tmp_path / "hf-home") in lines[0]
    assert not (tmp_path / "mlflow.db").exists()  # it failed before any MLflow run was started


def test_extraction_caps_workers_batches_files_and_skips_bad_ones(tiny_models, tmp_path):
    corpus = write_corpus(tmp_path / "corpus", speakers=2, per_class=2)
    files = sorted(corpus.rglob("*.wav"))
    (tmp_path / "broken.wav").write_bytes(b"RIFF not really")
    items = [(p.stem, p) for p in files] + [("broken", tmp_path / "broken.wav")]
    feature_set = get_feature_set(f"hf:{tiny_models['wavlm-layernorm']}", batch_size=3)
    result = extract_features(items, feature_set, cache_dir=tmp_path / "cache", jobs=4, progress=False)
    assert result.computed == len(files) and list(result.failed) == ["broken"]
    assert "broken.wav" in result.failed["broken"]
    for uid, path in items[:3]:
        alone = feature_set.extract(load_audio(path))
        np.testing.assert_allclose(result.features[uid]["frames"], alone["frames"], rtol=1e-4, atol=1e-5)
    again = extract_features(items, feature_set, cache_dir=tmp_path / "cache", jobs=4, progress=False)
    assert again.cached == len(files) and again.computed == 0


# --- end to end: bench run / predict / report / tune on a synthetic corpus -------------------------

EMOTIONS = {"anger": 300.0, "sadness": 120.0}


def write_corpus(root: Path, speakers: int = 3, per_class: int = 3) -> Path:
    """``<emotion>/<speaker>/file.wav`` tones: louder, higher and faster-modulated for anger."""
    for e, (emotion, freq) in enumerate(EMOTIONS.items()):
        for s in range(speakers):
            folder = root / emotion / f"spk{s}"
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(per_class):
                rng = np.random.default_rng(100 * e + 10 * s + k)
                t = np.arange(int((0.5 + 0.1 * k) * SR)) / SR
                wobble = 1 + 0.5 * np.sin(2 * np.pi * (2 + 6 * e) * t)
                signal = (0.1 + 0.3 * e) * wobble * np.sin(2 * np.pi * (freq + 15 * s) * t) + 0.01 * rng.standard_normal(t.size)
                sf.write(folder / f"{emotion}_{s}_{k}.wav", signal.astype(np.float32), SR)
    return root


def bench(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}  # the store in cwd, nothing inherited
    out = subprocess.run(["bench", *args], capture_output=True, text=True, cwd=cwd, env=env)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return out


def test_bench_run_predict_report_tune_on_a_local_model(tiny_models, tmp_path):
    folder, corpus = tiny_models["wavlm"], write_corpus(tmp_path / "corpus")
    features = f"hf:{folder}"
    bench("run", "--model", "svm", "--features", features, "--corpus", f"folder:{corpus}", cwd=tmp_path)

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = [r for r in client.search_runs([e.experiment_id for e in client.search_experiments()])
            if "mlflow.parentRunId" not in r.data.tags and r.data.tags.get("ser_bench_kind") == "run"]
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    params = runs[0].data.params
    assert params["features.name"] == "hf" and params["features.model"] == str(folder)
    assert 0.0 <= runs[0].data.metrics["uar"] <= 1.0 and runs[0].data.metrics["n_utterances"] == 18
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    model_uri = f"runs:/{runs[0].info.run_id}/model"
    metadata = mlflow.models.get_model_info(model_uri).metadata
    assert metadata["feature_set"] == "hf"
    assert metadata["ser_bench_config"]["features"]["params"]["model"] == str(folder)

    wav = next(iter(sorted(corpus.rglob("*.wav"))))
    predicted = json.loads(bench("predict", str(wav), "--model", model_uri, "--format", "json", cwd=tmp_path).stdout)
    assert predicted["predictions"][0]["top1"] in EMOTIONS and not predicted["failed"]

    bench("report", "--name", "ssl", cwd=tmp_path)
    assert f"svm + hf[{folder}, layers mean]" in (tmp_path / "reports" / "ssl.md").read_text()

    last_layer = ("--features", features, "--feature-param", "layers=-1", "--corpus", f"folder:{corpus}")
    bench("tune", "--model", "svm", *last_layer, "--trials", "2", "--study", "svm-hf", cwd=tmp_path)
    bench("run", "--model", "svm", *last_layer, "--params-from", "svm-hf", "--no-final-model", cwd=tmp_path)
    tuned = [r for r in client.search_runs([e.experiment_id for e in client.search_experiments()])
             if r.data.tags.get("tuned_by_study") == "svm-hf"]
    assert len(tuned) == 1 and tuned[0].data.params["features.layers"] == "-1"
    assert tuned[0].data.tags["feature_cache_key"] != runs[0].data.tags["feature_cache_key"]


def test_sequence_model_trains_on_frames(tiny_models, tmp_path):
    from benchmark.config import resolve
    from benchmark.runner import Runtime, run

    corpus = write_corpus(tmp_path / "corpus", speakers=2, per_class=2)
    config = resolve(dict(model="attn_blstm", features=f"hf:{tiny_models['hubert']}", corpus=f"folder:{corpus}",
                       epochs=1, batch_size=4, model_params={"units": 4}, final_model=False,
                       feature_params={"layers": -1}))
    result = run(config, Runtime(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", progress=False))
    assert len(result.folds) == 2 and all(0.0 <= row["uar"] <= 1.0 for row in result.folds)


def test_throughput_command_reports_cpu_time_per_audio_hour(tiny_models, tmp_path):
    corpus = write_corpus(tmp_path / "corpus", speakers=1, per_class=2)
    out = subprocess.run([sys.executable, "-m", "benchmark.features._ssl_speed", "--features",
                          f"hf:{tiny_models['wav2vec2-layernorm']}", "--corpus", f"folder:{corpus}", "--limit", "3",
                          "--repeat", "1"], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    import re

    seconds = float(re.search(r"3 files, ([0-9.]+) s of audio", out.stdout).group(1))
    assert 1.5 <= seconds <= 1.8 and "padded batches: yes" in out.stdout  # three files of 0.5 or 0.6 s
    assert out.stdout.count("CPU min") == 2 and "batched vs one by one" in out.stdout
