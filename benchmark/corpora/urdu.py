"""URDU: 400 utterances from Urdu talk shows, a folder per emotion (Angry, Happy, Neutral, Sad).

File ``SM1_F10_A010.wav``: gender M and speaker 1 (``SM1``), file 10 of that speaker, emotion A,
overall number 010. The folder is the label; the letter is checked against it.

There is no ``bench data download urdu`` (GitHub's generated ``master.zip`` is the only archive);
``bench data verify urdu`` checks a copy file by file against ``manifests/urdu.sha256``.
"""

from __future__ import annotations

import re

from ..corpora import register_corpus
from .base import Corpus, Utterance

FILENAME = re.compile(r"^S(?P<gender>[MF])(?P<speaker>\d+)_F\d+_(?P<letter>[AHNS])\d+$")
LETTERS = {"A": "Angry", "H": "Happy", "N": "Neutral", "S": "Sad"}


@register_corpus
class Urdu(Corpus):
    name = "urdu"
    description = "URDU corpus (Urdu talk shows, 38 speakers, 4 emotions)"
    label_map = {"Angry": "anger", "Happy": "happiness", "Neutral": "neutral", "Sad": "sadness"}
    download_hint = "get it from github.com/siddiquelatif/URDU-Dataset and unpack it there"
    # SHA-256 of each of the 400 WAVs as <Emotion>/<file>.wav; `bench data verify urdu` checks a copy
    manifest = "urdu.sha256"

    def scan(self):
        self.require_dir(self.root)
        found, skipped = [], []
        for folder, emotion in self.label_map.items():
            for path in sorted((self.root / folder).glob("*.wav")):
                match = FILENAME.match(path.stem)
                if not match or LETTERS[match["letter"]] != folder:
                    skipped.append(
                        f"{path}: file name does not follow URDU's SGX_FXX_EYY pattern for folder "
                        f"{folder}; rename or move it"
                    )
                    continue
                found.append(Utterance(
                    id=path.stem, path=path, emotion=emotion, label=folder,
                    speaker=f"S{match['gender']}{match['speaker']}",
                    gender="male" if match["gender"] == "M" else "female", corpus=self.name,
                ))
        return found, skipped
