"""Shared fixtures: small synthetic corpora in the real layouts (core tests), the real corpora from
$SER_BENCH_DATA (default ../shared/data) for tests marked ``real_data``.

Core tests never skip: they run on corpora generated here. A real-corpus test skips when its corpus
is absent on a developer's machine, and *fails* under CI (``CI`` set), where the corpora must be there.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from synthetic import write_emodb, write_urdu

REPO = Path(__file__).resolve().parents[1]
REAL_DATA_DIR = Path(os.environ.get("SER_BENCH_DATA", REPO.parent / "shared" / "data")).resolve()
REAL_FIXTURES = {"real_data_dir", "real_emodb_dir", "real_urdu_dir", "real_emodb_files"}

# EMO-DB letter -> ShEMO letter for the emotions the two corpora share
EMODB_TO_SHEMO = {"W": "A", "A": "F", "F": "H", "T": "S", "N": "N"}


def pytest_collection_modifyitems(items):
    """Every test that reads a real corpus carries the ``real_data`` mark (``-m "not real_data"``)."""
    for item in items:
        if REAL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.real_data)


def _absent(what: str):
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing; CI expects the real corpora under {REAL_DATA_DIR}")
    pytest.skip(f"{what} not found")


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    return REAL_DATA_DIR


@pytest.fixture(scope="session")
def real_emodb_dir(real_data_dir) -> Path:
    path = real_data_dir / "emodb"
    if not any((path / "wav").glob("*.wav")):
        _absent(f"EMO-DB under {path}")
    return path


@pytest.fixture(scope="session")
def real_urdu_dir(real_data_dir) -> Path:
    path = real_data_dir / "urdu"
    if not any(path.glob("*/*.wav")):
        _absent(f"URDU under {path}")
    return path


@pytest.fixture(scope="session")
def real_emodb_files(real_emodb_dir) -> list[Path]:
    return sorted((real_emodb_dir / "wav").glob("*.wav"))


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """A data root with synthetic ``emodb``, ``urdu`` and ``shemo`` corpora in their real layouts."""
    root = tmp_path_factory.mktemp("synthetic-data")
    write_emodb(root / "emodb")
    write_urdu(root / "urdu")
    write_shemo_corpus(root / "shemo", sorted((root / "emodb" / "wav").glob("*.wav")), per_letter=4)
    return root


@pytest.fixture(scope="session")
def emodb_dir(data_dir) -> Path:
    return data_dir / "emodb"


@pytest.fixture(scope="session")
def urdu_dir(data_dir) -> Path:
    return data_dir / "urdu"


@pytest.fixture(scope="session")
def emodb_files(emodb_dir) -> list[Path]:
    return sorted((emodb_dir / "wav").glob("*.wav"))


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own feature cache, so none reads another's results."""
    monkeypatch.setenv("SER_BENCH_CACHE", str(tmp_path / "feature-cache"))


def write_shemo_corpus(root: Path, emodb_files: list[Path], per_letter: int = 4) -> Path:
    """A small corpus in ShEMO's layout (female/, male/, shemo.json) from EMO-DB-layout files.

    Files are re-encoded at 44.1 kHz like the real ShEMO. Four speakers (F01, F02, M01, M02); one
    file's validated label in shemo.json differs from its file-name letter, as in the real data.
    """
    names = {"A": "angry", "F": "fearful", "H": "happy", "S": "sad", "N": "neutral", "W": "surprised"}
    meta, counter = {}, {}
    speakers = ["F01", "F02", "M01", "M02"]
    for path in emodb_files:
        letter = EMODB_TO_SHEMO.get(path.stem[5])
        if letter is None or counter.get(letter, 0) >= per_letter:
            continue
        index = counter.get(letter, 0)
        counter[letter] = index + 1
        speaker = speakers[index % len(speakers)]
        stem = f"{speaker}{letter}{index + 1:02d}"
        folder = root / ("female" if speaker[0] == "F" else "male")
        folder.mkdir(parents=True, exist_ok=True)
        signal, sr = sf.read(path, dtype="float32")
        import soxr

        sf.write(folder / f"{stem}.wav", soxr.resample(signal, sr, 44_100), 44_100, subtype="PCM_16")
        meta[stem] = {"speaker_id": speaker, "gender": "female" if speaker[0] == "F" else "male",
                      "emotion": names[letter], "transcript": "", "ipa": ""}
    first = sorted(meta)[0]
    meta[first]["emotion"] = "surprised"  # validated label differs from the file name
    (root / "shemo.json").write_text(json.dumps(meta))
    return root


@pytest.fixture(scope="session")
def shemo_dir(data_dir) -> Path:
    return data_dir / "shemo"


def tone(seconds: float = 1.0, sr: int = 16_000, freq: float = 220.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(0)
    mono = 0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)
    return np.repeat(mono[:, None], channels, axis=1).astype(np.float32) if channels > 1 else mono.astype(np.float32)


@pytest.fixture
def small_emodb(tmp_path, emodb_files) -> Path:
    """A copy of 14 EMO-DB-layout files (2 per emotion) to damage freely."""
    root = tmp_path / "emodb"
    (root / "wav").mkdir(parents=True)
    seen = {}
    for path in emodb_files:
        letter = path.stem[5]
        if seen.get(letter, 0) < 2:
            seen[letter] = seen.get(letter, 0) + 1
            shutil.copy(path, root / "wav" / path.name)
    return root
