"""``bench``: the command line of ser-bench (typer, rich help)."""

from __future__ import annotations

import functools
import sys
from collections import Counter
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from .cli_base import console, err_console, friendly_errors, print_table
from .cli_predict import predict_command
from .errors import BenchError, printable

app = typer.Typer(help="ser-bench: experiment-tracked speech emotion recognition benchmarks.",
                  rich_markup_mode="rich", no_args_is_help=True, pretty_exceptions_show_locals=False)
data_app = typer.Typer(help="List, download and verify corpora.", no_args_is_help=True)
features_app = typer.Typer(help="Extract, list and time feature sets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(features_app, name="features")
models_app = typer.Typer(help="Time the Keras networks.", no_args_is_help=True)
app.add_typer(models_app, name="models")

DataDir = typer.Option(None, "--data-dir", help="Folder with one sub-folder per corpus (default: $SER_BENCH_DATA or a per-user cache dir).")
CacheDir = typer.Option(None, "--cache-dir", help="Feature cache folder (default: $SER_BENCH_CACHE or a per-user cache dir).")


def counts_text(counter: Counter) -> str:
    return ", ".join(f"{key} {value}" for key, value in sorted(counter.items()))


@data_app.command("list")
@friendly_errors
def data_list(
    data_dir: Optional[Path] = DataDir,
    corpus: list[str] = typer.Option([], "--corpus", help="Also list these (e.g. folder:my.csv)."),
    speakers: bool = typer.Option(False, "--speakers", help="Show utterances per speaker too."),
):
    """Show each corpus found, with counts per emotion and per speaker."""
    from .corpora import CORPORA, open_corpus
    from .paths import data_root

    console.print(f"data root: {printable(str(data_root(data_dir)))}")
    table = Table("corpus", "files", "speakers", "per emotion", "skipped", "status")
    per_speaker, problems = {}, []
    for spec in [name for name in CORPORA if name != "folder"] + list(corpus):
        try:
            found = open_corpus(spec, data_dir)
            utterances = found.utterances()
        except BenchError as exc:
            table.add_row(printable(spec), "-", "-", "-", "-", "[yellow]not found[/]")
            problems.append(str(exc))
            continue
        speaker_counts = Counter(u.speaker for u in utterances)
        per_speaker[spec] = speaker_counts
        table.add_row(printable(spec), str(len(utterances)), str(len(speaker_counts)),
                      counts_text(Counter(u.emotion for u in utterances)), str(len(found.skipped)),
                      "[green]ok[/]")
    print_table(table)
    for message in problems:
        console.print(f"[yellow]{message}[/]", highlight=False, soft_wrap=True)
    if speakers:
        for spec, speaker_counts in per_speaker.items():
            console.print(f"[bold]{spec}[/] per speaker: {counts_text(speaker_counts)}")


@data_app.command("download")
@friendly_errors
def data_download(
    name: str = typer.Argument(..., help="emodb or shemo"),
    data_dir: Optional[Path] = DataDir,
    base_url: Optional[str] = typer.Option(None, help="Mirror serving the same archive file names (its audio must match the pinned manifest)."),
    sha256: list[str] = typer.Option([], "--sha256", help="Expected SHA-256: HEX, or FILENAME=HEX per archive (overrides the pin)."),
    no_manifest: bool = typer.Option(False, "--no-manifest", help="Accept audio that differs from the corpus's pinned per-file SHA-256 manifest."),
):
    """Download, verify and extract a corpus (resumable: re-run after an interruption)."""
    from .corpora import CORPORA, get_corpus
    from .corpora.contents import manifest_path, verify_folder
    from .corpora.download import download_corpus
    from .paths import data_root

    root = data_root(data_dir) / name
    pinned = manifest_path(CORPORA[name]) if name in CORPORA else None
    if pinned and not (no_manifest or base_url or sha256) and root.is_dir() and verify_folder(name, root).ok:
        # a copy already here and verified: downloading it again costs time and needs a network
        console.print(f"{name}: already in {root}, every audio file matches the pinned manifest {pinned.name}; "
                      f"nothing to download", soft_wrap=True)
        return
    checksums = download_corpus(name, root, base_url=base_url, sha256=list(sha256), check_manifest=not no_manifest)
    found = get_corpus(name, root=root).utterances()
    for filename, digest in checksums.items():
        console.print(f"{filename}: sha256 {digest}")
    if pinned and not no_manifest:
        console.print(f"{name}: every audio file matches the pinned manifest {pinned.name}")
    console.print(f"[green]{name}[/]: {len(found)} utterances in {root}")


@data_app.command("verify")
@friendly_errors
def data_verify(
    name: str = typer.Argument(..., help="emodb or urdu (the corpora with a pinned manifest)"),
    data_dir: Optional[Path] = DataDir,
    show_all: bool = typer.Option(False, "--all", help="List every offending file (default: the first 20)."),
):
    """Check a corpus folder's audio against its pinned per-file SHA-256 manifest (no download).

    Exit code 0: every file matches; 1: one line per changed, missing or extra audio file; 2: error.
    """
    from .corpora.contents import verify_folder
    from .paths import data_root

    root = data_root(data_dir) / name
    check = verify_folder(name, root)
    if check.ok:
        console.print(f"{name}: {check.matched} files match the pinned manifest ({root})", highlight=False)
        return
    problems = check.problems()
    shown = problems if show_all else problems[:20]
    for line in shown:  # an extra file's name may not be UTF-8
        console.print(f"{name}: {printable(line)}", highlight=False, soft_wrap=True)
    if len(shown) < len(problems):
        console.print(f"{name}: ... {len(problems) - len(shown)} more (--all lists every one)", highlight=False)
    console.print(f"{name}: {check.differing} audio file(s) in {root} differ from the pinned manifest "
                  f"({check.matched} of {check.expected} match); re-download the corpus from its official source, "
                  f"or use this copy knowingly (`bench data download --no-manifest` accepts a different copy)",
                  highlight=False, soft_wrap=True)
    raise typer.Exit(1)


@features_app.command("list")
@friendly_errors
def features_list():
    """Show the registered feature sets."""
    from .features import FEATURE_SETS

    table = Table("name", "level", "features", "description")
    for name, cls in sorted(FEATURE_SETS.items()):
        instance = cls()
        table.add_row(name, str(instance.level), str(len(instance.feature_names)), cls.description)
    print_table(table)


@features_app.command("extract")
@friendly_errors
def features_extract(
    corpus: str = typer.Option(..., "--corpus", help="emodb, shemo, urdu or folder:PATH"),
    features: str = typer.Option(..., "--features", help="Feature set name (see `bench features list`)."),
    data_dir: Optional[Path] = DataDir,
    cache_dir: Optional[Path] = CacheDir,
    jobs: Optional[int] = typer.Option(None, "--jobs", min=1, help="Worker processes (default: all cores)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Only the first N utterances."),
    feature_param: list[str] = typer.Option([], "--feature-param", help="Feature-set option NAME=VALUE."),
):
    """Extract (or load from cache) a feature set for every utterance of a corpus."""
    from .corpora import open_corpus
    from .features import get_feature_set
    from .features.extract import extract_features

    feature_set = get_feature_set(features, **parse_assignments(feature_param, "--feature-param"))
    found = open_corpus(corpus, data_dir)
    utterances = found.utterances()[:limit] if limit else found.utterances()
    result = extract_features([(u.id, u.path) for u in utterances], feature_set, cache_dir=cache_dir, jobs=jobs)
    for message in result.failed.values():
        err_console.print(f"skipped: {message}", highlight=False, soft_wrap=True)
    console.print(f"{feature_set.name} on {corpus}: {result.summary()} (cache key {result.cache_key})")
    if not result.features:
        raise BenchError(f"{corpus}: no file could be extracted; see the messages above")


@features_app.command("speed")
@friendly_errors
def features_speed(
    corpus: str = typer.Option("emodb", "--corpus"),
    data_dir: Optional[Path] = DataDir,
    limit: int = typer.Option(100, "--limit", min=1, help="Number of files to time."),
    repeat: int = typer.Option(3, "--repeat", min=1, help="Passes per method; the fastest counts."),
):
    """Time handcrafted36 vs pyAudioAnalysis and librosa46 vs the seed recipe on the same files."""
    from .audio import load_audio
    from .corpora import open_corpus
    from .features.speed import run_speed_benchmark

    utterances = open_corpus(corpus, data_dir).utterances()[:limit]
    signals = [load_audio(u.path) for u in utterances]
    seconds = sum(len(s) for s in signals) / 16_000
    table = Table("ours", "CPU s", "reference", "CPU s", "speed-up")
    for row in run_speed_benchmark(signals, repeat=repeat):
        table.add_row(row.name, f"{row.ours_s:.3f}", row.reference, f"{row.reference_s:.3f}", f"{row.ratio:.1f}x")
    console.print(f"{len(signals)} files of {corpus} ({seconds:.0f} s of audio), best of {repeat} alternated passes, "
                  f"1 process, CPU seconds")
    print_table(table)


@app.command("bench")
@friendly_errors
def bench_command(
    model: str = typer.Option("svm", "--model"),
    features: Optional[str] = typer.Option(None, "--features", help="Feature set (default: the model's own)."),
    corpus: str = typer.Option("emodb", "--corpus"),
    classes: str = typer.Option("7", "--classes"),
    param: list[str] = typer.Option([], "--param", help="Model hyper-parameter NAME=VALUE (repeatable)."),
    data_dir: Optional[Path] = DataDir,
    jobs: Optional[int] = typer.Option(None, "--jobs", min=1, help="Feature extraction processes."),
    opensmile_files: int = typer.Option(40, "--opensmile-files", min=1, help="Files for the openSMILE old/new timing."),
):
    """Time the phases of a run in one process run: start-up, extraction cold/warm, folds, final fit, logging."""
    from .config import resolve
    from .phases import run_phase_benchmark
    from .runner import Runtime

    config = resolve({"model": model, "features": features, "corpus": corpus, "classes": classes,
                      "model_params": parse_assignments(param, "--param")})
    report = run_phase_benchmark(config, Runtime(data_dir=str(data_dir) if data_dir else None, jobs=jobs),
                                 limit_opensmile=opensmile_files,
                                 log=lambda message: err_console.print(message, highlight=False))
    table = Table("phase", "s", "note", title=f"{model} + {config.features.name} on {corpus}, {classes} classes")
    for phase in report.phases:
        table.add_row(phase.name, f"{phase.seconds:.2f}", phase.note)
    print_table(table)
    if report.ratios:
        ratios = Table("old / new", "ratio", "measured")
        for what, ratio, how in report.ratios:
            ratios.add_row(what, f"{ratio:.2f}x", how)
        print_table(ratios)
    console.print(f"TensorFlow imported by this {model} run: {'yes' if report.tensorflow_imported else 'no'}; "
                  f"heavy frameworks loaded: {', '.join(report.heavy_imports) or 'none'}")
    if report.predict_imports:
        console.print("bench predict start-up, cumulative import time by package: "
                      + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in report.predict_imports))


