"""Corpus registry: ``@register_corpus`` classes, looked up by name."""

from __future__ import annotations

from pathlib import Path

from ..paths import data_root
from ..registry import Registry
from .base import EMOTIONS, Corpus, Utterance, canonical_emotion

CORPORA = Registry("corpus")
register_corpus = CORPORA.register


def get_corpus(name: str, data_dir: str | Path | None = None, root: str | Path | None = None, **options) -> Corpus:
    """Build corpus ``name`` found at ``root`` or ``<data root>/<name>``."""
    cls = CORPORA.lookup(name)
    return cls(Path(root) if root else data_root(data_dir) / name, **options)


def open_corpus(spec: str, data_dir: str | Path | None = None) -> Corpus:
    """``emodb``, ``shemo``, ``urdu`` or ``folder:PATH`` (a CSV manifest or emotion folders)."""
    if spec.startswith("folder:"):
        return get_corpus("folder", root=spec.split(":", 1)[1])
    return get_corpus(spec, data_dir=data_dir)


CORPORA.discover(__name__, __path__)  # every module joins by its decorator

__all__ = ["CORPORA", "EMOTIONS", "Corpus", "Utterance", "canonical_emotion", "get_corpus", "open_corpus", "register_corpus"]
