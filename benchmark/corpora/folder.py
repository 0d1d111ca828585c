"""A user's own corpus, joined without code: a CSV manifest or a folder per emotion.

Manifest: a CSV with columns ``path, emotion, speaker`` and optionally ``gender`` (paths relative
to the manifest). Tree: ``<root>/<emotion>/[<speaker>/]file.wav``; without speaker sub-folders
every file counts as its own speaker, which is honest but makes speaker-independent splits moot.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from ..audio import AUDIO_SUFFIXES
from ..corpora import register_corpus
from ..errors import CorpusNotFoundError, LabelError, printable
from .base import Corpus, Utterance, canonical_emotion

REQUIRED_COLUMNS = ("path", "emotion", "speaker")
ALLOW_OUTSIDE_ENV = "SER_BENCH_MANIFEST_ALLOW_OUTSIDE"


class ManifestError(CorpusNotFoundError):
    """A manifest that cannot be trusted as a whole (encoding, one file with two labels or speakers)."""


def allow_outside() -> bool:
    return os.environ.get(ALLOW_OUTSIDE_ENV, "").lower() in ("1", "true", "yes")


def unusable_reason(path: Path) -> str:
    """Why a file met by a folder scan cannot be used (it is reported and counted, not ignored)."""
    suffix = path.suffix.lower()
    if suffix in (".m4a", ".aac", ".mp4", ".wma", ".amr", ".opus", ".webm") or suffix == ".mp3":
        return (f"{path}: {suffix[1:].upper()} audio is not supported (readable: {readable_formats()}); convert it, "
                f"e.g. ffmpeg -i '{path.name}' '{path.with_suffix('.wav').name}'")
    return f"{path}: not an audio file ({readable_formats()}); skipped"


def readable_formats() -> str:
    return ", ".join(s[1:].upper() for s in AUDIO_SUFFIXES)


@register_corpus
class FolderCorpus(Corpus):
    name = "folder"
    description = "your own corpus: CSV manifest (path,emotion,speaker[,gender]) or <emotion>/ folders"

    def __init__(self, root, corpus_name: str | None = None, allow_paths_outside: bool | None = None):
        super().__init__(root)
        if printable(str(root)) != str(root):  # it names the corpus in ids, MLflow params and reports
            raise CorpusNotFoundError(f"folder:{printable(str(root))}: the corpus path is not valid UTF-8; rename "
                                      "the folder, or link it under a UTF-8 name (ln -s) and give that")
        self.corpus_name = corpus_name or Path(root).stem
        self.allow_paths_outside = allow_outside() if allow_paths_outside is None else allow_paths_outside

    def missing_message(self, what: str) -> str:
        return f"folder corpus: {what} at {self.root}; give a CSV manifest or a folder with one sub-folder per emotion"

    def scan(self):
        if self.root.is_file():
            return self._scan_manifest()
        self.require_dir(self.root)
        return self._scan_tree()

    def _read_manifest(self) -> str:
        raw = self.root.read_bytes()
        try:
            return raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = raw[:exc.start].count(b"\n") + 1
            raise ManifestError(f"{self.root}:{line}: manifest is not UTF-8 (byte 0x{raw[exc.start]:02x}); "
                                f"save it as UTF-8 (e.g. iconv -f latin1 -t utf-8)") from None

    def _scan_manifest(self):
        found, skipped = [], []
        reader = csv.DictReader(io.StringIO(self._read_manifest(), newline=""))
        fields = [f.strip().lower() if f else f for f in (reader.fieldnames or [])]
        missing = [c for c in REQUIRED_COLUMNS if c not in fields]
        if missing:
            raise CorpusNotFoundError(
                f"{self.root}: manifest lacks column(s) {', '.join(missing)}; "
                f"the header must be path,emotion,speaker[,gender]"
            )
        reader.fieldnames = fields
        base = self.root.parent.resolve()
        first_seen: dict[Path, tuple[int, str, str]] = {}  # resolved file -> (line, emotion, speaker)
        for row in reader:
            line = reader.line_num
            source = f"{self.root}:{line}"
            if None in row or any(row.get(c) is None for c in REQUIRED_COLUMNS):
                skipped.append(f"{source}: row has {len([v for v in row.values() if v is not None])} fields, the "
                               f"header {len(fields)}; fix the row (quote values that contain commas)")
                continue
            if not row["path"].strip():
                skipped.append(f"{source}: empty path; fix the row")
                continue
            given = Path(row["path"].strip())
            path = given if given.is_absolute() else self.root.parent / given
            resolved = path.resolve()
            if base not in resolved.parents and not self.allow_paths_outside:
                raise ManifestError(f"{source}: path {row['path']!r} leaves the manifest's folder {base}; move the "
                                    f"audio under it, or set {ALLOW_OUTSIDE_ENV}=1 if that is intended")
            try:
                emotion = canonical_emotion(row["emotion"], source)
            except LabelError as exc:
                skipped.append(str(exc))
                continue
            speaker = row["speaker"].strip() or "unknown"
            if resolved in first_seen:
                other_line, other_emotion, other_speaker = first_seen[resolved]
                if (other_emotion, other_speaker) == (emotion, speaker):
                    skipped.append(f"{source}: duplicate of line {other_line} ({given}); the file is used once")
                    continue
                what = "emotions" if other_emotion != emotion else "speakers"
                raise ManifestError(f"{source}: {given} is also on line {other_line} with different {what} "
                                    f"({other_emotion}/{other_speaker} vs {emotion}/{speaker}); keep one row per file")
            first_seen[resolved] = (line, emotion, speaker)
            path = resolved
            if not path.is_file():
                skipped.append(f"{source}: audio file {path} not found; fix the path in the manifest")
                continue
            if path.suffix.lower() not in AUDIO_SUFFIXES:
                skipped.append(f"{source}: " + unusable_reason(path))
                continue
            relative = resolved.relative_to(base) if base in resolved.parents else resolved
            found.append(Utterance(
                id=f"{self.corpus_name}/{relative.with_suffix('').as_posix().lstrip('/')}", path=path,
                emotion=emotion, label=row["emotion"], speaker=speaker,
                gender=(row.get("gender") or "").strip() or None, corpus=self.corpus_name,
            ))
        return found, skipped

    def _scan_tree(self):
        found, skipped = [], []
        for emotion_dir in sorted(p for p in self.root.iterdir() if p.is_dir()):
            try:
                emotion = canonical_emotion(emotion_dir.name, str(emotion_dir))
            except LabelError as exc:
                skipped.append(str(exc))
                continue
            for path, problem in walk(emotion_dir):
                if problem:
                    skipped.append(problem)
                    continue
                nested = path.parent != emotion_dir
                speaker = printable(path.parent.name if nested else path.stem)
                found.append(Utterance(  # a file name that is not UTF-8 is read as it is, named with escapes
                    id=f"{self.corpus_name}/{printable(path.relative_to(self.root).with_suffix('').as_posix())}",
                    path=path, emotion=emotion, label=emotion_dir.name, speaker=speaker,
                    gender=None, corpus=self.corpus_name,
                ))
        return found, skipped


def walk(folder: Path):
    """Yield (audio file, None) or (path, reason it cannot be used) under ``folder``.

    Follows links to folders once (a link loop is reported, not followed forever); dangling
    links and files in unsupported formats are reported; hidden files are ignored.
    """
    seen = {folder.resolve()}
    for current, dirs, files in os.walk(folder, followlinks=True):
        here = Path(current)
        for name in sorted(dirs):
            target = here / name
            real = target.resolve()
            if real in seen:
                dirs.remove(name)
                yield target, f"{target}: links to a folder already scanned ({real}), a link loop; not followed"
            else:
                seen.add(real)
        dirs.sort()
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = here / name
            if path.is_symlink() and not path.exists():
                yield path, f"{path}: dangling or looping link; fix or remove it"
            elif path.suffix.lower() not in AUDIO_SUFFIXES:
                yield path, unusable_reason(path)
            elif path.is_file():
                yield path, None
