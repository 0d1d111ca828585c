"""``bench report``: a comparison table built from the MLflow store alone.

Rows are model x feature set x normalisation (tuned runs apart), columns as each run's protocol
names them (protocol, corpora, class set: the ``report_column`` tag); a cell holds pooled UAR with
its bootstrap 95% interval and WA of the latest finished run of that combination, the best UAR of
each column is marked, and the reference numbers of seed.md stand beside them. Written as
Markdown, HTML (with the confusion matrices of each column's best run) and CSV. Nothing in it
depends on when it was made, so the same store gives the same report, byte for byte.
"""

from __future__ import annotations

import base64
import contextlib
import html
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .errors import BenchError

# Reference numbers restated in seed.md, keyed like report columns where one matches.
REFERENCES = [
    {"source": "ERTK eGeMAPS+SVM", "column": "within_corpus emodb 7 classes", "uar": 0.80, "wa": None},
    {"source": "ERTK IS13 ComParE", "column": "within_corpus emodb 7 classes", "uar": 0.87, "wa": None},
    {"source": "ERTK mean MFCC (per-speaker norm.)", "column": "within_corpus emodb 7 classes", "uar": 0.65, "wa": None},
    {"source": "Schuller et al. 2009", "column": "within_corpus emodb 7 classes", "uar": 0.846, "wa": None},
    {"source": "ShEMO paper SVM (gender-independent)", "column": "within_corpus shemo 6 classes", "uar": None, "wa": 0.582},
    {"source": "seed code 2 (attn_blstm, 80/20 split)", "column": "within_corpus shemo 6 classes random", "uar": None, "wa": 0.575},
    {"source": "seed code 1 (60 files, 80/20), 5-class", "column": "within_corpus emodb 5 classes random", "uar": None, "wa": 0.30},
    {"source": "seed code 1 (60 files, 80/20), 2-class", "column": "within_corpus emodb 2 classes random", "uar": None, "wa": 0.70},
    {"source": "Mirsamadi et al. 2017 (IEMOCAP 4-class)", "column": "within_corpus iemocap 4 classes", "uar": 0.588, "wa": 0.635},
]
REFERENCE_NOTES = {
    "seed code 1 (60 files, 80/20), 5-class": "validation accuracy 15-30% (upper end shown)",
    "seed code 1 (60 files, 80/20), 2-class": "60-70% (upper end shown)",
    "ShEMO paper SVM (gender-independent)": "58.2% as reported (59.4% female, 57.6% male)",
    "seed code 2 (attn_blstm, 80/20 split)": "test accuracy 57.5%",
}


@dataclass
class Report:
    table: pd.DataFrame  # one row per cell: row, column, uar, ci, wa, run_id, best
    images: dict[str, bytes]  # column -> PNG of its best run's row-normalised confusion matrix


def finished_runs(client, experiments: list[str] | None, uri: str, known=None):
    """FINISHED runs of the named experiments (all if None); None when the store has no experiment.
    Shared by the comparison table and the cross-corpus matrix."""
    known = client.search_experiments() if known is None else known
    if experiments:
        missing = sorted(set(experiments) - {e.name for e in known})
        if missing:
            raise BenchError(f"no experiment {', '.join(missing)} in {uri}; known: {', '.join(sorted(e.name for e in known))}")
        known = [e for e in known if e.name in experiments]
    if not known:
        return None
    return client.search_runs([e.experiment_id for e in known], "attributes.status = 'FINISHED'", max_results=50_000)


def feature_changes(params: dict[str, str]) -> str:
    """The feature options of a run (its logged ``features.*`` params) that differ from the set's
    defaults, as "duration_s=None": runs on the same set with other options are other inputs."""
    from dataclasses import asdict

    from .config import param_text
    from .features import FEATURE_SETS

    cls = FEATURE_SETS.get(params.get("features.name", ""))
    if cls is None:
        return ""
    defaults = asdict(cls.config_class())
    return ", ".join(f"{key}={params[f'features.{key}']}" for key, value in defaults.items()
                     if key not in cls.label_ignores and f"features.{key}" in params
                     and params[f"features.{key}"] != param_text(value)[:6000])


def collect(tracking_uri: str | None, experiments: list[str] | None = None, corpus: str | None = None,
            protocol: str | None = None) -> Report:
    import mlflow
    from mlflow import MlflowClient

    from . import tracking

    tracking.quiet_mlflow()
    uri = tracking.resolve_tracking_uri(tracking_uri)
    from . import lifecycle, store

    store.check_before_open(uri, writable=False)  # bad URI, half-migrated store: one line
    client = MlflowClient(tracking_uri=uri)
    known = client.search_experiments()
    with contextlib.suppress(Exception):  # a read-only store still reports (killed runs are never FINISHED)
        lifecycle.reap_dead_runs([e.experiment_id for e in known], uri)
    runs = finished_runs(client, experiments, uri, known)
    if runs is None:
        raise BenchError(f"{uri}: no experiments; run `bench run` first")
    rows = []
    for r in runs:
        tags = r.data.tags
        if "mlflow.parentRunId" in tags or tags.get("ser_bench_kind") != "run" or "report_column" not in tags:
            continue  # folds, tuning studies and trials are not table cells
        if protocol and tags.get("protocol") != protocol:
            continue
        if corpus and corpus not in tags.get("corpora", "").split(","):
            continue
        metrics = r.data.metrics
        if "uar" not in metrics:
            continue
        tuned = ", tuned" if tags.get("tuned_by_study") else ""
        changes = f", {tags['model_changes']}" if tags.get("model_changes") else ""  # another recipe: another row
        features = tags.get("features", "?")
        options = feature_changes(r.data.params)  # another input (e.g. duration_s=None): another row too
        features += f"[{options}]" if options else ""
        row = f"{tags.get('model')} + {features} (norm: {tags.get('norm', '?')}{changes}{tuned})"
        rows.append({"row": row, "column": tags["report_column"],
                     "uar": metrics["uar"], "uar_ci_low": metrics.get("uar_ci_low"),
                     "uar_ci_high": metrics.get("uar_ci_high"), "wa": metrics.get("wa"),
                     "macro_f1": metrics.get("macro_f1"), "run_id": r.info.run_id, "start": r.info.start_time})
    if not rows:
        raise BenchError(f"{uri}: no finished `bench run` matches these filters")
    table = pd.DataFrame(rows).sort_values(["row", "column", "start", "run_id"])
    table = table.groupby(["row", "column"], as_index=False).last()  # the latest run of each cell
    table["best"] = table["uar"] == table.groupby("column")["uar"].transform("max")
    images = {}
    for _, best in table[table["best"]].sort_values(["column", "row"]).drop_duplicates("column").iterrows():
        try:
            path = mlflow.artifacts.download_artifacts(run_id=best["run_id"], artifact_path="confusion_normalised.png",
                                                       tracking_uri=uri)
            images[best["column"]] = Path(path).read_bytes()
        except Exception:  # an artifact store that is gone should not sink the whole report
            continue
    return Report(table.drop(columns=["start"]).reset_index(drop=True), images)


