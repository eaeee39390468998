"""Tests across time windows: is one model's loss changing within the period?

The first group is the reference; ``effect`` is how much the worst later
window's mean exceeds it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats

from .._errors import short_repr
from ._results import TestResult
from ._stat_tools import FloatArray, _probability, _problem, _ratio, _vector


def _groups(groups: Sequence[npt.ArrayLike], *, min_size: int) -> list[FloatArray]:
    if isinstance(groups, str | bytes) or not isinstance(groups, Sequence) or len(groups) < 2:
        raise _problem(
            "groups", "a sequence of at least 2 arrays (one per window)", short_repr(groups)
        )
    return [_vector(g, f"groups[{i}]", min_size=min_size) for i, g in enumerate(groups)]


def _window_effect(centers: list[float]) -> float:
    """How much the worst later window exceeds the first (reference) one."""
    return max(centers[1:]) - centers[0]


def anova_oneway(groups: Sequence[npt.ArrayLike]) -> TestResult:
    """Classical one-way ANOVA (equal variances) across windows: ``scipy.stats.f_oneway``.

    ``effect`` = the largest later window mean minus the first window's mean;
    ``detail`` has the means and eta squared. All groups constant: ``p_value``
    is 1 when their means agree and 0 otherwise.
    """
    gs = _groups(groups, min_size=2)
    means = [float(g.mean()) for g in gs]
    n = sum(g.size for g in gs)
    grand = float(np.concatenate(gs).mean())
    ss_between = sum(g.size * (mu - grand) ** 2 for g, mu in zip(gs, means, strict=True))
    ss_within = sum(float(((g - g.mean()) ** 2).sum()) for g in gs)
    if ss_within == 0:
        statistic = _ratio(ss_between, 0.0)
        p = 1.0 if ss_between == 0 else 0.0
    else:
        res = stats.f_oneway(*gs)
        statistic, p = float(res.statistic), float(res.pvalue)
    total = ss_between + ss_within
    return TestResult(
        name="anova_oneway",
        statistic=statistic,
        p_value=p,
        effect=_window_effect(means),
        n=n,
        detail={"means": means, "eta_squared": ss_between / total if total > 0 else 0.0},
    )


def welch_anova(groups: Sequence[npt.ArrayLike]) -> TestResult:
    """Welch's (1951) one-way ANOVA, which does not assume equal variances across windows.

    With weights ``w_i = n_i / s_i^2``, ``W = sum w_i`` and the weighted mean
    ``m = sum w_i xbar_i / W``::

        A = sum w_i (xbar_i - m)^2 / (k - 1)
        lam = sum (1 - w_i / W)^2 / (n_i - 1)
        F = A / (1 + 2 (k - 2) lam / (k^2 - 1)),  df = (k - 1, (k^2 - 1) / (3 lam))

    ``effect`` as in :func:`anova_oneway`. A window whose losses are all
    equal has no variance to weight by: then ``statistic`` and ``p_value``
    are NaN (``detail["reason"]`` says so), which never alarms.
    """
    gs = _groups(groups, min_size=2)
    k = len(gs)
    sizes = np.array([g.size for g in gs], dtype=np.float64)
    means = np.array([g.mean() for g in gs])
    variances = np.array([g.var(ddof=1) for g in gs])
    detail: dict[str, Any] = {"means": means.tolist()}
    effect = _window_effect(means.tolist())
    n = int(sizes.sum())
    if np.any(variances == 0):
        detail["reason"] = "a window has zero variance"
        return TestResult(
            name="welch_anova",
            statistic=math.nan,
            p_value=math.nan,
            effect=effect,
            n=n,
            detail=detail,
        )
    w = sizes / variances
    total_w = float(w.sum())
    center = float((w * means).sum() / total_w)
    between = float((w * (means - center) ** 2).sum()) / (k - 1)
    lam = float((((1 - w / total_w) ** 2) / (sizes - 1)).sum())
    statistic = between / (1 + 2 * (k - 2) * lam / (k**2 - 1))
    df_num, df_den = k - 1.0, (k**2 - 1) / (3 * lam) if lam > 0 else math.inf
    p = float(stats.f.sf(statistic, df_num, df_den))
    detail.update(df_num=df_num, df_den=df_den)
    return TestResult(
        name="welch_anova", statistic=statistic, p_value=p, effect=effect, n=n, detail=detail
    )


def kruskal(groups: Sequence[npt.ArrayLike]) -> TestResult:
    """Kruskal-Wallis H test across windows: ``scipy.stats.kruskal``.

    ``effect`` = the largest later window *median* minus the first window's
    median. All values identical: ``p_value = 1``.
    """
    gs = _groups(groups, min_size=1)
    medians = [float(np.median(g)) for g in gs]
    pooled = np.concatenate(gs)
    if np.all(pooled == pooled[0]):
        statistic, p = 0.0, 1.0
    else:
        res = stats.kruskal(*gs)
        statistic, p = float(res.statistic), float(res.pvalue)
    return TestResult(
        name="kruskal",
        statistic=statistic,
        p_value=p,
        effect=_window_effect(medians),
        n=pooled.size,
        detail={"medians": medians},
    )


def f_test_variances(a: npt.ArrayLike, b: npt.ArrayLike, *, confidence: float = 0.95) -> TestResult:
    """Two-sided F test of equal variances (assumes normality; sensitive to outliers).

    ``statistic = var(a) / var(b)`` (``ddof=1``) against F(n_a - 1, n_b - 1),
    ``p = 2 min(cdf, sf)``. ``effect`` is the relative change ``ratio - 1``
    (positive: ``a`` varies more), with the exact interval of the ratio minus 1.
    """
    x = _vector(a, "a", min_size=2)
    y = _vector(b, "b", min_size=2)
    confidence = _probability(confidence, "confidence")
    var_a, var_b = float(x.var(ddof=1)), float(y.var(ddof=1))
    dfn, dfd = x.size - 1, y.size - 1
    detail: dict[str, Any] = {"var_a": var_a, "var_b": var_b, "df": (dfn, dfd)}
    if var_b == 0:
        ratio = _ratio(var_a, 0.0)
        p = 1.0 if var_a == 0 else 0.0
        effect = 0.0 if var_a == 0 else math.inf
        lo, hi = math.nan, math.nan
    else:
        ratio = var_a / var_b
        dist = stats.f(dfn, dfd)
        p = min(1.0, 2.0 * min(float(dist.cdf(ratio)), float(dist.sf(ratio))))
        tail = (1 - confidence) / 2
        lo = ratio / float(dist.ppf(1 - tail)) - 1.0
        hi = ratio / float(dist.ppf(tail)) - 1.0
        effect = ratio - 1.0
    return TestResult(
        name="f_test_variances",
        statistic=ratio,
        p_value=p,
        effect=effect,
        ci_low=lo,
        ci_high=hi,
        n=x.size + y.size,
        detail=detail,
    )
