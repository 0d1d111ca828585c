"""Berlin EMO-DB: 535 utterances, 10 actors, 7 emotions; labels come from the file name.

``03a01Fa.wav`` = speaker 03, text a01, emotion letter ``F`` (index 5), version a. The letters are
German initials: F is Freude (happiness) and A is Angst (fear), not anger.
"""

from __future__ import annotations

import re

from ..corpora import register_corpus
from .base import Corpus, Utterance
from .download import Archive

FILENAME = re.compile(r"^(?P<speaker>\d{2})(?P<text>[ab]\d{2})(?P<letter>[A-Z])(?P<version>[a-z])$")
# Speaker genders from the EMO-DB documentation (no metadata file ships with the audio).
GENDERS = {
    "03": "male", "08": "female", "09": "female", "10": "male", "11": "male",
    "12": "male", "13": "female", "14": "female", "15": "male", "16": "female",
}


@register_corpus
class EmoDB(Corpus):
    name = "emodb"
    description = "Berlin Database of Emotional Speech (German, 10 actors, 7 emotions)"
    label_map = {
        "W": "anger", "L": "boredom", "E": "disgust", "A": "fear",
        "F": "happiness", "T": "sadness", "N": "neutral",
    }
    download_hint = "run `bench data download emodb`"
    archives = (Archive("http://emodb.bilderbar.info/download/download.zip", "download.zip", "wav", 535),)
    manifest = "emodb.sha256"  # SHA-256 of each of the 535 WAVs under wav/ (corpora/contents.py)

    def scan(self):
        self.require_dir(self.root)
        wav_dir = self.root / "wav" if (self.root / "wav").is_dir() else self.root
        found, skipped = [], []
        for path in sorted(wav_dir.glob("*.wav")):
            match = FILENAME.match(path.stem)
            if not match or match["letter"] not in self.label_map:
                skipped.append(
                    f"{path}: file name does not follow EMO-DB's SSTTTEV.wav pattern "
                    f"(emotion letter one of {''.join(self.label_map)}); rename or remove it"
                )
                continue
            speaker = match["speaker"]
            found.append(Utterance(
                id=path.stem, path=path, emotion=self.label_map[match["letter"]],
                label=match["letter"], speaker=speaker, gender=GENDERS.get(speaker), corpus=self.name,
            ))
        return found, skipped