@models_app.command("speed")
@friendly_errors
def models_speed(
    data_dir: Optional[Path] = DataDir,
    model: list[str] = typer.Option([], "--model", help="local_attn_blstm, attn_blstm and/or crnn (default the first two)."),
    variant: list[str] = typer.Option([], "--variant", help="pad-to-longest, buckets, buckets+xla (default all), each optionally with "
                                 "model parameters: buckets:filters=16. Speed-ups are against the first."),
    epochs: int = typer.Option(3, "--epochs", help="Epochs per fit; the first is timed apart."),
    rounds: int = typer.Option(2, "--rounds", min=1, help="Fits per variant, alternated."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Only the first N EMO-DB files."),
):
    """Seconds per training epoch on EMO-DB: old pad-to-longest batching vs length buckets (+ XLA)."""
    import numpy as np

    from .models.speed import run_model_speed

    results = run_model_speed(data_dir, model or None, epochs, rounds, variant or None, limit,
                              log=lambda line: console.print(line, highlight=False))
    table = Table("model", "features", "frames min/max/mean", "variant", "first epoch s", "s/epoch (median)",
                  "speed-up")
    for result in results:
        for name in result.epoch_s:
            table.add_row(result.model, result.features, "{}/{}/{:.0f}".format(*result.frames), name,
                          f"{np.median(result.first_epoch_s[name]):.1f}", f"{result.median(name):.2f}",
                          f"{result.ratio(name):.2f}x")
    print_table(table)


def parse_assignments(items: list[str], option: str) -> dict:
    """["units=64", "dropout=0.2"] -> {"units": 64, "dropout": 0.2} (values read as YAML scalars)."""
    import yaml

    out = {}
    for item in items:
        if "=" not in item:
            raise BenchError(f"{option} {item!r}: expected NAME=VALUE, e.g. {option} units=64")
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            out[key.strip()] = value
        if isinstance(out[key.strip()], str) and out[key.strip()].strip().lower() == "none":
            out[key.strip()] = None  # Python's spelling (the README's duration_s=None), not only YAML's null
    return out


def _registry_names(kind: str) -> str:
    from .features import FEATURE_SETS
    from .models import MODELS
    from .protocols import PROTOCOLS

    return {"model": MODELS, "features": FEATURE_SETS, "protocol": PROTOCOLS}[kind].names()


# The settings `bench run` and `bench tune` share, in one place. Every default is None: "not given",
# so the config's owners (a model's __init__, a protocol's Params, config.Task) keep the defaults.
# "auto" (MLproject's placeholder) also means "not given".
RUN_SETTINGS = [
    ("model", str, "--model", lambda: f"One of: {_registry_names('model')}."),
    ("features", str, "--features", lambda: f"Feature set (default: the model's own): {_registry_names('features')}."),
    ("protocol", str, "--protocol", lambda: f"One of: {_registry_names('protocol')} (default within_corpus)."),
    # + one option per protocol parameter, from the protocols' own Params (protocol_settings below)
    ("classes", str, "--classes", lambda: "all (default), 2, 4, 5, 6, 7 or a list like anger,sadness."),
    ("norm", str, "--norm", lambda: "none, global (default), speaker (only if every speaker covers the emotions), "
                                    "corpus (each corpus with its own unlabelled statistics) or corpus+speaker."),
    ("seed", int, "--seed", lambda: "Seed of every random step (default 0)."),
    ("epochs", int, "--epochs", lambda: "Shortcut for --param epochs=N (models trained in epochs)."),
    ("batch_size", int, "--batch-size", lambda: "Shortcut for --param batch_size=N."),
    ("max_per_speaker_class", int, "--max-per-speaker-class", lambda: "Small slice: N utterances per speaker and emotion (0: all)."),
    ("max_speakers", int, "--max-speakers", lambda: "Small slice: the first N speakers (0: all)."),
]
LIST_SETTINGS = [
    ("param", "--param", "Model hyper-parameter NAME=VALUE (repeatable).", "model_params"),
    ("feature_param", "--feature-param", "Feature-set option NAME=VALUE (repeatable).", "feature_params"),
    ("protocol_param", "--protocol-param", "Protocol parameter NAME=VALUE (repeatable).", "protocol_params"),
    ("emotion_map", "--map", "Rename an emotion in every corpus, FROM=TO (repeatable or a comma list), e.g. calm=neutral.",
     "map"),
]


def protocol_settings() -> list[tuple]:
    """One option per parameter any protocol declares (``--corpus``, ``--train-corpus`` ...), with
    its help generated from the protocols that take it: a new protocol file brings its own flags."""
    from dataclasses import MISSING, fields

    from .protocols import PROTOCOLS

    owners: dict[str, list[str]] = {}
    for cls in sorted(PROTOCOLS.values(), key=lambda c: c.name):
        for f in fields(cls.Params):
            default = f.default if f.default is not MISSING else "required"
            default = ",".join(default) if isinstance(default, tuple) else default  # --corpora emodb,urdu
            owners.setdefault(f.name, []).append(f"{cls.name} (default {default})")
    return [(name, str, f"--{name.replace('_', '-')}", lambda where=where: "Protocol parameter of " + "; ".join(where) + ".")
            for name, where in owners.items()]


def run_settings_options(command):
    """Add the shared run settings to a typer command; it receives them as ``settings`` (given ones only)."""
    import inspect

    signature = inspect.signature(command)
    own = [p for p in signature.parameters.values() if p.name != "settings"]
    settings_table = RUN_SETTINGS[:3] + protocol_settings() + RUN_SETTINGS[3:]
    extra = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=Optional[kind],
                               default=typer.Option(None, flag, help=help_text()))
             for name, kind, flag, help_text in settings_table]
    extra += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=list[str],
                                default=typer.Option([], flag, help=help_text))
              for name, flag, help_text, _ in LIST_SETTINGS]

    @functools.wraps(command)
    def wrapper(**kwargs):
        settings = {}
        for name, *_ in settings_table:
            value = kwargs.pop(name)
            if value is not None and value != "auto":
                settings[name] = value
        for name, flag, _, key in LIST_SETTINGS:
            values = kwargs.pop(name)
            if values:
                settings[key] = values if key == "map" else parse_assignments(values, flag)
        return command(settings=settings, **kwargs)

    wrapper.__signature__ = signature.replace(
        parameters=extra + [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own])
    return wrapper


