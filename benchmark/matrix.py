"""``bench report --matrix``: a cross-corpus matrix from the MLflow store alone.

Rows are what a model was trained on (a corpus or a set such as ``emodb+urdu``), columns the
corpus it was tested on, a cell the UAR with its bootstrap 95% interval of the latest run that
scored that pair. One matrix per model (with its parameters) + feature set + normalisation + class
set, so a cell never mixes tasks or settings. It reads only what every run logs -- the fold runs' ``train_corpora`` tags and the
parent's ``predictions.csv`` (which names each test utterance's corpus and fold) -- so any
protocol fills it without being named here: ``cross_corpus`` and ``leave_one_corpus_out`` give
the off-diagonal cells, ``within_corpus`` (speaker-independent folds pooled) the diagonal.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .errors import BenchError
from .metrics import uar_interval
from .report import check_report_name, finished_runs


def collect_matrix(tracking_uri: str | None, experiments: list[str] | None = None, model: str | None = None,
                   features: str | None = None) -> pd.DataFrame:
    """One row per (matrix, train, test) cell: the pooled UAR, its interval, WA and n of the latest run."""
    import mlflow
    from mlflow import MlflowClient

    from . import tracking

    tracking.quiet_mlflow()
    uri = tracking.resolve_tracking_uri(tracking_uri)
    runs = finished_runs(MlflowClient(tracking_uri=uri), experiments, uri) or []
    train_of_fold: dict[str, dict[str, str]] = {}  # parent run -> fold name -> training corpora
    for r in runs:
        tags = r.data.tags
        if "mlflow.parentRunId" in tags and "train_corpora" in tags:
            train_of_fold.setdefault(tags["mlflow.parentRunId"], {})[tags.get("fold", r.info.run_name)] = \
                tags["train_corpora"].replace(",", "+")
    cells = []
    for r in runs:
        tags = r.data.tags
        if "mlflow.parentRunId" in tags or tags.get("ser_bench_kind") != "run" or r.info.run_id not in train_of_fold:
            continue
        if (model and tags.get("model") != model) or (features and tags.get("features") != features):
            continue
        tuned = ", tuned" if tags.get("tuned_by_study") else ""
        model_params = ", ".join(f"{k.split('.', 1)[1]}={v}" for k, v in sorted(r.data.params.items())
                                 if k.startswith("model.") and k not in ("model.name", "model.seed"))
        matrix = (f"{tags.get('model')} + {tags.get('features')} (norm: {tags.get('norm', '?')}{tuned}; "
                  f"{model_params}), {tags.get('n_classes')} classes: {tags.get('classes', '').replace(',', ', ')}")
        try:
            path = mlflow.artifacts.download_artifacts(run_id=r.info.run_id, artifact_path="predictions.csv",
                                                       tracking_uri=uri)
        except Exception:  # an artifact store that is gone should not sink the whole matrix
            continue
        predictions = pd.read_csv(path, dtype={"fold": str, "corpus": str, "true": str, "predicted": str})
        predictions["train"] = predictions["fold"].map(train_of_fold[r.info.run_id])
        for (train, test), part in predictions.dropna(subset=["train"]).groupby(["train", "corpus"]):
            low, high = uar_interval(part["true"], part["predicted"])
            recalls = [np.mean(part["predicted"][part["true"] == c] == c) for c in sorted(part["true"].unique())]
            cells.append({"matrix": matrix, "train": train, "test": test, "uar": float(np.mean(recalls)),
                          "uar_ci_low": low, "uar_ci_high": high,
                          "wa": float(np.mean(part["true"] == part["predicted"])), "n": len(part),
                          "protocol": tags.get("protocol"), "run_id": r.info.run_id, "start": r.info.start_time})
    if not cells:
        raise BenchError(f"{uri}: no finished `bench run` with per-fold corpus tags matches these filters "
                         f"(runs made before the matrix existed lack them; run them again)")
    table = pd.DataFrame(cells).sort_values(["matrix", "train", "test", "start", "run_id"])
    table = table.groupby(["matrix", "train", "test"], as_index=False).last()  # the latest run of each cell
    return table.drop(columns=["start"]).reset_index(drop=True)


def cell_text(row) -> str:
    ci = "" if pd.isna(row["uar_ci_low"]) else f" [{row['uar_ci_low']:.3f}, {row['uar_ci_high']:.3f}]"
    return f"{row['uar']:.3f}{ci}"


def to_markdown(table: pd.DataFrame, name: str) -> str:
    out = [f"# ser-bench cross-corpus matrix: {name}", "",
           "Rows: the corpus (or set) a model was trained on; columns: the corpus it was tested on. A cell is the "
           "UAR (balanced accuracy; chance is 1/classes) with its bootstrap 95% interval over the test corpus's "
           "utterances, from the latest run that scored that pair. Diagonal cells come from `within_corpus` runs "
           "(speaker-independent folds pooled). Only the emotions shared by the corpora of a run are scored.", ""]
    for matrix, part in table.groupby("matrix", sort=True):
        tests = sorted(part["test"].unique())
        out += [f"## {matrix}", "", "| trained on \\ tested on | " + " | ".join(tests) + " |",
                "|---" * (len(tests) + 1) + "|"]
        for train in sorted(part["train"].unique()):
            cells = []
            for test in tests:
                match = part[(part["train"] == train) & (part["test"] == test)]
                cells.append("" if match.empty else cell_text(match.iloc[0]))
            out.append(f"| {train} | " + " | ".join(cells) + " |")
        out.append("")
    out += ["## Runs", "", "| matrix | trained on | tested on | n | WA | protocol | MLflow run |",
            "|---|---|---|---|---|---|---|"]
    out += [f"| {r.matrix} | {r.train} | {r.test} | {r.n} | {r.wa:.3f} | {r.protocol} | {r.run_id} |"
            for r in table.itertuples()]
    return "\n".join(out) + "\n"


def write_matrix(table: pd.DataFrame, name: str, out_dir: str | Path = "reports") -> list[Path]:
    check_report_name(name)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.md", out / f"{name}.csv"]
    paths[0].write_text(to_markdown(table, name), encoding="utf-8")
    table.to_csv(paths[1], index=False, float_format="%.6f", lineterminator="\n")
    return paths
