"""Performance before the labels arrive: confidence-based performance estimation (CBPE).

A classifier whose probabilities are calibrated tells, for every request, how
likely each class is; the metric it will score once the labels come is then a
random quantity whose distribution is known. CBPE (as in NannyML) calibrates
the advanced model's probabilities on the bundle's labelled reference (one-vs-rest
isotonic regression, rows renormalised), then draws labels from the calibrated
probabilities of the current window and scores each draw with the *same* metric
function the diagnosis uses. The mean of the draws is the estimate; their spread,
widened by the calibration's own uncertainty, is an interval for the metric the
labels will show.

What it can and cannot see: it follows covariate shift (the inputs move, the
relation ``P(y | x)`` holds) and class-balance changes the model's inputs reveal.
It is blind to concept drift, where ``P(y | x)`` itself changes -- there the
realised metric leaves the interval, which is itself a signal (see
``PerformanceEstimate.realised``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats

from ._metric_data import row_sums
from ._metric_registry import code_scorer
from ._metrics import METRICS

__all__ = ["Calibration", "PerformanceEstimate", "estimate_performance"]

#: Metrics CBPE can estimate: those computed from labels and the model's outputs alone.
ESTIMABLE = ("accuracy", "balanced_accuracy", "f1", "roc_auc", "log_loss", "brier")

#: Called between pieces of an estimate's work (see :meth:`Calibration.draw`).
Pause = Callable[[], object]
#: Rows calibrated per piece when pausing (well under a millisecond each).
_CHUNK = 500


@dataclass(frozen=True)
class PerformanceEstimate:
    """An estimate of a metric from the model's own probabilities, before labels arrive.

    ``estimate`` and ``low``/``high`` are for all ``n`` records of the window:
    the interval holds the value their labels will show with probability
    ``1 - alpha``. Once some labels have arrived, ``realised`` is the metric on
    those ``n_labelled`` records and ``labelled_estimate`` (``labelled_low``,
    ``labelled_high``) the estimate for the very same records, so the
    estimate's error (``error``) and whether the interval held (``covered``)
    are read on like for like.
    """

    metric: str
    estimate: float
    low: float
    high: float
    n: int
    n_reference: int
    alpha: float
    realised: float | None = None
    method: str = "cbpe"
    n_labelled: int = 0
    labelled_estimate: float | None = None
    labelled_low: float | None = None
    labelled_high: float | None = None

    @property
    def error(self) -> float | None:
        """``realised`` minus the estimate for the labelled records, once labels have arrived."""
        if self.realised is None or self.labelled_estimate is None:
            return None
        return self.realised - self.labelled_estimate

    @property
    def covered(self) -> bool | None:
        """Whether the realised metric lies in the labelled records' interval."""
        if self.realised is None or self.labelled_low is None or self.labelled_high is None:
            return None
        return bool(self.labelled_low <= self.realised <= self.labelled_high)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["error"] = self.error
        out["covered"] = self.covered
        return out


