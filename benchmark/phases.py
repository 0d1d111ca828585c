"""``bench bench``: where the time of a run goes, phase by phase, in one process run.

It times, on the same machine and under the same load, what ``bench run`` does for one model and
feature set (default svm + egemaps on EMO-DB LOSO, the main job):

* start-up: fresh interpreters importing ``benchmark.cli`` and running ``bench --help``;
* extraction cold (an empty temporary cache) and warm (the same cache again), with the parts the
  model needs, through the same ``extract_features`` the runner calls;
* openSMILE per file: the old two passes (``Smile`` per level) against one pass, alternated;
* the folds (``runner.fit_and_predict`` per fold) and the final fit on everything;
* a whole warm ``runner.run`` into a temporary MLflow store; what it spends beyond the phases
  above is MLflow logging and bookkeeping;
* for xgboost, the folds again with the old ``n_jobs=2`` alternated with the new automatic
  thread count (:mod:`benchmark.threads`);
* whether TensorFlow got imported (a vector-model run should not), and the imports that dominate
  a ``bench predict`` start-up (``python -X importtime``).

Only the runner's public functions are used (``prepare``, ``build_inputs``, ``fit_and_predict``,
``run``), so the runner's internals can change under it. Every time is wall-clock seconds of
this run: compare the rows of one run with each other, not with another machine's.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path


# Frameworks whose import alone costs seconds; a vector-model run needs none of them.
HEAVY_MODULES = ("tensorflow", "keras", "torch", "transformers", "dask", "distributed")


@dataclass
class Phase:
    name: str
    seconds: float
    note: str = ""


@dataclass
class PhaseReport:
    phases: list[Phase] = field(default_factory=list)
    ratios: list[tuple[str, float, str]] = field(default_factory=list)  # (what, old/new, how measured)
    tensorflow_imported: bool = False
    heavy_imports: list[str] = field(default_factory=list)  # big frameworks a vector-model run loaded
    predict_imports: list[tuple[str, float]] = field(default_factory=list)  # (top-level package, seconds)

    def add(self, name: str, seconds: float, note: str = "") -> float:
        self.phases.append(Phase(name, seconds, note))
        return seconds


def timed(function: Callable):
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def best_subprocess_seconds(args: list[str], repeat: int) -> float:
    """Fastest of ``repeat`` runs of a fresh process (start-up is noisy on a shared machine)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(args, check=True, capture_output=True, timeout=600)
        best = min(best, time.perf_counter() - start)
    return best


def import_profile(args: list[str], top: int = 8) -> list[tuple[str, float]]:
    """Cumulative import time per top-level package of a command (``python -X importtime``)."""
    done = subprocess.run([sys.executable, "-X", "importtime", *args], capture_output=True, text=True, timeout=600)
    totals: dict[str, float] = defaultdict(float)
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
        if match and len(match.group(2)) == 1:  # a top-level import: its cumulative time
            totals[match.group(3).split(".")[0]] += int(match.group(1)) / 1e6
    return sorted(totals.items(), key=lambda item: -item[1])[:top]


def two_pass_opensmile(smile_set: str):
    """The old extractor: one ``opensmile.Smile`` per level, two openSMILE passes per file."""
    import numpy as np
    import opensmile

    smiles = [opensmile.Smile(feature_set=getattr(opensmile.FeatureSet, smile_set), feature_level=level)
              for level in (opensmile.FeatureLevel.LowLevelDescriptors, opensmile.FeatureLevel.Functionals)]

    def extract(signal):
        return {"frames": smiles[0].process_signal(signal, 16_000).to_numpy(np.float32),
                "functionals": smiles[1].process_signal(signal, 16_000).to_numpy(np.float32)[0]}

    return extract


def alternate(functions: dict[str, Callable], inputs: list, rounds: int = 2) -> dict[str, float]:
    """Total seconds of each function over ``inputs``, the functions alternated item by item."""
    totals = dict.fromkeys(functions, 0.0)
    for round_ in range(rounds):
        for item in inputs:
            order = list(functions.items())
            for name, function in order if round_ % 2 == 0 else order[::-1]:
                start = time.perf_counter()
                function(item)
                totals[name] += time.perf_counter() - start
    return totals


