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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import special, stats

from .._errors import short_repr
from ._results import MetricValue, OutlierInfluence
from ._stats import (
    _CHUNK_ELEMENTS,
    _bootstrap_means,
    _count,
    _paired,
    _percentile_ci,
    _probability,
    _problem,
    _vector,
)

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

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
Task = Literal["classification", "regression"]
MetricFunction = Callable[
    [npt.ArrayLike, npt.ArrayLike | None, npt.ArrayLike | None, npt.ArrayLike | None], float
]

#: Tolerance on ``sum(proba, axis=1) == 1`` (float32 softmax outputs pass).
_PROBA_SUM_TOL = 1e-4


# --------------------------------------------------------------------------- prepared data


@dataclass(frozen=True)
class _Data:
    """Validated arrays: class indices and ``(n, k)`` probabilities, or float targets."""

    y: npt.NDArray[np.generic]
    pred: npt.NDArray[np.generic] | None
    proba: FloatArray | None = None
    k: int = 0
    eps: float = float(np.finfo(np.float64).eps)
    labels: npt.NDArray[np.generic] | None = None

    @property
    def n(self) -> int:
        return int(self.y.size)


def _labels(values: npt.ArrayLike, name: str) -> npt.NDArray[np.generic]:
    arr = np.asarray(values)
    if arr.ndim != 1 or arr.size == 0:
        got = f"an array of shape {arr.shape}" if arr.ndim != 1 else "an empty array"
        raise _problem(name, "a non-empty 1-D array of class labels", got)
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        i = int(np.argmin(np.isfinite(arr)))
        raise _problem(name, "a non-empty 1-D array of class labels", f"{arr[i]} at index {i}")
    return arr


def _encode(
    values: npt.NDArray[np.generic], classes: npt.NDArray[np.generic], name: str
) -> IntArray:
    """Positions of ``values`` in ``classes``; every value must be one of the classes."""
    order = np.argsort(classes, kind="stable")
    ordered = classes[order]
    try:
        pos = np.clip(np.searchsorted(ordered, values), 0, ordered.size - 1)
        ok = np.asarray(ordered[pos] == values, dtype=bool)
    except (TypeError, ValueError):
        ok = np.zeros(values.shape, dtype=bool)
        pos = np.zeros(values.shape, dtype=np.intp)
    if not ok.all():
        i = int(np.argmin(ok))
        shown = short_repr(classes.tolist())
        bad = values[i]
        bad = bad.item() if isinstance(bad, np.generic) else bad
        raise _problem(name, f"labels among `classes` {shown}", f"{bad!r} at index {i}")
    return np.asarray(order[pos], dtype=np.intp)


def _prepare_classification(
    y_true: npt.ArrayLike,
    y_pred: npt.ArrayLike | None,
    proba: npt.ArrayLike | None,
    classes: npt.ArrayLike | None,
    *,
    need_proba: bool,
) -> _Data:
    y = _labels(y_true, "y_true")
    pred_labels = None if y_pred is None else _labels(y_pred, "y_pred")
    if pred_labels is not None and pred_labels.size != y.size:
        raise _problem("y_pred", f"one label per row of `y_true` ({y.size})", str(pred_labels.size))
    if classes is not None:
        labels = np.asarray(classes)
        if labels.ndim != 1 or labels.size < 2 or np.unique(labels).size != labels.size:
            raise _problem("classes", "at least 2 distinct class labels", short_repr(classes))
    else:
        seen = y if pred_labels is None else np.concatenate([y, pred_labels])
        labels = np.unique(seen)
    p: FloatArray | None = None
    eps = float(np.finfo(np.float64).eps)
    if proba is not None:
        raw = np.asarray(proba)
        if raw.dtype.kind not in "fiub":
            raise _problem("proba", "an (n, k) array of probabilities", f"dtype {raw.dtype}")
        if raw.dtype == np.float32:
            eps = float(np.finfo(np.float32).eps)
        p = np.asarray(raw, dtype=np.float64)
        if p.ndim == 1:
            if labels.size != 2:
                raise _problem(
                    "classes",
                    "2 labels when `proba` is 1-D (the probability of classes[1])",
                    short_repr(labels.tolist()),
                )
            p = np.column_stack([1.0 - p, p])
        expected = f"an array of shape ({y.size}, {labels.size}), one column per class"
        if p.ndim != 2 or p.shape[0] != y.size:
            raise _problem("proba", expected, f"shape {np.shape(raw)}")
        if p.shape[1] != labels.size:
            raise _problem(
                "classes",
                f"one label per column of `proba` ({p.shape[1]})",
                short_repr(labels.tolist()),
            )
        bad = ~np.isfinite(p) | (p < 0) | (p > 1)
        if bad.any():
            row = int(np.argmax(bad.any(axis=1)))
            raise _problem("proba", "probabilities in [0, 1]", f"{raw[row]!r} in row {row}")
        off = np.abs(p.sum(axis=1) - 1.0) > _PROBA_SUM_TOL
        if off.any():
            row = int(np.argmax(off))
            raise _problem("proba", "rows that sum to 1", f"{raw[row]!r} in row {row}")
    elif need_proba:
        raise _problem("proba", "predicted class probabilities for this metric", "None")
    y_idx = _encode(y, labels, "y_true")
    if pred_labels is not None:
        pred: IntArray | None = _encode(pred_labels, labels, "y_pred")
    elif p is not None:
        pred = np.asarray(np.argmax(p, axis=1), dtype=np.intp)
    else:
        pred = None
    return _Data(y=y_idx, pred=pred, proba=p, k=int(labels.size), eps=eps, labels=labels)


