"""Per-file SHA-256 manifests: downloads and `bench data verify` check every audio file of a corpus.

Core tests use a tiny synthetic EMO-DB-like archive (5 WAVs) and a manifest written for it; EMO-DB's
archive list and manifest are swapped for them with monkeypatch. One real-data test checks the real
corpora against the committed manifests.
"""

from __future__ import annotations

import io
import logging
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from benchmark.cli import app
from benchmark.corpora import CORPORA, get_corpus
from benchmark.corpora.contents import ManifestError, manifest_path, read_manifest, verify_folder
from benchmark.corpora.download import Archive
from benchmark.corpora.emodb import EmoDB
from test_download import ArchiveServer, manifest_of_zip, tiny_wav

NAMES = ["03a01Fa", "08a02Wb", "09b01Nc", "10a04Ta", "16b10Ld"]


def small_zip(members: dict[str, bytes], compression=zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as zf:
        zf.writestr("erklaerung.txt", "readme")  # not audio: never compared
        for name, body in members.items():
            zf.writestr(name, body)
    return buffer.getvalue()


def wavs() -> dict[str, bytes]:
    return {f"wav/{name}.wav": tiny_wav(i) for i, name in enumerate(NAMES)}


@pytest.fixture
def pinned(tmp_path, monkeypatch) -> Path:
    """EMO-DB becomes a 5-file corpus pinned by a manifest written from the good archive."""
    manifest = tmp_path / "pinned.sha256"
    manifest.write_text(manifest_of_zip(small_zip(wavs()), "wav"))
    monkeypatch.setattr(EmoDB, "archives", (Archive("http://unused.invalid/download.zip", "download.zip", "wav", 3),))
    monkeypatch.setattr(EmoDB, "manifest", manifest)
    return manifest


def download(tmp_path, archive: bytes, *options: str):
    with ArchiveServer({"download.zip": archive}) as server:
        return CliRunner().invoke(app, ["data", "download", "emodb", "--data-dir", str(tmp_path / "data"),
                                        "--base-url", server.url, *options])


def error_line(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit), result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    return errors[0]


def test_committed_manifests_are_wellformed_and_shemo_has_none():
    assert len(read_manifest(manifest_path(CORPORA["emodb"]))) == 535
    urdu = read_manifest(manifest_path(CORPORA["urdu"]))
    assert len(urdu) == 400 and {name.split("/")[0] for name in urdu} == {"Angry", "Happy", "Neutral", "Sad"}
    assert manifest_path(CORPORA["shemo"]) is None


def test_matching_archive_passes_even_when_rezipped(tmp_path, pinned):
    # other compression and member order: other archive bytes, same audio -> accepted
    archive = small_zip(dict(reversed(wavs().items())), compression=zipfile.ZIP_DEFLATED)
    result = download(tmp_path, archive)
    assert result.exit_code == 0, result.output
    assert "every audio file matches the pinned manifest" in result.output
    assert len(get_corpus("emodb", data_dir=tmp_path / "data").utterances()) == 5
    assert verify_folder("emodb", tmp_path / "data" / "emodb").matched == 5


def test_changed_byte_is_refused_naming_the_file(tmp_path, pinned):
    members = wavs()
    body = bytearray(members["wav/09b01Nc.wav"])
    body[-1] ^= 1  # one flipped bit in the last sample: the CRC of the rebuilt zip is consistent
    members["wav/09b01Nc.wav"] = bytes(body)
    line = error_line(download(tmp_path, small_zip(members)))
    assert "differs from the pinned manifest in 1 file(s)" in line and "1 changed (wav/09b01Nc.wav)" in line
    assert "--no-manifest" in line and "nothing was installed" in line
    root = tmp_path / "data" / "emodb"
    assert not (root / "wav").exists()  # nothing moved into the corpus folder
    assert not list((root / ".downloads").glob("staging-*"))


def test_missing_and_extra_files_are_refused(tmp_path, pinned):
    members = wavs()
    del members["wav/10a04Ta.wav"]
    members["wav/11a01Wa.wav"] = tiny_wav(40)
    line = error_line(download(tmp_path, small_zip(members)))
    assert "in 2 file(s)" in line
    assert "1 missing (wav/10a04Ta.wav)" in line and "1 extra (wav/11a01Wa.wav)" in line


def test_no_manifest_accepts_a_different_copy_explicitly(tmp_path, pinned, caplog):
    members = wavs()
    members["wav/03a01Fa.wav"] = tiny_wav(45)
    with caplog.at_level(logging.WARNING):
        result = download(tmp_path, small_zip(members), "--no-manifest")
    assert result.exit_code == 0, result.output
    assert "--no-manifest: the extracted audio is NOT compared" in caplog.text
    assert "every audio file matches" not in result.output
    assert len(get_corpus("emodb", data_dir=tmp_path / "data").utterances()) == 5


def test_extra_audio_already_in_the_corpus_folder_is_refused(tmp_path, pinned):
    stray = tmp_path / "data" / "emodb" / "wav" / "stray.wav"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(tiny_wav(3))
    line = error_line(download(tmp_path, small_zip(wavs())))
    assert "matches the pinned manifest" in line and "wav/stray.wav" in line


def test_manifest_with_a_bad_line_is_one_line_error(tmp_path):
    bad = tmp_path / "bad.sha256"
    bad.write_text(f"{'a' * 64}  wav/x.wav\nnot-a-digest  wav/y.wav\n")
    with pytest.raises(ManifestError, match=r"bad.sha256:2: not a"):
        read_manifest(bad)


def test_verify_good_and_tampered_folder(tmp_path, pinned):
    data = tmp_path / "data"
    assert download(tmp_path, small_zip(wavs())).exit_code == 0
    good = CliRunner().invoke(app, ["data", "verify", "emodb", "--data-dir", str(data)])
    assert good.exit_code == 0, good.output
    assert good.output.strip().startswith("emodb: 5 files match the pinned manifest")

    wav_dir = data / "emodb" / "wav"
    with open(wav_dir / "08a02Wb.wav", "r+b") as handle:
        handle.seek(60)
        handle.write(b"\x7f")
    (wav_dir / "16b10Ld.wav").unlink()
    (wav_dir / "12a01Wa.wav").write_bytes(tiny_wav(9))
    bad = CliRunner().invoke(app, ["data", "verify", "emodb", "--data-dir", str(data)])
    assert bad.exit_code == 1 and "Traceback" not in bad.output, bad.output
    lines = bad.output.splitlines()
    assert "emodb: wav/08a02Wb.wav: SHA-256 differs from the pinned manifest" in lines
    assert "emodb: wav/16b10Ld.wav: missing (listed in the pinned manifest)" in lines
    assert "emodb: wav/12a01Wa.wav: extra audio file (not in the pinned manifest)" in lines
    assert len(lines) == 4 and "3 audio file(s)" in lines[-1] and "3 of 5 match" in lines[-1]


def test_verify_without_manifest_or_folder_is_one_line(tmp_path):
    shemo = CliRunner().invoke(app, ["data", "verify", "shemo", "--data-dir", str(tmp_path)])
    assert "no per-file manifest is pinned" in error_line(shemo)
    missing = CliRunner().invoke(app, ["data", "verify", "emodb", "--data-dir", str(tmp_path)])
    assert "corpus folder not found" in error_line(missing)


def test_real_corpora_match_the_committed_manifests(real_emodb_dir, real_urdu_dir):
    for name, root, count in (("emodb", real_emodb_dir, 535), ("urdu", real_urdu_dir, 400)):
        check = verify_folder(name, root)
        assert check.ok and check.matched == count, f"{name}: {check.summary()}"
