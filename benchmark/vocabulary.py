"""Emotion vocabulary mapping per run: ``--map calm=neutral`` renames an emotion in every corpus.

Corpora name near-synonyms differently (RAVDESS "calm", a "pleasant surprise", "joy" for
"happiness"); a mapping lets them meet on shared names. It is a task-level setting
(``config.Task.map``, logged as the MLflow param ``task.map``) applied when the utterances are
loaded, before a protocol selects its classes, so ``--classes`` and the shared-emotion logic
already see the mapped names. Its one serialised form is ``"calm=neutral,joy=happiness"``
(sorted), whether it came as repeated ``--map`` options, a comma list or a YAML mapping.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping

from .errors import BenchError


def parse_map(value: Any) -> dict[str, str]:
    """``"a=b,c=d"``, ``["a=b", "c=d"]`` or ``{"a": "b"}`` -> ``{"a": "b", "c": "d"}``."""
    if value is None or value == "":
        return {}
    if isinstance(value, Mapping):
        pairs = []
        for source, target in value.items():  # `--map a=b,c=d` arrives as {"a": "b,c=d"}
            pairs.append(f"{source}={target}")
        value = ",".join(pairs)
    if isinstance(value, (list, tuple)):
        value = ",".join(str(v) for v in value)
    if not isinstance(value, str):
        raise BenchError(f"--map {value!r}: expected FROM=TO pairs, e.g. --map calm=neutral")
    mapping: dict[str, str] = {}
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        source, sep, target = (s.strip() for s in item.partition("="))
        if not sep or not source or not target:
            raise BenchError(f"--map {item!r}: expected FROM=TO, e.g. --map calm=neutral")
        if mapping.get(source, target) != target:
            raise BenchError(f"--map: {source} is mapped to both {mapping[source]} and {target}; keep one")
        mapping[source] = target
    return mapping


def format_map(mapping: Mapping[str, str]) -> str:
    return ",".join(f"{source}={target}" for source, target in sorted(mapping.items()))


def apply_map(mapping: Mapping[str, str], utterances_by_corpus: dict[str, list]) -> dict[str, list]:
    """Rename emotions in every corpus; a source emotion that no corpus has is a typo, said so."""
    if not mapping:
        return utterances_by_corpus
    found = {u.emotion for utterances in utterances_by_corpus.values() for u in utterances}
    unknown = sorted(set(mapping) - found)
    if unknown:
        raise BenchError(f"--map {format_map({k: mapping[k] for k in unknown})}: no corpus of this run has "
                         f"{', '.join(unknown)} (emotions found: {', '.join(sorted(found))})")
    return {name: [replace(u, emotion=mapping[u.emotion]) if u.emotion in mapping else u for u in utterances]
            for name, utterances in utterances_by_corpus.items()}