def _prepare_regression(y_true: npt.ArrayLike, y_pred: npt.ArrayLike | None) -> _Data:
    if y_pred is None:
        raise _problem("y_pred", "a 1-D array of predictions", "None")
    y, pred = _paired(y_true, y_pred, ("y_true", "y_pred"))
    return _Data(y=y, pred=pred)


# --------------------------------------------------------------------------- per-example losses


def _pred(d: _Data) -> IntArray:
    if d.pred is None:
        raise _problem("y_pred", "predicted labels (or `proba`) for this metric", "None")
    return np.asarray(d.pred, dtype=np.intp)


def _proba(d: _Data) -> FloatArray:
    if d.proba is None:  # pragma: no cover - _prepare_classification checks first
        raise _problem("proba", "predicted class probabilities for this metric", "None")
    return d.proba


def _residuals(d: _Data) -> FloatArray:
    assert d.pred is not None
    return np.asarray(d.y, dtype=np.float64) - np.asarray(d.pred, dtype=np.float64)


def _zero_one_loss(d: _Data) -> FloatArray:
    return np.asarray(_pred(d) != d.y, dtype=np.float64)


def _log_loss_values(d: _Data) -> FloatArray:
    p = np.clip(_proba(d), d.eps, 1.0 - d.eps)
    return -np.log(p[np.arange(d.n), np.asarray(d.y, dtype=np.intp)])


def _brier_values(d: _Data) -> FloatArray:
    p = _proba(d)
    onehot = np.zeros_like(p)
    onehot[np.arange(d.n), np.asarray(d.y, dtype=np.intp)] = 1.0
    values = np.asarray(((p - onehot) ** 2).sum(axis=1), dtype=np.float64)
    return values / 2.0 if d.k == 2 else values


def _squared(d: _Data) -> FloatArray:
    return _residuals(d) ** 2


def _absolute(d: _Data) -> FloatArray:
    return np.abs(_residuals(d))


def _huber_values(d: _Data, delta: float = 1.0) -> FloatArray:
    return np.asarray(special.huber(delta, _residuals(d)), dtype=np.float64)


def _pinball_values(d: _Data, quantile: float = 0.5) -> FloatArray:
    r = _residuals(d)
    return np.maximum(quantile * r, (quantile - 1.0) * r)


#: Per-example losses by name; the metric of the same name is their mean
#: (``zero_one`` is the loss behind accuracy, whose value is ``1 - mean``).
_LOSS_FUNCTIONS: dict[str, tuple[Task, bool, Callable[[_Data], FloatArray]]] = {
    "zero_one": ("classification", False, _zero_one_loss),
    "log_loss": ("classification", True, _log_loss_values),
    "brier": ("classification", True, _brier_values),
    "mse": ("regression", False, _squared),
    "mae": ("regression", False, _absolute),
    "huber": ("regression", False, _huber_values),
    "pinball": ("regression", False, _pinball_values),
}
LOSSES: tuple[str, ...] = tuple(_LOSS_FUNCTIONS)
#: metric -> (per-example loss, map from the mean loss to the metric)
_FROM_LOSS: dict[str, tuple[str, Callable[[FloatArray], FloatArray]]] = {
    "accuracy": ("zero_one", lambda m: 1.0 - m),
    "log_loss": ("log_loss", lambda m: m),
    "brier": ("brier", lambda m: m),
    "mse": ("mse", lambda m: m),
    "rmse": ("mse", np.sqrt),
    "mae": ("mae", lambda m: m),
    "huber": ("huber", lambda m: m),
    "pinball": ("pinball", lambda m: m),
}


