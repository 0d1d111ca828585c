"""The floor openSMILE's own processing puts under a cold svm + egemaps run (issue 9's cold 2.5x).

A cold run must compute the 88 eGeMAPS functionals of every file once; ser-bench already makes one
openSMILE pass per file (the first build made two) on as many extraction workers as there are
cores. This times that pass alone, file by file in one process (audio loaded beforehand, so
reading and resampling are not counted), and prints the CPU time it needs for the corpus, that
time spread perfectly over the cores, and the largest cold speed-up any change outside openSMILE
could give against a baseline cold run time (``--baseline-cold``, seconds, from ``bench speedup``).

    python experiments/opensmile_floor.py --data-dir ../shared/data --baseline-cold 28.7
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("SER_BENCH_DATA", "../shared/data")))
    parser.add_argument("--baseline-cold", type=float, help="the baseline's cold run, seconds")
    parser.add_argument("--limit", type=int, help="only the first N files")
    args = parser.parse_args()

    from benchmark.audio import load_audio
    from benchmark.features import FEATURE_SETS
    from benchmark.threads import cores_available

    files = sorted((args.data_dir / "emodb" / "wav").glob("*.wav"))[: args.limit]
    if not files:
        raise SystemExit(f"no WAV files under {args.data_dir / 'emodb' / 'wav'}; pass --data-dir")
    egemaps = FEATURE_SETS.lookup("egemaps")()
    signals = [load_audio(f) for f in files]
    egemaps.extract(signals[0], ["functionals"])  # load the library once, untimed
    wall, cpu = [], []
    for signal in signals:
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        egemaps.extract(signal, ["functionals"])
        wall.append(time.perf_counter() - start_wall)
        cpu.append(time.process_time() - start_cpu)
    cores = cores_available()
    total = sum(cpu)
    print(f"{len(files)} files, one openSMILE pass each (functionals): median {statistics.median(wall) * 1e3:.1f} ms "
          f"wall, {statistics.median(cpu) * 1e3:.1f} ms CPU per file; {total:.1f} CPU-s in all")
    print(f"spread perfectly over {cores} cores: {total / cores:.1f} s, the least a cold run can take")
    if args.baseline_cold:
        print(f"against a baseline cold run of {args.baseline_cold:.1f} s: at most "
              f"{args.baseline_cold / (total / cores):.2f}x, if everything else took no time")


if __name__ == "__main__":
    main()
