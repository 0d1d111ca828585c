"""Experiment files: a YAML grid (models x feature sets x protocols x class sets ...) of runs.

    name: emodb_speaker_independent      # MLflow experiment name
    description: free text
    base: {protocol: within_corpus, corpus: emodb, norm: speaker}   # shared by every cell
    grid: {model: [svm, xgboost], features: [egemaps, librosa46]}   # every combination is a run
    runs: [{protocol: cross_corpus, classes: "5"}]                   # extra single runs (on top of base)

Keys are the fields of :class:`benchmark.runner.RunConfig`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, fields
from pathlib import Path

import yaml

from .errors import BenchError
from .runner import RunConfig

CONFIG_KEYS = {f.name for f in fields(RunConfig)}


@dataclass
class Experiment:
    name: str
    description: str
    cells: list[dict]  # RunConfig keyword arguments, one dict per run


def load_experiment(path: str | Path) -> Experiment:
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"{path}: experiment file not found; see experiments/ for examples")
    try:
        spec = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise BenchError(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(spec, dict):
        raise BenchError(f"{path}: expected a mapping with name, base and grid")
    unknown_top = sorted(set(spec) - {"name", "description", "base", "grid", "runs"})
    if unknown_top:
        raise BenchError(f"{path}: unknown key(s) {', '.join(unknown_top)}; use name, description, base, grid, runs")
    base = spec.get("base") or {}
    grid = spec.get("grid") or {}
    runs = spec.get("runs") or []
    for key in list(base) + list(grid) + [k for run in runs for k in run]:
        if key not in CONFIG_KEYS:
            raise BenchError(f"{path}: unknown run setting {key!r}; known: {', '.join(sorted(CONFIG_KEYS))}")
    axes = {key: values if isinstance(values, list) else [values] for key, values in grid.items()}
    cells = [{**base, **dict(zip(axes, combo))} for combo in itertools.product(*axes.values())] if axes else []
    cells += [{**base, **run} for run in runs]
    cells = cells or [dict(base)]
    return Experiment(spec.get("name") or path.stem, spec.get("description", ""), cells)