def cell_text(row) -> str:
    ci = "" if pd.isna(row["uar_ci_low"]) else f" [{row['uar_ci_low']:.3f}, {row['uar_ci_high']:.3f}]"
    return f"UAR {row['uar']:.3f}{ci} / WA {row['wa']:.3f}"


def reference_text(ref) -> str:
    parts = []
    if ref["uar"] is not None:
        parts.append(f"UAR {ref['uar']:.3f}")
    if ref["wa"] is not None:
        parts.append(f"WA {ref['wa']:.3f}")
    return " / ".join(parts)


def grid(report: Report, mark) -> tuple[list[str], list[tuple[str, list[str]]]]:
    table = report.table
    columns = sorted(table["column"].unique())
    lines = []
    for row_name in sorted(table["row"].unique()):
        cells = []
        for column in columns:
            match = table[(table["row"] == row_name) & (table["column"] == column)]
            if match.empty:
                cells.append("")
            else:
                text = cell_text(match.iloc[0])
                cells.append(mark(text) if bool(match.iloc[0]["best"]) else text)
        lines.append((row_name, cells))
    for ref in REFERENCES:
        if ref["column"] in columns:
            lines.append((f"reference: {ref['source']}",
                          [reference_text(ref) if c == ref["column"] else "" for c in columns]))
    return columns, lines


def to_markdown(report: Report, name: str) -> str:
    columns, lines = grid(report, lambda t: f"**{t}**")
    out = [f"# ser-bench report: {name}", "",
           "Pooled over folds: UAR (balanced accuracy) with its bootstrap 95% interval, and WA (accuracy). "
           "The best UAR of each column is in bold; reference rows are published numbers (seed.md).", "",
           "| model + features | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    out += [f"| {row} | " + " | ".join(cells) + " |" for row, cells in lines]
    out += ["", "## Reference numbers (seed.md)", "", "| source | setting | number |", "|---|---|---|"]
    for ref in REFERENCES:
        out.append(f"| {ref['source']} | {ref['column']} | {REFERENCE_NOTES.get(ref['source'], reference_text(ref))} |")
    out += ["", "## Runs", "", "| model + features | column | MLflow run |", "|---|---|---|"]
    out += [f"| {r.row} | {r.column} | {r.run_id} |" for r in report.table.itertuples()]
    return "\n".join(out) + "\n"


def to_html(report: Report, name: str) -> str:
    columns, lines = grid(report, lambda t: f"<strong>{html.escape(t)}</strong>")
    esc = html.escape
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = "".join(
        f"<tr><th>{esc(row)}</th>" + "".join(f"<td>{c if c.startswith('<strong>') else esc(c)}</td>" for c in cells)
        + "</tr>" for row, cells in lines)
    figures = "".join(
        f"<figure><img alt='confusion matrix' src='data:image/png;base64,{base64.b64encode(report.images[c]).decode()}'>"
        f"<figcaption>{esc(c)}: best run</figcaption></figure>" for c in columns if c in report.images)
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
             "padding:4px 8px;font-size:13px}figure{display:inline-block;margin:1em}img{max-width:420px}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>ser-bench report: {esc(name)}</title>"
            f"<style>{style}</style></head><body><h1>ser-bench report: {esc(name)}</h1>"
            "<p>Pooled over folds: UAR (balanced accuracy) with its bootstrap 95% interval, and WA (accuracy). "
            "Bold: best UAR of the column. Reference rows: published numbers (seed.md).</p>"
            f"<table><tr><th>model + features</th>{head}</tr>{body}</table><h2>Confusion matrices</h2>{figures}"
            "</body></html>\n")


def check_report_name(name: str) -> str:
    """A report name is a file name inside ``--out-dir``: ``--name ../../etc/x`` wrote outside it."""
    if not name or name in (".", "..") or any(sep in name for sep in ("/", "\\", "\0")):
        raise BenchError(f"--name {name!r}: give a plain file name such as networks (files go to --out-dir)")
    return name


def write_report(report: Report, name: str, out_dir: str | Path = "reports") -> list[Path]:
    check_report_name(name)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.md", out / f"{name}.html", out / f"{name}.csv"]
    paths[0].write_text(to_markdown(report, name), encoding="utf-8")
    paths[1].write_text(to_html(report, name), encoding="utf-8")
    report.table.to_csv(paths[2], index=False, float_format="%.6f", lineterminator="\n")
    return paths