def print_summary(result, title: str) -> None:
    table = Table("fold", "n_test", "WA", "UAR", "macro-F1", title=title)
    for row in result.folds:
        table.add_row(row["fold"], str(row["n_test"]), f"{row['wa']:.3f}", f"{row['uar']:.3f}", f"{row['macro_f1']:.3f}")
    pooled = result.pooled
    table.add_row("[bold]pooled[/]", str(sum(r["n_test"] for r in result.folds)), f"[bold]{pooled['wa']:.3f}[/]",
                  f"[bold]{pooled['uar']:.3f}[/] [{pooled['uar_ci_low']:.3f}, {pooled['uar_ci_high']:.3f}]",
                  f"{pooled['macro_f1']:.3f}")
    print_table(table)
    console.print(f"classes: {', '.join(result.classes)}; {result.n_utterances} utterances"
                  + (f", {len(result.skipped)} files skipped" if result.skipped else "")
                  + (f", {problems} corpus entries unusable (warned above)"
                     if (problems := getattr(result, "corpus_problems", 0)) else "")  # fusions scan no corpus
                  + f"; MLflow run {result.run_id}" + (f"; model {result.model_uri}" if result.model_uri else ""))


@app.command("run")
@friendly_errors
@run_settings_options
def run_command(
    settings: dict,
    final_model: Optional[bool] = typer.Option(None, "--final-model/--no-final-model",
                                               help="Log a deployable model (refit on all data after CV; default on)."),
    experiment: Optional[Path] = typer.Option(None, "--experiment", help="Run every cell of an experiments/*.yaml grid."),
    experiment_name: Optional[str] = typer.Option(None, "--experiment-name", help="MLflow experiment (ser-bench)."),
    run_name: Optional[str] = typer.Option(None, "--run-name"),
    register: Optional[str] = typer.Option(None, "--register", help="Register the model under this name."),
    data_dir: Optional[Path] = DataDir,
    cache_dir: Optional[Path] = CacheDir,
    jobs: Optional[int] = typer.Option(None, "--jobs", min=1, help="Worker processes for folds and feature extraction (default: the cores available)."),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="(default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)"),
    params_from: Optional[str] = typer.Option(None, "--params-from", help="Use the best parameters of this Optuna study."),
    storage: Optional[str] = typer.Option(None, "--storage", help="Optuna storage of --params-from (sqlite:///optuna.db)."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Dask scheduler (tcp://HOST:8786): every cell a task on the cluster."),
):
    """Train and evaluate a model under a protocol; log everything to MLflow."""
    from .config import resolve
    from .runner import Runtime, run

    if final_model is not None:
        settings["final_model"] = final_model
    if experiment:
        from .experiments import load_experiment

        spec = load_experiment(experiment)
        cells, mlflow_experiment = [{**cell, **settings} for cell in spec.cells], experiment_name or spec.name
    else:
        if "model" not in settings:
            raise BenchError("--model is required (or --experiment FILE); e.g. bench run --model svm")
        cells, mlflow_experiment = [settings], experiment_name or "ser-bench"
    runtime = Runtime(data_dir=str(data_dir) if data_dir else None, cache_dir=str(cache_dir) if cache_dir else None,
                      jobs=jobs, tracking_uri=tracking_uri, experiment=mlflow_experiment, run_name=run_name,
                      register=register)
    tuned = None
    if params_from:
        from .runner import check_final_params
        from .tuning import load_tuned

        tuned = load_tuned(params_from, storage)
        check_final_params(tuned, any(cell.get("final_model", True) for cell in cells))  # once, not per cell
    failures = 0
    if scheduler:  # issue 12: every cell a task on a Dask cluster (benchmark/distributed.py)
        from .distributed import run_grid_command

        run_grid_command(cells, dict(data_dir=str(data_dir) if data_dir else None, cache_dir=str(cache_dir) if cache_dir
                                     else None, jobs=jobs, tracking_uri=tracking_uri, experiment=mlflow_experiment,
                                     run_name=run_name, register=register), scheduler, tuned, print_summary)
        return
    for number, cell in enumerate(cells, start=1):
        title = (f"[{number}/{len(cells)}] " if len(cells) > 1 else "") + \
            " / ".join(str(cell.get(k, "-")) for k in ("model", "features", "protocol"))
        try:
            config = resolve(cell)  # every value checked before any MLflow run exists
            title = title.split("] ")[0] + "] " if len(cells) > 1 else ""
            title += f"{config.model.name} / {config.features.name} / {config.protocol.name}"
            print_summary(run(config, runtime, tuned), title)
        except BenchError as exc:
            if len(cells) == 1:
                raise
            failures += 1
            err_console.print(f"[bold red]error[/] in {title}: {exc}", highlight=False, soft_wrap=True)
    if failures:
        raise BenchError(f"{failures} of {len(cells)} runs failed; see the messages above (runs that had started are FAILED in MLflow)")


@app.command("tune")
@friendly_errors
@run_settings_options
def tune_command(
    settings: dict,
    trials: int = typer.Option(20, "--trials", min=1, help="Trials per study (finished + running, all workers)."),
    timeout: Optional[float] = typer.Option(None, "--timeout", min=1, help="Seconds per study and worker."),
    study: Optional[str] = typer.Option(None, "--study", help="Study name (model-features-protocol-corpus-classes)."),
    storage: Optional[str] = typer.Option(None, "--storage", help="SQLAlchemy URL (sqlite:///optuna.db)."),
    jobs: int = typer.Option(1, "--jobs", min=1, help="Worker processes sharing the study."),
    inner_folds: int = typer.Option(3, "--inner-folds", min=2, help="Speaker-grouped inner folds."),
    final_model: bool = typer.Option(True, "--final-model/--no-final-model",
                                     help="Also tune STUDY@all on every speaker, for the deployable model "
                                          "(not needed by bench run --no-final-model)."),
    experiment_name: str = typer.Option("ser-bench-tuning", "--experiment-name"),
    data_dir: Optional[Path] = DataDir,
    cache_dir: Optional[Path] = CacheDir,
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri"),
):
    """Tune a model's hyper-parameters with Optuna on training speakers only (nested)."""
    from .config import MODEL_SHORTCUTS, resolve
    from .runner import Runtime
    from .tuning import TuneOptions, tune

    if "model" not in settings:
        raise BenchError("--model is required; e.g. bench tune --model svm")
    config = resolve({**settings, "final_model": False})
    runtime = Runtime(data_dir=str(data_dir) if data_dir else None, cache_dir=str(cache_dir) if cache_dir else None,
                      tracking_uri=tracking_uri, experiment=experiment_name)
    named = {*settings.get("model_params", {}), *(key for key in MODEL_SHORTCUTS if key in settings)}
    given = {key: config.model.params[key] for key in named if key in config.model.params}  # searched ones are pinned
    name, best = tune(config, runtime, TuneOptions(trials=trials, timeout=timeout, study=study, storage=storage,
                                                   jobs=jobs, inner_folds=inner_folds, pinned=given,
                                                   final_model=final_model))
    table = Table("study", "trials", "best inner UAR", "best parameters", title=f"study {name}")
    for suffix, info in best.items():
        table.add_row(f"{name}@{suffix}", str(info["trials"]), f"{info['value']:.3f}",
                      ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in info["params"].items()))
    print_table(table)
    without_final = not final_model and len(best) > 1  # one pool: its study serves the final model
    console.print(f"use them: bench run --model {config.model.name} ... "
                  f"{'--no-final-model ' if without_final else ''}--params-from {name}")



