"""The two protocols: within one corpus, and train-on-one-corpus, test-on-another."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import LeaveOneGroupOut, PredefinedSplit, StratifiedGroupKFold, StratifiedShuffleSplit

from ..errors import BenchError
from ..protocols import register_protocol
from .base import Protocol, ProtocolData, requested_classes, restrict


@register_protocol
class WithinCorpus(Protocol):
    """Speaker-independent by default: leave-one-speaker-out for up to ``max_loso_speakers``
    speakers (EMO-DB's 10), otherwise speaker-grouped stratified k-fold. ``split="random"`` is
    the seed's stratified 80/20 utterance split (speakers leak across it: not for reported numbers).
    """

    name = "within_corpus"
    description = "one corpus; leave-one-speaker-out / speaker-grouped k-fold (or --split random 80/20)"

    def corpus_names(self):
        return [self.config.corpus]

    def select(self, utterances_by_corpus):
        utterances = utterances_by_corpus[self.config.corpus]
        classes = restrict(utterances, requested_classes(self.config.classes),
                           {u.emotion for u in utterances}, self.config.corpus)
        return ProtocolData([u for u in utterances if u.emotion in classes], classes)

    def splitter(self, data):
        if self.config.split == "random":
            return StratifiedShuffleSplit(n_splits=1, test_size=self.config.test_size, random_state=self.config.seed)
        if self.config.split != "speaker":
            raise BenchError(f"--split {self.config.split}: use speaker or random")
        n_speakers = len(np.unique(data.groups))
        if n_speakers < 2:
            raise BenchError(f"{self.config.corpus}: one speaker only; speaker-independent splits need two or more "
                             f"(use --split random)")
        if n_speakers <= self.config.max_loso_speakers:
            return LeaveOneGroupOut()
        return StratifiedGroupKFold(n_splits=min(self.config.folds, n_speakers), shuffle=True,
                                    random_state=self.config.seed)

    def fold_names(self, data, folds):
        if isinstance(self.splitter(data), LeaveOneGroupOut):
            return [f"speaker-{data.groups[test[0]].split(':', 1)[1]}" for _, test in folds]
        return super().fold_names(data, folds)


@register_protocol
class CrossCorpus(Protocol):
    """Train on all of one corpus, test on all of another, on the emotions both have."""

    name = "cross_corpus"
    description = "train on --train-corpus, test on --test-corpus (default emodb -> shemo), shared emotions"

    def corpus_names(self):
        if self.config.train_corpus == self.config.test_corpus:
            raise BenchError(f"cross_corpus: train and test corpus are both {self.config.train_corpus}; "
                             f"use within_corpus or pick two corpora")
        return [self.config.train_corpus, self.config.test_corpus]

    def select(self, utterances_by_corpus):
        train = utterances_by_corpus[self.config.train_corpus]
        test = utterances_by_corpus[self.config.test_corpus]
        shared = {u.emotion for u in train} & {u.emotion for u in test}
        what = f"cross_corpus {self.config.train_corpus}->{self.config.test_corpus} (shared emotions)"
        classes = restrict(train, requested_classes(self.config.classes), shared, what)
        return ProtocolData([u for u in train + test if u.emotion in classes], classes)

    def splitter(self, data):
        # -1: always in training; 0: the single test fold
        return PredefinedSplit(np.where(data.corpora == self.config.test_corpus, 0, -1))

    def fold_names(self, data, folds):
        return [f"{self.config.train_corpus}->{self.config.test_corpus}"]