# --------------------------------------------------------------------------- metric cores


def _accuracy(d: _Data) -> float:
    return float(np.mean(_pred(d) == d.y))


def _balanced_accuracy(d: _Data) -> float:
    y = np.asarray(d.y, dtype=np.intp)
    pred = _pred(d)
    support = np.bincount(y, minlength=d.k)
    hits = np.bincount(y[pred == y], minlength=d.k)
    present = support > 0
    return float(np.mean(hits[present] / support[present]))


def _f1(d: _Data) -> float:
    y = np.asarray(d.y, dtype=np.intp)
    pred = _pred(d)
    tp = np.bincount(y[pred == y], minlength=d.k).astype(np.float64)
    denom = np.bincount(y, minlength=d.k) + np.bincount(pred, minlength=d.k)
    scores = np.divide(2 * tp, denom, out=np.zeros(d.k), where=denom > 0)
    if d.k == 2:
        return float(scores[1])
    return float(np.mean(scores[denom > 0]))


def _auc(positive: npt.NDArray[np.bool_], score: FloatArray) -> float:
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    # P(a positive outscores a negative) + half the chance of a tie: each sorted
    # positive's count of lower and of equal negatives, by binary search in the
    # sorted negatives (integer counts; two sorts of the halves, not a ranking).
    neg = np.sort(score[~positive])
    pos = np.sort(score[positive])
    below = np.searchsorted(neg, pos, "left")
    at_or_below = np.searchsorted(neg, pos, "right")
    area = 2 * int(below.sum()) + int((at_or_below - below).sum())  # twice the area, exactly
    return area / (2 * n_pos * n_neg)


def _roc_auc(d: _Data) -> float:
    p = _proba(d)
    y = np.asarray(d.y, dtype=np.intp)
    if d.k == 2:
        return _auc(y == 1, p[:, 1])
    scores = [_auc(y == c, p[:, c]) for c in range(d.k)]
    defined = [s for s in scores if not math.isnan(s)]
    return float(np.mean(defined)) if defined else math.nan


def _mean_of(loss: Callable[[_Data], FloatArray]) -> Callable[[_Data], float]:
    return lambda d: float(np.mean(loss(d)))


def _rmse(d: _Data) -> float:
    return math.sqrt(float(np.mean(_squared(d))))


def _median_absolute(d: _Data) -> float:
    return float(np.median(_absolute(d)))


def _trimmed(squared: FloatArray, trim: float) -> float:
    drop = math.floor(trim * squared.size)
    if drop == 0:
        return float(squared.mean())
    keep = squared.size - drop
    return float(np.partition(squared, keep - 1)[:keep].mean())


def _trimmed_mse(d: _Data, trim: float = 0.01) -> float:
    return _trimmed(_squared(d), trim)


_CORES: dict[str, Callable[[_Data], float]] = {
    "accuracy": _accuracy,
    "balanced_accuracy": _balanced_accuracy,
    "f1": _f1,
    "log_loss": _mean_of(_log_loss_values),
    "brier": _mean_of(_brier_values),
    "roc_auc": _roc_auc,
    "mse": _mean_of(_squared),
    "rmse": _rmse,
    "mae": _mean_of(_absolute),
    "median_absolute_error": _median_absolute,
    "trimmed_mse": _trimmed_mse,
    "huber": _mean_of(_huber_values),
    "pinball": _mean_of(_pinball_values),
}


