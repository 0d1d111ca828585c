"""``within_corpus``: train and test on one corpus, speaker-independent by default."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
from annotated_types import Ge, Gt, Lt
from sklearn.model_selection import LeaveOneGroupOut, StratifiedGroupKFold, StratifiedShuffleSplit

from ..errors import BenchError
from ..protocols import register_protocol
from .base import Protocol, ProtocolData, requested_classes, restrict


@register_protocol
class WithinCorpus(Protocol):
    """Leave-one-speaker-out for up to ``max_loso_speakers`` speakers (EMO-DB's 10), otherwise
    speaker-grouped stratified k-fold. ``split="random"`` is the seed's stratified 80/20 utterance
    split: speakers leak across it, so its numbers are not speaker-independent."""

    name = "within_corpus"
    description = "one corpus; leave-one-speaker-out / speaker-grouped k-fold (or --split random 80/20)"

    @dataclass(frozen=True)
    class Params:
        corpus: str = "emodb"
        split: Literal["speaker", "random"] = "speaker"
        folds: Annotated[int, Ge(2)] = 5  # speaker-grouped folds when there are too many speakers for LOSO
        max_loso_speakers: Annotated[int, Ge(2)] = 12
        test_size: Annotated[float, Gt(0), Lt(1)] = 0.2  # split="random" (the seed's train_test_split)

    def corpus_names(self):
        return [self.params.corpus]

    def column(self, classes):
        return super().column(classes) + (" random" if self.params.split == "random" else "")

    def select(self, utterances_by_corpus):
        utterances = utterances_by_corpus[self.params.corpus]
        classes = restrict(utterances, requested_classes(self.classes), {u.emotion for u in utterances},
                           self.params.corpus)
        data = ProtocolData([u for u in utterances if u.emotion in classes], classes)
        if self.params.split == "speaker" and len(np.unique(data.groups)) < 2:
            raise BenchError(f"{self.params.corpus}: one speaker only; speaker-independent splits need two or more "
                             f"(use --split random)")
        return data

    def splitter(self, data):
        if self.params.split == "random":
            return StratifiedShuffleSplit(n_splits=1, test_size=self.params.test_size, random_state=self.seed)
        n_speakers = len(np.unique(data.groups))
        if n_speakers <= self.params.max_loso_speakers:
            return LeaveOneGroupOut()
        return StratifiedGroupKFold(n_splits=min(self.params.folds, n_speakers), shuffle=True,
                                    random_state=self.seed)

    def fold_names(self, data, folds):
        if isinstance(self.splitter(data), LeaveOneGroupOut):
            return [f"speaker-{data.groups[test[0]].split(':', 1)[1]}" for _, test in folds]
        return super().fold_names(data, folds)