@app.command("report")
@friendly_errors
def report_command(
    name: str = typer.Option("benchmark", "--name", help="Writes reports/NAME.md, .html and .csv."),
    experiment: list[str] = typer.Option([], "--experiment", help="Only these MLflow experiments (repeatable)."),
    corpus: Optional[str] = typer.Option(None, "--corpus", help="Only runs on this corpus."),
    protocol: Optional[str] = typer.Option(None, "--protocol", help="Only this protocol."),
    out_dir: Path = typer.Option(Path("reports"), "--out-dir"),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri"),
    matrix: bool = typer.Option(False, "--matrix", help="Write the cross-corpus matrix (train x test corpus) instead."),
    model: Optional[str] = typer.Option(None, "--model", help="--matrix: only this model."),
    features: Optional[str] = typer.Option(None, "--features", help="--matrix: only this feature set."),
):
    """Build the comparison table (Markdown, HTML, CSV) from the MLflow store."""
    from .report import check_report_name, collect, to_markdown, write_report

    check_report_name(name)  # before reading the store
    if matrix:
        from . import matrix as cross

        table = cross.collect_matrix(tracking_uri, list(experiment) or None, model, features)
        for path in cross.write_matrix(table, name, out_dir):
            console.print(f"wrote {path}")
        console.print(cross.to_markdown(table, name).split("## Runs")[0], markup=False, highlight=False)
        return

    report = collect(tracking_uri, list(experiment) or None, corpus, protocol)
    for path in write_report(report, name, out_dir):
        console.print(f"wrote {path}")
    # soft_wrap: Markdown table rows stay whole when piped (rich would hard-wrap them at 80 columns)
    console.print(to_markdown(report, name).split("## Reference")[0], markup=False, highlight=False, soft_wrap=True)


