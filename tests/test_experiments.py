from pathlib import Path

import pytest
from typer.testing import CliRunner

from benchmark.cli import app
from benchmark.errors import BenchError
from benchmark.experiments import load_experiment
from benchmark.features import FEATURE_SETS
from benchmark.models import MODELS
from benchmark.protocols import PROTOCOLS
from benchmark.config import resolve

EXPERIMENTS = sorted((Path(__file__).resolve().parents[1] / "experiments").glob("*.yaml"))


@pytest.mark.parametrize("path", EXPERIMENTS, ids=[p.stem for p in EXPERIMENTS])
def test_shipped_experiments_are_valid(path):
    experiment = load_experiment(path)
    assert experiment.cells
    for cell in experiment.cells:
        config = resolve(cell)  # every value type- and range-checked
        assert config.model.name in MODELS and config.features.name in FEATURE_SETS
        assert config.protocol.name in PROTOCOLS


def test_seed_experiments_match_the_report():
    code2 = load_experiment(EXPERIMENTS[0].parent / "seed_code2.yaml").cells
    assert code2 == [{"model": "attn_blstm", "features": "librosa46", "corpus": "shemo", "classes": "6",
                      "split": "random", "norm": "none", "epochs": 30,
                      "model_params": {"units": 256, "patience": 10, "class_weight": "none", "clipnorm": 0,
                                       "lr_patience": 0}}]
    code1 = load_experiment(EXPERIMENTS[0].parent / "seed_code1.yaml").cells
    assert {(c.get("protocol", "within_corpus"), c.get("corpus"), c["classes"]) for c in code1} == {
        ("within_corpus", "emodb", "5"), ("within_corpus", "emodb", "2"), ("within_corpus", "shemo", "5"),
        ("within_corpus", "shemo", "2"), ("cross_corpus", None, "5"), ("cross_corpus", None, "2")}


def test_bad_experiment_files(tmp_path):
    (tmp_path / "bad.yaml").write_text("grid: {modle: [svm]}\n")
    with pytest.raises(BenchError, match="unknown run setting 'modle'"):
        load_experiment(tmp_path / "bad.yaml")
    for text, message in (("runs: 5\n", "runs must be a list"), ('base: "model=svm"\n', "base must be a mapping"),
                          ("grid: [svm]\n", "grid must be a mapping"), ("runs: [svm]\n", "runs\\[0\\] must be a mapping"),
                          ("name: [a]\n", "name must be text"), ("grid: {model: []}\n", "empty list"),
                          ("base: {model: svm\n", "invalid YAML")):
        (tmp_path / "bad.yaml").write_text(text)
        with pytest.raises(BenchError, match=message):
            load_experiment(tmp_path / "bad.yaml")
    with pytest.raises(BenchError, match="not found"):
        load_experiment(tmp_path / "missing.yaml")


def test_grid_runs_every_cell_and_survives_a_failing_one(tmp_path, data_dir):
    (tmp_path / "grid.yaml").write_text(
        "name: tiny\nbase: {features: handcrafted36, max_speakers: 3, max_per_speaker_class: 1}\n"
        "grid: {model: [svm, xgboost]}\nruns: [{model: svm, corpus: nowhere}, {model: svm, seed: abc},"
        " {model: svm, model_params: C=3}]\n")
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    result = CliRunner().invoke(app, ["run", "--experiment", str(tmp_path / "grid.yaml"), "--data-dir", str(data_dir),
                                      "--tracking-uri", uri, "--cache-dir", str(tmp_path / "c")])
    assert result.exit_code == 2 and "3 of 5 runs failed" in result.output, result.output
    assert "seed='abc' is invalid" in result.output and "model_params='C=3' is invalid" in result.output
    import mlflow

    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["tiny"], filter_string="tags.ser_bench_kind = 'run'",
                              output_format="list")
    assert sorted(r.data.params["model.name"] for r in runs) == ["svm", "xgboost"]


def test_logging_floor_command_as_the_readme_types_it():
    """`python experiments/logging_floor.py --rounds 3` (README, issue 9): every import step timed
    in each round, and their sum printed."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "experiments/logging_floor.py", "--rounds", "3"], cwd=repo,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert [line for line in lines if line.startswith("round ")] == [f"round {n}/3 done" for n in (1, 2, 3)]
    steps = [line for line in lines if "(rounds: " in line]
    assert len(steps) == 5 and all(line.split("(rounds: ")[1].count(",") == 2 for line in steps)
    medians = [float(line.split("(rounds: ")[0].split()[-2]) for line in steps]
    total = float(lines[-1].split()[-2])
    assert lines[-1].startswith("sum of the medians") and abs(total - sum(medians)) < 0.05
