"""The bootstrap interval of UAR: the vectorised statistic equals sklearn's per resample."""

import warnings

import numpy as np
import pytest
from scipy.stats import bootstrap
from sklearn.metrics import balanced_accuracy_score

from benchmark.metrics import uar_interval


def sklearn_interval(y_true, y_pred, resamples=1000, seed=0):
    def statistic(true, pred):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return balanced_accuracy_score(true, pred)

    result = bootstrap((y_true, y_pred), statistic, paired=True, vectorized=False, n_resamples=resamples,
                       method="percentile", random_state=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


@pytest.mark.parametrize("n,k,accuracy", [(200, 7, 0.6), (30, 4, 0.5), (12, 3, 0.7), (40, 2, 0.95)])
def test_vectorised_interval_equals_sklearn_per_resample(n, k, accuracy):
    rng = np.random.default_rng(n + k)
    labels = np.array(["anger", "boredom", "disgust", "fear", "happiness", "neutral", "sadness"][:k])
    y_true = labels[rng.integers(0, k, n)]
    y_pred = np.where(rng.random(n) < accuracy, y_true, labels[rng.integers(0, k, n)])
    assert uar_interval(y_true, y_pred, resamples=300) == sklearn_interval(y_true, y_pred, resamples=300)


def test_interval_is_undefined_for_one_class_or_tiny_sets():
    assert all(np.isnan(uar_interval(np.array(["a"] * 10), np.array(["a"] * 10))))
    assert all(np.isnan(uar_interval(np.array(["a", "b", "a"]), np.array(["a", "b", "b"]))))


def sklearn_difference_interval(y_true, a, b, resamples=300, seed=0):
    def statistic(true, pred_a, pred_b):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return balanced_accuracy_score(true, pred_a) - balanced_accuracy_score(true, pred_b)

    result = bootstrap((y_true, a, b), statistic, paired=True, vectorized=False, n_resamples=resamples,
                       method="percentile", random_state=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


@pytest.mark.parametrize("n,k", [(200, 7), (30, 4)])
def test_paired_difference_interval_equals_sklearn_per_resample_and_sees_a_real_gain(n, k):
    from benchmark.metrics import uar_difference_interval

    rng = np.random.default_rng(n)
    labels = np.array(["anger", "boredom", "disgust", "fear", "happiness", "neutral", "sadness"][:k])
    y_true = labels[rng.integers(0, k, n)]
    noisy = lambda accuracy: np.where(rng.random(n) < accuracy, y_true, labels[rng.integers(0, k, n)])
    better, worse = noisy(0.9), noisy(0.5)
    interval = uar_difference_interval(y_true, better, worse, resamples=300)
    assert interval == pytest.approx(sklearn_difference_interval(y_true, better, worse))
    assert interval[0] > 0  # a 40-point gain on the same utterances is clear
    low, high = uar_difference_interval(y_true, better, better, resamples=300)
    assert low == high == 0.0  # a system against itself
