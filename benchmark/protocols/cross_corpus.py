"""``cross_corpus``: train on all of one or more corpora, test on each of one or more others."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import BenchError
from ..protocols import register_protocol
from .base import CorpusList, Protocol, select_shared


@register_protocol
class CrossCorpus(Protocol):
    """Train on every ``train_corpus`` together; test on each ``test_corpus`` separately (one fold
    per test corpus, so each is reported on its own), on the emotions *all* of them share.

    The training set is the same for every fold: the test corpora never reach training, and a
    model trained on EMO-DB+URDU is scored on ShEMO and on another test corpus apart.
    """

    name = "cross_corpus"
    description = ("train on --train-corpus (one or more, e.g. emodb,urdu), test on each --test-corpus "
                   "(default emodb -> shemo), shared emotions")

    @dataclass(frozen=True)
    class Params:
        train_corpus: CorpusList = ("emodb",)
        test_corpus: CorpusList = ("shemo",)

    def validate(self):
        both = sorted(set(self.params.train_corpus) & set(self.params.test_corpus))
        if both:
            raise BenchError(f"cross_corpus: {', '.join(both)} is both a --train-corpus and a --test-corpus; "
                             f"use within_corpus or leave_one_corpus_out, or pick disjoint corpora")

    def corpus_names(self):
        return [*self.params.train_corpus, *self.params.test_corpus]

    def train_name(self) -> str:
        return "+".join(self.params.train_corpus)

    def slug(self):
        return f"{self.train_name()}->{','.join(self.params.test_corpus)}"

    def select(self, utterances_by_corpus):
        return select_shared(self.corpus_names(), utterances_by_corpus, self.classes, f"cross_corpus {self.slug()}")

    def splitter(self, data):
        train = np.flatnonzero(np.isin(data.corpora, self.params.train_corpus))
        return FixedSplits([(train, np.flatnonzero(data.corpora == name)) for name in self.params.test_corpus
                            if (data.corpora == name).any()])

    def fold_names(self, data, folds):
        return [f"{self.train_name()}->{data.corpora[test[0]]}" for _, test in folds]


class FixedSplits:
    """Given (train, test) index pairs as an sklearn splitter. (``PredefinedSplit`` would put the
    other test corpora into each fold's training set: a test corpus must never train.)"""

    def __init__(self, pairs):
        self.pairs = pairs

    def split(self, X=None, y=None, groups=None):
        yield from self.pairs

    def get_n_splits(self, X=None, y=None, groups=None):
        return len(self.pairs)
