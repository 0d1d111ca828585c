"""Import skops without importing PyTorch (and the other array backends) as a side effect.

Why: ``skops.io`` builds its list of trusted scikit-learn types at import time with
``sklearn.utils.all_estimators()``, which walks every sklearn package. Walking imports packages to
find their children, among them ``sklearn.externals.array_api_compat.torch``, which imports
PyTorch: about 3 of the 5 seconds that ``bench predict`` of a saved SVM spent before this, and the
same on every model log. all_estimators ignores everything under ``sklearn.externals`` anyway, so
refusing those backend modules while skops is imported changes no trusted type (tested), only the
time. A backend that is already imported is left alone.
"""

from __future__ import annotations

import importlib.abc
import sys

_BACKENDS = ("torch", "cupy", "dask", "jax")
_PREFIX = "sklearn.externals.array_api_compat."


class _SkipArrayBackends(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.startswith(_PREFIX) and name[len(_PREFIX):].split(".")[0] in _BACKENDS and name not in sys.modules:
            raise ImportError(f"{name} is not needed to list sklearn's estimators")  # walk_packages skips it
        return None


def import_skops():
    """``skops.io``, imported without the array-backend side imports (a no-op once imported)."""
    if "skops.io" not in sys.modules:
        import sklearn.base  # noqa: F401  (sklearn's own imports must not be refused)

        finder = _SkipArrayBackends()
        sys.meta_path.insert(0, finder)
        try:
            import skops.io  # noqa: F401
        finally:
            sys.meta_path.remove(finder)
    return sys.modules["skops.io"]