def _defined(name: str, value: float, d: _Data) -> float:
    if math.isnan(value):  # only ROC AUC can be undefined
        assert d.labels is not None
        seen = short_repr(d.labels[np.unique(np.asarray(d.y, dtype=np.intp))].tolist())
        raise _problem("y_true", f"labels of at least 2 classes for {name}", f"only {seen}")
    return value


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


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class MetricSpec:
    """A registered metric.

    ``function(y_true, y_pred, proba, classes)`` computes it (regression
    metrics ignore ``proba`` and ``classes``; they use the default ``trim``,
    ``delta`` and ``quantile``). ``loss`` names the per-example loss whose
    mean it is (``"zero_one"`` for accuracy, which is ``1 - mean``), or None.
    """

    name: str
    task: Task
    higher_is_better: bool
    function: MetricFunction
    needs_proba: bool = False
    loss: str | None = None


def _classification(name: str) -> MetricFunction:
    core = _CORES[name]
    need = name in ("log_loss", "brier", "roc_auc")

    def function(
        y_true: npt.ArrayLike,
        y_pred: npt.ArrayLike | None = None,
        proba: npt.ArrayLike | None = None,
        classes: npt.ArrayLike | None = None,
    ) -> float:
        d = _prepare_classification(y_true, y_pred, proba, classes, need_proba=need)
        return _defined(name, core(d), d)

    function.__name__ = name
    return function


def _regression(name: str) -> MetricFunction:
    core = _CORES[name]

    def function(
        y_true: npt.ArrayLike,
        y_pred: npt.ArrayLike | None = None,
        proba: npt.ArrayLike | None = None,
        classes: npt.ArrayLike | None = None,
    ) -> float:
        return core(_prepare_regression(y_true, y_pred))

    function.__name__ = name
    return function


def _spec(name: str, task: Task, higher_is_better: bool) -> MetricSpec:
    make = _classification if task == "classification" else _regression
    loss = _FROM_LOSS[name][0] if name in _FROM_LOSS and name != "rmse" else None
    return MetricSpec(
        name=name,
        task=task,
        higher_is_better=higher_is_better,
        function=make(name),
        needs_proba=name in ("log_loss", "brier", "roc_auc"),
        loss=loss,
    )


METRICS: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        _spec("accuracy", "classification", True),
        _spec("balanced_accuracy", "classification", True),
        _spec("f1", "classification", True),
        _spec("log_loss", "classification", False),
        _spec("brier", "classification", False),
        _spec("roc_auc", "classification", True),
        _spec("mse", "regression", False),
        _spec("rmse", "regression", False),
        _spec("mae", "regression", False),
        _spec("median_absolute_error", "regression", False),
        _spec("trimmed_mse", "regression", False),
        _spec("huber", "regression", False),
        _spec("pinball", "regression", False),
    )
}


def _metric_spec(name: str) -> MetricSpec:
    spec = METRICS.get(name)
    if spec is None:
        raise _problem("name", f"one of {sorted(METRICS)}", repr(name))
    return spec


def _prepare(
    spec: MetricSpec,
    y_true: npt.ArrayLike,
    y_pred: npt.ArrayLike | None,
    proba: npt.ArrayLike | None,
    classes: npt.ArrayLike | None,
) -> _Data:
    if spec.task == "classification":
        return _prepare_classification(y_true, y_pred, proba, classes, need_proba=spec.needs_proba)
    return _prepare_regression(y_true, y_pred)


def per_example_loss(
    name: str,
    y_true: npt.ArrayLike,
    y_pred: npt.ArrayLike | None = None,
    proba: npt.ArrayLike | None = None,
    classes: npt.ArrayLike | None = None,
) -> FloatArray:
    """Per-example losses whose mean is the metric ``name``; the input of the paired tests.

    ``name`` is a loss in :data:`LOSSES` (``zero_one``, ``log_loss``,
    ``brier``, ``mse``, ``mae``, ``huber``, ``pinball``) or a metric that is
    the mean of one (``accuracy`` gives the 0/1 error, so its mean is
    ``1 - accuracy``). Every loss is "lower is better".

    >>> per_example_loss("accuracy", ["a", "b", "b"], ["a", "a", "b"]).tolist()
    [0.0, 1.0, 0.0]
    """
    key = _FROM_LOSS[name][0] if name in _FROM_LOSS and name != "rmse" else name
    entry = _LOSS_FUNCTIONS.get(key)
    if entry is None:
        with_loss = sorted({*LOSSES, *(m for m, s in METRICS.items() if s.loss)})
        raise _problem("name", f"a loss or a mean-of-loss metric, one of {with_loss}", repr(name))
    task, need, loss = entry
    if task == "classification":
        d = _prepare_classification(y_true, y_pred, proba, classes, need_proba=need)
    else:
        d = _prepare_regression(y_true, y_pred)
    return loss(d)


