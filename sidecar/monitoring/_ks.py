"""The two-sample Kolmogorov-Smirnov test on sorted samples, and the Wasserstein distance.

:func:`ks_2samp_sorted` gives ``scipy.stats.ks_2samp``'s statistic and p-value
(exact while both samples are small, the asymptotic Kolmogorov distribution
beyond) from a reference sorted once, so a window of a million rows costs one
sort of the window and a merge, not a sort of both.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import special, stats

from .._errors import InputError
from ._samples import _check_sorted, _numeric

try:  # The exact small-sample p-value of scipy.stats.ks_2samp, reused so both agree.
    from scipy.stats._stats_py import _attempt_exact_2kssamp
except ImportError:  # pragma: no cover - a SciPy that moved its internals
    _attempt_exact_2kssamp = None


_MAX_EXACT_N = 10_000  # scipy's MAX_AUTO_N: exact p-values while both samples are this small
_PSI_FLOOR = 1e-4  # bin proportions are floored here so an empty bin does not make PSI infinite
_MIN_EXPECTED = 5.0  # the classic rule for the chi-square approximation
OTHER = "__other__"


_MAX_EXACT_N = 10_000  # scipy's MAX_AUTO_N: exact p-values while both samples are this small


Steps = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _ks_statistic(ref: np.ndarray, cur: np.ndarray, steps: Steps | None = None) -> float:
    """max |F_ref - F_cur| over the pooled values, as scipy computes it, in O(m log n).

    Both ECDFs are right-continuous steps, so between two consecutive current
    values ``F_ref - F_cur`` only grows: its maximum sits just before a current
    value (or at the reference maximum), its minimum at a current value. Those
    are the candidates; each is the difference at some pooled value, built from
    the same integer counts scipy divides, so the result is bit-for-bit scipy's.
    """
    n1, n2 = ref.size, cur.size
    if n2 > n1:
        return _ks_at_reference(ref, cur, steps)
    # The current sample is sorted: its ECDF at each distinct value comes from
    # the run boundaries in one linear pass, not from a search per element.
    starts = np.flatnonzero(np.concatenate(([True], cur[1:] != cur[:-1])))
    ends = np.append(starts[1:], n2)
    values = cur[starts]
    at = np.concatenate(
        [np.searchsorted(ref, values, "right"), np.searchsorted(ref, values, "left"), [n1]]
    )
    cur_at = np.concatenate([ends, starts, np.searchsorted(cur, ref[-1:], "right")])
    diffs = at / n1 - cur_at / n2
    max_s = float(diffs.max())
    min_s = float(np.clip(-diffs.min(), 0, 1))
    return min_s if min_s > max_s else max_s


def _reference_steps(ref: np.ndarray, cur: np.ndarray) -> Steps:
    """Both sorted samples' counts at the reference's distinct values.

    ``(u, ref_lt, ref_le, cur_lt, cur_le)``: the distinct reference values and,
    at each, how many values of each sample lie below it and at or below it --
    two binary searches per *reference* value, so a window ten times the
    reference's size costs little more than the reference.
    """
    starts = np.flatnonzero(np.concatenate(([True], ref[1:] != ref[:-1])))
    u = ref[starts]
    ref_le = np.append(starts[1:], ref.size)
    return (
        u,
        starts,
        ref_le,
        np.searchsorted(cur, u, "left"),
        np.searchsorted(cur, u, "right"),
    )


def _ks_at_reference(ref: np.ndarray, cur: np.ndarray, steps: Steps | None = None) -> float:
    """The KS statistic when the window is the larger sample, from the reference's steps.

    Between two distinct reference values the reference ECDF is flat and the
    window's only rises, so the largest gap sits at a reference value or just
    before one; there each ECDF is the ratio of integer counts scipy divides
    at the nearest pooled value, so the result is scipy's.
    """
    _, ref_lt, ref_le, cur_lt, cur_le = steps or _reference_steps(ref, cur)
    n1, n2 = ref.size, cur.size
    gaps = np.concatenate([ref_le / n1 - cur_le / n2, ref_lt / n1 - cur_lt / n2])
    max_s = float(gaps.max())
    min_s = float(np.clip(-gaps.min(), 0, 1))
    return min_s if min_s > max_s else max_s


def _wasserstein_steps(ref: np.ndarray, cur: np.ndarray, steps: Steps | None = None) -> float:
    """W1 for a window much larger than the reference, from the reference's steps.

    Outside the reference's range the integral is exact (sums of the window's
    values there); between two distinct reference values the window's ECDF is
    taken as linear. With the thousands of reference values a monitored
    feature has, the error is far below any drift threshold.
    """
    u, _, ref_le, cur_lt, cur_le = steps or _reference_steps(ref, cur)
    n1, n2 = ref.size, cur.size
    lo, hi = int(cur_lt[0]), int(cur_le[-1])
    total = (lo * u[0] - float(cur[:lo].sum())) / n2
    total += (float(cur[hi:].sum()) - (n2 - hi) * u[-1]) / n2
    if u.size > 1:
        width = np.diff(u)
        a = ref_le[:-1] / n1  # the reference ECDF on [u_j, u_j+1)
        d0 = a - cur_le[:-1] / n2  # the gap at the left end
        d1 = a - cur_lt[1:] / n2  # the gap just before the right end
        s0, s1 = np.abs(d0), np.abs(d1)
        crossing = (d0**2 + d1**2) / (2 * np.maximum(s0 + s1, 1e-300))
        total += float(np.sum(width * np.where(d0 * d1 >= 0, (s0 + s1) / 2, crossing)))
    return float(total)


#: a window at least this many times the reference's size takes the step formulas
_STEPS_FACTOR = 4


def _ks_pvalue(n1: int, n2: int, d: float) -> tuple[float, float, str]:
    """scipy.stats.ks_2samp's two-sided p-value for method="auto": (statistic, p, method)."""
    method = "exact" if max(n1, n2) <= _MAX_EXACT_N else "asymptotic"
    prob = math.nan
    if method == "exact":
        g = math.gcd(n1, n2)
        if _attempt_exact_2kssamp is None:  # pragma: no cover - see the import
            success, prob = False, math.nan
            lcm = (n1 // g) * n2
            d = round(d * lcm) / lcm
        else:
            success, d, prob = _attempt_exact_2kssamp(n1, n2, g, d, "two-sided")
        if not success:  # scipy warns and falls back; so do we, quietly
            method = "asymptotic"
    if method == "asymptotic":
        m, n = sorted([float(n1), float(n2)], reverse=True)
        prob = _kstwo_sf(d, int(np.round(m * n / (m + n))))
    return float(d), float(np.clip(prob, 0.0, 1.0)), method


#: Where scipy's ``kstwo.sf`` takes twice the exact one-sided tail (its
#: ``_kolmogn`` for n > 140 and 2.2 <= n d^2 < 370), the sum is evaluated
#: vectorised: scipy's C loop costs ~130 ms at n = 90,909 (a 1,000,000-row
#: window against 100,000 reference rows), this ~8 ms, for the same value to
#: about 1e-10 relatively. Past this n the log-gamma terms lose digits.
_FAST_SMIRNOV_MAX_N = 1_000_000


def _kstwo_sf(d: float, n: int) -> float:
    """``scipy.stats.kstwo.sf(d, n)``, with the costly branch of scipy's algorithm vectorised."""
    if 140 < n <= _FAST_SMIRNOV_MAX_N and 0 < d < 0.5 and 1 < n * d < n - 1:
        nx2 = n * d * d
        if nx2 >= 370.0:
            return 0.0
        if nx2 >= 2.2:
            return min(1.0, 2.0 * _smirnov(n, d))
    return float(stats.kstwo.sf(d, n))


def _smirnov(n: int, d: float) -> float:
    """The exact one-sided KS tail ``P(D+_n >= d)`` (Birnbaum-Tingey), as ``scipy.special.smirnov``.

    ``d * sum_j C(n, j) (d + j/n)^(j-1) (1 - d - j/n)^(n-j)`` for ``j <= n(1 - d)``,
    summed in log space so that no term under- or overflows on its own.

    >>> from scipy import special
    >>> bool(abs(_smirnov(90_909, 0.008) / special.smirnov(90_909, 0.008) - 1) < 1e-9)
    True
    """
    j = np.arange(0, math.floor(n * (1 - d)) + 1, dtype=np.float64)
    x = d + j / n
    log_c = special.gammaln(n + 1) - special.gammaln(j + 1) - special.gammaln(n - j + 1)
    left = n - j
    with np.errstate(divide="ignore", invalid="ignore"):
        tail = np.where(left > 0, left * np.log1p(-np.minimum(x, 1.0)), 0.0)
    terms = log_c + (j - 1) * np.log(x) + tail
    top = float(terms.max())
    return float(d * math.exp(top) * np.sum(np.exp(terms - top)))


def _ks(
    ref: np.ndarray, cur_sorted: np.ndarray, steps: Steps | None = None
) -> tuple[float, float, str]:
    return _ks_pvalue(ref.size, cur_sorted.size, _ks_statistic(ref, cur_sorted, steps))


def ks_2samp_sorted(ref_sorted: Any, cur: Any) -> tuple[float, float]:
    """Two-sample KS test against a reference that was sorted once: ``(statistic, p_value)``.

    Equals ``scipy.stats.ks_2samp(ref, cur)`` (two-sided, ``method="auto"``),
    ties included: the statistic is computed with ``np.searchsorted`` on the
    pooled values; the p-value is exact while both samples have at most 10,000
    values and from the ``kstwo`` distribution beyond, as scipy does. Where
    scipy would warn that the exact computation failed and fall back to the
    asymptotic one, this falls back without the warning.

    >>> import numpy as np
    >>> from scipy import stats
    >>> rng = np.random.default_rng(1)
    >>> ref, cur = rng.poisson(3, 400).astype(float), rng.poisson(3, 250).astype(float)
    >>> ks_2samp_sorted(np.sort(ref), cur) == tuple(stats.ks_2samp(ref, cur))[:2]
    True
    """
    ref = _check_sorted(ref_sorted)
    cur_arr = _numeric("cur", cur)
    if cur_arr.size == 0 or np.isnan(cur_arr).any():
        raise InputError(
            f"`cur` must be a non-empty array without NaN; got {cur_arr.size} values "
            f"with {int(np.isnan(cur_arr).sum())} NaN (drop missing values first)."
        )
    d, p, _ = _ks(ref, np.sort(cur_arr))
    return d, p


def _wasserstein_sorted(u: np.ndarray, v: np.ndarray) -> float:
    """W1 = integral of |F_u - F_v| for two sorted samples, in linear time after one search.

    ``v`` is merged into ``u``; where the merged values step up, every element
    before the step has been counted, so running counts of each sample's
    elements are the ECDFs there (ties contribute zero width).
    """
    n, m = u.size, v.size
    at = np.searchsorted(u, v, "right") + np.arange(m)
    from_u = np.ones(n + m, dtype=bool)
    from_u[at] = False
    pooled = np.empty(n + m)
    pooled[from_u], pooled[at] = u, v
    count_u = np.cumsum(from_u)[:-1]
    count_v = np.arange(1, n + m) - count_u
    return float(np.sum(np.abs(count_u / n - count_v / m) * np.diff(pooled)))


def _sorted_quantiles(ref: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Quantiles of a sorted array (NumPy's default linear method) without a partition pass."""
    pos = probs * (ref.size - 1)
    lo = np.floor(pos).astype(np.intp)
    hi = np.minimum(lo + 1, ref.size - 1)
    out: np.ndarray = ref[lo] + (ref[hi] - ref[lo]) * (pos - lo)
    return out
