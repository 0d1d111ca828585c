"""``bench data download``: fetch official corpus archives, verify them, extract them safely.

Downloads resume: bytes go to ``<name>.part`` and a re-run asks the server for the rest with an
HTTP Range request. An archive is accepted only if every member's CRC checks out, it holds the
expected number of WAV files and its SHA-256 matches the pinned one, if any (``--sha256`` overrides; a
``--base-url`` mirror must match the same pin). Extraction refuses absolute paths, ``..`` and links,
so nothing lands outside the corpus folder, and caps every member's and the total uncompressed size
and the compression ratio, from the declared sizes first and again while streaming (a zip bomb is
refused before it writes anything large).

What is pinned: no official SHA-256 is published for any of the archives (EMO-DB's download.zip,
ShEMO's Dropbox zips), so ``Archive.sha256`` is ``None`` and every download logs its digest. Instead,
a corpus with a per-file manifest (``corpora/manifests/<name>.sha256``, see ``corpora/contents.py``:
EMO-DB and URDU) has every extracted audio file checked against it *before* anything is moved into
the corpus folder: a changed, missing or extra audio file refuses the download with one line, and a
re-zipped archive or a mirror with the same audio passes. The manifests were computed from the copies
on the development machines, which came from the official sources; they are not official digests.
``--no-manifest`` (``check_manifest=False``) accepts a different copy explicitly. ShEMO has no
manifest (its audio was never on the development machines): CRCs and the file count only.
"""

from __future__ import annotations

import json
import logging
import shutil
import stat
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import DownloadError
from .contents import ManifestError, audio_files, compare, manifest_path, read_manifest, sha256_file

log = logging.getLogger(__name__)

CHUNK = 1 << 16
# Extraction caps: the corpora here are < 2 GiB unpacked, WAV barely compresses (ratio < 10).
MAX_MEMBER_BYTES = 2 << 30
MAX_TOTAL_BYTES = 16 << 30
MAX_RATIO = 200
MAX_MEMBERS = 100_000  # ShEMO has 3000 files; millions of empty members would exhaust inodes


@dataclass(frozen=True)
class Archive:
    url: str
    filename: str
    target: str  # sub-folder of the corpus root that receives the archive's WAV files
    min_wavs: int  # fewer WAV files than this means a truncated or wrong archive
    sha256: str | None = None


@dataclass(frozen=True)
class Extra:
    """A plain file downloaded next to the audio (e.g. ShEMO's metadata)."""

    url: str
    filename: str


def _url(original: str, filename: str, base_url: str | None) -> str:
    return f"{base_url.rstrip('/')}/{filename}" if base_url else original


def fetch(url: str, destination: Path, progress: bool = True) -> Path:
    """Download ``url`` to ``destination``, resuming from ``destination.part`` if present."""
    if destination.is_file():
        return destination
    part = destination.with_name(destination.name + ".part")
    destination.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "ser-bench"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to send: the .part is complete
            part.rename(destination)
            return destination
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}; check the URL or try again later") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(f"{url}: cannot connect ({reason}); check the network and re-run to resume") from None
    with response:
        resumed = have and response.status == 206
        total = response.headers.get("Content-Length")
        total = int(total) + (have if resumed else 0) if total else None
        from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

        with Progress(*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn(),
                      disable=not progress, transient=True) as bar, \
                open(part, "ab" if resumed else "wb") as handle:
            task = bar.add_task(destination.name, total=total, completed=have if resumed else 0)
            try:
                for block in iter(lambda: response.read(CHUNK), b""):
                    handle.write(block)
                    bar.advance(task, len(block))
            except OSError as exc:
                raise DownloadError(f"{url}: connection lost ({exc}); re-run the same command to resume") from None
    if total is not None and part.stat().st_size != total:
        raise DownloadError(
            f"{url}: got {part.stat().st_size} of {total} bytes; re-run the same command to resume"
        )
    part.rename(destination)
    return destination


