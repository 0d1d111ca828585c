"""``bench fuse``: late (score-level) fusion of finished runs, scored and logged like a run.

Why: models on different inputs (a BLSTM on librosa46 frames, a CRNN on log-mels, an SVM on
ComParE functionals) cannot be one estimator, but under one protocol each has logged the class
probabilities of the same test utterances (``predictions.csv``). Averaging them is the field's
standard way to ask whether the models are complementary. The fused run trains nothing and uses
no label; its members must have scored the same utterances, with the same labels, in the same
folds (checked). Which runs are fused is the user's choice: members picked by their pooled *test*
UAR make the fused number one selected on test data too, and the README says so where it quotes one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .config import member_seeds
from .errors import BenchError
from .metrics import classification_metrics, uar, uar_difference_interval, uar_interval


@dataclass
class Member:
    run_id: str
    experiment_id: str
    tags: dict[str, str]
    params: dict[str, str]
    predictions: pd.DataFrame


@dataclass
class FusionResult:
    """What ``bench run`` prints (the CLI's ``print_summary`` reads these fields)."""

    run_id: str
    classes: list[str]
    folds: list[dict]
    pooled: dict[str, float]
    n_utterances: int
    skipped: dict = field(default_factory=dict)
    model_uri: str | None = None
    gains: list[dict] = field(default_factory=list)  # per member: its UAR, and the fusion's gain over it with a CI


def load_member(client, run_id: str, uri: str) -> Member:
    """One finished ``bench run`` and its per-utterance probabilities; anything else is one line."""
    import mlflow

    try:
        run = client.get_run(run_id)
    except Exception:
        raise BenchError(f"run {run_id}: not in {uri}; list runs with `bench report` or `bench ui`") from None
    tags = run.data.tags
    if tags.get("ser_bench_kind") != "run" or "mlflow.parentRunId" in tags:
        raise BenchError(f"run {run_id}: not a `bench run` (a fold, a trial or another tool's run); fuse whole runs")
    if run.info.status != "FINISHED":
        raise BenchError(f"run {run_id}: {run.info.status}, not FINISHED; fuse finished runs only")
    try:
        path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="predictions.csv", tracking_uri=uri)
    except Exception:
        raise BenchError(f"run {run_id}: its predictions.csv cannot be read from the artifact store") from None
    predictions = pd.read_csv(path, dtype={"id": str, "fold": str, "true": str, "predicted": str})
    return Member(run_id, run.info.experiment_id, tags, run.data.params, predictions)


KEY = ["corpus", "id"]  # an utterance: ids are unique within a corpus, not across corpora


def keyed(predictions: pd.DataFrame) -> pd.DataFrame:
    return predictions.set_index(KEY).sort_index()


def check_aligned(members: list[Member]) -> list[str]:
    """The classes the members share; one line naming the first run that scored other utterances,
    other labels, other folds, another class set or another protocol column."""
    if len(members) < 2:
        raise BenchError("bench fuse needs at least two runs")
    if len({m.run_id for m in members}) < len(members):
        raise BenchError("a run is named twice; name each run once")
    first = members[0]
    classes = first.tags.get("classes", "").split(",")
    reference = keyed(first.predictions)
    for member in members[1:]:
        where = f"runs {first.run_id} and {member.run_id}"
        if member.tags.get("report_column") != first.tags.get("report_column"):
            raise BenchError(f"{where}: other protocols or corpora ({first.tags.get('report_column')} vs "
                             f"{member.tags.get('report_column')}); fuse runs of one protocol")
        if member.tags.get("classes", "").split(",") != classes:
            raise BenchError(f"{where}: other class sets; fuse runs with the same --classes")
        other = keyed(member.predictions)
        if not reference.index.equals(other.index):
            raise BenchError(f"{where}: other test utterances ({len(reference)} vs {len(other)}); "
                             "fuse runs on the same corpus slice")
        for column, what in (("true", "labels"), ("fold", "folds")):
            if not (reference[column] == other[column]).all():
                raise BenchError(f"{where}: other {what} for the same utterances; fuse runs of one protocol and seed")
    return classes