class Calibration:
    """One-vs-rest isotonic fits of a classifier's probabilities on its labelled reference.

    Fitted once, it maps any window's probabilities to calibrated ones and scores
    label draws from them: :func:`estimate_performance` builds one per call; a
    serving worker keeps one for its live gauge.
    """

    def __init__(
        self,
        metric: str,
        *,
        reference_proba: npt.ArrayLike,
        reference_labels: npt.ArrayLike,
        classes: npt.ArrayLike,
        alpha: float = 0.05,
    ) -> None:
        from sklearn.isotonic import IsotonicRegression

        if metric not in ESTIMABLE:
            raise ValueError(
                f"`metric` must be one of {', '.join(ESTIMABLE)} to be estimated without "
                f"labels; got {metric!r}."
            )
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"`alpha` must be a float in (0, 1); got {alpha!r}.")
        self.metric, self.alpha = metric, alpha
        self.classes = cls = np.asarray(classes)
        ref_p = np.asarray(reference_proba, dtype=np.float64)
        if ref_p.ndim != 2 or ref_p.shape[1] != len(cls):
            raise ValueError(
                f"`proba` and `reference_proba` must be (n, {len(cls)}) arrays, one column per "
                f"class; got reference {ref_p.shape}."
            )
        index = {c: i for i, c in enumerate(cls.tolist())}
        ref_y = np.array([index.get(v, -1) for v in np.asarray(reference_labels).tolist()])
        if len(ref_y) != len(ref_p) or len(ref_y) == 0:
            raise ValueError("`reference_labels` must give one label per row of `reference_proba`.")
        if (ref_y < 0).any():
            raise ValueError(
                f"`reference_labels` must be among the classes {cls.tolist()}; "
                f"got {np.asarray(reference_labels, dtype=object)[ref_y < 0][0]!r}."
            )
        self.n_reference = len(ref_y)
        self._fits = []
        for k in range(len(cls)):
            iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
            iso.fit(ref_p[:, k], (ref_y == k).astype(np.float64))
            self._fits.append(iso)
        self._score = METRICS[metric].function

    def calibrate(self, proba: np.ndarray, *, pause: Pause | None = None) -> np.ndarray:
        """``proba`` mapped through the isotonic fits, rows summing to 1.

        With ``pause``, the fits run on chunks of rows with ``pause()`` between
        them (the same numbers: each row is mapped on its own).
        """
        out = np.empty_like(proba, dtype=np.float64)
        step = len(proba) if pause is None else _CHUNK
        for k, iso in enumerate(self._fits):
            for lo in range(0, len(proba), max(step, 1)):
                out[lo : lo + step, k] = iso.predict(proba[lo : lo + step, k])
                if pause is not None:
                    pause()
        total = out.sum(axis=1, keepdims=True)
        flat = total[:, 0] <= 0  # nothing left after calibration: keep the model's own row
        out[flat] = proba[flat]
        total[flat] = 1.0
        return np.asarray(out / total)

    def draw(
        self,
        proba: np.ndarray,
        rng: np.random.Generator,
        draws: int,
        max_rows: int,
        *,
        pause: Pause | None = None,
    ) -> tuple[float, float]:
        """The mean and the spread (scaled to all of ``proba``'s rows) of the metric's draws.

        ``pause`` is called between small pieces of the work (each draw, each
        chunk of the calibration): a serving process's estimate thread passes
        one that lets go of the GIL, so requests never wait for a whole window.
        """
        n = len(proba)
        sub = rng.choice(n, size=max_rows, replace=False) if n > max_rows else np.arange(n)
        p = proba[sub]
        # one categorical draw per row and per draw, by inverse CDF on the calibrated rows
        cdf = np.cumsum(self.calibrate(p, pause=pause), axis=1)
        cdf[:, -1] = 1.0
        values = np.empty(draws)
        score = code_scorer(self.metric, p, self.classes)  # the rows validated once
        for b in range(draws):
            drawn = row_sums(rng.uniform(size=(len(sub), 1)) > cdf)
            values[b] = score(drawn)
            if pause is not None:
                pause()
        finite = values[np.isfinite(values)]
        if len(finite) == 0:
            raise ValueError(f"{self.metric} is undefined on every label draw of this window.")
        spread = float(finite.std(ddof=1)) if len(finite) > 1 else 0.0
        return float(finite.mean()), spread * float(np.sqrt(len(sub) / n))

    def interval(
        self,
        proba: np.ndarray,
        rng: np.random.Generator,
        draws: int,
        max_rows: int,
        *,
        pause: Pause | None = None,
    ) -> tuple[float, float, float]:
        """``(estimate, low, high)`` for ``proba``'s rows (``pause``: as in :meth:`draw`).

        The half-width is the draws' spread times ``sqrt(1 + n / m)`` for a
        reference of ``m`` records: the calibration is known only as well as a
        metric measured on the reference.
        """
        estimate, spread = self.draw(proba, rng, draws, max_rows, pause=pause)
        spread *= float(np.sqrt(1.0 + len(proba) / self.n_reference))
        z = float(stats.norm.ppf(1.0 - self.alpha / 2.0))
        return estimate, estimate - z * spread, estimate + z * spread

    def realised(self, proba: np.ndarray, labels: np.ndarray) -> float:
        """The metric on true ``labels`` (of the classes' type) for ``proba``'s rows."""
        return float(self._score(labels.astype(self.classes.dtype), None, proba, self.classes))


