"""Multi-condition training for issue 11: does training on noisy and speed-perturbed copies of the
training corpus carry an SVM across corpora better than clean training alone?

    python experiments/cross_corpus_multicondition.py --data-dir ../shared/data

URDU was recorded from talk shows (background noise, varied channels), EMO-DB in an anechoic room,
so the robust-ASR recipe of training on copies at several SNRs (and Kaldi's 0.9 / 1.1 speed
perturbation) is an a priori candidate for the channel part of the mismatch. The recipe was fixed
before any score was seen: clean + white noise at 20 dB and 10 dB SNR (``audiomentations``'
``AddGaussianSNR``, seeded by each file's content) + speed 0.9 and 1.1, copies of training
utterances only, standardised with the clean training corpus's statistics (``--norm corpus``; the
test corpus with its own unlabelled statistics, as ``bench run --norm corpus`` does). Both
directions and two feature sets are scored so that the method is judged on more than one pair.
No test label is used to choose anything; all variants are printed. Only the training
utterances are perturbed and extracted (`training_copies`); the test corpus stays clean.
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np

AUGMENTATIONS = (("noise", 20.0), ("noise", 10.0), ("speed", 0.9), ("speed", 1.1))


def zscore_with(X, reference):
    std = reference.std(0)
    return (X - reference.mean(0)) / np.where(std > 1e-8, std, 1.0)


def features(name, train_corpus, test_corpus, runtime):
    """Clean features of both corpora through the runner, as `bench run --norm none` builds them."""
    from benchmark.config import resolve
    from benchmark.runner import build_inputs, prepare

    settings = {"model": "svm", "features": name, "protocol": "cross_corpus", "train_corpus": train_corpus,
                "test_corpus": test_corpus, "classes": "4", "norm": "none"}
    inputs = build_inputs(prepare(resolve(settings), runtime), runtime)
    (fold,) = inputs.folds
    return np.asarray(inputs.X, dtype=np.float64), np.asarray(inputs.labels), fold.train, fold.test, inputs.utterances


def training_copies(name, utterances, train, runtime, augmentation):
    """(vectors, indices into ``train``) of the augmented copies of the training utterances only:
    the test corpus is never perturbed, so its copies are not extracted either."""
    from benchmark.features import get_feature_set
    from benchmark.features.extract import extract_features
    from benchmark.features.functionals import parts_needed
    from benchmark.model_input import model_input
    from benchmark.models.sklearn_models import SVMClassifier

    kind, value = augmentation
    feature_set = get_feature_set("augmented", base=name, kind=kind, value=value)
    keys = [f"{utterances[i].id}@{utterances[i].corpus}" for i in train]  # the runner's cache keys
    extraction = extract_features([(key, utterances[i].path) for key, i in zip(keys, train)], feature_set,
                                  cache_dir=runtime.cache_dir, jobs=runtime.jobs, progress=False,
                                  parts=parts_needed(SVMClassifier.input_kind, feature_set), in_process_ok=True)
    kept = [position for position, key in enumerate(keys) if key in extraction.features]  # failed copies skipped
    vectors = model_input(SVMClassifier, [extraction.features[keys[position]] for position in kept])
    return np.asarray(vectors, dtype=np.float64), np.asarray(kept, dtype=int)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--sets", default="egemaps,handcrafted36")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    from sklearn.metrics import balanced_accuracy_score

    from benchmark.models.sklearn_models import SVMClassifier
    from benchmark.runner import Runtime

    runtime = Runtime(data_dir=args.data_dir, progress=False, jobs=2)
    for name in args.sets.split(","):
        for source, target in (("emodb", "urdu"), ("urdu", "emodb")):
            X, y, train, test, utterances = features(name, source, target, runtime)
            clean_train = X[train]
            rows = {"clean": (zscore_with(clean_train, clean_train), y[train])}
            copies_X, copies_y = [], []
            for augmentation in AUGMENTATIONS:
                Xa, kept = training_copies(name, utterances, train, runtime, augmentation)
                copies_X.append(zscore_with(Xa, clean_train))
                copies_y.append(y[train][kept])
                rows[f"clean + {augmentation[0]} {augmentation[1]:g}"] = (
                    np.vstack([rows["clean"][0], copies_X[-1]]), np.concatenate([y[train], copies_y[-1]]))
            rows["clean + noise 20, 10 dB"] = (np.vstack([rows["clean"][0], *copies_X[:2]]),
                                               np.concatenate([y[train], *copies_y[:2]]))
            rows["clean + all four (the a priori recipe)"] = (np.vstack([rows["clean"][0], *copies_X]),
                                                             np.concatenate([y[train], *copies_y]))
            target_X = zscore_with(X[test], X[test])
            for label, (train_X, train_y) in rows.items():
                for C in (10.0, 1.0):
                    model = SVMClassifier(C=C).fit(train_X, train_y)
                    score = balanced_accuracy_score(y[test], model.predict(target_X))
                    print(f"{name:14s} {source}->{target:6s} C={C:<4g} {label:40s} n_train {len(train_y):5d} "
                          f"UAR {score:.3f}", flush=True)


if __name__ == "__main__":
    main()
