from typer.testing import CliRunner

from benchmark.cli import app

runner = CliRunner()


def test_data_list_shows_real_corpora(real_data_dir, real_emodb_dir, real_urdu_dir):
    result = runner.invoke(app, ["data", "list", "--data-dir", str(real_data_dir), "--speakers"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "emodb" in result.output and "535" in result.output and "400" in result.output
    assert "anger 127" in result.output
    assert "bench data download shemo" in result.output  # ShEMO audio absent: told how to get it


def test_features_extract_then_cached(small_emodb, tmp_path):
    args = ["features", "extract", "--corpus", "emodb", "--features", "handcrafted36",
            "--data-dir", str(small_emodb.parent), "--cache-dir", str(tmp_path / "c"), "--jobs", "1"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "14 ok (14 computed, 0 from cache)" in first.output
    second = runner.invoke(app, args)
    assert "14 ok (0 computed, 14 from cache)" in second.output


def test_features_extract_on_folder_manifest_with_a_bad_file(small_emodb, tmp_path):
    wavs = sorted((small_emodb / "wav").glob("*.wav"))
    wavs[0].write_bytes(b"")
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,emotion,speaker\n" + "".join(f"{p},{'angry' if i % 2 else 'sad'},{p.stem[:2]}\n"
                                                          for i, p in enumerate(wavs)))
    result = runner.invoke(app, ["features", "extract", "--corpus", f"folder:{manifest}", "--features", "librosa46",
                                 "--jobs", "1"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "13 ok" in result.output and "1 skipped" in result.output and "empty" in result.output


def test_bad_values_are_one_line_errors(tmp_path):
    result = runner.invoke(app, ["features", "extract", "--corpus", "emodb", "--features", "mfcc999",
                                 "--data-dir", str(tmp_path)])
    assert result.exit_code == 2 and "unknown feature set 'mfcc999'" in result.output
    result = runner.invoke(app, ["features", "extract", "--corpus", "emodb", "--features", "librosa46",
                                 "--data-dir", str(tmp_path)], env={"COLUMNS": "300"})
    assert result.exit_code == 2 and "bench data download emodb" in result.output
    result = runner.invoke(app, ["features", "list"])
    assert result.exit_code == 0 and "handcrafted36" in result.output
    # an option out of range is named before any corpus is looked at or file is read
    result = runner.invoke(app, ["run", "--model", "svm", "--features", "librosa46", "--feature-param", "n_fft=0",
                                 "--data-dir", str(tmp_path)], env={"COLUMNS": "300"})
    assert result.exit_code == 2, result.output
    assert result.output.strip() == "error: feature set librosa46: n_fft=0 is invalid (input should be greater than or equal to 128)"


def test_none_is_none_in_name_value_options():
    """`--feature-param duration_s=None` (the README's spelling) means None, as YAML's `null` does."""
    from benchmark.cli import parse_assignments

    assert parse_assignments(["duration_s=None", "a=none", "b=null", "c=5", "d=nonempty"], "--feature-param") == \
        {"duration_s": None, "a": None, "b": None, "c": 5, "d": "nonempty"}


def test_tables_written_to_a_file_keep_every_cell_on_one_line(monkeypatch):
    """A log file or a pipe gets a table at its natural width, even where the console was pinned to
    80 columns (``COLUMNS=80`` when the CLI was imported: CI's fuse test failed so)."""
    import io

    from rich.console import Console
    from rich.table import Table

    from benchmark import cli_base

    out = io.StringIO()
    monkeypatch.setattr(cli_base, "console", Console(file=out, width=80))
    table = Table("member run", "member", "gain")
    from rich.markup import escape

    label = escape("xgboost[n_estimators=30]/handcrafted36[duration_s=None]")
    table.add_row("bd7dee9a991c4d7eb6e6f0123456789a", label, "+0.038 [+0.008, +0.068]")
    cli_base.print_table(table)
    text = out.getvalue()
    assert "xgboost[n_estimators=30]/handcrafted36[duration_s=None]" in text
    assert "bd7dee9a991c4d7eb6e6f0123456789a" in text and "+0.038 [+0.008, +0.068]" in text
    assert max(map(len, text.splitlines())) > 80


def test_report_name_stays_inside_the_out_dir(tmp_path):
    """`--name` is a file name: `--name ../x` wrote the report beside --out-dir, not into it."""
    out = tmp_path / "reports"
    for flags in ([], ["--matrix"]):
        result = runner.invoke(app, ["report", "--name", "../escaped", "--out-dir", str(out), *flags,
                                     "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"], env={"COLUMNS": "300"})
        assert result.exit_code == 2, result.output
        assert "give a plain file name" in result.output and "Traceback" not in result.output
    assert not list(tmp_path.glob("escaped*")) and not out.exists()