def run_phase_benchmark(config, runtime, limit_opensmile: int = 40, startup_repeat: int = 3,
                        log: Callable[[str], None] = print) -> PhaseReport:
    """Time the phases of ``config`` (a ``runner.RunConfig``) under ``runtime``; see the module docstring."""
    import numpy as np

    from . import runner
    from .audio import load_audio
    from .features.extract import extract_features
    from .features.functionals import parts_needed

    report = PhaseReport()
    log("start-up: fresh interpreters")
    report.add("start-up: python -c 'import benchmark.cli'",
               best_subprocess_seconds([sys.executable, "-c", "import benchmark.cli"], startup_repeat))
    report.add("start-up: bench --help", best_subprocess_seconds([sys.executable, "-m", "benchmark", "--help"],
                                                                startup_repeat))

    with tempfile.TemporaryDirectory(prefix="ser-bench-phases-") as scratch:
        runtime = replace(runtime, cache_dir=str(Path(scratch) / "cache"), tracking_uri=f"sqlite:///{scratch}/mlflow.db",
                          experiment="ser-bench-phases", progress=False)
        log("prepare: config, corpus")
        prepared, seconds = timed(lambda: runner.prepare(config, runtime))
        feature_set, data = prepared.feature_set, prepared.data
        report.add("prepare (validate, list the corpus)", seconds)
        model_cls = config.model_class()
        parts = parts_needed(model_cls.input_kind, feature_set)
        items = [(f"{u.id}@{u.corpus}", u.path) for u in data.utterances]
        for label in ("cold", "warm"):
            log(f"extraction {label}: {len(items)} files")
            result, seconds = timed(lambda: extract_features(items, feature_set, cache_dir=runtime.cache_dir,
                                                             jobs=runtime.jobs, progress=False, parts=parts))
            report.add(f"extraction {label} ({feature_set.name}, parts {','.join(parts)})", seconds,
                       f"{result.computed} computed, {result.cached} cached, {len(result.failed)} skipped")

        if hasattr(feature_set, "smile_set") and "frames" in feature_set.parts:
            log(f"openSMILE per file: two passes vs one, {limit_opensmile} files alternated")
            signals = [load_audio(u.path) for u in data.utterances[:limit_opensmile]]
            old = two_pass_opensmile(feature_set.smile_set)
            totals = alternate({"old": old, "new": lambda s: feature_set.extract(s, parts=parts),
                                "new_both": lambda s: feature_set.extract(s)}, signals)
            report.ratios.append((f"{feature_set.name} per file: two Smile passes / one pass ({','.join(parts)})",
                                  totals["old"] / totals["new"], f"{len(signals)} files x 2, alternated"))
            report.ratios.append((f"{feature_set.name} per file: two Smile passes / one pass (frames+functionals)",
                                  totals["old"] / totals["new_both"], f"{len(signals)} files x 2, alternated"))

        inputs, seconds = timed(lambda: runner.build_inputs(prepared, runtime))
        report.add("build inputs (warm cache, folds)", seconds)
        X, labels, groups = inputs.X, inputs.labels, inputs.groups

        def all_folds(model_config):
            for fold in inputs.folds:
                runner.fit_and_predict(model_config, X, labels, groups, fold.train, fold.test)

        log(f"folds: {len(inputs.folds)} x {config.model.name}")
        _, folds_seconds = timed(lambda: all_folds(config))
        report.add(f"folds ({len(inputs.folds)} fits + predictions)", folds_seconds)
        everything = np.arange(len(labels))
        _, seconds = timed(lambda: runner.fit_and_predict(config, X, labels, groups, everything, everything[:0]))
        report.add("final fit (all data)", seconds)

        if config.model.name == "xgboost" and config.model.params.get("n_jobs") is None:
            log("xgboost threads: n_jobs=2 (old default) vs automatic, alternated")
            old_config = replace(config, model=replace(config.model, params={**config.model.params, "n_jobs": 2}))
            totals = alternate({"old": lambda _: all_folds(old_config), "new": lambda _: all_folds(config)}, [None])
            report.ratios.append(("xgboost folds: n_jobs=2 / automatic threads", totals["old"] / totals["new"],
                                  f"all {len(inputs.folds)} folds x 2, alternated"))

        log("whole run (warm cache) into a temporary MLflow store")
        result, seconds = timed(lambda: runner.run(config, runtime))
        phases_inside = sum(p.seconds for p in report.phases if p.name.startswith(("prepare", "build", "folds",
                                                                                    "final")))
        report.add("whole run, warm (bench run without start-up)", seconds, f"UAR {result.pooled['uar']:.3f}")
        report.add("  of which MLflow logging and bookkeeping (whole run - phases above)",
                   max(0.0, seconds - phases_inside))
        report.tensorflow_imported = "tensorflow" in sys.modules
        report.heavy_imports = [name for name in HEAVY_MODULES if name in sys.modules]

        if result.model_uri:
            log("bench predict start-up: python -X importtime")
            wav, env_uri = str(data.utterances[0].path), runtime.tracking_uri
            report.predict_imports = import_profile(["-m", "benchmark", "predict", wav, "--model",
                                                     result.model_uri, "--tracking-uri", env_uri])
            report.add("bench predict, 1 file (fresh process)", best_subprocess_seconds(
                [sys.executable, "-m", "benchmark", "predict", wav, "--model", result.model_uri,
                 "--tracking-uri", env_uri, "--format", "json"], 1))
            from .predict import Predictor

            predictor, seconds = timed(lambda: Predictor(result.model_uri, runtime.tracking_uri))
            report.add("bench predict: load the model (in this process)", seconds)
            files = [u.path for u in data.utterances[:50]]
            for attempt in ("first", "again"):  # again: the features come from the cache
                predictor.predict(files)
                spent = predictor.seconds
                report.add(f"bench predict: {len(files)} files after load ({attempt})", sum(spent.values()),
                           f"extraction {1000 * spent['extraction'] / len(files):.1f} ms/file, model "
                           f"{1000 * spent['model'] / len(files):.2f} ms/file")
    return report
