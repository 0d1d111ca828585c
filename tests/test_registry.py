"""Registries: discovery by module, duplicate names refused, names listed for help and errors."""

import sys
import textwrap

import pytest

from benchmark.errors import BenchError
from benchmark.registry import Registry


def test_a_new_module_joins_by_its_decorator_and_duplicates_are_refused(tmp_path, monkeypatch):
    package = tmp_path / "plugins"
    package.mkdir()
    (package / "__init__.py").write_text(textwrap.dedent("""
        from benchmark.registry import Registry
        THINGS = Registry("thing")
        THINGS.discover(__name__, __path__, lazy=("heavy",))
    """))
    (package / "first.py").write_text("from . import THINGS\n@THINGS.register\nclass A:\n    name = 'a'\n")
    (package / "second.py").write_text("from . import THINGS\n@THINGS.register\nclass B:\n    name = 'b'\n")
    (package / "heavy.py").write_text("raise ImportError('must not be imported by discovery')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import plugins

    assert sorted(plugins.THINGS) == ["a", "b"] and plugins.THINGS.names() == "a, b"
    (package / "third.py").write_text("from . import THINGS\n@THINGS.register\nclass C:\n    name = 'a'\n")
    with pytest.raises(BenchError, match="'a' is claimed twice"):
        __import__("plugins.third")
    sys.modules.pop("plugins", None)


def test_unknown_names_list_the_registered_ones():
    registry = Registry("widget")

    @registry.register
    class Gear:
        name = "gear"

    with pytest.raises(BenchError, match="unknown widget 'cog'; choose one of gear"):
        registry.lookup("cog")


def test_every_shipped_registry_is_discovered_and_vector_runs_need_no_tensorflow():
    import subprocess

    code = ("import sys, benchmark.models, benchmark.features, benchmark.protocols, benchmark.corpora as c;"
            "print(sorted(benchmark.models.MODELS), sorted(benchmark.protocols.PROTOCOLS), sorted(c.CORPORA));"
            "print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert "svm" in out[0] and "within_corpus" in out[0] and "emodb" in out[0]
    assert out[1] == "False"


def test_a_recipe_is_named_by_the_parameters_that_change_what_a_model_learns():
    """Report rows: threads, verbosity, the seed and tuned parameters are not a recipe of their own."""
    from benchmark.config import resolve

    config = resolve({"model": "xgboost", "model_params": {"n_jobs": 1, "max_depth": 3, "learning_rate": 0.1},
                      "seed": 5})
    assert config.changed_model_params() == {"max_depth": 3}  # learning_rate 0.1 is the default
    assert config.changed_model_params(tuned=["max_depth"]) == {}
    keras = resolve({"model": "attn_blstm", "model_params": {"verbose": 1, "patience": 8}})
    assert keras.changed_model_params() == {"patience": 8}
