"""``bench``: the command line of ser-bench (typer, rich help)."""

from __future__ import annotations

import functools
import logging
import sys
from collections import Counter
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from .errors import BenchError

app = typer.Typer(help="ser-bench: experiment-tracked speech emotion recognition benchmarks.",
                  rich_markup_mode="rich", no_args_is_help=True, pretty_exceptions_show_locals=False)
data_app = typer.Typer(help="List and download corpora.", no_args_is_help=True)
features_app = typer.Typer(help="Extract, list and time feature sets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(features_app, name="features")

console = Console()
err_console = Console(stderr=True)

DataDir = typer.Option(None, "--data-dir", help="Folder with one sub-folder per corpus [default: $SER_BENCH_DATA or a per-user cache dir].")
CacheDir = typer.Option(None, "--cache-dir", help="Feature cache folder [default: $SER_BENCH_CACHE or a per-user cache dir].")


def friendly_errors(command):
    """Turn expected failures into one line on stderr and exit code 2, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        logging.basicConfig(level=logging.WARNING, format="%(message)s",
                            handlers=[RichHandler(console=err_console, show_time=False, show_path=False)])
        try:
            return command(*args, **kwargs)
        except BenchError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


def open_corpus(spec: str, data_dir: Optional[Path]):
    """``emodb``, ``shemo``, ``urdu`` or ``folder:PATH`` (a CSV manifest or emotion folders)."""
    from .corpora import get_corpus

    if spec.startswith("folder:"):
        return get_corpus("folder", root=spec.split(":", 1)[1])
    return get_corpus(spec, data_dir=data_dir)


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
    from .corpora import CORPORA
    from .paths import data_root

    console.print(f"data root: {data_root(data_dir)}")
    table = Table("corpus", "files", "speakers", "per emotion", "skipped", "status")
    per_speaker, problems = {}, []
    for spec in [name for name in CORPORA if name != "folder"] + list(corpus):
        try:
            found = open_corpus(spec, data_dir)
            utterances = found.utterances()
        except BenchError as exc:
            table.add_row(spec, "-", "-", "-", "-", "[yellow]not found[/]")
            problems.append(str(exc))
            continue
        speaker_counts = Counter(u.speaker for u in utterances)
        per_speaker[spec] = speaker_counts
        table.add_row(spec, str(len(utterances)), str(len(speaker_counts)),
                      counts_text(Counter(u.emotion for u in utterances)), str(len(found.skipped)),
                      "[green]ok[/]")
    console.print(table)
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
    base_url: Optional[str] = typer.Option(None, help="Mirror serving the same archive file names."),
):
    """Download, verify and extract a corpus (resumable: re-run after an interruption)."""
    from .corpora import get_corpus
    from .corpora.download import download_corpus
    from .paths import data_root

    root = data_root(data_dir) / name
    checksums = download_corpus(name, root, base_url=base_url)
    found = get_corpus(name, root=root).utterances()
    for filename, digest in checksums.items():
        console.print(f"{filename}: sha256 {digest}")
    console.print(f"[green]{name}[/]: {len(found)} utterances in {root}")


@features_app.command("list")
@friendly_errors
def features_list():
    """Show the registered feature sets."""
    from .features import FEATURE_SETS

    table = Table("name", "level", "features", "description")
    for name, cls in sorted(FEATURE_SETS.items()):
        table.add_row(name, cls.level, str(len(cls().feature_names)), cls.description)
    console.print(table)


@features_app.command("extract")
@friendly_errors
def features_extract(
    corpus: str = typer.Option(..., "--corpus", help="emodb, shemo, urdu or folder:PATH"),
    features: str = typer.Option(..., "--features", help="Feature set name (see `bench features list`)."),
    data_dir: Optional[Path] = DataDir,
    cache_dir: Optional[Path] = CacheDir,
    jobs: Optional[int] = typer.Option(None, "--jobs", min=1, help="Worker processes [default: all cores]."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Only the first N utterances."),
):
    """Extract (or load from cache) a feature set for every utterance of a corpus."""
    from .features import get_feature_set
    from .features.extract import extract_features

    feature_set = get_feature_set(features)
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
    from .features.speed import run_speed_benchmark

    utterances = open_corpus(corpus, data_dir).utterances()[:limit]
    signals = [load_audio(u.path) for u in utterances]
    seconds = sum(len(s) for s in signals) / 16_000
    table = Table("ours", "s", "reference", "s", "speed-up")
    for row in run_speed_benchmark(signals, repeat=repeat):
        table.add_row(row.name, f"{row.ours_s:.3f}", row.reference, f"{row.reference_s:.3f}", f"{row.ratio:.1f}x")
    console.print(f"{len(signals)} files of {corpus} ({seconds:.0f} s of audio), best of {repeat} passes, 1 process")
    console.print(table)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