def verify(archive_path: Path, archive: Archive, expected_sha256: str | None = None,
           contents_pinned: bool = False) -> str:
    """Check the SHA-256 (pinned or ``expected_sha256``), CRCs and WAV count; return the SHA-256.

    ``contents_pinned``: the caller checks the extracted audio against a per-file manifest, so a
    missing archive pin is only logged at INFO level.
    """
    checksum = sha256_file(archive_path)
    expected = (expected_sha256 or archive.sha256 or "").lower() or None
    if expected and checksum != expected:
        archive_path.unlink()
        source = "given with --sha256" if expected_sha256 else "pinned for the official archive"
        raise DownloadError(f"{archive_path}: SHA-256 {checksum} does not match the {expected} {source}; "
                            f"removed it (a wrong mirror or a tampered file), re-run to download again")
    if expected is None and contents_pinned:
        log.info("%s: no SHA-256 is pinned for %s (none is published); its SHA-256 is %s; its audio is checked "
                 "file by file against the pinned manifest instead", archive_path, archive.filename, checksum)
    elif expected is None:
        log.warning("%s: no SHA-256 is pinned for %s yet, so only CRCs and the file count were checked; its "
                    "SHA-256 is %s (compare it with a trusted copy, then pass --sha256 %s=%s)",
                    archive_path, archive.filename, checksum, archive.filename, checksum)
    try:
        with zipfile.ZipFile(archive_path) as zf:
            broken = zf.testzip()
            wavs = sum(1 for n in zf.namelist() if n.lower().endswith(".wav"))
    except zipfile.BadZipFile:
        archive_path.unlink()
        raise DownloadError(f"{archive_path}: not a valid zip archive; removed it, re-run to download again") from None
    if broken:
        archive_path.unlink()
        raise DownloadError(f"{archive_path}: member {broken} fails its CRC check; removed it, re-run to download again")
    if wavs < archive.min_wavs:
        raise DownloadError(f"{archive_path}: holds {wavs} WAV files, expected at least {archive.min_wavs}; "
                            f"delete it and download again")
    return checksum


def check_sizes(archive_path: Path, infos, max_member: int, max_total: int, max_ratio: float) -> None:
    """Refuse an archive whose declared sizes exceed the caps (before anything is written)."""
    total = 0
    if len(infos) > MAX_MEMBERS:
        raise DownloadError(f"{archive_path}: holds {len(infos):,} members (limit {MAX_MEMBERS:,}); refusing to extract")
    for info in infos:
        total += info.file_size
        if info.file_size > max_member:
            raise DownloadError(f"{archive_path}: member {info.filename!r} would unpack to {info.file_size:,} bytes "
                                f"(limit {max_member:,}); refusing to extract (zip bomb?)")
        if info.file_size > (1 << 20) and info.file_size > max_ratio * max(info.compress_size, 1):
            raise DownloadError(f"{archive_path}: member {info.filename!r} expands {info.file_size / max(info.compress_size, 1):,.0f}x "
                                f"(limit {max_ratio:g}x); refusing to extract (zip bomb?)")
    if total > max_total:
        raise DownloadError(f"{archive_path}: would unpack to {total:,} bytes (limit {max_total:,}); "
                            f"refusing to extract (zip bomb?)")


def copy_capped(source, sink, limit: int, archive_path: Path, name: str) -> int:
    """Copy at most ``limit`` bytes; a member that yields more than it declared is refused."""
    written = 0
    for block in iter(lambda: source.read(CHUNK), b""):
        written += len(block)
        if written > limit:
            raise DownloadError(f"{archive_path}: member {name!r} unpacks to more than its limit of {limit:,} bytes; "
                                f"refusing to extract (zip bomb?)")
        sink.write(block)
    return written


def safe_extract(archive_path: Path, staging: Path, max_member: int = MAX_MEMBER_BYTES,
                 max_total: int = MAX_TOTAL_BYTES, max_ratio: float = MAX_RATIO) -> None:
    """Extract every member under ``staging``; refuse links, paths that would escape it, and bombs."""
    staging = staging.resolve()
    with zipfile.ZipFile(archive_path) as zf:
        check_sizes(archive_path, zf.infolist(), max_member, max_total, max_ratio)
        budget = max_total
        for info in zf.infolist():
            name = PurePosixPath(info.filename.replace("\\", "/"))
            mode = info.external_attr >> 16
            if name.is_absolute() or ".." in name.parts or (name.parts and ":" in name.parts[0]):
                raise DownloadError(f"{archive_path}: member {info.filename!r} would escape the target folder; refusing to extract")
            if stat.S_ISLNK(mode):
                raise DownloadError(f"{archive_path}: member {info.filename!r} is a link; refusing to extract")
            target = (staging / name).resolve()
            if staging not in target.parents and target != staging:
                raise DownloadError(f"{archive_path}: member {info.filename!r} would escape the target folder; refusing to extract")
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            limit = min(max_member, budget, max(info.file_size, 0))
            try:
                with zf.open(info) as source, open(target, "wb") as sink:
                    budget -= copy_capped(source, sink, limit, archive_path, info.filename)
            except DownloadError:
                target.unlink(missing_ok=True)
                raise


