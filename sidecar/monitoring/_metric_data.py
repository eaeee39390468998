"""Validated metric inputs: class labels encoded as indices, probabilities as ``(n, k)``.

Every metric, loss and bootstrap reads a :class:`_Data` made once by
:func:`_prepare_classification` or :func:`_prepare_regression`; the checks
here raise ``InputError`` naming the argument, what it should be and what came.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .._errors import short_repr
from ._stat_tools import _paired, _problem

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
MetricFunction = Callable[
    [npt.ArrayLike, npt.ArrayLike | None, npt.ArrayLike | None, npt.ArrayLike | None], float
]

#: Tolerance on ``sum(proba, axis=1) == 1`` (float32 softmax outputs pass).
_PROBA_SUM_TOL = 1e-4


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


def row_sums(a: np.ndarray) -> np.ndarray:
    """``a.sum(axis=1)`` of a 2-D float or bool array, the same values and dtype.

    NumPy reduces a short row through its generic reduction machinery, six times
    slower on ``(n, 2)`` than adding the columns; below 8 columns it adds a row's
    values in order, as the column loop does (from 8 it sums pairwise: kept).
    """
    k = a.shape[1]
    acc: np.ndarray
    if a.dtype.kind == "b":
        acc = np.zeros(a.shape[0], dtype=np.int_)
    elif a.dtype.kind == "f" and 0 < k < 8:
        acc = a[:, 0].copy()
        a = a[:, 1:]
    else:
        return np.asarray(a.sum(axis=1))
    for j in range(a.shape[1]):
        acc += a[:, j]
    return acc


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
    fast = _encode_range(values, classes)
    if fast is not None:
        return fast
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


def _encode_range(
    values: npt.NDArray[np.generic], classes: npt.NDArray[np.generic]
) -> IntArray | None:
    """:func:`_encode` where the classes are ``0 .. k-1`` and the values numbers among them:
    each value is its own position (a cast, not a binary search per row); ``None``
    for anything else, which the general path then encodes or refuses."""
    k = classes.size
    if (
        values.size == 0
        or values.dtype.kind not in "iuf"
        or classes.dtype.kind not in "iu"
        or not np.array_equal(classes, np.arange(k))
    ):
        return None
    if not (values.min() >= 0 and values.max() <= k - 1):  # NaN fails too
        return None
    pos = values.astype(np.intp)
    return pos if bool((pos == values).all()) else None


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
        off = np.abs(row_sums(p) - 1.0) > _PROBA_SUM_TOL
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
