"""Experiment files: a YAML grid (models x feature sets x protocols x class sets ...) of runs.

    name: emodb_speaker_independent      # MLflow experiment name
    description: free text
    base: {protocol: within_corpus, corpus: emodb, norm: speaker}   # shared by every cell
    grid: {model: [svm, xgboost], features: [egemaps, librosa46]}   # every combination is a run
    runs: [{protocol: cross_corpus, classes: "5"}]                   # extra single runs (on top of base)

Keys are the settings of :func:`benchmark.config.resolve` (what ``bench run`` takes as options).
The file's shape is checked here; each cell's values are validated when it is resolved, so one
bad cell fails alone and the others still run.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, fields
from pathlib import Path

import yaml

from .config import MODEL_SHORTCUTS, SLICE_KEYS, TASK_KEYS, TOP_KEYS
from .errors import BenchError


def setting_names() -> set[str]:
    """Every key a cell may set: the run's own settings and any protocol's parameters."""
    from .protocols import PROTOCOLS

    protocol_fields = {f.name for cls in PROTOCOLS.values() for f in fields(cls.Params)}
    return set(TOP_KEYS) | set(TASK_KEYS) | set(SLICE_KEYS) | set(MODEL_SHORTCUTS) | protocol_fields


@dataclass
class Experiment:
    name: str
    description: str
    cells: list[dict]  # settings for config.resolve, one dict per run


def _mapping(value, where: str, path: Path) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BenchError(f"{path}: {where} must be a mapping of settings (e.g. {{model: svm}}), got {value!r}")
    return value


def load_experiment(path: str | Path) -> Experiment:
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"{path}: experiment file not found; see experiments/ for examples")
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise BenchError(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(spec, dict):
        raise BenchError(f"{path}: expected a mapping with name, base and grid")
    unknown_top = sorted(set(spec) - {"name", "description", "base", "grid", "runs"})
    if unknown_top:
        raise BenchError(f"{path}: unknown key(s) {', '.join(unknown_top)}; use name, description, base, grid, runs")
    for key in ("name", "description"):
        if spec.get(key) is not None and not isinstance(spec[key], str):
            raise BenchError(f"{path}: {key} must be text, got {spec[key]!r}")
    base = _mapping(spec.get("base"), "base", path)
    grid = _mapping(spec.get("grid"), "grid", path)
    runs = spec.get("runs") or []
    if not isinstance(runs, list):
        raise BenchError(f"{path}: runs must be a list of mappings (e.g. runs: [{{model: svm}}]), got {runs!r}")
    runs = [_mapping(run, f"runs[{i}]", path) for i, run in enumerate(runs)]
    known = setting_names()
    for key in list(base) + list(grid) + [k for run in runs for k in run]:
        if key not in known:
            raise BenchError(f"{path}: unknown run setting {key!r}; known: {', '.join(sorted(known))}")
    axes = {key: values if isinstance(values, list) else [values] for key, values in grid.items()}
    if any(not values for values in axes.values()):
        raise BenchError(f"{path}: grid entry {next(k for k, v in axes.items() if not v)!r} is an empty list")
    cells = [{**base, **dict(zip(axes, combo))} for combo in itertools.product(*axes.values())] if axes else []
    cells += [{**base, **run} for run in runs]
    cells = cells or [dict(base)]
    return Experiment(spec.get("name") or path.stem, spec.get("description") or "", cells)
