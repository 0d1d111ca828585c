"""Honest SER metrics from scikit-learn: WA (accuracy), UAR (balanced accuracy), macro-F1,
per-class recall and the confusion matrix, plus a bootstrap 95% interval for UAR.

WA weights every utterance equally and flatters the majority class; UAR weights every emotion
equally and is the field's headline number for imbalanced corpora. Both are always reported.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.stats import bootstrap
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score, recall_score


def classification_metrics(y_true, y_pred, labels) -> dict[str, float]:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    with warnings.catch_warnings():  # a fold may lack a class: sklearn warns, the number is still right
        warnings.simplefilter("ignore")
        recalls = recall_score(y_true, y_pred, labels=list(labels), average=None, zero_division=0)
        result = {
            "wa": float(accuracy_score(y_true, y_pred)),
            "uar": float(balanced_accuracy_score(y_true, y_pred)),
            "macro_f1": float(f1_score(y_true, y_pred, labels=list(labels), average="macro", zero_division=0)),
        }
    present = set(y_true.tolist())
    result.update({f"recall_{label}": float(r) for label, r in zip(labels, recalls) if label in present})
    return result


def uar(y_true, y_pred) -> float:
    """Unweighted average recall (balanced accuracy) without sklearn's warnings on tiny folds."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(balanced_accuracy_score(y_true, y_pred))


def _uar_rows(true, pred, n_classes: int):
    """UAR of each row of integer-coded (resamples x n) label arrays; a class absent from a
    resample is skipped, as sklearn does."""
    true, pred = np.atleast_2d(true), np.atleast_2d(pred)
    rows = np.arange(true.shape[0])[:, None]
    support = np.zeros((true.shape[0], n_classes))
    hits = np.zeros_like(support)
    np.add.at(support, (rows, true), 1.0)
    np.add.at(hits, (rows, true), (true == pred).astype(float))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nanmean(hits / support, axis=1)


def _codes(*arrays):
    """The label arrays as integer codes over their joint vocabulary, and its size."""
    arrays = [np.asarray(a) for a in arrays]
    classes, codes = np.unique(np.concatenate(arrays), return_inverse=True)
    return np.split(codes, np.cumsum([a.size for a in arrays])[:-1]), len(classes)


def uar_interval(y_true, y_pred, resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap 95% interval of UAR, resampling utterances.

    The statistic is computed for all resamples at once (``vectorized=True``) from integer label
    codes: the same resamples and the same values as ``balanced_accuracy_score`` per resample
    (tested), ~100x faster (the per-resample sklearn call was 4.7 s of a 20 s warm run).
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if len(np.unique(y_true)) < 2 or y_true.size < 5:
        return float("nan"), float("nan")
    (true_codes, pred_codes), n_classes = _codes(y_true, y_pred)

    def statistic(true, pred, axis=-1):
        return _uar_rows(true, pred, n_classes)

    result = bootstrap((true_codes, pred_codes), statistic, paired=True, vectorized=True, n_resamples=resamples,
                       batch=50,  # bounded memory (50 x n per array) on large corpora; same resamples (tested)
                       method="percentile", random_state=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def uar_difference_interval(y_true, y_pred_a, y_pred_b, resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Paired percentile bootstrap 95% interval of UAR(a) - UAR(b) on the same utterances: the
    same resamples score both systems, so two overlapping intervals can still be a clear difference
    (or not). An interval that excludes 0 is a difference at the 5% level."""
    y_true = np.asarray(y_true)
    if len(np.unique(y_true)) < 2 or y_true.size < 5:
        return float("nan"), float("nan")
    (true_codes, a_codes, b_codes), n_classes = _codes(y_true, y_pred_a, y_pred_b)

    def statistic(true, a, b, axis=-1):
        return _uar_rows(true, a, n_classes) - _uar_rows(true, b, n_classes)

    result = bootstrap((true_codes, a_codes, b_codes), statistic, paired=True, vectorized=True, n_resamples=resamples,
                       batch=50, method="percentile", random_state=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def confusion(y_true, y_pred, labels) -> np.ndarray:
    return confusion_matrix(y_true, y_pred, labels=list(labels))