# --------------------------------------------------------------------------- bootstrap by rows
# The metrics that are not means of a loss, computed on a whole (rows, n) matrix of
# resampled row indices at once: weighted confusion matrices, histograms over tied
# scores, order statistics along axis 1.


def _row_histograms(keys: IntArray, size: int) -> npt.NDArray[np.int64]:
    """Histogram of each row of ``keys`` (values in ``[0, size)``): shape ``(rows, size)``."""
    rows = keys.shape[0]
    flat = keys + (np.arange(rows) * size)[:, None]
    return np.bincount(flat.ravel(), minlength=rows * size).reshape(rows, size)


def _confusion_r(d: _Data, idx: IntArray) -> FloatArray:
    """Confusion matrices of the resamples, ``(rows, k_true, k_pred)``."""
    cells = np.asarray(d.y, dtype=np.intp) * d.k + _pred(d)
    conf = _row_histograms(cells[idx], d.k * d.k).reshape(-1, d.k, d.k)
    return np.asarray(conf, dtype=np.float64)


def _balanced_accuracy_r(d: _Data, idx: IntArray) -> FloatArray:
    conf = _confusion_r(d, idx)
    support = conf.sum(axis=2)
    present = support > 0
    hits = np.diagonal(conf, axis1=1, axis2=2)
    recall = np.divide(hits, support, out=np.zeros_like(support), where=present)
    return np.asarray(recall.sum(axis=1) / present.sum(axis=1), dtype=np.float64)


def _f1_r(d: _Data, idx: IntArray) -> FloatArray:
    conf = _confusion_r(d, idx)
    tp = np.diagonal(conf, axis1=1, axis2=2)
    denom = conf.sum(axis=2) + conf.sum(axis=1)
    scores = np.divide(2 * tp, denom, out=np.zeros_like(denom), where=denom > 0)
    if d.k == 2:
        return np.asarray(scores[:, 1], dtype=np.float64)
    return np.asarray(scores.sum(axis=1) / (denom > 0).sum(axis=1), dtype=np.float64)


def _auc_r(positive: npt.NDArray[np.bool_], score: FloatArray, idx: IntArray) -> FloatArray:
    order = np.argsort(score, kind="stable")
    ordered = score[order]
    group = np.empty(score.size, dtype=np.intp)  # rank of each row's (tied) score
    group[order] = np.cumsum(np.r_[0, ordered[1:] != ordered[:-1]])
    n_groups = int(group.max()) + 1
    hist = _row_histograms((group + n_groups * positive)[idx], 2 * n_groups)
    neg, pos = hist[:, :n_groups], hist[:, n_groups:]
    below = np.cumsum(neg, axis=1) - neg  # negatives with a lower score
    area = (pos * below).sum(axis=1) + 0.5 * (pos * neg).sum(axis=1)
    denom = (pos.sum(axis=1) * neg.sum(axis=1)).astype(np.float64)
    auc = np.divide(area, denom, out=np.full(area.shape, np.nan), where=denom > 0)
    return np.asarray(auc, dtype=np.float64)


def _roc_auc_r(d: _Data, idx: IntArray) -> FloatArray:
    p = _proba(d)
    y = np.asarray(d.y, dtype=np.intp)
    if d.k == 2:
        return _auc_r(y == 1, p[:, 1], idx)
    per_class = np.stack([_auc_r(y == c, p[:, c], idx) for c in range(d.k)], axis=1)
    defined = ~np.isnan(per_class)
    total = np.where(defined, per_class, 0.0).sum(axis=1)
    m = defined.sum(axis=1)
    mean = np.divide(total, m, out=np.full(total.shape, np.nan), where=m > 0)
    return np.asarray(mean, dtype=np.float64)


def _median_absolute_r(d: _Data, idx: IntArray) -> FloatArray:
    half = d.n // 2  # the middle value, or the upper of the middle two
    part = np.partition(_absolute(d)[idx], half, axis=1)
    upper = part[:, half]
    lower = upper if d.n % 2 else part[:, :half].max(axis=1)
    return np.asarray((lower + upper) / 2.0, dtype=np.float64)


