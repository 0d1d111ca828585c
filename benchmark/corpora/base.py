"""Utterance records, the canonical emotion vocabulary and the corpus base class.

Each corpus declares how its own labels map onto one canonical vocabulary, so protocols can
compare corpora (e.g. train on EMO-DB, test on ShEMO) on the emotions they really share.
"""

from __future__ import annotations

import hashlib
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from ..errors import CorpusNotFoundError, LabelError, printable

log = logging.getLogger(__name__)

EMOTIONS: tuple[str, ...] = (
    "anger", "boredom", "disgust", "fear", "happiness", "sadness", "neutral", "surprise", "calm",
)

# Spellings found in corpora and manifests, mapped onto the canonical vocabulary.
EMOTION_ALIASES: dict[str, str] = {
    **{e: e for e in EMOTIONS},
    "angry": "anger", "ang": "anger", "bored": "boredom", "disgusted": "disgust",
    "fearful": "fear", "afraid": "fear", "fea": "fear", "happy": "happiness", "joy": "happiness",
    "hap": "happiness", "sad": "sadness", "neu": "neutral", "surprised": "surprise",
    "sur": "surprise",
}


def canonical_emotion(label: str, source: str) -> str:
    """Map a free-text label onto the canonical vocabulary or fail naming ``source``."""
    key = label.strip().lower()
    if key not in EMOTION_ALIASES:
        raise LabelError(
            f"{source}: unknown emotion label {label!r}; use one of {', '.join(EMOTIONS)}"
        )
    return EMOTION_ALIASES[key]


@dataclass(frozen=True)
class Utterance:
    """One labelled recording. ``speaker`` is unique within its corpus."""

    id: str
    path: Path
    emotion: str
    label: str
    speaker: str
    gender: str | None
    corpus: str


class Corpus(ABC):
    """A speech emotion corpus found under ``root``.

    Subclasses implement :meth:`scan`, which returns the utterances it could parse and a
    message for each file it could not; :meth:`utterances` caches that and raises only when
    the folder is missing or nothing usable is in it.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    label_map: ClassVar[dict[str, str]] = {}
    download_hint: ClassVar[str] = ""
    # what `bench data download NAME` fetches: official archives (verified) and plain extra files
    archives: ClassVar[tuple] = ()
    extras: ClassVar[tuple] = ()
    # per-file SHA-256 manifest of the corpus's audio (a name under corpora/manifests/, or a path);
    # None: nothing pinned (see corpora/contents.py)
    manifest: ClassVar[str | Path | None] = None

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._utterances: list[Utterance] | None = None
        self.skipped: list[str] = []

    @abstractmethod
    def scan(self) -> tuple[list[Utterance], list[str]]:
        """Parse the corpus folder: (utterances, one message per unusable file)."""

    def missing_message(self, what: str) -> str:
        hint = f"; {self.download_hint}" if self.download_hint else ""
        return f"{self.name}: {what} under {self.root}{hint}, or point --data-dir/SER_BENCH_DATA at it"

    def require_dir(self, path: Path, what: str = "corpus folder not found") -> None:
        if not path.is_dir():
            raise CorpusNotFoundError(self.missing_message(f"{what} ({path})"))

    def utterances(self) -> list[Utterance]:
        if self._utterances is None:
            found, skipped = self.scan()
            self.skipped = [printable(message) for message in skipped]  # a non-UTF-8 name must not break a log
            for message in self.skipped:
                log.warning("skipped %s", message)
            if not found:
                raise CorpusNotFoundError(self.missing_message("no usable audio files"))
            self._utterances = sorted(found, key=lambda u: u.id)
        return self._utterances

    def fingerprint(self) -> str:
        return fingerprint(self.utterances())


def fingerprint(utterances: list[Utterance]) -> str:
    """Short hash of a set of utterances (ids, labels, speakers, file sizes): a run tag."""
    digest = hashlib.sha256()
    for utt in sorted(utterances, key=lambda u: u.id):
        digest.update(f"{utt.id}|{utt.emotion}|{utt.speaker}|{utt.path.stat().st_size}\n".encode())
    return digest.hexdigest()[:16]
