"""When did the change begin? One change in the mean of the labelled loss stream.

The advanced model's per-example losses, in time order, are split where one
change in their mean fits best (the maximum-likelihood split of a Gaussian
mean-shift model with a common variance: the ``k`` that maximises
``k (n - k) / n * (mean_before - mean_after) ** 2``). Whether there is a change
at all is the CUSUM test of a constant mean: the largest excursion of the
centred partial sums, ``max_k |S_k - k * mean| / (s * sqrt(n))``, is
asymptotically the supremum of a Brownian bridge (Kolmogorov's distribution;
statsmodels' ``breaks_cusumolsresid`` of a constant-only regression).
Discrete partial sums reach less far than the continuous bridge, so the
asymptotic p-value is conservative at small ``n``; Stephens' finite-sample
factor ``1 + 0.12 / sqrt(n) + 0.11 / n`` (the one used for the Kolmogorov-Smirnov
statistic) corrects most of that. The interval for the change index is a
residual bootstrap: series are rebuilt from the two fitted means plus
residuals drawn within each segment, the split is estimated again, and the
``alpha / 2`` and ``1 - alpha / 2`` quantiles of those splits bound it. Past
:data:`BOOTSTRAP_BLOCKS` rows the bootstrap runs on block means (the interval
is then as fine as a block).

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> x = np.concatenate([rng.normal(0, 1, 200), rng.normal(1, 1, 100)])
>>> c = change_point(x, alpha=0.05, seed=0)
>>> bool(c.significant), c.ci_low <= 200 <= c.ci_high
(True, True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

__all__ = ["BOOTSTRAP_BLOCKS", "ChangePoint", "best_split", "change_point", "cusum_test"]

#: The bootstrap works on at most this many points (block means past it).
BOOTSTRAP_BLOCKS = 4000
#: Bootstrap replicates of the split.
N_BOOT = 199


@dataclass(frozen=True)
class ChangePoint:
    """The estimated start of a change in the mean loss, with its interval and test.

    ``index`` is the first row of the new regime in the time-ordered labelled
    stream (``0 < index < n``); ``ts``, ``ts_low`` and ``ts_high`` are the
    times of ``index``, ``ci_low`` and ``ci_high`` when times were given.
    ``significant`` is ``p_value <= alpha``.
    """

    index: int
    ci_low: int
    ci_high: int
    n: int
    statistic: float
    p_value: float
    alpha: float
    mean_before: float
    mean_after: float
    ts: float | None = None
    ts_low: float | None = None
    ts_high: float | None = None

    @property
    def significant(self) -> bool:
        return self.p_value <= self.alpha

    @property
    def n_after(self) -> int:
        return self.n - self.index

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "n": self.n,
            "n_after": self.n_after,
            "ts": self.ts,
            "ts_low": self.ts_low,
            "ts_high": self.ts_high,
            "statistic": self.statistic,
            "p_value": self.p_value,
            "alpha": self.alpha,
            "significant": self.significant,
            "mean_before": self.mean_before,
            "mean_after": self.mean_after,
        }


def _checked(x: Any) -> np.ndarray:
    values = np.asarray(x, dtype=np.float64)
    if values.ndim != 1 or len(values) < 4:
        raise ValueError(
            f"`losses` must be a 1-d sequence of at least 4 numbers; got shape {values.shape}."
        )
    if not np.isfinite(values).all():
        i = int(np.argmin(np.isfinite(values)))
        raise ValueError(f"`losses` must be finite; got {values[i]} at index {i}.")
    return values


def cusum_test(x: Any) -> tuple[float, float]:
    """The CUSUM statistic of a constant mean and its p-value (small-sample corrected).

    The statistic equals statsmodels' ``breaks_cusumolsresid(x - x.mean(), ddof=1)``.
    """
    values = _checked(x)
    n = len(values)
    centred = values - values.mean()
    sd = float(np.sqrt(np.sum(centred**2) / (n - 1)))
    if sd == 0.0:
        return 0.0, 1.0
    q = float(np.max(np.abs(np.cumsum(centred))) / (sd * math.sqrt(n)))
    corrected = q * (1.0 + 0.12 / math.sqrt(n) + 0.11 / n)
    return q, float(stats.kstwobign.sf(corrected))


def _gains(values: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """For each split k = 1..n-1: k (n - k) / n * (mean_before - mean_after) ** 2 (weighted)."""
    w = np.ones(values.shape[-1]) if weights is None else weights
    sums = np.cumsum(values * w, axis=-1)
    counts = np.cumsum(w)
    total, n = sums[..., -1:], counts[-1]
    left_n, left_s = counts[:-1], sums[..., :-1]
    right_n, right_s = n - left_n, total - left_s
    diff = left_s / left_n - right_s / right_n
    return np.asarray(left_n * right_n / n * diff**2)


def best_split(x: Any) -> int:
    """The maximum-likelihood single split: the first index of the second segment."""
    values = _checked(x)
    return int(np.argmax(_gains(values))) + 1


def change_point(
    losses: Any,
    *,
    ts: Any = None,
    alpha: float = 0.05,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> ChangePoint:
    """Estimate where one change in the mean of ``losses`` (in time order) began.

    Parameters
    ----------
    losses
        Per-example losses, oldest first (at least 4).
    ts
        Their times (same length), to name the change's time; optional.
    alpha
        The test's level; the interval is the ``1 - alpha`` bootstrap interval.
    n_boot
        Bootstrap replicates for the interval.
    seed
        Seeds the bootstrap.
    """
    values = _checked(losses)
    if not (isinstance(alpha, float | int) and 0.0 < alpha < 1.0):
        raise ValueError(f"`alpha` must be a float in (0, 1); got {alpha!r}.")
    n = len(values)
    times = None if ts is None else np.asarray(ts, dtype=np.float64)
    if times is not None and times.shape != (n,):
        raise ValueError(f"`ts` must hold one time per loss ({n}); got shape {times.shape}.")
    statistic, p = cusum_test(values)
    k = int(np.argmax(_gains(values))) + 1
    low, high = _interval(values, k, alpha, n_boot, seed)

    def at(i: int) -> float | None:
        return None if times is None else float(times[min(i, n - 1)])

    return ChangePoint(
        index=k,
        ci_low=low,
        ci_high=high,
        n=n,
        statistic=statistic,
        p_value=p,
        alpha=float(alpha),
        mean_before=float(values[:k].mean()),
        mean_after=float(values[k:].mean()),
        ts=at(k),
        ts_low=at(low),
        ts_high=at(high),
    )


def _interval(values: np.ndarray, k: int, alpha: float, n_boot: int, seed: int) -> tuple[int, int]:
    """The residual-bootstrap ``1 - alpha`` interval of the split index."""
    n = len(values)
    size = max(1, math.ceil(n / BOOTSTRAP_BLOCKS))
    if size > 1:  # block means; the split sits at a block edge
        edges = np.arange(0, n, size)
        counts = np.diff(np.append(edges, n)).astype(np.float64)
        series = np.add.reduceat(values, edges) / counts
        cut = max(1, min(len(series) - 1, round(k / size)))
    else:
        counts, series, cut = np.ones(n), values, k
    fitted = np.where(np.arange(len(series)) < cut, series[:cut].mean(), series[cut:].mean())
    resid = series - fitted
    rng = np.random.default_rng(seed)
    draws = np.empty((n_boot, len(series)))
    for part in (slice(0, cut), slice(cut, len(series))):
        pool = resid[part]
        draws[:, part] = rng.choice(pool, size=(n_boot, len(pool)), replace=True)
    draws += fitted
    splits = (np.argmax(_gains(draws, counts), axis=1) + 1) * size
    low, high = np.quantile(splits, [alpha / 2, 1 - alpha / 2], method="inverted_cdf")
    low_i = int(min(max(1, low), k))
    high_i = int(max(min(n - 1, high), k))
    return low_i, high_i