def _trimmed_mse_r(d: _Data, idx: IntArray, trim: float = 0.01) -> FloatArray:
    sq = _squared(d)[idx]
    keep = d.n - math.floor(trim * d.n)
    if keep < d.n:
        sq = np.partition(sq, keep - 1, axis=1)[:, :keep]
    return np.asarray(sq.mean(axis=1), dtype=np.float64)


_ON_RESAMPLES: dict[str, Callable[[_Data, IntArray], FloatArray]] = {
    "balanced_accuracy": _balanced_accuracy_r,
    "f1": _f1_r,
    "roc_auc": _roc_auc_r,
    "median_absolute_error": _median_absolute_r,
    "trimmed_mse": _trimmed_mse_r,
}


def _bootstrap_metric(
    name: str,
    d: _Data,
    n_boot: int,
    rng: np.random.Generator,
    chunks: Iterable[IntArray] | None = None,
) -> FloatArray:
    """``n_boot`` resampled values of metric ``name``; ``chunks`` (the index
    matrices :func:`_index_chunks` draws) lets several metrics share one draw."""
    if name in _FROM_LOSS:
        loss_name, transform = _FROM_LOSS[name]
        return transform(_bootstrap_means(_LOSS_FUNCTIONS[loss_name][2](d), n_boot, rng))
    on_resamples = _ON_RESAMPLES[name]
    if chunks is None:
        chunks = _index_chunks(d.n, n_boot, rng)
    return np.concatenate([on_resamples(d, idx) for idx in chunks])


