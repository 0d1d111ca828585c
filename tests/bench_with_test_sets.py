"""``bench`` with the test-only feature sets registered (for the kill and SIGTERM tests)."""

import sys

import testing_feature_sets  # noqa: F401
from benchmark.cli import app

if __name__ == "__main__":
    sys.argv[0] = "bench"
    app()
