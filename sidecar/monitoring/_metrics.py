"""Performance metrics on one window, per-example losses, bootstrap intervals, outlier influence.

Every metric is registered in :data:`METRICS` with one calling convention,
``function(y_true, y_pred, proba, classes) -> float``:

- classification: ``y_true``/``y_pred`` are labels; ``proba`` is ``(n, k)``
  with columns in the order of ``classes`` (or ``(n,)``, the probability of
  ``classes[1]``, for two classes); label metrics take ``argmax(proba)`` when
  ``y_pred`` is None; ``classes`` defaults to the sorted labels seen;
- regression: ``y_true``/``y_pred`` are numbers; ``proba``/``classes`` are ignored.

Metrics that are the mean of a per-example loss (:data:`LOSSES`) power the
paired tests of :mod:`sidecar.monitoring._stats` through :func:`per_example_loss`.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> y = rng.normal(size=500)
>>> y_hat = y + rng.normal(scale=0.5, size=500)
>>> m = metric_with_ci("mae", y, y_hat, seed=0)
>>> round(m.value, 3), m.ci_low < m.value < m.ci_high
(0.373, True)
>>> errors = y - y_hat
>>> errors[7] = 25.0  # one broken label
>>> round(outlier_influence(errors, metric="mse").relative_change, 2)
0.85
>>> round(outlier_influence(errors, metric="median_absolute_error").relative_change, 3)
0.003
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
from scipy import special

from .._errors import short_repr
from ._metric_data import FloatArray, _prepare_classification, _prepare_regression
from ._metric_intervals import metric_with_ci, metrics_with_ci
from ._metric_registry import (
    _CORES,
    LOSSES,
    METRICS,
    MetricSpec,
    _accuracy,
    _balanced_accuracy,
    _brier_values,
    _defined,
    _f1,
    _huber_values,
    _log_loss_values,
    _median_absolute,
    _pinball_values,
    _rmse,
    _roc_auc,
    _trimmed,
    _trimmed_mse,
    per_example_loss,
)
from ._results import OutlierInfluence
from ._stat_tools import _probability, _problem, _vector

__all__ = [
    "LOSSES",
    "METRICS",
    "MetricSpec",
    "accuracy",
    "balanced_accuracy",
    "brier",
    "f1",
    "huber",
    "log_loss",
    "mae",
    "median_absolute_error",
    "metric_with_ci",
    "metrics_with_ci",
    "mse",
    "outlier_influence",
    "per_example_loss",
    "pinball",
    "rmse",
    "roc_auc",
    "trimmed_mse",
]

# --------------------------------------------------------------------------- public metrics


def accuracy(
    y_true: npt.ArrayLike,
    y_pred: npt.ArrayLike | None = None,
    proba: npt.ArrayLike | None = None,
    classes: npt.ArrayLike | None = None,
) -> float:
    """Share of correct labels (``y_pred``, or ``argmax(proba)`` when it is None)."""
    return _accuracy(_prepare_classification(y_true, y_pred, proba, classes, need_proba=False))


def balanced_accuracy(
    y_true: npt.ArrayLike,
    y_pred: npt.ArrayLike | None = None,
    proba: npt.ArrayLike | None = None,
    classes: npt.ArrayLike | None = None,
) -> float:
    """Mean recall over the classes present in ``y_true`` (as scikit-learn)."""
    d = _prepare_classification(y_true, y_pred, proba, classes, need_proba=False)
    return _balanced_accuracy(d)


def f1(
    y_true: npt.ArrayLike,
    y_pred: npt.ArrayLike | None = None,
    proba: npt.ArrayLike | None = None,
    classes: npt.ArrayLike | None = None,
) -> float:
    """F1 score: of the positive class ``classes[1]`` for two classes, else macro-averaged.

    The macro average runs over the labels present in ``y_true`` or ``y_pred``;
    a class never predicted and never true scores 0 (scikit-learn's
    ``zero_division=0``).
    """
    return _f1(_prepare_classification(y_true, y_pred, proba, classes, need_proba=False))


def log_loss(
    y_true: npt.ArrayLike,
    y_pred: npt.ArrayLike | None = None,
    proba: npt.ArrayLike | None = None,
    classes: npt.ArrayLike | None = None,
) -> float:
    """Mean negative log-probability of the true class (natural log).

    Probabilities are clipped to ``[eps, 1 - eps]`` with ``eps`` the machine
    epsilon of ``proba``'s dtype, as scikit-learn does. ``y_pred`` is unused.
    """
    d = _prepare_classification(y_true, y_pred, proba, classes, need_proba=True)
    return float(np.mean(_log_loss_values(d)))


def brier(
    y_true: npt.ArrayLike,
    y_pred: npt.ArrayLike | None = None,
    proba: npt.ArrayLike | None = None,
    classes: npt.ArrayLike | None = None,
) -> float:
    """Brier score: mean over rows of ``sum_k (proba_k - onehot_k)^2``, halved for two classes.

    Two classes: ``mean((p_positive - y)^2)`` in [0, 1], equal to
    ``sklearn.metrics.brier_score_loss``; more classes: the unhalved
    multiclass score in [0, 2] (scikit-learn's ``scale_by_half="auto"``).
    """
    d = _prepare_classification(y_true, y_pred, proba, classes, need_proba=True)
    return float(np.mean(_brier_values(d)))


def roc_auc(
    y_true: npt.ArrayLike,
    y_pred: npt.ArrayLike | None = None,
    proba: npt.ArrayLike | None = None,
    classes: npt.ArrayLike | None = None,
) -> float:
    """Area under the ROC curve of ``proba``: binary, or one-vs-rest macro average.

    The binary AUC is the Mann-Whitney probability that a positive outranks a
    negative (ties count half). For more classes, the mean of the one-vs-rest
    AUCs over the classes present in ``y_true`` (when all are present, this is
    ``sklearn.metrics.roc_auc_score(multi_class="ovr", average="macro")``).
    """
    d = _prepare_classification(y_true, y_pred, proba, classes, need_proba=True)
    return _defined("roc_auc", _roc_auc(d), d)


def mse(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Mean squared error."""
    return _CORES["mse"](_prepare_regression(y_true, y_pred))


def rmse(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Root mean squared error."""
    return _rmse(_prepare_regression(y_true, y_pred))


def mae(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Mean absolute error."""
    return _CORES["mae"](_prepare_regression(y_true, y_pred))


def median_absolute_error(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Median absolute error: barely moved by a few huge errors."""
    return _median_absolute(_prepare_regression(y_true, y_pred))


def trimmed_mse(y_true: npt.ArrayLike, y_pred: npt.ArrayLike, *, trim: float = 0.01) -> float:
    """MSE without the largest ``floor(trim * n)`` squared errors (none below ``1 / trim`` rows)."""
    if not (isinstance(trim, int | float) and 0.0 <= trim < 1.0):
        raise _problem("trim", "a float in [0, 1)", short_repr(trim))
    return _trimmed_mse(_prepare_regression(y_true, y_pred), float(trim))


def huber(y_true: npt.ArrayLike, y_pred: npt.ArrayLike, *, delta: float = 1.0) -> float:
    """Mean Huber loss: ``r^2 / 2`` for ``|r| <= delta``, else ``delta (|r| - delta / 2)``."""
    if not (isinstance(delta, int | float) and math.isfinite(delta) and delta > 0):
        raise _problem("delta", "a finite float > 0", short_repr(delta))
    return float(np.mean(_huber_values(_prepare_regression(y_true, y_pred), float(delta))))


def pinball(y_true: npt.ArrayLike, y_pred: npt.ArrayLike, *, quantile: float = 0.5) -> float:
    """Mean pinball (quantile) loss: ``max(q r, (q - 1) r)`` with ``r = y_true - y_pred``."""
    q = _probability(quantile, "quantile")
    return float(np.mean(_pinball_values(_prepare_regression(y_true, y_pred), q)))


# --------------------------------------------------------------------------- outlier influence


_ERROR_METRICS: dict[str, Callable[[FloatArray], float]] = {
    "mse": lambda e: float(np.mean(e**2)),
    "rmse": lambda e: math.sqrt(float(np.mean(e**2))),
    "mae": lambda e: float(np.mean(np.abs(e))),
    "median_absolute_error": lambda e: float(np.median(np.abs(e))),
    "trimmed_mse": lambda e: _trimmed(e**2, 0.01),
    "huber": lambda e: float(np.mean(special.huber(1.0, e))),
    "mean": lambda e: float(np.mean(e)),
}


def outlier_influence(
    errors: npt.ArrayLike, *, metric: str = "mse", k: int = 1
) -> OutlierInfluence:
    """How much the ``k`` largest errors (by absolute value) move a metric.

    Parameters
    ----------
    errors
        Per-example residuals ``y_true - y_pred`` (or, with ``metric="mean"``,
        non-negative per-example losses such as :func:`per_example_loss`).
    metric
        ``mse``, ``rmse``, ``mae``, ``median_absolute_error``, ``trimmed_mse``,
        ``huber`` (default parameters) or ``mean``.
    k
        How many of the largest errors to leave out; at most ``n - 1``.

    Returns
    -------
    OutlierInfluence
        ``relative_change = (value - value_without_top_k) / value``: the share
        of the metric the ``k`` largest errors account for (0 when the metric is 0).
    """
    fn = _ERROR_METRICS.get(metric)
    if fn is None:
        raise _problem("metric", f"one of {sorted(_ERROR_METRICS)}", repr(metric))
    e = _vector(errors, "errors", min_size=2)
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k <= e.size - 1:
        raise _problem("k", f"an integer in [1, {e.size - 1}] (n - 1)", short_repr(k))
    top = np.argsort(-np.abs(e), kind="stable")[: int(k)]
    value = fn(e)
    without = fn(np.delete(e, top))
    change = (value - without) / value if value != 0 else 0.0
    return OutlierInfluence(
        metric=metric,
        value=value,
        value_without_top_k=without,
        k=int(k),
        relative_change=change,
        top_indices=tuple(int(i) for i in top),
        top_errors=tuple(float(x) for x in e[top]),
    )
