#!/usr/bin/env bash
# The vector baselines of the README's Results table, one `bench run` each, into one MLflow store
# (experiment "baselines"); `bench report --name benchmark --experiment baselines --experiment issue8`
# then puts them beside the network runs.
#
#   experiments/baselines.sh [TRACKING_URI]     (default: the store in the current folder)
set -euxo pipefail
S=(--experiment-name baselines --no-final-model)
if [ $# -ge 1 ]; then S+=(--tracking-uri "$1"); fi
for pair in "svm compare" "xgboost egemaps" "svm handcrafted36" "xgboost handcrafted36" "svm librosa46" "svm egemaps"; do
  set -- $pair
  bench run --model "$1" --features "$2" --corpus emodb --classes 7 --norm speaker "${S[@]}"
done
bench run --model svm --features egemaps --corpus emodb --classes 7 --norm global "${S[@]}"
for classes in 2 5; do bench run --model svm --features egemaps --corpus emodb --classes $classes --norm speaker "${S[@]}"; done
for norm in global speaker; do bench run --model svm --features egemaps --corpus urdu --norm $norm "${S[@]}"; done
cc=(--protocol cross_corpus --train-corpus emodb --test-corpus urdu --classes 4)
bench run "${cc[@]}" --model svm --features egemaps --norm corpus "${S[@]}"
bench run "${cc[@]}" --model svm --features handcrafted36 --norm corpus "${S[@]}"
bench run "${cc[@]}" --model xgboost --features egemaps --norm global "${S[@]}"
