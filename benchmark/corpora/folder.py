"""A user's own corpus, joined without code: a CSV manifest or a folder per emotion.

Manifest: a CSV with columns ``path, emotion, speaker`` and optionally ``gender`` (paths relative
to the manifest). Tree: ``<root>/<emotion>/[<speaker>/]file.wav``; without speaker sub-folders
every file counts as its own speaker, which is honest but makes speaker-independent splits moot.
"""

from __future__ import annotations

import csv
from pathlib import Path

from ..audio import AUDIO_SUFFIXES
from ..corpora import register_corpus
from ..errors import CorpusNotFoundError, LabelError
from .base import Corpus, Utterance, canonical_emotion

REQUIRED_COLUMNS = ("path", "emotion", "speaker")


@register_corpus
class FolderCorpus(Corpus):
    name = "folder"
    description = "your own corpus: CSV manifest (path,emotion,speaker[,gender]) or <emotion>/ folders"

    def __init__(self, root, corpus_name: str | None = None):
        super().__init__(root)
        self.corpus_name = corpus_name or Path(root).stem

    def missing_message(self, what: str) -> str:
        return f"folder corpus: {what} at {self.root}; give a CSV manifest or a folder with one sub-folder per emotion"

    def scan(self):
        if self.root.is_file():
            return self._scan_manifest()
        self.require_dir(self.root)
        return self._scan_tree()

    def _scan_manifest(self):
        found, skipped = [], []
        with self.root.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise CorpusNotFoundError(
                    f"{self.root}: manifest lacks column(s) {', '.join(missing)}; "
                    f"the header must be path,emotion,speaker[,gender]"
                )
            for line, row in enumerate(reader, start=2):
                path = Path(row["path"])
                path = path if path.is_absolute() else self.root.parent / path
                source = f"{self.root}:{line}"
                try:
                    emotion = canonical_emotion(row["emotion"], source)
                except LabelError as exc:
                    skipped.append(str(exc))
                    continue
                if not path.is_file():
                    skipped.append(f"{source}: audio file {path} not found; fix the path in the manifest")
                    continue
                found.append(Utterance(
                    id=f"{self.corpus_name}/{path.stem}", path=path, emotion=emotion,
                    label=row["emotion"], speaker=row["speaker"].strip() or "unknown",
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
            for path in sorted(emotion_dir.rglob("*")):
                if path.suffix.lower() not in AUDIO_SUFFIXES or not path.is_file():
                    continue
                nested = path.parent != emotion_dir
                speaker = path.parent.name if nested else path.stem
                found.append(Utterance(
                    id=f"{self.corpus_name}/{path.relative_to(self.root).with_suffix('').as_posix()}",
                    path=path, emotion=emotion, label=emotion_dir.name, speaker=speaker,
                    gender=None, corpus=self.corpus_name,
                ))
        return found, skipped