def fuse(members: list[Member], classes: list[str], weights: list[int] | None = None) -> pd.DataFrame:
    """The members' class probabilities averaged per utterance, predicted = the most probable class.

    Equal weights by default: a weight chosen by looking at test UAR would be tuning on the test set.
    ``weights`` are fixed before any score is seen (``member_counts``: each run's ensemble size)."""
    columns = [f"p_{c}" for c in classes]
    frames = [keyed(m.predictions) for m in members]
    probabilities = np.average([frame[columns].to_numpy(dtype=float) for frame in frames], axis=0, weights=weights)
    fused = frames[0][["speaker", "fold", "true"]].copy()
    fused["predicted"] = np.asarray(classes)[np.argmax(probabilities, axis=1)]
    fused[columns] = probabilities
    order = pd.MultiIndex.from_frame(members[0].predictions[KEY])  # the first member's row order, as logged
    return fused.loc[order].reset_index()[["id", "corpus", "speaker", "fold", "true", "predicted", *columns]]


RECIPE_EXCEPT = ("model.seed", "model.ensemble")  # what may differ between runs that are parts of one ensemble


def member_counts(members: list[Member]) -> list[int]:
    """Each run's number of ensemble members (``model.ensemble``; 1 for a model without one), so
    that fusing an x3 and an x2 run of one recipe is the x5 ensemble: every member counts once.

    Two runs of one network recipe whose member seeds overlap would count the same members twice:
    refused. Runs without ensembles (an svm, an earlier fusion) each count once and are not compared."""
    counts, owner_of_seed = [], {}  # per recipe: member seed -> the run that trained that member
    for member in members:
        value = member.params.get("model.ensemble", "1")
        if not value.isdigit():
            raise BenchError(f"run {member.run_id}: its ensemble size is {value!r}, not a number of members; "
                             "fuse it without --by-members")
        counts.append(int(value))
        if "model.ensemble" not in member.params:  # a fusion or an svm has no members to share
            continue
        seed = member.params.get("model.seed", "0")
        owners = owner_of_seed.setdefault(tuple(sorted(recipe(member).items())), {})
        for member_seed in member_seeds(int(seed) if seed.isdigit() else 0, int(value)):
            if member_seed in owners:
                raise BenchError(f"runs {owners[member_seed]} and {member.run_id}: one recipe, and both trained the "
                                 f"members with seed {member_seed}; with --by-members each member must count once: "
                                 f"run the second with --param seed={max(owners) + 1}")
            owners[member_seed] = member.run_id
    return counts


def recipe(member: Member) -> dict[str, str]:
    """The run's settings that make its members what they are (not their seeds or number)."""
    return {key: value for key, value in member.params.items()
            if key.split(".")[0] in ("model", "features", "task", "protocol", "tuned") and key not in RECIPE_EXCEPT}


def score(fused: pd.DataFrame, classes: list[str], seed: int = 0) -> tuple[dict, list[dict]]:
    """Pooled metrics with the bootstrap interval, and one row per fold, as ``bench run`` reports them."""
    pooled = classification_metrics(fused["true"], fused["predicted"], classes)
    pooled["uar_ci_low"], pooled["uar_ci_high"] = uar_interval(fused["true"], fused["predicted"], seed=seed)
    folds = [{"fold": name, "n_test": len(part), **classification_metrics(part["true"], part["predicted"], classes)}
             for name, part in fused.groupby("fold", sort=False)]
    return pooled, folds


