"""Evaluation protocols as data: which utterances, which classes, and an sklearn splitter.

A protocol never sees features or models; it turns utterance records into (train, test) index
folds. Speakers are the grouping variable everywhere, so "speaker-independent" is a property of
the splitter (``LeaveOneGroupOut``, ``StratifiedGroupKFold``), not a promise.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Annotated, ClassVar

import numpy as np
from annotated_types import MinLen
from pydantic import BeforeValidator, TypeAdapter

from ..errors import BenchError

# Named class sets: the report's 2-class task, URDU/IEMOCAP-style 4, the Berlin/ShEMO shared 5,
# ShEMO's 6 and EMO-DB's 7.
CLASS_SETS: dict[str, tuple[str, ...]] = {
    "2": ("anger", "neutral"),
    "4": ("anger", "happiness", "neutral", "sadness"),
    "5": ("anger", "fear", "happiness", "neutral", "sadness"),
    "6": ("anger", "fear", "happiness", "neutral", "sadness", "surprise"),
    "7": ("anger", "boredom", "disgust", "fear", "happiness", "neutral", "sadness"),
}


@dataclass(frozen=True)
class Fold:
    name: str
    train: np.ndarray
    test: np.ndarray


@dataclass
class ProtocolData:
    """Utterances chosen by a protocol, with their labels and speaker groups."""

    utterances: list
    classes: tuple[str, ...]
    labels: np.ndarray = field(init=False)
    groups: np.ndarray = field(init=False)
    corpora: np.ndarray = field(init=False)
    notes: list[str] = field(default_factory=list)  # printed and logged with the run (e.g. dropped emotions)

    def __post_init__(self):
        self.labels = np.array([u.emotion for u in self.utterances])
        self.groups = np.array([f"{u.corpus}:{u.speaker}" for u in self.utterances])
        self.corpora = np.array([u.corpus for u in self.utterances])


def _name_list(value) -> tuple[str, ...]:
    """"emodb, urdu" or ["emodb", "urdu"] -> ("emodb", "urdu"): order kept, duplicates dropped."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        return value  # pydantic then names the wrong type
    return tuple(dict.fromkeys(str(item).strip() for item in items if str(item).strip()))


# A protocol parameter naming one or more corpora: `--train-corpus emodb,urdu` on the command line.
CorpusList = Annotated[tuple[str, ...], BeforeValidator(_name_list), MinLen(1)]


def requested_classes(spec: str | list | tuple | None) -> tuple[str, ...] | None:
    """None for "all" (every emotion the data has), else the requested emotion names."""
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", "all")):
        return None
    if isinstance(spec, (list, tuple)):
        names = [str(s).strip() for s in spec]
    elif str(spec).strip() in CLASS_SETS:
        return CLASS_SETS[str(spec).strip()]
    elif str(spec).strip().isdigit():
        raise BenchError(f"--classes {spec}: no {spec}-class set; use one of {', '.join(CLASS_SETS)}, all, "
                         f"or a comma-separated list of emotions")
    else:
        names = [s.strip() for s in str(spec).split(",") if s.strip()]
    if len(names) < 2:
        raise BenchError(f"--classes {spec}: a task needs at least two emotions")
    return tuple(sorted(set(names)))


def restrict(utterances: list, classes: tuple[str, ...] | None, available: set[str], what: str) -> tuple[str, ...]:
    """Validate the class set against the emotions ``available`` in the data."""
    if classes is None:
        chosen = tuple(sorted(available))
    else:
        unknown = sorted(set(classes) - available)
        if unknown:
            raise BenchError(f"{what}: no utterances for {', '.join(unknown)}; available: {', '.join(sorted(available))}")
        chosen = tuple(sorted(classes))
    if len(chosen) < 2:
        raise BenchError(f"{what}: only {', '.join(chosen) or 'no emotion'} available; a task needs two or more")
    return chosen


def select_shared(corpus_names: list[str], utterances_by_corpus: dict[str, list], classes_spec, what: str
                  ) -> ProtocolData:
    """The utterances of ``corpus_names`` on the emotions *every one of them* has (or the requested
    subset of those), with notes saying which emotions were shared and what each corpus lost."""
    available = {name: {u.emotion for u in utterances_by_corpus[name]} for name in corpus_names}
    shared = set.intersection(*available.values())
    requested = requested_classes(classes_spec)
    if requested is not None:
        for name, emotions in available.items():
            missing = sorted(set(requested) - emotions)
            if missing:
                raise BenchError(f"{what}: corpus {name} has no {', '.join(missing)}; emotions every corpus has: "
                                 f"{', '.join(sorted(shared)) or 'none'} (see --classes, --map)")
    classes = restrict([], requested, shared, what)
    notes = [f"{what}: emotions used: {', '.join(classes)}"]
    for name in corpus_names:
        dropped = sorted(available[name] - set(classes))
        if dropped:
            n = sum(1 for u in utterances_by_corpus[name] if u.emotion in dropped)
            notes.append(f"{what}: {name} drops {', '.join(dropped)} ({n} utterances)")
    utterances = [u for name in corpus_names for u in utterances_by_corpus[name] if u.emotion in classes]
    return ProtocolData(utterances, classes, notes=notes)


class Protocol(ABC):
    """An evaluation protocol. Subclasses declare their own typed ``Params`` (a frozen dataclass:
    the fields are the protocol's settings, validated once by :func:`benchmark.config.resolve` and
    logged as ``protocol.<field>``), which corpora they read, how they select utterances and
    split them, and how they are named in reports and study names."""

    name: ClassVar[str]
    description: ClassVar[str] = ""

    @dataclass(frozen=True)
    class Params:
        pass

    def __init__(self, params=None, classes: str = "all", seed: int = 0):
        params = params if params is not None else self.Params()
        # the Params' own types apply however it was built (`Params(train_corpus="emodb")` in code too)
        self.params = TypeAdapter(type(params)).validate_python(asdict(params))
        self.classes = classes
        self.seed = seed

    def validate(self) -> None:
        """Checks that need no data (e.g. two different corpora); run before any MLflow run exists."""

    def slug(self) -> str:
        """Short name of what the protocol reads, for study and run names (e.g. ``emodb``)."""
        return "-".join(self.corpus_names())

    def column(self, classes: tuple[str, ...]) -> str:
        """The report column this protocol's runs fall in (e.g. ``within_corpus emodb 7 classes``)."""
        return f"{self.name} {self.slug()} {len(classes)} classes"

    @abstractmethod
    def corpus_names(self) -> list[str]:
        """Corpora this protocol reads."""

    @abstractmethod
    def select(self, utterances_by_corpus: dict[str, list]) -> ProtocolData:
        """The utterances and classes of the task."""

    @abstractmethod
    def splitter(self, data: ProtocolData):
        """An sklearn splitter whose ``split(X, y, groups)`` yields the folds."""

    def fold_names(self, data: ProtocolData, folds: list[tuple[np.ndarray, np.ndarray]]) -> list[str]:
        return [f"fold-{i}" for i in range(len(folds))]

    def folds(self, data: ProtocolData) -> list[Fold]:
        placeholder = np.zeros((len(data.utterances), 1))
        try:
            with warnings.catch_warnings():  # PredefinedSplit warns that it ignores groups
                warnings.filterwarnings("ignore", message="The groups parameter is ignored")
                pairs = list(self.splitter(data).split(placeholder, data.labels, data.groups))
        except ValueError as exc:
            raise BenchError(f"protocol {self.name}: cannot split this data ({exc})") from None
        return [Fold(name, train, test) for name, (train, test) in zip(self.fold_names(data, pairs), pairs)]
