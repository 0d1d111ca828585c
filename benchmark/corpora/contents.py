"""Per-file SHA-256 manifests: the audio a corpus must contain, pinned file by file.

No official SHA-256 of the EMO-DB, URDU or ShEMO archives is published, and archive bytes are not
stable anyway (GitHub's ``master.zip`` is generated on demand, a mirror may re-zip). So instead of the
archive, the *contents* are pinned: ``manifests/<corpus>.sha256`` lists, in ``sha256sum`` format
(``<hex>  <path>``), every audio file of the corpus relative to its root as the corpus class lays it
out (EMO-DB: ``wav/03a01Fa.wav``; URDU: ``Angry/SM1_F10_A010.wav``). ``cd <root> && sha256sum -c
<manifest>`` checks the same thing without ser-bench.

The manifests were computed from the copies on the development machines, which came from the
official sources (EMO-DB's download.zip, the URDU GitHub repository). They are *our* record of those
copies, not digests published by the corpus authors. ShEMO's audio is not on the development
machines, so ShEMO has no manifest.

Only audio files are compared (see ``AUDIO_SUFFIXES``); text files such as EMO-DB's
``erklaerung.txt`` or URDU's ``README.md`` and hidden paths (``.downloads/``, ``._*``) are ignored.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..errors import BenchError

MANIFESTS = Path(__file__).resolve().parent / "manifests"
# any audio format counts as corpus audio: an unexpected extra file in any of them is reported
AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".mp3", ".m4a", ".aac", ".aif", ".aiff", ".opus"})
SHOWN = 3  # offending files named per kind in a one-line message


class ManifestError(BenchError):
    """A corpus's audio differs from its pinned manifest, or a manifest cannot be read."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest_path(corpus_cls) -> Path | None:
    """The corpus's manifest file (``manifest`` class attribute: a name under ``manifests/`` or a path)."""
    name = getattr(corpus_cls, "manifest", None)
    return MANIFESTS / name if name else None


def read_manifest(path: Path) -> dict[str, str]:
    """``sha256sum`` lines (``<hex>  <path>`` or ``<hex> *<path>``) -> {relative posix path: hex}."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read the pinned manifest ({exc.strerror or exc}); reinstall ser-bench") from None
    entries = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        digest, _, name = line.partition(" ")
        name = name[1:] if name[:1] in (" ", "*") else name
        relative = PurePosixPath(name)
        if (len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest.lower()) or not name
                or relative.is_absolute() or ".." in relative.parts or name in entries):
            raise ManifestError(f"{path}:{number}: not a '<sha256>  <relative path>' line (or a duplicate path); "
                                f"reinstall ser-bench or fix the manifest")
        entries[name] = digest.lower()
    return entries


def audio_files(root: Path) -> dict[str, Path]:
    """Every audio file under ``root`` that is not hidden -> {relative posix path: path}."""
    found = {}
    for path in root.rglob("*"):
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if path.suffix.lower() in AUDIO_SUFFIXES and path.is_file():
            found[relative.as_posix()] = path
    return found


@dataclass
class ContentCheck:
    """How a set of audio files compares with a manifest (paths relative to the corpus root)."""

    expected: int
    matched: int = 0
    changed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)

    @property
    def differing(self) -> int:
        return len(self.changed) + len(self.missing) + len(self.extra)

    @property
    def ok(self) -> bool:
        return not self.differing

    def problems(self) -> list[str]:
        """One line per offending file, changed first."""
        return ([f"{name}: SHA-256 differs from the pinned manifest" for name in self.changed]
                + [f"{name}: missing (listed in the pinned manifest)" for name in self.missing]
                + [f"{name}: extra audio file (not in the pinned manifest)" for name in self.extra])

    def summary(self) -> str:
        """``1 changed (wav/a.wav), 2 missing (wav/b.wav, wav/c.wav)``: the first few of each kind."""
        parts = []
        for kind, names in (("changed", self.changed), ("missing", self.missing), ("extra", self.extra)):
            if names:
                shown = ", ".join(names[:SHOWN]) + (f", +{len(names) - SHOWN} more" if len(names) > SHOWN else "")
                parts.append(f"{len(names)} {kind} ({shown})")
        return "; ".join(parts)


def compare(files: dict[str, Path], manifest: dict[str, str]) -> ContentCheck:
    """Hash ``files`` ({relative path: path}) and compare them with ``manifest``."""
    check = ContentCheck(expected=len(manifest))
    for name in sorted(files):
        if name not in manifest:
            check.extra.append(name)
        elif sha256_file(files[name]) != manifest[name]:
            check.changed.append(name)
        else:
            check.matched += 1
    check.missing = sorted(set(manifest) - set(files))
    return check


def verify_folder(name: str, root: Path) -> ContentCheck:
    """Compare the audio under corpus ``name``'s ``root`` with its pinned manifest."""
    from ..corpora import CORPORA

    cls = CORPORA.lookup(name)
    path = manifest_path(cls)
    if path is None:
        pinned = sorted(n for n, c in CORPORA.items() if manifest_path(c))
        raise ManifestError(f"{name}: no per-file manifest is pinned for this corpus (no verified copy was on hand "
                            f"to compute one); corpora with one: {', '.join(pinned)}")
    corpus = cls(root)
    corpus.require_dir(root)
    return compare(audio_files(root), read_manifest(path))