def gains(fused: pd.DataFrame, members: list[Member], seed: int = 0) -> list[dict]:
    """Per member: its pooled UAR and the fusion's UAR minus it, with a paired bootstrap 95%
    interval (the same resampled utterances score both): does fusing pay beyond noise?"""
    key = pd.MultiIndex.from_frame(fused[KEY])
    rows = []
    for member in members:
        predicted = keyed(member.predictions).loc[key, "predicted"].to_numpy()
        low, high = uar_difference_interval(fused["true"], fused["predicted"], predicted, seed=seed)
        rows.append({"run_id": member.run_id, "member": member_label(member), "uar": uar(fused["true"], predicted),
                     "gain": uar(fused["true"], fused["predicted"]) - uar(fused["true"], predicted),
                     "gain_ci_low": low, "gain_ci_high": high})
    return rows


def member_label(member: Member) -> str:
    """"attn_blstm[ensemble=3]/librosa46[duration_s=None]": the model, its recipe and its input."""
    from .report import feature_changes

    tags, options = member.tags, feature_changes(member.params)
    changes = f"[{tags['model_changes']}]" if tags.get("model_changes") else ""
    return f"{tags.get('model', '?')}{changes}/{tags.get('features', '?')}" + (f"[{options}]" if options else "")


def fuse_runs(run_ids: list[str], tracking_uri: str | None = None, experiment: str | None = None,
              run_name: str | None = None, by_members: bool = False) -> FusionResult:
    """Fuse ``run_ids`` and log the result as a run of its own (tags name the members), so that
    ``bench report`` shows it as a row beside them; ``by_members`` weights each run by its
    ensemble size (``member_counts``)."""
    import mlflow
    from mlflow import MlflowClient

    from . import lifecycle, store, tracking

    tracking.quiet_mlflow()
    uri = tracking.resolve_tracking_uri(tracking_uri)
    store.check_before_open(uri)
    client = MlflowClient(tracking_uri=uri)
    members = [load_member(client, run_id, uri) for run_id in run_ids]
    classes = check_aligned(members)
    weights = member_counts(members) if by_members else None
    fused = fuse(members, classes, weights)
    seed = int(members[0].params.get("task.seed", 0))  # the interval's resamples, as the first member drew them
    pooled, folds = score(fused, classes, seed)
    by_member = gains(fused, members, seed)
    best = max(by_member, key=lambda row: row["uar"])

    name = experiment or client.get_experiment(members[0].experiment_id).name
    tracking.use_store(uri, name)
    first = members[0].tags
    norms = sorted({m.tags.get("norm", "?") for m in members})
    tags = {key: first[key] for key in ("protocol", "classes", "n_classes", "corpora", "report_column") if key in first}
    tags.update({"ser_bench_kind": "run", "git_commit": tracking.git_commit(), "model": "fusion",
                 "features": " + ".join(member_label(m) for m in members)[:5000],
                 "norm": norms[0] if len(norms) == 1 else "mixed",
                 "model_changes": (f"mean of {len(members)} runs' probabilities" if weights is None else
                                   f"mean of {sum(weights)} members' probabilities ({'+'.join(map(str, weights))})"),
                 "fused_runs": ",".join(run_ids)})
    with mlflow.start_run(run_name=run_name or f"fusion-{len(members)}-runs") as active:
        with lifecycle.owned(active.info.run_id):
            mlflow.set_tags(tags)
            mlflow.log_params({"fusion.rule": "mean probability" if weights is None else "mean probability per member",
                               "fusion.weights": ",".join(map(str, weights or [1] * len(members)))[:6000],
                               "fusion.members": ",".join(run_ids)[:6000]})
            mlflow.log_metric("n_utterances", len(fused))
            tracking.log_pooled(pooled, fused, folds, classes)
            tracking.log_table(pd.DataFrame(by_member), "fusion_gains.csv")
            mlflow.log_metrics({"gain_over_best_member": best["gain"], "gain_over_best_member_ci_low": best["gain_ci_low"],
                                "gain_over_best_member_ci_high": best["gain_ci_high"]})
    return FusionResult(active.info.run_id, classes, folds, pooled, len(fused), gains=by_member)
