"""`bench data download` against a local HTTP server (127.0.0.1) serving archives the test builds."""

import hashlib
import io
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from benchmark.cli import app
from benchmark.corpora import get_corpus
from benchmark.corpora.download import download_corpus, safe_extract
from benchmark.corpora.emodb import EmoDB
from benchmark.errors import DownloadError

SPEAKERS = ["03", "08", "09", "10", "11", "12", "13", "14", "15", "16"]


def tiny_wav(seed: int) -> bytes:
    buffer = io.BytesIO()
    t = np.arange(800) / 16_000
    sf.write(buffer, (0.3 * np.sin(2 * np.pi * (150 + seed) * t)).astype(np.float32), 16_000,
             format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def emodb_like_zip() -> bytes:
    """535 WAVs named like EMO-DB, under wav/ as in the official download.zip."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("erklaerung.txt", "readme")
        for i in range(535):
            name = f"wav/{SPEAKERS[i % 10]}a{i // 70:02d}{'WLEAFTN'[i % 7]}{'abcdefghij'[(i // 7) % 10]}.wav"
            zf.writestr(name, tiny_wav(i % 50))
    return buffer.getvalue()


def manifest_of_zip(data: bytes, target: str) -> str:
    """``sha256sum`` lines for the WAVs of a zip as ``download_corpus`` lays them out (``target/<name>``)."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        lines = sorted(f"{hashlib.sha256(zf.read(n)).hexdigest()}  {target}/{PurePosixPath(n).name}"
                       for n in zf.namelist() if n.lower().endswith(".wav"))
    return "\n".join(lines) + "\n"


class ArchiveServer:
    """Serves ``files`` (name -> bytes) with HTTP Range support and records the Range headers."""

    def __init__(self, files: dict[str, bytes]):
        self.files, self.ranges = files, []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                body = server.files.get(self.path.lstrip("/").split("?")[0])
                if body is None:
                    self.send_error(404)
                    return
                wanted = self.headers.get("Range")
                server.ranges.append(wanted)
                start = int(wanted.split("=")[1].split("-")[0]) if wanted else 0
                self.send_response(206 if wanted else 200)
                if wanted:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                self.wfile.write(body[start:])

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def emodb_zip() -> bytes:
    return emodb_like_zip()


@pytest.fixture
def emodb_manifest(tmp_path, monkeypatch, emodb_zip):
    """EMO-DB's pinned manifest replaced by one for the synthetic archive (the real one pins real audio)."""
    path = tmp_path / "emodb.sha256"
    path.write_text(manifest_of_zip(emodb_zip, "wav"))
    monkeypatch.setattr(EmoDB, "manifest", path)
    return path


def test_download_verify_extract(tmp_path, emodb_zip, emodb_manifest):
    with ArchiveServer({"download.zip": emodb_zip}) as server:
        checksums = download_corpus("emodb", tmp_path / "emodb", base_url=server.url, progress=False)
    assert len(checksums["download.zip"]) == 64
    utterances = get_corpus("emodb", root=tmp_path / "emodb").utterances()
    assert len(utterances) == 535 and len({u.speaker for u in utterances}) == 10


def test_interrupted_download_resumes_with_range_request(tmp_path, emodb_zip, emodb_manifest):
    partial = tmp_path / "emodb" / ".downloads" / "download.zip.part"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(emodb_zip[: len(emodb_zip) // 2])
    with ArchiveServer({"download.zip": emodb_zip}) as server:
        download_corpus("emodb", tmp_path / "emodb", base_url=server.url, progress=False)
    assert server.ranges == [f"bytes={len(emodb_zip) // 2}-"]
    assert (tmp_path / "emodb" / ".downloads" / "download.zip").read_bytes() == emodb_zip
    assert len(get_corpus("emodb", root=tmp_path / "emodb").utterances()) == 535


def test_shemo_download_layout(tmp_path):
    def shemo_zip(gender, count):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as zf:
            for i in range(count):
                zf.writestr(f"{gender}/{gender[0].upper()}{i % 40 + 1:02d}{'AWFHSN'[i % 6]}{i // 120 + 1:02d}.wav",
                            tiny_wav(i % 30))
        return buffer.getvalue()

    files = {"female.zip": shemo_zip("female", 1263), "male.zip": shemo_zip("male", 1737), "shemo.json": b"{}"}
    with ArchiveServer(files) as server:
        result = CliRunner().invoke(app, ["data", "download", "shemo", "--data-dir", str(tmp_path), "--base-url", server.url])
    assert result.exit_code == 0, result.output
    utterances = get_corpus("shemo", data_dir=tmp_path).utterances()
    assert len({u.id for u in utterances}) > 100 and {u.gender for u in utterances} == {"female", "male"}


def test_truncated_archive_is_rejected_and_removed(tmp_path, emodb_zip):
    with ArchiveServer({"download.zip": emodb_zip[:5000]}) as server:
        with pytest.raises(DownloadError, match="not a valid zip"):
            download_corpus("emodb", tmp_path / "emodb", base_url=server.url, progress=False)
    assert not (tmp_path / "emodb" / ".downloads" / "download.zip").exists()


def test_unreachable_server_is_one_line_error(tmp_path):
    result = CliRunner().invoke(app, ["data", "download", "emodb", "--data-dir", str(tmp_path),
                                      "--base-url", "http://127.0.0.1:9"])
    assert result.exit_code == 2 and "cannot connect" in result.output


@pytest.mark.parametrize("member", ["../evil.wav", "/abs/evil.wav", "wav/../../evil.wav"])
def test_extraction_refuses_path_escapes(tmp_path, member):
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("wav/ok.wav", b"x")
        zf.writestr(member, b"evil")
    target = tmp_path / "out" / "staging"
    with pytest.raises(DownloadError, match="escape"):
        safe_extract(archive, target)
    assert not list(Path(tmp_path).rglob("evil.wav"))


def test_extraction_refuses_links(tmp_path):
    archive = tmp_path / "link.zip"
    info = zipfile.ZipInfo("wav/link.wav")
    info.external_attr = (0o120777 << 16)
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(DownloadError, match="link"):
        safe_extract(archive, tmp_path / "out")
