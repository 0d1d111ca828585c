"""ShEMO: 3000 Persian utterances from radio plays, 87 speakers, 6 emotions.

Audio lives in ``female/`` and ``male/``; ``F03S02.wav`` = gender F, speaker 03, emotion letter S
(index 3), utterance 02. The official ``shemo.json`` adds speaker ids, gender and the *validated*
label (majority vote of 12 annotators), which is the default label source when the file is there.

No per-file SHA-256 manifest is pinned for ShEMO (unlike EMO-DB and URDU): its audio has never been
on the development machines, so there is no verified copy to compute one from. A download is checked
by CRC and file count only (and ``--sha256`` if given); ``bench data verify shemo`` says so.
"""

from __future__ import annotations

import json
import re
from typing import Literal

from ..corpora import register_corpus
from ..errors import BenchError, CorpusNotFoundError
from .base import Corpus, Utterance, canonical_emotion
from .download import Archive, Extra

FILENAME = re.compile(r"^(?P<gender>[FM])(?P<speaker>\d{2})(?P<letter>[AWFHSN])(?P<utt>\d{2})$")
LabelSource = Literal["auto", "filename", "validated"]


@register_corpus
class ShEMO(Corpus):
    name = "shemo"
    description = "Sharif Emotional Speech Database (Persian, 87 speakers, 6 emotions)"
    label_map = {"A": "anger", "W": "surprise", "F": "fear", "H": "happiness", "S": "sadness", "N": "neutral"}
    download_hint = "run `bench data download shemo`"
    # links from ShEMO's official repository (github.com/pariajm/sharif-emotional-speech-dataset)
    archives = (
        Archive("https://www.dropbox.com/s/42okby6c40w3j2x/female.zip?dl=1", "female.zip", "female", 1263),
        Archive("https://www.dropbox.com/s/5ebs8hq1zm0qkp6/male.zip?dl=1", "male.zip", "male", 1737),
    )
    extras = (Extra("https://github.com/pariajm/sharif-emotional-speech-dataset/raw/master/shemo.json", "shemo.json"),)

    def __init__(self, root, label_source: LabelSource = "auto"):
        super().__init__(root)
        if label_source not in ("auto", "filename", "validated"):
            raise BenchError(f"shemo: label_source {label_source!r} must be auto, filename or validated")
        self.label_source = label_source

    def metadata(self) -> dict[str, dict]:
        meta_path = self.root / "shemo.json"
        if not meta_path.is_file():
            if self.label_source == "validated":
                raise CorpusNotFoundError(self.missing_message("shemo.json (needed for validated labels) not found"))
            return {}
        try:
            return json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CorpusNotFoundError(f"{meta_path}: cannot read ShEMO metadata ({exc}); re-download it") from None

    def scan(self):
        self.require_dir(self.root)
        if not any((self.root / sub).is_dir() for sub in ("female", "male")):
            raise CorpusNotFoundError(self.missing_message("no female/ or male/ audio folders"))
        meta = self.metadata()
        use_meta = self.label_source != "filename" and bool(meta)
        found, skipped = [], []
        for sub in ("female", "male"):
            for path in sorted((self.root / sub).glob("*.wav")):
                match = FILENAME.match(path.stem)
                if not match or match["gender"] != sub[0].upper():
                    skipped.append(
                        f"{path}: file name does not follow ShEMO's GSSEUU pattern in {sub}/; rename or remove it"
                    )
                    continue
                record = meta.get(path.stem, {})
                label, emotion = match["letter"], self.label_map[match["letter"]]
                if use_meta and "emotion" in record:
                    label = record["emotion"]
                    emotion = canonical_emotion(label, f"{self.root / 'shemo.json'} [{path.stem}]")
                found.append(Utterance(
                    id=path.stem, path=path, emotion=emotion, label=label,
                    speaker=record.get("speaker_id", f"{match['gender']}{match['speaker']}"),
                    gender=record.get("gender", sub), corpus=self.name,
                ))
        return found, skipped
