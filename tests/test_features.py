import sys

import numpy as np
import pytest
import soundfile as sf

from benchmark.audio import load_audio
from benchmark.errors import BenchError
from benchmark.features import FEATURE_SETS, get_feature_set
from benchmark.features.functionals import STATISTICS, frame_functionals, functional_names, utterance_vector
from benchmark.features.handcrafted import harmonic_ratio_f0, short_term_features
from benchmark.features.librosa_set import Librosa46Config, one_stft_features, seed_recipe

EPS = sys.float_info.epsilon


def reference_harmonic(frame, sr):
    """pyAudioAnalysis 0.3.14 ShortTermFeatures.harmonic, transcribed line for line.

    The installed function cannot run on NumPy 2 (it sizes an array with a float), so the test
    carries its text with that one cast added.
    """
    m = int(np.round(0.016 * sr) - 1)
    r = np.correlate(frame, frame, mode="full")
    g = r[len(frame) - 1]
    r = r[len(frame):-1]
    [a, ] = np.nonzero(np.diff(np.sign(r)))
    m0 = len(r) - 1 if len(a) == 0 else a[0]
    if m > len(r):
        m = len(r) - 1
    gamma = np.zeros(m, dtype=np.float64)
    cumulative_sum = np.cumsum(frame ** 2)
    gamma[m0:m] = r[m0:m] / (np.sqrt(g * cumulative_sum[m:m0:-1]) + EPS)
    zcr = np.sum(np.abs(np.diff(np.sign(gamma)))) / 2 / np.float64(len(gamma) - 1.0)
    if zcr > 0.15:
        return 0.0, 0.0
    hr, blag = np.max(gamma), np.argmax(gamma)
    f0 = sr / (blag + EPS)
    if f0 > 5000 or hr < 0.1:
        f0 = 0.0
    return hr, f0


@pytest.fixture(scope="module")
def sample_files(real_emodb_files):
    return real_emodb_files[::60]  # 9 real files across speakers and emotions


def test_handcrafted36_matches_pyaudioanalysis(sample_files):
    pytest.importorskip("pyAudioAnalysis")
    from pyAudioAnalysis import ShortTermFeatures

    for path in sample_files:
        signal, sr = sf.read(path, dtype="float32")
        # pyAudioAnalysis divides by 2**15 itself: give it int16-scaled samples
        reference, names = ShortTermFeatures.feature_extraction(signal * 32768.0, sr, 800, 400, deltas=False)
        ours = short_term_features(signal, sr, 800, 400)
        assert ours.shape == (reference.shape[1], 36)
        np.testing.assert_allclose(ours[:, :34], reference.T, rtol=1e-6, atol=1e-9, err_msg=str(path))


