"""Folder corpora: bad manifests give one line each; folder scans report the files they cannot use."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import soundfile as sf

from benchmark.corpora import get_corpus
from benchmark.corpora.folder import ManifestError
from benchmark.errors import BenchError
from reliability_helpers import bench, one_line_error, tone_corpus, write_tone


@pytest.fixture
def audio(tmp_path) -> Path:
    for name in ("a", "b", "c", "d"):
        write_tone(tmp_path / f"{name}.wav", 0.4, 200 + ord(name))
    return tmp_path


def manifest(folder: Path, text: str, encoding: str = "utf-8") -> Path:
    path = folder / "manifest.csv"
    path.write_bytes(text.encode(encoding))
    return path


def scan(path: Path):
    corpus = get_corpus("folder", root=path)
    return corpus.utterances(), corpus.skipped


def test_not_utf8_is_one_line(audio):
    path = manifest(audio, "path,emotion,speaker\na.wav,angry,Jürgen\n", "latin-1")
    with pytest.raises(ManifestError, match=r"manifest.csv:2: manifest is not UTF-8"):
        scan(path)
    result = bench("features", "extract", "--corpus", f"folder:{path}", "--features", "librosa46", cwd=audio)
    assert "not UTF-8" in one_line_error(result)


def test_utf8_with_bom_and_spaced_header_is_read(audio):
    utterances, skipped = scan(manifest(audio, "\ufeffPath, Emotion ,speaker\na.wav,angry,s1\nb.wav,sad,s2\n"))
    assert len(utterances) == 2 and not skipped


def test_short_and_long_rows_are_skipped_and_counted(audio):
    utterances, skipped = scan(manifest(audio, "path,emotion,speaker\na.wav,angry\nb.wav,sad,s2\nc.wav,sad,s3,x,y\n"))
    assert [u.path.name for u in utterances] == ["b.wav"]
    assert len(skipped) == 2 and "manifest.csv:2" in skipped[0] and "manifest.csv:4" in skipped[1]


def test_duplicate_rows_are_used_once(audio):
    utterances, skipped = scan(manifest(audio, "path,emotion,speaker\na.wav,angry,s1\n./a.wav,anger,s1\nb.wav,sad,s2\n"))
    assert sorted(u.path.name for u in utterances) == ["a.wav", "b.wav"]
    assert len(skipped) == 1 and "duplicate of line 2" in skipped[0]


@pytest.mark.parametrize("second, what", [("a.wav,sad,s1", "emotions"), ("a.wav,angry,s9", "speakers")])
def test_one_file_with_conflicting_labels_or_speakers_is_refused(audio, second, what):
    path = manifest(audio, f"path,emotion,speaker\na.wav,angry,s1\nb.wav,sad,s2\n{second}\n")
    with pytest.raises(ManifestError, match=f"also on line 2 with different {what}"):
        scan(path)


@pytest.mark.parametrize("given", ["../outside.wav", "{outside}", "sub/../../outside.wav"])
def test_paths_leaving_the_manifest_folder_are_refused_unless_allowed(tmp_path, given, monkeypatch):
    outside = write_tone(tmp_path / "outside.wav", 0.4)
    folder = tmp_path / "corpus"
    write_tone(folder / "a.wav", 0.4)
    path = manifest(folder, f"path,emotion,speaker\na.wav,angry,s1\n{given.format(outside=outside)},sad,s2\n")
    with pytest.raises(ManifestError, match="leaves the manifest's folder"):
        scan(path)
    monkeypatch.setenv("SER_BENCH_MANIFEST_ALLOW_OUTSIDE", "1")
    utterances, _ = scan(path)
    assert len(utterances) == 2


def test_same_stem_in_two_folders_gives_two_utterances(tmp_path):
    write_tone(tmp_path / "s1" / "x.wav", 0.4, 200)
    write_tone(tmp_path / "s2" / "x.wav", 0.4, 300)
    utterances, _ = scan(manifest(tmp_path, "path,emotion,speaker\ns1/x.wav,angry,s1\ns2/x.wav,sad,s2\n"))
    assert len({u.id for u in utterances}) == 2


def test_tree_scan_reports_files_it_cannot_use(tmp_path):
    root = tone_corpus(tmp_path / "tree", speakers=2, per_emotion=1)
    spk = root / "anger" / "spk0"
    (spk / "phone.m4a").write_bytes(b"\0" * 100)
    (spk / "notes.txt").write_text("x")
    (spk / ".DS_Store").write_bytes(b"")  # hidden: ignored silently
    os.symlink(spk / "missing.wav", spk / "dangling.wav")
    os.symlink(spk / "loop.wav", spk / "loop.wav")
    os.symlink(root / "anger", spk / "back")  # a folder link back up: a loop
    utterances, skipped = scan(root)
    assert len(utterances) == 4
    text = "\n".join(skipped)
    for name in ("phone.m4a", "notes.txt", "dangling.wav", "loop.wav", "back"):
        assert name in text
    assert ".DS_Store" not in text and len(skipped) == 5
    assert "M4A audio is not supported" in text and "ffmpeg" in text


def test_mp3_is_read_when_libsndfile_can(tmp_path):
    if "MP3" not in sf.available_formats():
        pytest.skip("this libsndfile has no MP3")
    folder = tmp_path / "tree" / "anger" / "spk0"
    folder.mkdir(parents=True)
    wav = write_tone(tmp_path / "x.wav", 1.0)
    data, sr = sf.read(wav)
    try:
        sf.write(folder / "x.mp3", data, sr, format="MP3")
    except Exception:  # noqa: BLE001 - built without an MP3 encoder
        pytest.skip("this libsndfile cannot write MP3")
    utterances, skipped = scan(tmp_path / "tree")
    assert [u.path.name for u in utterances] == ["x.mp3"] and not skipped
    from benchmark.audio import load_audio

    assert abs(len(load_audio(folder / "x.mp3")) - 16_000) < 2_000


def test_data_list_counts_skipped_files(tmp_path):
    root = tone_corpus(tmp_path / "tree", speakers=2, per_emotion=1)
    (root / "anger" / "spk0" / "phone.m4a").write_bytes(b"\0" * 100)
    result = bench("data", "list", "--corpus", f"folder:{root}", "--data-dir", str(tmp_path / "none"), cwd=tmp_path,
                   env={"COLUMNS": "250"})
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if "folder:" in line)
    assert " 4 " in row and " 1 " in row  # 4 files used, 1 skipped


def test_bad_manifest_in_a_run_is_one_line(audio):
    path = manifest(audio, "path,emotion,speaker\na.wav,angry,s1\na.wav,sad,s1\n")
    with pytest.raises(BenchError):
        scan(path)
    line = one_line_error(bench("run", "--model", "svm", "--corpus", f"folder:{path}", cwd=audio))
    assert "different emotions" in line


def test_file_names_that_are_not_utf8_are_read_run_and_predicted(tmp_path):
    """A corpus copied from an old archive can hold file names in Latin-1. Before, such a name broke
    `bench run` with a UnicodeEncodeError traceback (the run's fingerprint, then the MLflow log), the
    file was reported undecodable, and `bench predict` crashed printing it. Now it is read like any
    file and shown with a \\xff escape; a dangling link is counted and logged as a corpus problem."""
    root = tone_corpus(tmp_path / "tree", speakers=3, per_emotion=2)
    latin1 = os.fsencode(root / "anger" / "spk1") + b"/caf\xe9.wav"
    os.rename(os.fsencode(root / "anger" / "spk1" / "1.wav"), latin1)
    os.symlink(root / "anger" / "spk0" / "missing.wav", root / "anger" / "spk0" / "dangling.wav")
    env = {"COLUMNS": "250", "PYTHONIOENCODING": "utf-8"}  # a strict UTF-8 stdout, as in many terminals
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = bench("run", "--model", "svm", "--features", "handcrafted36", "--corpus", f"folder:{root}",
                   "--split", "random", "--jobs", "1", "--data-dir", str(tmp_path / "none"), "--tracking-uri", uri,
                   cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert "12 utterances, 1 corpus entries unusable" in result.stdout  # 12 tones read (the Latin-1 one too), 1 link
    assert "dangling.wav" in result.stderr
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    run = client.search_runs([e.experiment_id for e in client.search_experiments()],
                             "tags.ser_bench_kind = 'run'")[0]
    logged = Path(client.download_artifacts(run.info.run_id, "corpus_problems.txt", str(tmp_path))).read_text()
    assert "dangling.wav" in logged and run.data.metrics["n_corpus_problems"] == 1
    assert run.data.metrics["n_skipped_files"] == 0  # the link is not a file that was read and skipped
    predicted = bench("predict", os.fsdecode(latin1), "--format", "csv", "--tracking-uri", uri, cwd=tmp_path, env=env)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    assert "caf\\xe9.wav," in predicted.stdout
    # a broken file with such a name: the JSON of a folder's predictions stays valid UTF-8
    (Path(os.fsdecode(os.fsencode(root / "anger" / "spk1") + b"/broken\xe9.wav"))).write_bytes(b"RIFF not audio")
    listed = bench("predict", str(root / "anger" / "spk1"), "--format", "json", "--tracking-uri", uri, cwd=tmp_path, env=env)
    assert listed.returncode == 0, listed.stderr[-3000:]
    import json

    failed = json.loads(listed.stdout.encode("utf-8"))["failed"]
    assert list(failed) == [str(root / "anger" / "spk1") + "/broken\\xe9.wav"]
    # a corpus folder whose own name is not UTF-8 would name the corpus in ids and MLflow params: one line
    odd = Path(os.fsdecode(os.fsencode(tmp_path) + b"/corpus\xe9"))
    root.rename(odd)
    assert "the corpus path is not valid UTF-8" in one_line_error(
        bench("run", "--model", "svm", "--corpus", f"folder:{odd}", cwd=tmp_path, env=env))
