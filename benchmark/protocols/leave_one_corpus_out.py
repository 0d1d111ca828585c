"""``leave_one_corpus_out``: one fold per corpus, trained on all the others."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import PredefinedSplit

from ..errors import BenchError
from ..protocols import register_protocol
from .base import CorpusList, Protocol, select_shared


@register_protocol
class LeaveOneCorpusOut(Protocol):
    """Every corpus of ``corpora`` is the test set once, with a model trained on the rest of them,
    on the emotions all of them share (Schuller et al. 2010's leave-one-corpus-out). A corpus
    never trains the model that is scored on it; speakers never cross corpora."""

    name = "leave_one_corpus_out"
    description = "--corpora a,b,c: one fold per corpus, trained on the others; shared emotions"

    @dataclass(frozen=True)
    class Params:
        corpora: CorpusList = ("emodb", "urdu")

    def validate(self):
        if len(self.params.corpora) < 2:
            raise BenchError(f"leave_one_corpus_out: --corpora {','.join(self.params.corpora)} names one corpus; "
                             f"give two or more, e.g. --corpora emodb,urdu")

    def corpus_names(self):
        return list(self.params.corpora)

    def slug(self):
        return "+".join(self.params.corpora)

    def select(self, utterances_by_corpus):
        return select_shared(self.corpus_names(), utterances_by_corpus, self.classes,
                             f"leave_one_corpus_out {self.slug()}")

    def splitter(self, data):
        return PredefinedSplit(np.array([self.params.corpora.index(c) for c in data.corpora]))

    def fold_names(self, data, folds):
        names = []
        for _, test in folds:
            held_out = data.corpora[test[0]]
            names.append("+".join(c for c in self.params.corpora if c != held_out) + f"->{held_out}")
        return names
