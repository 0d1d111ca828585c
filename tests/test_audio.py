import numpy as np
import pytest
import soundfile as sf

from benchmark.audio import load_audio
from benchmark.errors import AudioError
from conftest import tone


@pytest.mark.parametrize("suffix,subtype", [(".wav", "PCM_16"), (".flac", "PCM_16"), (".ogg", "VORBIS")])
def test_any_format_rate_and_channels_become_mono_16k(tmp_path, suffix, subtype):
    path = tmp_path / f"stereo{suffix}"
    sf.write(path, tone(seconds=1.0, sr=44_100, channels=2), 44_100, subtype=subtype)
    signal = load_audio(path)
    assert signal.dtype == np.float32 and signal.ndim == 1
    assert abs(signal.shape[0] - 16_000) <= 1
    # a 220 Hz tone survives resampling: the spectral peak stays at 220 Hz
    spectrum = np.abs(np.fft.rfft(signal))
    assert abs(np.argmax(spectrum) * 16_000 / signal.shape[0] - 220) < 2


def test_16k_mono_file_loads_unchanged(emodb_files):
    raw, sr = sf.read(emodb_files[0], dtype="float32")
    assert sr == 16_000
    np.testing.assert_array_equal(load_audio(emodb_files[0]), raw)


@pytest.mark.parametrize("case,expected", [
    ("empty", "empty"), ("corrupt", "cannot decode"), ("zero", "zero samples"),
    ("silent", "silent"), ("missing", "no such audio file"),
])
def test_bad_audio_gives_one_line_error_naming_the_file(tmp_path, case, expected):
    path = tmp_path / f"{case}.wav"
    if case == "empty":
        path.write_bytes(b"")
    elif case == "corrupt":
        path.write_bytes(b"RIFF\x00\x00garbage that is not audio" * 10)
    elif case == "zero":
        sf.write(path, np.zeros(0, dtype=np.float32), 16_000)
    elif case == "silent":
        sf.write(path, np.zeros(16_000, dtype=np.float32), 16_000)
    with pytest.raises(AudioError) as info:
        load_audio(path)
    message = str(info.value)
    assert str(path) in message and expected in message and "\n" not in message