def test_harmonic_ratio_and_f0_match_the_reference(sample_files):
    for path in sample_files[:4]:
        x = load_audio(path).astype(np.float64)
        x = (x - x.mean()) / (np.abs(x).max() + 1e-10)
        frames = np.lib.stride_tricks.sliding_window_view(x, 800)[::400]
        ratio, f0 = harmonic_ratio_f0(frames, 16_000)
        expected = np.array([reference_harmonic(frame, 16_000) for frame in frames])
        np.testing.assert_allclose(ratio, expected[:, 0], rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(f0, expected[:, 1], rtol=1e-6)
        voiced = f0 > 0
        assert voiced.mean() > 0.2 and 60 < np.median(f0[voiced]) < 400  # speech-like pitch


def test_librosa46_equals_the_seed_recipe(sample_files):
    for config in (Librosa46Config(), Librosa46Config(duration_s=None)):
        for path in sample_files[:4]:
            signal = load_audio(path)
            ours, recipe = one_stft_features(signal, 16_000, config), seed_recipe(signal, 16_000, config)
            assert ours.shape == recipe.shape
            np.testing.assert_array_equal(ours[:, :26], recipe[:, :26])  # same calls on the same STFT
            # deltas: closed form vs SciPy's Savitzky-Golay; equal to float32 rounding
            scale = np.abs(recipe[:, 26:]).max(axis=0) + 1.0
            assert np.all(np.abs(ours[:, 26:] - recipe[:, 26:]).max(axis=0) <= 1e-5 * scale)


def test_registered_sets_shapes_and_names(emodb_files):
    from benchmark.features.extract import extract_features

    signal = load_audio(emodb_files[0])
    expected = {"handcrafted36": 36, "librosa46": 46, "egemaps": 25, "compare": 6373}
    assert set(expected) <= set(FEATURE_SETS)
    for name, width in expected.items():
        feature_set = get_feature_set(name)
        # through the batch extractor: openSMILE must run outside this (maybe TensorFlow-loaded) process
        arrays = extract_features([("x", emodb_files[0])], feature_set, use_cache=False, progress=False).features["x"]
        assert len(feature_set.feature_names) == width
        if feature_set.level == "frame":
            assert arrays["frames"].shape[1] == width and arrays["frames"].shape[0] > 10
        else:
            assert arrays["functionals"].shape == (width,)
        if name == "egemaps":
            assert arrays["functionals"].shape == (88,)
    assert get_feature_set("librosa46").extract(signal)["frames"].shape == (157, 46)


def test_short_signal_still_gives_frames():
    signal = (0.1 * np.sin(np.arange(300) / 5)).astype(np.float32)
    assert get_feature_set("handcrafted36").extract(signal)["frames"].shape == (1, 36)
    assert get_feature_set("librosa46", duration_s=None).extract(signal)["frames"].shape[0] >= 9


def test_functionals():
    frames = np.arange(20, dtype=np.float32).reshape(10, 2)
    vector = frame_functionals(frames)
    assert vector.shape == (2 * len(STATISTICS),)
    assert vector[0] == pytest.approx(9.0) and vector[3] == pytest.approx(18.0)  # mean, max of column 0
    assert functional_names(["a", "b"])[len(STATISTICS)] == "b__mean"
    assert utterance_vector({"frames": frames, "functionals": np.ones(3)}).shape == (3,)


def test_config_changes_cache_key_and_unknown_options_fail():
    assert get_feature_set("librosa46").cache_key() != get_feature_set("librosa46", duration_s=None).cache_key()
    assert get_feature_set("handcrafted36").cache_key() == get_feature_set("handcrafted36").cache_key()
    with pytest.raises(BenchError, match="unknown option"):
        get_feature_set("handcrafted36", hop=3)
    with pytest.raises(BenchError, match="unknown feature set"):
        get_feature_set("wav2vec")


@pytest.mark.parametrize("name, option, low_bad, low_edge, high_edge, high_bad", [
    ("librosa46", "duration_s", 0, 0.01, 600, 601), ("librosa46", "n_fft", 127, 128, 16384, 16385),
    ("librosa46", "hop_length", 15, 16, 16384, 16385), ("librosa46", "n_mfcc", 0, 1, 128, 129),
    ("handcrafted36", "window_s", 0.012, 0.0125, 1.0, 1.01), ("handcrafted36", "step_s", 0.0005, 0.001, 1.0, 1.01),
    ("logmel", "n_mels", 0, 1, 256, 257), ("logmel", "window_s", 0.001, 0.002, 1.0, 1.01),
    ("logmel", "hop_s", 0.0005, 0.001, 1.0, 1.01),
])
def test_feature_options_out_of_range_fail_when_the_set_is_built(name, option, low_bad, low_edge, high_edge, high_bad):
    """A bad --feature-param is a one-line error before any file is read (before: it failed on every
    file as it was extracted, or, for step_s=-1 and n_mfcc=500, silently gave wrong columns); both
    ends of each range still give finite features of the declared width."""
    for bad in (low_bad, high_bad):
        with pytest.raises(BenchError, match=f"feature set {name}: {option}={bad!r} is invalid"):
            get_feature_set(name, **{option: bad})
    signal = (0.1 * np.sin(np.arange(16000) / 7)).astype(np.float32)
    for edge in (low_edge, high_edge):
        feature_set = get_feature_set(name, **{option: edge})
        frames = feature_set.extract(signal)["frames"]
        assert frames.shape[0] >= 1 and frames.shape[1] == len(feature_set.feature_names), (option, edge)
        assert np.isfinite(frames).all(), (option, edge)


def test_tiny_librosa46_cuts_are_padded_only_where_they_used_to_fail():
    """A cut of 5-8 frames keeps its frames (cached features of such configs stay valid); only a cut
    the deltas could not take (under 5 frames) is padded to 5."""
    signal = (0.1 * np.sin(np.arange(16000) / 7)).astype(np.float32)
    assert get_feature_set("librosa46", hop_length=12000).extract(signal)["frames"].shape == (7, 46)
    assert get_feature_set("librosa46", duration_s=0.13).extract(signal)["frames"].shape == (5, 46)
    assert get_feature_set("librosa46", duration_s=0.01).extract(signal)["frames"].shape == (5, 46)


def test_augmented_copies_check_their_value():
    with pytest.raises(BenchError, match="SNR 500.0 dB outside"):
        get_feature_set("augmented", kind="noise", value=500)
    with pytest.raises(BenchError, match="speed factor 3.0 outside"):
        get_feature_set("augmented", kind="speed", value=3)
