"""``bench predict``, importable on its own: a one-file prediction is mostly start-up, so this
command does not build the rest of the CLI (whose options list every registered model, feature set
and protocol, which imports scikit-learn). ``benchmark.console.main`` sends ``bench predict ...``
here; ``benchmark.cli`` registers the same function, so the options and help are the same."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from .cli_base import console, err_console, friendly_errors, print_table
from .errors import BenchError, printable


def predict_command(
    path: Path = typer.Argument(..., help="An audio file or a folder of them."),
    model: Optional[str] = typer.Option(None, "--model", help="runs:/ID/model or models:/NAME@ALIAS (latest run's)."),
    top: int = typer.Option(2, "--top", min=1, help="How many emotions to show per file."),
    output_format: str = typer.Option("table", "--format", help="table, json or csv."),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri"),
    trust_model: bool = typer.Option(False, "--trust-model", help="Load models serialised with pickle (runs their code)."),
):
    """Predict the emotions of new audio, with probabilities (any length; bad files reported)."""
    import csv
    import json

    from .predict import Predictor, audio_files, latest_model_uri, top_k

    if output_format not in ("table", "json", "csv"):
        raise BenchError(f"--format {output_format}: use table, json or csv")
    files = audio_files(path)
    predictor = Predictor(model or latest_model_uri(tracking_uri), tracking_uri, trust_model)
    probabilities, ok, failed = predictor.predict(files, progress=output_format == "table")
    ranked = top_k(probabilities, predictor.labels, top)
    # printable: a file name that is not UTF-8 is shown with \xNN escapes, not a crash of the writer
    rows = [{"path": printable(str(p)), **{f"top{i + 1}": label for i, (label, _) in enumerate(r)},
             **{f"p{i + 1}": round(prob, 4) for i, (_, prob) in enumerate(r)}} for p, r in zip(ok, ranked)]
    if output_format == "json":
        print(json.dumps({"model": predictor.uri, "predictions": rows,
                          "failed": {printable(path): message for path, message in failed.items()}}, indent=2))
    elif output_format == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=["path"] + [f"{c}{i + 1}" for i in range(min(top, len(predictor.labels))) for c in ("top", "p")])
        writer.writeheader()
        writer.writerows(rows)
    elif len(files) == 1 and ok:
        table = Table("rank", "emotion", "probability", title=f"{printable(ok[0].name)} ({predictor.uri})")
        for rank, (label, prob) in enumerate(ranked[0], start=1):
            table.add_row(str(rank), label, f"{prob:.3f}")
        print_table(table)
    else:
        table = Table("file", *[f"top {i + 1}" for i in range(min(top, len(predictor.labels)))], title=predictor.uri)
        for p, r in zip(ok, ranked):
            table.add_row(printable(str(p)), *[f"{label} {prob:.3f}" for label, prob in r])
        print_table(table)
    for message in failed.values():
        err_console.print(f"skipped: {message}", highlight=False, soft_wrap=True)
    if not ok:
        raise BenchError(f"{path}: no file could be read")


def main(args: list[str]) -> None:
    """``bench predict ARGS`` without the rest of the CLI."""
    app = typer.Typer(add_completion=False, rich_markup_mode="rich", pretty_exceptions_show_locals=False)
    app.command("predict")(friendly_errors(predict_command))
    app(args=args, prog_name="bench predict")
