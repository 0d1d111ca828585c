"""Quick checks for issue 11: do other label-free normalisations or feature combinations carry an
EMO-DB-trained SVM to URDU (4 classes) better than ``--norm corpus``?

    python experiments/cross_corpus_checks.py --data-dir ../shared/data

Every variant is scored on URDU, so picking the best of them would be picking on the test corpus;
these are checks of whether any of them moves the number at all, not a method to report. All of
them are transductive in the same way as ``--norm corpus`` (the test corpus's unlabelled
features are looked at as a whole); none uses a test label. Variants:

* ``corpus``: z-score each corpus with its own statistics (what ``--norm corpus`` does);
* ``corpus+coral``: then re-colour the training corpus with the test corpus's covariance (CORAL,
  Sun et al. 2016; covariances shrunk by +I);
* ``quantile``: map every feature of each corpus to a normal distribution through its own ranks;
* concatenations of feature sets, and the mean of the per-set SVMs' probabilities.
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np


def zscore(X):
    std = X.std(0)
    return (X - X.mean(0)) / np.where(std > 1e-8, std, 1.0)


def coral(source, target):
    from scipy import linalg

    eye = np.eye(source.shape[1])
    whiten = linalg.fractional_matrix_power(np.cov(source, rowvar=False) + eye, -0.5)
    colour = linalg.fractional_matrix_power(np.cov(target, rowvar=False) + eye, 0.5)
    return np.real(source @ whiten @ colour)


def quantile(X):
    from sklearn.preprocessing import QuantileTransformer

    return QuantileTransformer(n_quantiles=min(200, len(X)), output_distribution="normal").fit_transform(X)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    from sklearn.metrics import balanced_accuracy_score

    from benchmark.config import resolve
    from benchmark.models.sklearn_models import SVMClassifier
    from benchmark.runner import Runtime, build_inputs, prepare

    runtime = Runtime(data_dir=args.data_dir, progress=False, jobs=1)
    sets = {}
    for name in ("egemaps", "handcrafted36", "librosa46", "compare"):
        config = resolve({"model": "svm", "features": name, "protocol": "cross_corpus", "train_corpus": "emodb",
                          "test_corpus": "urdu", "classes": "4", "norm": "none"})
        inputs = build_inputs(prepare(config, runtime), runtime)
        (fold,) = inputs.folds
        sets[name] = (np.asarray(inputs.X, dtype=np.float64), np.asarray(inputs.labels), fold.train, fold.test)
    labels, train, test = sets["egemaps"][1], sets["egemaps"][2], sets["egemaps"][3]

    def uar(source, target, C=10.0):
        model = SVMClassifier(C=C).fit(source, labels[train])
        return balanced_accuracy_score(labels[test], model.predict(target)), model

    variants = {"corpus": lambda s, t: (zscore(s), zscore(t)),
                "corpus+coral": lambda s, t: (coral(zscore(s), zscore(t)), zscore(t)),
                "quantile": lambda s, t: (quantile(s), quantile(t))}
    for name, (X, _, _, _) in sets.items():
        for variant, transform in variants.items():
            if name == "compare" and variant == "corpus+coral":
                continue  # 6373 x 6373 matrix roots: minutes, and the set is the least likely to need it
            source, target = transform(X[train], X[test])
            print(f"{name:14s} {variant:14s} UAR {uar(source, target)[0]:.3f}", flush=True)
    for names in (("egemaps", "handcrafted36"), ("egemaps", "handcrafted36", "librosa46")):
        X = np.hstack([sets[n][0] for n in names])
        print(f"concatenated {'+'.join(names)} (corpus) UAR {uar(zscore(X[train]), zscore(X[test]))[0]:.3f}")
    probabilities = {}
    for name in ("egemaps", "handcrafted36", "compare", "librosa46"):
        X = sets[name][0]
        _, model = uar(zscore(X[train]), zscore(X[test]))
        probabilities[name] = model.predict_proba(zscore(X[test]))
        mean = sum(probabilities.values()) / len(probabilities)
        predicted = model.classes_[mean.argmax(1)]
        print(f"mean probability of {'+'.join(probabilities)} (corpus) UAR "
              f"{balanced_accuracy_score(labels[test], predicted):.3f}")


if __name__ == "__main__":
    main()
