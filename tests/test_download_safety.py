"""Downloads: zip bombs are refused quickly, SHA-256 pins and --sha256 are enforced (real HTTP on 127.0.0.1)."""

from __future__ import annotations

import hashlib
import io
import logging
import time
import zipfile

import pytest

from benchmark.corpora.download import Archive, safe_extract, verify
from benchmark.errors import DownloadError
from reliability_helpers import bench, one_line_error
from test_download import ArchiveServer, emodb_like_zip, tiny_wav


@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
    """A small zip (about 1 MB) whose one member would write 1 GiB."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.zip"
    zero = b"\0" * (1 << 24)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("wav/readme.wav", tiny_wav(1))
        with zf.open("wav/huge.wav", "w", force_zip64=True) as member:
            for _ in range(64):
                member.write(zero)
    return path


def test_zip_bomb_is_refused_quickly_and_writes_nothing_large(bomb, tmp_path):
    assert bomb.stat().st_size < 8 << 20
    start = time.monotonic()
    with pytest.raises(DownloadError, match="zip bomb"):
        safe_extract(bomb, tmp_path / "staging")
    assert time.monotonic() - start < 10
    written = sum(p.stat().st_size for p in (tmp_path / "staging").rglob("*") if p.is_file()) \
        if (tmp_path / "staging").exists() else 0
    assert written < 1 << 20


@pytest.mark.parametrize("caps, message", [
    ({"max_member": 1000}, "would unpack to"),
    ({"max_total": 10_000}, "would unpack to"),
])
def test_size_caps_from_declared_sizes(tmp_path, caps, message):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(10):
            zf.writestr(f"wav/{i}.wav", tiny_wav(i))
    with pytest.raises(DownloadError, match=message):
        safe_extract(archive, tmp_path / "staging", **caps)
    safe_extract(archive, tmp_path / "ok")  # the default caps accept a normal archive
    assert len(list((tmp_path / "ok" / "wav").glob("*.wav"))) == 10


def test_pinned_sha256_must_match(tmp_path):
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as zf:
        zf.writestr("wav/x.wav", tiny_wav(3))
    path = tmp_path / "x.zip"
    path.write_bytes(data.getvalue())
    good = hashlib.sha256(data.getvalue()).hexdigest()
    assert verify(path, Archive("u", "x.zip", "wav", 1, sha256=good)) == good
    with pytest.raises(DownloadError, match="does not match"):
        verify(path, Archive("u", "x.zip", "wav", 1, sha256="0" * 64))
    assert not path.exists()  # a mismatching archive is removed


@pytest.fixture(scope="module")
def emodb_zip() -> bytes:
    return emodb_like_zip()


def test_mirror_with_sha256_override(tmp_path, emodb_zip):
    good = hashlib.sha256(emodb_zip).hexdigest()
    with ArchiveServer({"download.zip": emodb_zip}) as server:
        wrong = bench("data", "download", "emodb", "--data-dir", str(tmp_path / "data"), "--base-url", server.url,
                      "--sha256", "f" * 64, cwd=tmp_path)
        line = one_line_error(wrong)
        assert "does not match" in line and "--sha256" in line
        # --no-manifest: the synthetic audio is not EMO-DB's, so the pinned per-file manifest would refuse it
        right = bench("data", "download", "emodb", "--data-dir", str(tmp_path / "data"), "--base-url", server.url,
                      "--sha256", f"download.zip={good}", "--no-manifest", cwd=tmp_path)
    assert right.returncode == 0, right.stderr
    assert good in right.stdout and "535 utterances" in right.stdout.replace("\n", " ")


def test_unpinned_archive_says_so_loudly(tmp_path, emodb_zip, caplog, monkeypatch):
    from benchmark.corpora.download import download_corpus
    from benchmark.corpora.emodb import EmoDB

    monkeypatch.setattr(EmoDB, "manifest", None)  # nothing pinned at all: neither the archive nor its files
    with ArchiveServer({"download.zip": emodb_zip}) as server, caplog.at_level(logging.WARNING):
        download_corpus("emodb", tmp_path / "emodb", base_url=server.url, progress=False)
    assert "no SHA-256 is pinned" in caplog.text and hashlib.sha256(emodb_zip).hexdigest() in caplog.text


@pytest.mark.parametrize("value, message", [("abc", "64 hexadecimal"), ("other.zip=" + "a" * 64, "no archive")])
def test_bad_sha256_option_is_one_line(tmp_path, value, message):
    line = one_line_error(bench("data", "download", "emodb", "--data-dir", str(tmp_path), "--sha256", value,
                                "--base-url", "http://127.0.0.1:9", cwd=tmp_path))
    assert message in line
