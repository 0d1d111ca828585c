"""The ``bench`` console script: ``bench predict`` goes to its own small module (see cli_predict),
every other command to the full CLI in ``benchmark.cli``."""

from __future__ import annotations

import sys


def main() -> None:  # pragma: no cover - console entry point (tests run it as `bench` and `python -m benchmark`)
    if sys.argv[1:2] == ["predict"]:
        from .cli_predict import main as predict_main

        predict_main(sys.argv[2:])
        return
    from .cli import app

    app()


if __name__ == "__main__":  # pragma: no cover
    main()