@app.command("fuse")
@friendly_errors
def fuse_command(
    run_ids: list[str] = typer.Argument(..., help="Two or more finished `bench run` ids (same protocol, corpus, classes)."),
    experiment_name: Optional[str] = typer.Option(None, "--experiment-name", help="MLflow experiment (the first run's)."),
    run_name: Optional[str] = typer.Option(None, "--run-name"),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="(default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)"),
    by_members: bool = typer.Option(False, "--by-members", help="Weight each run by its ensemble size, so that "
                                    "runs of one recipe with other seeds fuse into one larger ensemble."),
):
    """Late fusion: average the class probabilities several runs logged for the same test utterances,
    score them like a run and log the result as a run of its own (a row of `bench report`)."""
    from .fusion import fuse_runs

    result = fuse_runs(run_ids, tracking_uri, experiment_name, run_name, by_members)
    print_summary(result, f"fusion of {len(run_ids)} runs")
    from rich.markup import escape

    table = Table("member run", "member", "member UAR", escape("fusion - member [paired 95% CI]"),
                  title="gain over each member")
    for row in result.gains:  # escaped: "attn_blstm[ensemble=3]" is not rich markup
        table.add_row(row["run_id"], escape(row["member"]), f"{row['uar']:.3f}",
                      f"{row['gain']:+.3f} [{row['gain_ci_low']:+.3f}, {row['gain_ci_high']:+.3f}]")
    print_table(table)