def _index_chunks(n: int, n_boot: int, rng: np.random.Generator) -> Iterator[IntArray]:
    """``n_boot`` resamples of ``n`` row indices, drawn as ``(rows, n)`` chunks of bounded size."""
    rows = max(1, min(n_boot, _CHUNK_ELEMENTS // 4 // n))
    for start in range(0, n_boot, rows):
        yield rng.integers(0, n, size=(min(n_boot, start + rows) - start, n))


def metric_with_ci(
    name: str,
    y_true: npt.ArrayLike,
    y_pred: npt.ArrayLike | None = None,
    proba: npt.ArrayLike | None = None,
    classes: npt.ArrayLike | None = None,
    *,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> MetricValue:
    """The metric ``name`` on one window with a percentile bootstrap interval.

    Resamples are drawn as ``(rows, n)`` index matrices in chunks of bounded
    memory. Mean-of-loss metrics (and RMSE, the root of one) average the
    resampled loss vector; the others are computed for a whole chunk of
    resamples at once (per-resample confusion matrices, histograms over tied
    scores, order statistics along rows), so no metric loops over resamples. Resamples
    on which a metric is undefined (ROC AUC with one class) are left out.
    """
    spec = _metric_spec(name)
    n_boot = _count(n_boot, "n_boot", minimum=1)
    confidence = _probability(confidence, "confidence")
    d = _prepare(spec, y_true, y_pred, proba, classes)
    value = _defined(name, _CORES[name](d), d)
    boot = _bootstrap_metric(name, d, n_boot, np.random.default_rng(seed))
    lo, hi = _interval(boot, confidence)
    return MetricValue(
        name=name,
        value=value,
        ci_low=lo,
        ci_high=hi,
        n=d.n,
        higher_is_better=spec.higher_is_better,
    )


#: Resamples of the subsample that stands in for a window past ``max_bootstrap_n``.
_SUBSAMPLE_BOOT = 200


def metrics_with_ci(
    names: Sequence[str],
    y_true: npt.ArrayLike,
    y_pred: npt.ArrayLike | None = None,
    proba: npt.ArrayLike | None = None,
    classes: npt.ArrayLike | None = None,
    *,
    n_boot: int | Mapping[str, int] = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    max_bootstrap_n: int = 50_000,
    subsample_n: int = 20_000,
) -> dict[str, MetricValue]:
    """Several metrics of one window, each with a confidence interval, from one validation pass.

    Up to ``max_bootstrap_n`` rows each interval is :func:`metric_with_ci`'s
    percentile bootstrap (``n_boot`` resamples, or ``n_boot[name]``), the
    same numbers as calling it per metric. Beyond, where a window of a
    million rows would make a bootstrap cost seconds:

    - a metric that is the mean of a per-example loss (accuracy, log loss,
      Brier, MSE, ...) gets the normal interval ``mean +- z * sd / sqrt(n)``,
      mapped through the metric (``1 - mean`` for accuracy, the root for
      RMSE): at this size the central limit theorem's error is far below
      a bootstrap's Monte-Carlo error;
    - the others (balanced accuracy, F1, ROC AUC, median and trimmed
      errors) are bootstrapped (200 resamples) on one seeded subsample of
      ``subsample_n`` rows, and the interval's half-widths around the
      subsample's value are narrowed by ``sqrt(subsample_n / n)`` around the
      whole window's value (an interval's width scales as ``1 / sqrt(n)``).

    Every value is computed on all rows. Metrics that are undefined here --
    ROC AUC with one class present, a probability metric without ``proba``
    -- are left out of the result; invalid input raises ``InputError``.

    >>> values = metrics_with_ci(["accuracy", "f1"], [0, 1, 1, 0, 1] * 40, [0, 1, 0, 0, 1] * 40)
    >>> {name: round(v.value, 3) for name, v in values.items()}
    {'accuracy': 0.8, 'f1': 0.8}
    """
    specs = {name: _metric_spec(name) for name in names}
    tasks = {spec.task for spec in specs.values()}
    if len(tasks) > 1:
        raise _problem("names", "metrics of one task", short_repr(list(names)))
    confidence = _probability(confidence, "confidence")
    boots = {
        name: _count(n_boot[name] if isinstance(n_boot, Mapping) else n_boot, "n_boot", minimum=1)
        for name in specs
    }
    if not specs:
        return {}
    if tasks == {"classification"}:
        d = _prepare_classification(y_true, y_pred, proba, classes, need_proba=False)
    else:
        d = _prepare_regression(y_true, y_pred)
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    sub: _Data | None = None
    drawn: dict[int, list[IntArray]] = {}  # the subsample's resamples, shared by its metrics
    out: dict[str, MetricValue] = {}
    for name, spec in specs.items():
        if spec.needs_proba and d.proba is None:
            continue
        try:
            value = _defined(name, _CORES[name](d), d)
        except ValueError:  # undefined on this window, e.g. ROC AUC with one class
            continue
        if d.n <= max_bootstrap_n:
            boot = _bootstrap_metric(name, d, boots[name], np.random.default_rng(seed))
            lo, hi = _interval(boot, confidence)
        elif name in _FROM_LOSS:
            loss_name, transform = _FROM_LOSS[name]
            losses = _LOSS_FUNCTIONS[loss_name][2](d)
            mean, half = float(losses.mean()), z * float(losses.std(ddof=1)) / math.sqrt(d.n)
            ends = transform(np.array([max(mean - half, 0.0), mean + half]))
            lo, hi = float(ends.min()), float(ends.max())
        else:
            if sub is None:
                m = min(subsample_n, d.n)
                sub = _subset(d, np.random.default_rng(seed).choice(d.n, size=m, replace=False))
            k = min(boots[name], _SUBSAMPLE_BOOT)
            if k not in drawn:
                drawn[k] = list(_index_chunks(sub.n, k, np.random.default_rng(seed)))
            boot = _bootstrap_metric(name, sub, k, np.random.default_rng(seed), drawn[k])
            b_lo, b_hi = _interval(boot, confidence)
            at = _CORES[name](sub)  # NaN where undefined on the subsample: so is the interval
            shrink = math.sqrt(sub.n / d.n)
            lo, hi = value - (at - b_lo) * shrink, value + (b_hi - at) * shrink
        out[name] = MetricValue(
            name=name,
            value=value,
            ci_low=lo,
            ci_high=hi,
            n=d.n,
            higher_is_better=spec.higher_is_better,
        )
    return out


def _interval(boot: FloatArray, confidence: float) -> tuple[float, float]:
    """The percentile interval of the resampled values on which the metric is defined."""
    boot = boot[~np.isnan(boot)]
    return _percentile_ci(boot, confidence) if boot.size else (math.nan, math.nan)


def _subset(d: _Data, idx: IntArray) -> _Data:
    return replace(
        d,
        y=d.y[idx],
        pred=None if d.pred is None else d.pred[idx],
        proba=None if d.proba is None else d.proba[idx],
    )


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
