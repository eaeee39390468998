"""Metric values with bootstrap confidence intervals, on one window.

Resamples are ``(rows, n)`` index matrices drawn in chunks of bounded memory.
A metric that is the mean of a per-example loss averages the resampled loss
vector; the others are computed for a whole chunk of resamples at once
(weighted confusion matrices, histograms over tied scores, order statistics
along axis 1), so no metric loops over resamples.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt
from scipy import stats

from .._errors import short_repr
from ._metric_data import (
    FloatArray,
    IntArray,
    _Data,
    _pred,
    _prepare_classification,
    _prepare_regression,
    _proba,
)
from ._metric_registry import (
    _CORES,
    _FROM_LOSS,
    _LOSS_FUNCTIONS,
    _absolute,
    _defined,
    _metric_spec,
    _prepare,
    _squared,
)
from ._results import MetricValue
from ._stat_tools import (
    _CHUNK_ELEMENTS,
    _bootstrap_means,
    _count,
    _percentile_ci,
    _probability,
    _problem,
)


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
    large = _Subsample(d, subsample_n, seed)
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
            lo, hi = _normal_interval(name, d, z)
        else:
            lo, hi = large.interval(name, value, boots[name], confidence)
        out[name] = MetricValue(
            name=name,
            value=value,
            ci_low=lo,
            ci_high=hi,
            n=d.n,
            higher_is_better=spec.higher_is_better,
        )
    return out


def _normal_interval(name: str, d: _Data, z: float) -> tuple[float, float]:
    """``mean +- z * sd / sqrt(n)`` of a mean-of-loss metric's loss, mapped through the metric."""
    loss_name, transform = _FROM_LOSS[name]
    losses = _LOSS_FUNCTIONS[loss_name][2](d)
    mean, half = float(losses.mean()), z * float(losses.std(ddof=1)) / math.sqrt(d.n)
    ends = transform(np.array([max(mean - half, 0.0), mean + half]))
    return float(ends.min()), float(ends.max())


@dataclass
class _Subsample:
    """One seeded subsample of a large window, drawn on first use, and its resamples
    (one draw per resample count), shared by every metric bootstrapped on it."""

    d: _Data
    size: int
    seed: int
    sub: _Data | None = None
    drawn: dict[int, list[IntArray]] = field(default_factory=dict)

    def interval(
        self, name: str, value: float, n_boot: int, confidence: float
    ) -> tuple[float, float]:
        """The subsample's bootstrap interval, its half-widths around the subsample's
        value narrowed by ``sqrt(size / n)`` around the whole window's ``value``."""
        if self.sub is None:
            rng = np.random.default_rng(self.seed)
            pick = rng.choice(self.d.n, size=min(self.size, self.d.n), replace=False)
            self.sub = _subset(self.d, pick)
        sub = self.sub
        k = min(n_boot, _SUBSAMPLE_BOOT)
        if k not in self.drawn:
            self.drawn[k] = list(_index_chunks(sub.n, k, np.random.default_rng(self.seed)))
        boot = _bootstrap_metric(name, sub, k, np.random.default_rng(self.seed), self.drawn[k])
        b_lo, b_hi = _interval(boot, confidence)
        at = _CORES[name](sub)  # NaN where undefined on the subsample: so is the interval
        shrink = math.sqrt(sub.n / self.d.n)
        return value - (at - b_lo) * shrink, value + (b_hi - at) * shrink


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