app.command("predict")(friendly_errors(predict_command))


@app.command("ui")
@friendly_errors
def ui_command(
    port: int = typer.Option(5000, "--port", min=1, max=65535),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri"),
):
    """Start the MLflow UI on the project's store, bound to 127.0.0.1."""
    from .tracking import artifact_root_for, resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    if uri.startswith(("http://", "https://")):  # a tracking server already serves its own UI
        console.print(f"{uri} is an MLflow tracking server: its UI is at {uri} (nothing to start)")
        return
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", "127.0.0.1",
               "--port", str(port)]
    if artifact_root_for(uri):
        command += ["--default-artifact-root", artifact_root_for(uri)]
    console.print(f"MLflow UI for {uri} at http://127.0.0.1:{port} (Ctrl-C stops it)")
    from .lifecycle import run_process_group

    raise typer.Exit(run_process_group(command))  # stopping bench ui stops mlflow and all its workers


@app.command("speedup", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
@friendly_errors
def speedup_command(
    ctx: typer.Context,
    baseline: str = typer.Option(..., "--baseline", help="Git revision to compare with (e.g. f82c080, the first build)."),
    rounds: int = typer.Option(2, "--rounds", min=1, help="Rounds of (baseline, current), order alternating."),
    load: int = typer.Option(0, "--load", min=0, help="Busy-looping processes kept running (measure under load)."),
):
    """End-to-end `bench run ...` of this checkout vs --baseline, cold and warm cache, in one run.

    Everything after the options is the `bench run` command line, e.g.
    `bench speedup --baseline f82c080 --model svm --features egemaps --corpus emodb --classes 7`.
    """
    from .speedup import measure

    if not ctx.args:
        raise BenchError("give the `bench run` options to time after bench speedup's own, e.g. --model svm "
                         "--features egemaps --corpus emodb --classes 7")
    result = measure(baseline, list(ctx.args), rounds, load, log=lambda line: console.print(line, highlight=False))
    table = Table("phase", f"{baseline} s (median)", "current s (median)", "speed-up",
                  title=f"bench run {' '.join(ctx.args)}; {rounds} round(s), {load} busy process(es)")
    for phase in ("cold", "warm"):
        table.add_row(phase, f"{result.median('baseline', phase):.1f}", f"{result.median('current', phase):.1f}",
                      f"{result.ratio(phase):.2f}x")
    print_table(table)


cluster_app = typer.Typer(help="Measure grids on a Dask cluster (docs/cluster.md).", no_args_is_help=True)
app.add_typer(cluster_app, name="cluster")


@cluster_app.command("speedup")
@friendly_errors
def cluster_speedup(
    experiment: Path = typer.Option(Path("experiments/cluster_speedup.yaml"), "--experiment", help="The grid to time."),
    workers: int = typer.Option(2, "--workers", min=2, help="Workers of the parallel pass (vs 1)."),
    repeat: int = typer.Option(1, "--repeat", min=1, help="Rounds of (1 worker, N workers), order alternating."),
    data_dir: Optional[Path] = DataDir,
    cache_dir: Optional[Path] = CacheDir,
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="(default: a temporary sqlite store)"),
):
    """Time a grid on 1 vs N local Dask workers in one run; project 10 and 100 machines on paper."""
    from .cluster import makespan, measure_speedup
    from .experiments import load_experiment

    spec = load_experiment(experiment)
    runtime = dict(data_dir=str(data_dir) if data_dir else None, cache_dir=str(cache_dir) if cache_dir else None,
                   jobs=1, tracking_uri=tracking_uri, experiment=f"{spec.name}-speedup")
    result = measure_speedup(spec.cells, runtime, workers, repeat, say=lambda line: console.print(line, highlight=False))
    table = Table("workers", "wall s (all rounds)", "failed cells", title=f"{spec.name}: {len(spec.cells)} cells")
    for n in (1, workers):
        table.add_row(str(n), f"{result.wall(n):.1f}", str(sum(p.failed for p in result.passes if p.workers == n)))
    print_table(table)
    cell_s = result.cell_times()
    console.print(f"measured speed-up 1 -> {workers} workers: [bold]{result.ratio:.2f}x[/] "
                  f"(per round: {', '.join(f'{p.workers}w {p.wall_s:.1f} s' for p in result.passes)})")
    console.print(f"per-cell seconds on 1 worker: min {min(cell_s):.2f}, mean {sum(cell_s) / len(cell_s):.2f}, "
                  f"max {max(cell_s):.2f}, sum {sum(cell_s):.1f}")
    for machines in (10, 100):
        for scale in (1, 100):
            cells = cell_s * scale
            console.print(f"paper projection, {machines} machines x 1 worker, {len(cells)} such cells: "
                          f"{makespan(cells, machines):.1f} s vs {sum(cells):.1f} s on one "
                          f"({sum(cells) / makespan(cells, machines):.1f}x; LPT, no transfer or start-up costs)")


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
