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

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats

from ._metrics import METRICS

__all__ = ["PerformanceEstimate", "estimate_performance"]

#: Metrics CBPE can estimate: those computed from labels and the model's outputs alone.
ESTIMABLE = ("accuracy", "balanced_accuracy", "f1", "roc_auc", "log_loss", "brier")


@dataclass(frozen=True)
class PerformanceEstimate:
    """An estimate of a metric from the model's own probabilities, before labels arrive.

    ``low``/``high`` bound the value the labels are expected to show with
    probability ``1 - alpha``; ``realised`` is the metric on the labels that have
    arrived for the same records (``None`` before any), so the estimate's error
    can be read off.
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

    @property
    def error(self) -> float | None:
        """``realised - estimate`` once labels have arrived."""
        return None if self.realised is None else self.realised - self.estimate

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["error"] = self.error
        return out


def _calibrated(
    proba: np.ndarray, reference_proba: np.ndarray, reference_y: np.ndarray
) -> np.ndarray:
    """``proba`` mapped through one-vs-rest isotonic fits on the reference, rows summing to 1."""
    from sklearn.isotonic import IsotonicRegression

    out = np.empty_like(proba, dtype=np.float64)
    for k in range(proba.shape[1]):
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        iso.fit(reference_proba[:, k], (reference_y == k).astype(np.float64))
        out[:, k] = iso.predict(proba[:, k])
    total = out.sum(axis=1, keepdims=True)
    flat = total[:, 0] <= 0  # nothing left after calibration: keep the model's own row
    out[flat] = proba[flat]
    total[flat] = 1.0
    return np.asarray(out / total)


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
    if metric not in ESTIMABLE:
        raise ValueError(
            f"`metric` must be one of {', '.join(ESTIMABLE)} to be estimated without labels; "
            f"got {metric!r}."
        )
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"`alpha` must be a float in (0, 1); got {alpha!r}.")
    cls = np.asarray(classes)
    p = np.asarray(proba, dtype=np.float64)
    ref_p = np.asarray(reference_proba, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != len(cls) or ref_p.ndim != 2 or ref_p.shape[1] != len(cls):
        raise ValueError(
            f"`proba` and `reference_proba` must be (n, {len(cls)}) arrays, one column per class; "
            f"got {p.shape} and {ref_p.shape}."
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
    n, m = len(p), len(ref_y)
    if n == 0:
        raise ValueError("`proba` has no rows: there is nothing to estimate.")

    rng = np.random.default_rng(seed)
    sub = rng.choice(n, size=max_rows, replace=False) if n > max_rows else np.arange(n)
    q = _calibrated(p[sub], ref_p, ref_y)
    # one categorical draw per row and per draw, by inverse CDF on the calibrated rows
    cdf = np.cumsum(q, axis=1)
    cdf[:, -1] = 1.0
    score = METRICS[metric].function
    values = np.empty(draws)
    for b in range(draws):
        u = rng.uniform(size=(len(sub), 1))
        drawn = (u > cdf).sum(axis=1)
        values[b] = score(cls.take(drawn), None, p[sub], cls)
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        raise ValueError(f"{metric} is undefined on every label draw of this window.")
    estimate = float(finite.mean())
    spread = float(finite.std(ddof=1)) if len(finite) > 1 else 0.0
    spread *= np.sqrt(len(sub) / n) * np.sqrt(1.0 + n / m)
    z = float(stats.norm.ppf(1.0 - alpha / 2.0))

    realised = None
    if labels is not None:
        lab = np.asarray(labels, dtype=object)
        known = np.array([v is not None for v in lab.tolist()], dtype=bool)
        if known.any():
            realised = float(score(lab[known].astype(cls.dtype), None, p[known], cls))
    return PerformanceEstimate(
        metric=metric,
        estimate=estimate,
        low=estimate - z * spread,
        high=estimate + z * spread,
        n=n,
        n_reference=m,
        alpha=alpha,
        realised=realised,
    )
