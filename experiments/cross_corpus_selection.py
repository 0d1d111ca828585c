"""Issue 11: can a label-free method, chosen without the test corpus's labels, carry an SVM from
EMO-DB to URDU (4 classes) to 0.55 UAR? Run in both directions (EMO-DB -> URDU and back), svm on
corpus-standardised features (what ``--norm corpus`` does):

    python experiments/cross_corpus_selection.py --data-dir ../shared/data [--features egemaps,handcrafted36]

Every method below looks at the test corpus's unlabelled features (transductive, like ``--norm
corpus``) and none uses a test label; the test UAR is printed only to report what each gave:

* ``C by source CV``: C chosen by speaker-grouped 5-fold CV on the training corpus (what
  ``bench tune`` does); ``C by reverse validation`` (Zhong et al., ECML 2010; used by Ganin et al.
  2016 for DANN): train on the source, pseudo-label the target, train back on the target, score
  on held-out source speakers; ``C by IWCV`` (Sugiyama et al., JMLR 2007): source CV weighted by a
  logistic domain classifier's density ratio p(target | x) / p(source | x);
* ``self-training``: five rounds adding the most confident target pseudo-labels, class-balanced;
* ``KS selection``: keep the features whose source/target distributions differ least
  (Kolmogorov-Smirnov statistic below its median / 75th percentile);
* ``EM prior``: re-estimate the target's class priors from the predicted probabilities
  (Saerens et al., Neural Computation 2002) and re-weight;
* ``speaker norm on the training side``: the training corpus standardised per speaker, the test
  corpus per corpus; ``gender norm``: every corpus standardised per gender.
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np

C_GRID = np.logspace(-2, 1.5, 15)


def zscore(X):
    std = X.std(0)
    return (X - X.mean(0)) / np.where(std > 1e-8, std, 1.0)


def zscore_by(X, keys):
    out = np.empty_like(X)
    for key in np.unique(keys):
        out[keys == key] = zscore(X[keys == key])
    return out


def load(name, train, test, runtime):
    from benchmark.config import resolve
    from benchmark.runner import build_inputs, prepare

    config = resolve({"model": "svm", "features": name, "protocol": "cross_corpus", "train_corpus": train,
                      "test_corpus": test, "classes": "4", "norm": "none"})
    inputs = build_inputs(prepare(config, runtime), runtime)
    (fold,) = inputs.folds
    X, y = np.asarray(inputs.X, np.float64), np.asarray(inputs.labels)
    speakers = np.asarray(inputs.groups).astype(str)
    genders = np.array([u.gender or "?" for u in inputs.utterances])
    s, t = fold.train, fold.test
    return X[s], y[s], speakers[s], genders[s], X[t], y[t], genders[t]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--features", default="egemaps,handcrafted36")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    from scipy.stats import ks_2samp
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score as uar
    from sklearn.model_selection import GroupKFold, cross_val_predict

    from benchmark.models.sklearn_models import SVMClassifier
    from benchmark.runner import Runtime

    runtime = Runtime(data_dir=args.data_dir, progress=False, jobs=1)
    for name in args.features.split(","):
        for train, test in (("emodb", "urdu"), ("urdu", "emodb")):
            raw_s, ys, speakers, genders_s, raw_t, yt, genders_t = load(name, train, test, runtime)
            Xs, Xt = zscore(raw_s), zscore(raw_t)
            folds = list(GroupKFold(5).split(Xs, ys, speakers))

            def fit(X, y, C=10.0):
                return SVMClassifier(C=C).fit(X, y)

            def score(model, X=Xt):
                return uar(yt, model.predict(X))

            results = {"default (C=10)": score(fit(Xs, ys))}
            source_cv, reverse = [], []
            for C in C_GRID:
                predicted = np.empty(len(ys), dtype=object)
                back_scores = []
                for a, b in folds:
                    forward = fit(Xs[a], ys[a], C)
                    predicted[b] = forward.predict(Xs[b])
                    pseudo = forward.predict(Xt)
                    back_scores.append(uar(ys[b], fit(Xt, pseudo, C).predict(Xs[b])) if len(set(pseudo)) > 1 else 0.0)
                source_cv.append(uar(ys, predicted))
                reverse.append(np.mean(back_scores))
            domain = np.r_[np.zeros(len(Xs)), np.ones(len(Xt))]
            p = cross_val_predict(LogisticRegression(C=0.01, max_iter=2000), np.vstack([Xs, Xt]), domain, cv=5,
                                  method="predict_proba")[: len(Xs), 1]
            ratio = p / (1 - p)
            iwcv = []
            for C in C_GRID:
                predicted = np.empty(len(ys), dtype=object)
                for a, b in folds:
                    predicted[b] = fit(Xs[a], ys[a], C).predict(Xs[b])
                per_class = np.array([1.0 / ratio[ys == c].sum() for c in ys])
                iwcv.append(np.sum(ratio * per_class * (predicted == ys)) / np.sum(ratio * per_class))
            for label, curve in (("C by source CV", source_cv), ("C by reverse validation", reverse), ("C by IWCV", iwcv)):
                C = C_GRID[int(np.argmax(curve))]
                results[f"{label} (C={C:.2g})"] = score(fit(Xs, ys, C))
            model = fit(Xs, ys)
            for round_ in range(5):
                proba = model.predict_proba(Xt)
                labels, confidence = model.classes_[proba.argmax(1)], proba.max(1)
                per_class = int(0.2 * (round_ + 1) * len(Xt) / len(model.classes_))
                keep = np.concatenate([np.flatnonzero(labels == c)[np.argsort(-confidence[labels == c])][:per_class]
                                       for c in model.classes_])
                model = fit(np.vstack([Xs, Xt[keep]]), np.concatenate([ys, labels[keep]]))
            results["self-training"] = score(model)
            ks = np.array([ks_2samp(Xs[:, j], Xt[:, j]).statistic for j in range(Xs.shape[1])])
            for q in (0.5, 0.75):
                kept = ks <= np.quantile(ks, q)
                results[f"KS selection ({int(q * 100)}% kept)"] = score(fit(Xs[:, kept], ys), Xt[:, kept])
            model = fit(Xs, ys)
            proba = model.predict_proba(Xt)
            prior = np.array([(ys == c).mean() for c in model.classes_])
            estimate = prior.copy()
            for _ in range(100):
                adjusted = proba * (estimate / prior)
                adjusted /= adjusted.sum(1, keepdims=True)
                estimate = adjusted.mean(0)
            results["EM prior"] = uar(yt, model.classes_[adjusted.argmax(1)])
            results["speaker norm on the training side"] = score(fit(zscore_by(raw_s, speakers), ys))
            results["gender norm"] = score(fit(zscore_by(raw_s, genders_s), ys), zscore_by(raw_t, genders_t))
            for label, value in results.items():
                print(f"{name:14s} {train}->{test:6s} {label:40s} UAR {value:.3f}", flush=True)


if __name__ == "__main__":
    main()
