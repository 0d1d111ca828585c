"""``cross_corpus``: train on all of one corpus, test on all of another."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import PredefinedSplit

from ..errors import BenchError
from ..protocols import register_protocol
from .base import Protocol, ProtocolData, requested_classes, restrict


@register_protocol
class CrossCorpus(Protocol):
    """Train on ``train_corpus``, test on ``test_corpus``, on the emotions both have (one fold)."""

    name = "cross_corpus"
    description = "train on --train-corpus, test on --test-corpus (default emodb -> shemo), shared emotions"

    @dataclass(frozen=True)
    class Params:
        train_corpus: str = "emodb"
        test_corpus: str = "shemo"

    def validate(self):
        if self.params.train_corpus == self.params.test_corpus:
            raise BenchError(f"cross_corpus: train and test corpus are both {self.params.train_corpus}; "
                             f"use within_corpus or pick two corpora")

    def corpus_names(self):
        return [self.params.train_corpus, self.params.test_corpus]

    def slug(self):
        return f"{self.params.train_corpus}->{self.params.test_corpus}"

    def select(self, utterances_by_corpus):
        train = utterances_by_corpus[self.params.train_corpus]
        test = utterances_by_corpus[self.params.test_corpus]
        shared = {u.emotion for u in train} & {u.emotion for u in test}
        what = f"cross_corpus {self.slug()} (shared emotions)"
        classes = restrict(train, requested_classes(self.classes), shared, what)
        return ProtocolData([u for u in train + test if u.emotion in classes], classes)

    def splitter(self, data):
        # -1: always in training; 0: the single test fold
        return PredefinedSplit(np.where(data.corpora == self.params.test_corpus, 0, -1))

    def fold_names(self, data, folds):
        return [self.slug()]
