"""Every metric's core and per-example loss, registered once in :data:`METRICS`.

A core maps prepared data (:mod:`._metric_data`) to a float; a per-example
loss maps it to one loss per row, lower is better. A metric that is the mean
of a loss (:data:`_FROM_LOSS`) is bootstrapped by resampling that loss.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
from scipy import special

from .._errors import short_repr
from .._types import Task
from ._metric_data import (
    FloatArray,
    MetricFunction,
    _Data,
    _pred,
    _prepare_classification,
    _prepare_regression,
    _proba,
    _residuals,
    row_sums,
)
from ._stat_tools import _problem


def _zero_one_loss(d: _Data) -> FloatArray:
    return np.asarray(_pred(d) != d.y, dtype=np.float64)


def _log_loss_values(d: _Data) -> FloatArray:
    p = np.clip(_proba(d), d.eps, 1.0 - d.eps)
    return -np.log(p[np.arange(d.n), np.asarray(d.y, dtype=np.intp)])


def _brier_values(d: _Data) -> FloatArray:
    p = _proba(d)
    onehot = np.zeros_like(p)
    onehot[np.arange(d.n), np.asarray(d.y, dtype=np.intp)] = 1.0
    values = np.asarray(row_sums((p - onehot) ** 2), dtype=np.float64)
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


def code_scorer(
    name: str, proba: npt.ArrayLike, classes: npt.ArrayLike
) -> Callable[[npt.NDArray[np.integer]], float]:
    """``codes -> METRICS[name].function(classes.take(codes), None, proba, classes)`` for
    many draws of class codes on the same rows, ``proba`` and ``classes`` validated once.

    The same numbers: distinct classes (checked) encode ``classes[i]`` as ``i``.
    """
    core = _CORES[name]
    labels = np.asarray(classes)
    first = labels.take(np.zeros(len(np.asarray(proba)), dtype=np.intp))
    d = _prepare_classification(first, None, proba, labels, need_proba=True)

    def score(codes: npt.NDArray[np.integer]) -> float:
        drawn = replace(d, y=np.asarray(codes, dtype=np.intp))
        return _defined(name, core(drawn), drawn)

    return score


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