def parse_sha256(values: list[str] | None, archives) -> dict[str, str]:
    """``--sha256 HEX`` (one archive) or ``--sha256 FILENAME=HEX`` (repeatable) -> {filename: hex}."""
    out = {}
    names = [a.filename for a in archives]
    for value in values or []:
        name, _, digest = value.rpartition("=")
        if not name:
            if len(names) != 1:
                raise DownloadError(f"--sha256 {value}: this corpus has {len(names)} archives; "
                                    f"give FILENAME=HEX for each of {', '.join(names)}")
            name = names[0]
        digest = digest.strip().lower()
        if name not in names:
            raise DownloadError(f"--sha256 {value}: no archive {name!r}; choose one of {', '.join(names)}")
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise DownloadError(f"--sha256 {value}: a SHA-256 is 64 hexadecimal digits")
        out[name] = digest
    return out


def download_corpus(name: str, root: Path, base_url: str | None = None, progress: bool = True,
                    sha256: list[str] | None = None, check_manifest: bool = True) -> dict[str, str]:
    """Download, verify and extract corpus ``name`` into ``root``; return archive checksums.

    With ``check_manifest`` (the default) and a pinned per-file manifest for the corpus, the extracted
    audio must match it exactly before anything is moved into ``root``.
    """
    from ..corpora import CORPORA

    downloadable = sorted(n for n, cls in CORPORA.items() if cls.archives)
    if name not in downloadable:
        raise DownloadError(f"no download is known for corpus {name!r}; choose one of {', '.join(downloadable)}")
    cls = CORPORA[name]
    archives, extras = cls.archives, cls.extras
    overrides = parse_sha256(sha256, archives)
    pinned = manifest_path(cls)
    manifest = read_manifest(pinned) if pinned and check_manifest else None
    if pinned and not check_manifest:
        log.warning("%s: --no-manifest: the extracted audio is NOT compared with the pinned manifest %s; "
                    "`bench data verify %s` lists how this copy differs", name, pinned.name, name)
    downloads = root / ".downloads"
    checksums, staged, stagings = {}, {}, []
    try:
        for archive in archives:
            path = fetch(_url(archive.url, archive.filename, base_url), downloads / archive.filename, progress)
            checksums[archive.filename] = verify(path, archive, overrides.get(archive.filename),
                                                 contents_pinned=manifest is not None)
            staging = downloads / f"staging-{archive.target}"
            shutil.rmtree(staging, ignore_errors=True)
            stagings.append(staging)
            safe_extract(path, staging)
            for wav in sorted(staging.rglob("*")):
                if wav.suffix.lower() == ".wav" and wav.is_file() and not wav.name.startswith("._"):
                    staged[f"{archive.target}/{wav.name}"] = wav
        if manifest is not None:
            check = compare(staged, manifest)
            if not check.ok:
                files = ", ".join(str(downloads / a.filename) for a in archives)
                raise ManifestError(
                    f"{name}: the audio in {files} differs from the pinned manifest in {check.differing} "
                    f"file(s): {check.summary()}; nothing was installed. Delete the archive and re-run to download "
                    f"it again from the official source, or pass --no-manifest to accept this copy as it is")
        for relative, wav in staged.items():
            target = root / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            wav.replace(target)
    finally:
        for staging in stagings:
            shutil.rmtree(staging, ignore_errors=True)
    for extra in extras:
        if not (root / extra.filename).is_file():
            fetch(_url(extra.url, extra.filename, base_url), root / extra.filename, progress)
    (root / "checksums.json").write_text(json.dumps(checksums, indent=2, sort_keys=True))
    if manifest is not None:
        leftovers = sorted(set(audio_files(root)) - set(manifest))
        if leftovers:
            shown = ", ".join(leftovers[:3]) + (f", +{len(leftovers) - 3} more" if len(leftovers) > 3 else "")
            raise ManifestError(
                f"{name}: the downloaded audio matches the pinned manifest, but {root} also holds "
                f"{len(leftovers)} audio file(s) not in it ({shown}); move them out of the corpus folder "
                f"(`bench data verify {name}` re-checks)")
    return checksums
