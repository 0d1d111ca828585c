import shutil
from collections import Counter

import pytest
import soundfile as sf

from benchmark.corpora import EMOTIONS, get_corpus
from benchmark.errors import BenchError, CorpusNotFoundError
from conftest import tone


def test_emodb_real_counts_and_letters(real_data_dir, real_emodb_dir):
    corpus = get_corpus("emodb", data_dir=real_data_dir)
    utterances = corpus.utterances()
    assert len(utterances) == 535
    assert len({u.speaker for u in utterances}) == 10
    assert set(Counter(u.emotion for u in utterances)) == {
        "anger", "boredom", "disgust", "fear", "happiness", "sadness", "neutral"}
    by_id = {u.id: u for u in utterances}
    # F is Freude (happiness), A is Angst (fear), W is Wut (anger)
    assert by_id["03a01Fa"].emotion == "happiness" and by_id["03a01Fa"].speaker == "03"
    assert by_id["03a04Ad"].emotion == "fear"
    assert by_id["03a01Wa"].emotion == "anger"
    assert by_id["08a01Na"].gender == "female" and by_id["03a01Fa"].gender == "male"
    assert all(u.emotion in EMOTIONS and u.corpus == "emodb" for u in utterances)


def test_urdu_real_counts(real_data_dir, real_urdu_dir):
    utterances = get_corpus("urdu", data_dir=real_data_dir).utterances()
    assert len(utterances) == 400
    assert Counter(u.emotion for u in utterances) == {"anger": 100, "happiness": 100, "neutral": 100, "sadness": 100}
    first = next(u for u in utterances if u.id == "SM1_F10_A010")
    assert first.speaker == "SM1" and first.gender == "male" and first.emotion == "anger"


def test_shemo_layout_label_sources(shemo_dir):
    validated = get_corpus("shemo", root=shemo_dir).utterances()
    by_name = get_corpus("shemo", root=shemo_dir, label_source="filename").utterances()
    assert len(validated) == len(by_name) == 20
    differ = [(a.id, a.emotion, b.emotion) for a, b in zip(validated, by_name) if a.emotion != b.emotion]
    assert len(differ) == 1 and differ[0][1] == "surprise"
    assert {u.speaker for u in validated} == {"F01", "F02", "M01", "M02"}
    assert {u.gender for u in validated} == {"female", "male"}


def test_shemo_without_metadata_uses_file_names(shemo_dir, tmp_path):
    root = tmp_path / "shemo"
    shutil.copytree(shemo_dir, root)
    (root / "shemo.json").unlink()
    utterances = get_corpus("shemo", root=root).utterances()
    assert all(u.emotion != "surprise" for u in utterances)
    with pytest.raises(CorpusNotFoundError, match="shemo.json"):
        get_corpus("shemo", root=root, label_source="validated").utterances()


def test_missing_corpus_is_a_clear_error(tmp_path):
    with pytest.raises(CorpusNotFoundError) as info:
        get_corpus("emodb", data_dir=tmp_path).utterances()
    assert str(tmp_path / "emodb") in str(info.value) and "bench data download emodb" in str(info.value)


def test_unparseable_names_are_skipped_and_counted(small_emodb):
    shutil.copy(next((small_emodb / "wav").glob("*.wav")), small_emodb / "wav" / "recording_final.wav")
    corpus = get_corpus("emodb", root=small_emodb)
    assert len(corpus.utterances()) == 14
    assert len(corpus.skipped) == 1 and "recording_final.wav" in corpus.skipped[0]


def test_folder_corpus_from_manifest(tmp_path):
    for name in ("a.wav", "b.wav", "c.wav"):
        sf.write(tmp_path / name, tone(0.5), 16_000)
    (tmp_path / "manifest.csv").write_text(
        "path,emotion,speaker,gender\na.wav,angry,s1,female\nb.wav,Happy,s2,\nc.wav,grumpy,s3,male\n")
    corpus = get_corpus("folder", root=tmp_path / "manifest.csv")
    utterances = corpus.utterances()
    assert [(u.emotion, u.speaker, u.gender) for u in utterances] == [
        ("anger", "s1", "female"), ("happiness", "s2", None)]
    assert len(corpus.skipped) == 1 and "grumpy" in corpus.skipped[0] and "manifest.csv:4" in corpus.skipped[0]


def test_folder_corpus_from_emotion_tree(tmp_path):
    for emotion, speaker in [("sad", "spk1"), ("sad", "spk2"), ("neutral", "spk1")]:
        (tmp_path / emotion / speaker).mkdir(parents=True, exist_ok=True)
        sf.write(tmp_path / emotion / speaker / "x.flac", tone(0.5), 16_000)
    utterances = get_corpus("folder", root=tmp_path).utterances()
    assert sorted((u.emotion, u.speaker) for u in utterances) == [
        ("neutral", "spk1"), ("sadness", "spk1"), ("sadness", "spk2")]


def test_manifest_without_required_columns(tmp_path):
    (tmp_path / "m.csv").write_text("file,label\na.wav,angry\n")
    with pytest.raises(BenchError, match="speaker"):
        get_corpus("folder", root=tmp_path / "m.csv").utterances()


def test_unknown_corpus_name():
    with pytest.raises(BenchError, match="unknown corpus"):
        get_corpus("iemocap")


def test_fingerprint_changes_with_content(small_emodb):
    before = get_corpus("emodb", root=small_emodb).fingerprint()
    next((small_emodb / "wav").glob("*.wav")).unlink()
    assert get_corpus("emodb", root=small_emodb).fingerprint() != before



def test_download_of_a_corpus_already_here_and_verified_downloads_nothing(real_data_dir, real_emodb_dir):
    """The README's first command, `bench data download emodb`, as typed, for a user whose
    $SER_BENCH_DATA already holds EMO-DB: the copy is checked against the pinned manifest and
    nothing is fetched (before, it downloaded the archive again, and failed without a network)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    bench = str(Path(sys.executable).parent / "bench")
    before = sorted(p.name for p in real_emodb_dir.iterdir())
    done = subprocess.run([bench, "data", "download", "emodb"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "SER_BENCH_DATA": str(real_data_dir)})
    assert done.returncode == 0, done.stderr[-2000:]
    said = " ".join(done.stdout.split())
    assert "nothing to download" in said and "matches the pinned manifest" in said
    assert sorted(p.name for p in real_emodb_dir.iterdir()) == before  # no .downloads/, nothing staged
