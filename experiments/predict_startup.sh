#!/usr/bin/env bash
# `bench predict` of one NEW file end to end (fresh process, the file's features not cached), an
# older revision vs this checkout, alternated: the issue-9 start-up measurement.
#
#   experiments/predict_startup.sh MODEL_URI TRACKING_URI [ROUNDS=3] [BASELINE_REV=427807c] [WAV]
#
# Every round writes a copy of WAV with one sample changed (new content, so a cache miss: the
# extraction is part of the time). Each version has its own feature/model cache folder, which
# an untimed first call fills with that version's local copy of the model (a user's second
# predict); a shared one would let an older version drop a newer version's numpy-only form.
# Prints one "<version> <seconds> s" line per call; compare the medians.
set -euo pipefail
MODEL=$1; STORE=$2; ROUNDS=${3:-3}; BASELINE=${4:-427807c}
WAV=${5:-${SER_BENCH_DATA:-../shared/data}/emodb/wav/03a01Fa.wav}
HERE=$(cd "$(dirname "$0")/.." && pwd)
WAV=$(cd "$(dirname "$WAV")" && pwd)/$(basename "$WAV")
SCRATCH=$(mktemp -d); trap 'rm -rf "$SCRATCH"' EXIT
mkdir "$SCRATCH/baseline" "$SCRATCH/cache-baseline" "$SCRATCH/cache-current"
git -C "$HERE" archive "$BASELINE" | tar -x -C "$SCRATCH/baseline"
cd "$SCRATCH"  # not the checkout: PYTHONPATH then decides which version runs
# what `bench` runs in each version: benchmark.console since bench predict has its own entry
entry() { if [ -f "$1/benchmark/console.py" ]; then echo benchmark; else echo benchmark.cli; fi; }
for version in baseline current; do
  tree=$HERE; [ "$version" = baseline ] && tree=$SCRATCH/baseline
  SER_BENCH_CACHE=$SCRATCH/cache-$version PYTHONPATH=$tree python -m "$(entry "$tree")" predict "$WAV" \
    --model "$MODEL" --tracking-uri "$STORE" --format json >/dev/null
done
for round in $(seq 1 "$ROUNDS"); do
  for version in baseline current; do
    tree=$HERE; [ "$version" = baseline ] && tree=$SCRATCH/baseline
    clip=$SCRATCH/clip-$round-$version.wav
    python - "$WAV" "$clip" "$round$version" <<'PY'
import sys, zlib, soundfile as sf
samples, rate = sf.read(sys.argv[1], dtype="int16")
samples = samples.copy()
samples[0] = (int(samples[0]) + 1 + zlib.crc32(sys.argv[3].encode()) % 1000) % 30000
sf.write(sys.argv[2], samples, rate)
PY
    start=$EPOCHREALTIME
    SER_BENCH_CACHE=$SCRATCH/cache-$version PYTHONPATH=$tree python -m "$(entry "$tree")" predict "$clip" --model "$MODEL" --tracking-uri "$STORE" --format json >/dev/null
    awk -v v="$version" -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%s %.2f s\n", v, b - a }'
  done
done
