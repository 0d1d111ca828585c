"""Speed work that must not change a number: openSMILE in one pass, parts and the cache, progress lines."""

import io
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from benchmark.features import get_feature_set
from benchmark.features.cache import FeatureCache, content_hash
from benchmark.features.extract import extract_features
from benchmark.progress import progress


def voiced(seconds: float, f0: float, seed: int, sr: int = 16_000) -> np.ndarray:
    """Speech-like test audio: a gliding harmonic series with a syllable envelope, pauses and noise."""
    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(seed)
    pitch = f0 * (1 + 0.2 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / sr
    harmonics = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = np.clip(np.sin(2 * np.pi * 2.5 * t), 0, None)
    return (0.25 * envelope * harmonics + 0.005 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture
def voiced_wavs(tmp_path):
    paths = []
    for i, (seconds, f0) in enumerate([(1.3, 120.0), (2.1, 210.0), (0.9, 160.0)]):
        path = tmp_path / f"voiced_{i}.wav"
        sf.write(path, voiced(seconds, f0, i), 16_000, subtype="PCM_16")
        paths.append(path)
    return paths


# openSMILE runs in a fresh interpreter: it corrupts the heap of a process that loaded TensorFlow,
# which another test of this session may have done.
SMILE_CHECK = """
import sys, numpy as np, opensmile
from benchmark.audio import load_audio
from benchmark.features import get_feature_set
fresh = {part: opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02, feature_level=level)
         for part, level in [("frames", opensmile.FeatureLevel.LowLevelDescriptors),
                             ("functionals", opensmile.FeatureLevel.Functionals)]}
egemaps = get_feature_set("egemaps")
for path in sys.argv[1:]:
    signal = load_audio(path)
    expected = {part: smile.process_signal(signal, 16000).to_numpy(np.float32) for part, smile in fresh.items()}
    expected["functionals"] = expected["functionals"][0]
    for parts in (None, ["frames", "functionals"], ["frames"], ["functionals"]):
        got = egemaps.extract(signal, parts=parts)
        assert sorted(got) == sorted(parts or ["frames", "functionals"]), (parts, sorted(got))
        for part, values in got.items():
            assert values.dtype == np.float32 and values.shape == expected[part].shape, (part, values.shape)
            np.testing.assert_array_equal(values, expected[part], err_msg=f"{path} {part} {parts}")
print("identical", len(sys.argv) - 1)
"""


def test_egemaps_one_pass_is_bit_identical_to_a_fresh_smile_per_level(voiced_wavs):
    done = subprocess.run([sys.executable, "-c", SMILE_CHECK, *map(str, voiced_wavs)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"identical {len(voiced_wavs)}" in done.stdout


def test_functionals_only_cache_entry_is_not_served_to_a_run_that_needs_frames(voiced_wavs, tmp_path):
    egemaps = get_feature_set("egemaps")
    items = [(path.stem, path) for path in voiced_wavs]
    cache_dir = tmp_path / "cache"
    vector = extract_features(items, egemaps, cache_dir=cache_dir, jobs=1, progress=False, parts=["functionals"])
    assert vector.computed == len(items) and not vector.failed
    entry = FeatureCache(cache_dir, egemaps).load(content_hash(voiced_wavs[0]))
    assert sorted(entry) == ["functionals"] and entry["functionals"].shape == (88,)

    again = extract_features(items, egemaps, cache_dir=cache_dir, jobs=1, progress=False, parts=["functionals"])
    assert (again.cached, again.computed) == (len(items), 0)

    sequence = extract_features(items, egemaps, cache_dir=cache_dir, jobs=1, progress=False, parts=["frames"])
    assert (sequence.cached, sequence.computed) == (0, len(items))  # the functionals-only entry was refused
    assert all(arrays["frames"].shape[1] == 25 for arrays in sequence.features.values())
    merged = FeatureCache(cache_dir, egemaps).load(content_hash(voiced_wavs[0]))
    assert sorted(merged) == ["frames", "functionals"]  # the entry grew; earlier work kept
    np.testing.assert_array_equal(merged["functionals"], vector.features[voiced_wavs[0].stem]["functionals"])

    everything = extract_features(items, egemaps, cache_dir=cache_dir, jobs=1, progress=False)
    assert (everything.cached, everything.computed) == (len(items), 0)


def test_plain_progress_lines_when_not_a_terminal():
    stream = io.StringIO()
    with progress(40, "egemaps", stream=stream, every_percent=25) as advance:
        for _ in range(40):
            advance()
    lines = stream.getvalue().splitlines()
    assert [line.split(":")[1].split("(")[0].strip() for line in lines] == \
        ["10/40 files", "20/40 files", "30/40 files", "40/40 files"]
    assert "left" in lines[0] and "left" not in lines[-1] and "(100%)" in lines[-1]

    silent = io.StringIO()
    with progress(40, "egemaps", stream=silent, enabled=False) as advance:
        advance(40)
    assert silent.getvalue() == ""


def test_redirected_extract_prints_progress_lines(voiced_wavs, tmp_path):
    """`bench features extract` with its output going to a file, as in a batch job."""
    manifest = tmp_path / "corpus.csv"
    manifest.write_text("path,emotion,speaker\n" + "".join(f"{p},anger,s{i}\n" for i, p in enumerate(voiced_wavs)))
    log = tmp_path / "extract.log"
    with open(log, "w") as handle:
        done = subprocess.run(["bench", "features", "extract", "--corpus", f"folder:{manifest}", "--features",
                               "handcrafted36"], stdout=handle, stderr=subprocess.STDOUT, timeout=300)
    text = log.read_text()
    assert done.returncode == 0, text
    assert f"handcrafted36: {len(voiced_wavs)}/{len(voiced_wavs)} files (100%)" in text


def test_fit_threads_never_exceeds_free_cores_or_the_loky_cap(monkeypatch):
    from benchmark.threads import cores_available, fit_threads, limit_threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert 1 <= fit_threads() <= cores_available()
    assert fit_threads(processes=cores_available() * 8) == 1  # many parallel fits: one thread each
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # what joblib/loky sets in its workers
    assert fit_threads() == 1
    from threadpoolctl import threadpool_info

    with limit_threads(1):
        assert all(pool["num_threads"] == 1 for pool in threadpool_info())


def test_xgboost_automatic_threads_give_the_same_model_as_one_thread():
    from benchmark.models import get_model
    from benchmark.threads import cores_available

    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((120, 12)), np.repeat(["anger", "neutral", "sadness"], 40)
    X[y == "anger", 0] += 2
    automatic = get_model("xgboost", n_estimators=30).fit(X, y)
    single = get_model("xgboost", n_estimators=30, n_jobs=1).fit(X, y)
    assert 1 <= automatic.booster_.get_params()["n_jobs"] <= cores_available()
    np.testing.assert_array_equal(automatic.predict_proba(X), single.predict_proba(X))


def small_manifest(tmp_path, speakers: int):
    """A CSV corpus of your own: ``speakers`` x (anger, sadness) x 2 voiced one-second clips."""
    rows = []
    for speaker in range(speakers):
        for emotion, f0 in (("anger", 220.0), ("sadness", 110.0)):
            for take in range(2):
                path = tmp_path / f"s{speaker}_{emotion}_{take}.wav"
                sf.write(path, voiced(1.0, f0 + 10 * take, speaker * 10 + take), 16_000, subtype="PCM_16")
                rows.append(f"{path},{emotion},s{speaker}\n")
    manifest = tmp_path / "corpus.csv"
    manifest.write_text("path,emotion,speaker\n" + "".join(rows))
    return manifest


def test_redirected_run_prints_a_line_per_fold(tmp_path):
    """`bench run > run.log`: every finished fold is a plain line, not a bar that never reaches the file."""
    manifest = small_manifest(tmp_path, speakers=3)
    log = tmp_path / "run.log"
    with open(log, "w") as handle:
        done = subprocess.run(["bench", "run", "--model", "svm", "--features", "handcrafted36", "--corpus",
                               f"folder:{manifest}", "--classes", "all", "--no-final-model"], cwd=tmp_path,
                              stdout=handle, stderr=subprocess.STDOUT, timeout=600)
    text = log.read_text()
    assert done.returncode == 0, text
    for k in (1, 2, 3):
        assert f"svm folds: {k}/3 folds" in text, text[-2000:]


def test_bench_bench_times_every_phase_of_a_vector_run(tmp_path):
    """`bench bench` on a small corpus of your own (a CSV manifest), as the README shows."""
    manifest = small_manifest(tmp_path, speakers=3)
    done = subprocess.run(["bench", "bench", "--corpus", f"folder:{manifest}", "--classes", "all"],
                          capture_output=True, text=True, timeout=900, cwd=tmp_path,
                          env={**os.environ, "COLUMNS": "250"})  # no wrapped table cells
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    out = " ".join(done.stdout.split())
    for phase in ("start-up", "extraction cold", "extraction warm", "folds (3 fits", "final fit", "whole run",
                  "MLflow logging", "bench predict", "bench predict: load the model", "12 files after load (again)"):
        assert phase in out, phase
    model_ms = re.search(r"12 files after load \(again\).*?model ([0-9.]+) ms/file", out)
    assert model_ms and float(model_ms.group(1)) < 50  # the per-file target, features aside
    assert "12 computed, 0 cached" in out and "0 computed, 12 cached" in out
    assert "two Smile passes / one pass" in out
    assert "TensorFlow imported by this svm run: no" in out
    assert not list(tmp_path.glob("mlflow.db"))  # its MLflow store was temporary


@pytest.mark.parametrize("window,step", [(800, 400), (808, 200)])  # the default, and a window 10 does not divide
def test_handcrafted36_compiled_pass_equals_the_numpy_code(window, step):
    """The numba pass gives the numbers of the previous NumPy code (itself tested against pyAudioAnalysis)."""
    from benchmark.features import handcrafted, handcrafted_v1

    signals = [voiced(1.3, 120.0, 0), voiced(0.7, 230.0, 1), voiced(0.03, 200.0, 2),  # shorter than a window
               np.zeros(4000, dtype=np.float32), np.r_[np.zeros(3000), voiced(0.5, 150.0, 3)].astype(np.float32)]
    for signal in signals:
        new = handcrafted.short_term_features(signal, 16_000, window, step)
        old = handcrafted_v1.short_term_features(signal, 16_000, window, step)
        assert new.shape == old.shape and np.all(np.isfinite(new))
        np.testing.assert_allclose(new, old, rtol=1e-9, atol=1e-12)
        x = signal.astype(np.float64)
        x -= x.mean()
        x = np.pad(x / (np.abs(x).max() + 1e-10), (0, max(0, window - len(x))))
        ratio, f0 = handcrafted.harmonic_ratio_f0(np.lib.stride_tricks.sliding_window_view(x, window)[::step], 16_000)
        np.testing.assert_allclose(new[:, 34], ratio, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(new[:, 35], f0, rtol=1e-9)
    voiced_frames = handcrafted.short_term_features(voiced(1.3, 120.0, 0), 16_000, window, step)[:, 35] > 0
    assert voiced_frames.mean() > 0.2  # the test signal is periodic enough to exercise F0


def test_bench_speedup_times_both_versions_cold_and_warm(tmp_path):
    """`bench speedup` as the README shows it, on a corpus of your own, against this checkout's
    own HEAD (a clean clone always has it): both versions run cold and warm (with --load's busy
    process beside them) and the table prints a ratio per phase. The corpus is named by a path
    relative to the caller's folder, as `--data-dir ../shared/data` is in the README: each version
    runs in a folder of its own, where it must still be found."""
    manifest = small_manifest(tmp_path, speakers=2)
    done = subprocess.run(["bench", "speedup", "--baseline", "HEAD", "--rounds", "1", "--load", "1",
                           "--model", "svm", "--features", "handcrafted36", "--corpus", f"folder:{manifest.name}",
                           "--classes", "all", "--no-final-model"],
                          capture_output=True, text=True, timeout=900, cwd=tmp_path, env={**os.environ, "COLUMNS": "250"})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    out = " ".join(done.stdout.split())
    for line in ("baseline cold", "baseline warm", "current cold", "current warm"):
        assert f"round 1/1: {line}" in out, line
    assert re.search(r"cold │ [0-9.]+ │ [0-9.]+ │ [0-9.]+x", out) and re.search(r"warm │ [0-9.]+ │ [0-9.]+ │ [0-9.]+x", out)

    wrong = subprocess.run(["bench", "speedup", "--baseline", "no-such-revision", "--model", "svm"],
                           capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert wrong.returncode != 0 and "Traceback" not in wrong.stderr
    assert "--baseline no-such-revision" in wrong.stderr


def test_speedup_makes_relative_paths_absolute(tmp_path):
    """The versions run in folders of their own: a relative --data-dir, folder: manifest or
    --opt=value must name the caller's path there; other values stay as typed, even where a
    folder of that name exists (``--corpus emodb`` run from inside the data folder)."""
    from benchmark.speedup import absolute_paths

    (tmp_path / "emodb").mkdir()
    out = absolute_paths(["--data-dir", ".", "--corpus", "folder:my.csv", "--cache-dir=c", "--model", "svm",
                          "--corpus", "emodb", "--data-dir", "/abs/path", "--corpora", "urdu,folder:../x.csv"],
                         cwd=tmp_path)
    assert out == ["--data-dir", str(tmp_path), "--corpus", f"folder:{tmp_path / 'my.csv'}",
                   f"--cache-dir={tmp_path / 'c'}", "--model", "svm", "--corpus", "emodb", "--data-dir", "/abs/path",
                   "--corpora", f"urdu,folder:{tmp_path.parent / 'x.csv'}"]
