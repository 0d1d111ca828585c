"""`bench predict --model` refuses models that run code when loaded, unless --trust-model is given."""

from __future__ import annotations

import subprocess
import sys

import pytest

from benchmark.model_trust import unsafe_reason
from reliability_helpers import bench, one_line_error, write_tone


class Payload:
    """Unpickling this runs code: it writes a marker file."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


@pytest.fixture
def crafted_model(tmp_path):
    import mlflow

    from benchmark import tracking
    from benchmark.config import resolve

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracking.use_store(uri, "ser-bench")
    marker = tmp_path / "marker"
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(Payload(str(marker)), name="model", serialization_format="cloudpickle",
                                        metadata={"label_map": ["anger", "sadness"], "feature_set": "librosa46",
                                                  "input_kind": "vector", "norm": "none",
                                                  "ser_bench_config": resolve({"model": "svm", "features": "librosa46",
                                                                               "norm": "none"}).to_dict()})
    marker.unlink(missing_ok=True)  # MLflow may have loaded it back while logging
    return uri, info.model_uri, marker


def test_pickled_model_is_refused_without_trust(tmp_path, crafted_model):
    uri, model_uri, marker = crafted_model
    audio = write_tone(tmp_path / "a.wav", 0.5)
    line = one_line_error(bench("predict", str(audio), "--model", model_uri, "--tracking-uri", uri, cwd=tmp_path))
    assert "cloudpickle" in line and "--trust-model" in line
    assert not marker.exists()  # nothing was unpickled
    trusted = bench("predict", str(audio), "--model", model_uri, "--tracking-uri", uri, "--trust-model", cwd=tmp_path)
    assert marker.exists(), trusted.stderr[-2000:]  # with --trust-model it is loaded (and its code ran)


@pytest.mark.parametrize("flavors, safe", [
    ({"sklearn": {"serialization_format": "skops"}, "python_function": {"loader_module": "mlflow.sklearn"}}, True),
    ({"sklearn": {"serialization_format": "pickle"}}, False),
    ({"sklearn": {}}, False),
    ({"xgboost": {"model_format": "ubj"}}, True),
    ({"keras": {}, "python_function": {"loader_module": "mlflow.keras"}}, True),
    ({"python_function": {"python_model": "python_model.pkl", "cloudpickle_version": "3"}}, False),
    ({"pytorch": {}}, False),
])
def test_unsafe_reason(flavors, safe):
    assert (unsafe_reason(flavors) is None) == safe


SUMMARY = ("import hashlib\nnames = sorted(io._trusted_types.SKLEARN_ESTIMATOR_TYPE_NAMES)\n"
           "print(len(names), hashlib.sha256('\\n'.join(names).encode()).hexdigest(), 'torch' in sys.modules)\n")


def test_skops_imported_without_torch_trusts_the_same_sklearn_types():
    """benchmark.models.skops_import skips the array backends (PyTorch) that sklearn's
    all_estimators walk would import, and changes nothing skops trusts."""
    code = ("import sys\n"
            "from benchmark.models.skops_import import import_skops\n"
            "io = import_skops()\n"
            + SUMMARY)
    quick = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    plain = subprocess.run([sys.executable, "-c", "import sys, skops.io as io\n" + SUMMARY],
                           capture_output=True, text=True, timeout=300)
    assert quick.returncode == 0 and plain.returncode == 0, quick.stderr[-2000:] + plain.stderr[-2000:]
    count, digest, torch_loaded = quick.stdout.split()
    assert torch_loaded == "False"
    assert (count, digest) == tuple(plain.stdout.split()[:2]) and int(count) > 100