def estimate_performance(
    metric: str,
    proba: npt.ArrayLike,
    *,
    reference_proba: npt.ArrayLike,
    reference_labels: npt.ArrayLike,
    classes: npt.ArrayLike,
    labels: npt.ArrayLike | None = None,
    alpha: float = 0.05,
    draws: int = 200,
    max_rows: int = 20_000,
    seed: int = 0,
) -> PerformanceEstimate:
    """Estimate ``metric`` on records whose labels have not arrived yet.

    Parameters
    ----------
    metric
        One of ``ESTIMABLE`` (a classification metric of ``sidecar.monitoring``).
    proba
        The advanced model's probabilities on the current records, ``(n, k)``.
    reference_proba, reference_labels
        The same model's probabilities and the true labels on the bundle's
        held-out reference: the calibration set.
    classes
        The classes, in the column order of ``proba``.
    labels
        Labels that have arrived for the same records, if any (``None`` entries
        allowed): the realised metric is computed on those rows.
    draws, max_rows
        Label draws, each scored on at most ``max_rows`` records (a seeded
        subsample; the spread is scaled back to ``n``).

    The interval's half-width is the draws' spread times ``sqrt(1 + n / m)``
    for a reference of ``m`` records: the calibration is known only as well as
    a metric measured on the reference, so a window much larger than the
    reference cannot be estimated more tightly than the reference allows.

    >>> rng = np.random.default_rng(1)
    >>> p1 = rng.uniform(size=2000); proba = np.c_[1 - p1, p1]
    >>> y = (rng.uniform(size=2000) < p1).astype(int)      # calibrated by construction
    >>> est = estimate_performance("accuracy", proba[1000:], reference_proba=proba[:1000],
    ...                            reference_labels=y[:1000], classes=[0, 1], labels=y[1000:])
    >>> round(est.estimate, 2), round(est.realised, 2), bool(est.low <= est.realised <= est.high)
    (0.75, 0.74, True)
    """
    cal = Calibration(
        metric,
        reference_proba=reference_proba,
        reference_labels=reference_labels,
        classes=classes,
        alpha=alpha,
    )
    p = _checked_proba(proba, cal)
    rng = np.random.default_rng(seed)
    estimate, low, high = cal.interval(p, rng, draws, max_rows)
    out = PerformanceEstimate(
        metric=metric,
        estimate=estimate,
        low=low,
        high=high,
        n=len(p),
        n_reference=cal.n_reference,
        alpha=alpha,
    )
    if labels is None:
        return out
    return _with_realised(out, cal, p, labels, rng, draws, max_rows)


def _checked_proba(proba: npt.ArrayLike, cal: Calibration) -> np.ndarray:
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != len(cal.classes):
        raise ValueError(
            f"`proba` and `reference_proba` must be (n, {len(cal.classes)}) arrays, one column "
            f"per class; got {p.shape}."
        )
    if len(p) == 0:
        raise ValueError("`proba` has no rows: there is nothing to estimate.")
    return p


def _with_realised(
    out: PerformanceEstimate,
    cal: Calibration,
    p: np.ndarray,
    labels: npt.ArrayLike,
    rng: np.random.Generator,
    draws: int,
    max_rows: int,
) -> PerformanceEstimate:
    """``out`` with the realised metric on the labelled rows, beside their own estimate."""
    lab = np.asarray(labels)
    if lab.dtype == object:  # None where a label has not arrived
        known = np.array([v is not None for v in lab.tolist()], dtype=bool)
    else:  # no None possible: every label is known
        known = np.ones(lab.shape, dtype=bool)
    if not known.any():
        return out
    # the estimate for the very records whose labels came, beside what they show
    e, lo, hi = out.estimate, out.low, out.high
    every = bool(known.all())  # then the same rows, without copying them
    if not every:
        try:
            e, lo, hi = cal.interval(p[known], rng, draws, max_rows)
        except ValueError:  # undefined on the labelled rows' draws (one class, say)
            e, lo, hi = math.nan, math.nan, math.nan
    return replace(
        out,
        realised=cal.realised(p if every else p[known], lab if every else lab[known]),
        n_labelled=int(known.sum()),
        labelled_estimate=e,
        labelled_low=lo,
        labelled_high=hi,
    )
