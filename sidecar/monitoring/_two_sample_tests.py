"""Two-sample tests: one model's losses now against its reference (different requests).

``effect`` is ``mean_cur - mean_ref`` (positive: the current window is worse).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats

from ._results import TestResult
from ._stat_tools import (
    _bootstrap_means,
    _bootstrap_p,
    _count,
    _order_statistics,
    _pair_differences,
    _percentile_ci,
    _probability,
    _problem,
    _ratio,
    _vector,
    _z,
)


def welch_t(
    losses_ref: npt.ArrayLike, losses_cur: npt.ArrayLike, *, confidence: float = 0.95
) -> TestResult:
    """Welch's unequal-variance t-test of the current mean loss against the reference.

    ``scipy.stats.ttest_ind(cur, ref, equal_var=False)``; ``effect`` =
    ``mean_cur - mean_ref`` with its Welch-Satterthwaite interval.
    """
    ref = _vector(losses_ref, "losses_ref", min_size=2)
    cur = _vector(losses_cur, "losses_cur", min_size=2)
    confidence = _probability(confidence, "confidence")
    effect = float(cur.mean() - ref.mean())
    detail: dict[str, Any] = {"n_ref": ref.size, "n_cur": cur.size}
    if ref.var() == 0 and cur.var() == 0:
        statistic = _ratio(effect, 0.0)
        p = 1.0 if effect == 0 else 0.0
        lo = hi = effect
    else:
        res = stats.ttest_ind(cur, ref, equal_var=False)
        ci = res.confidence_interval(confidence_level=confidence)
        statistic, p = float(res.statistic), float(res.pvalue)
        lo, hi = float(ci.low), float(ci.high)
        detail["df"] = float(res.df)
    return TestResult(
        name="welch_t",
        statistic=statistic,
        p_value=p,
        effect=effect,
        ci_low=lo,
        ci_high=hi,
        n=ref.size + cur.size,
        detail=detail,
    )


def mann_whitney(
    losses_ref: npt.ArrayLike, losses_cur: npt.ArrayLike, *, confidence: float = 0.95
) -> TestResult:
    """Mann-Whitney U test: are current losses stochastically larger (or smaller) than reference?

    ``scipy.stats.mannwhitneyu(cur, ref)`` (``statistic`` is U of the current
    sample). ``effect`` is the Hodges-Lehmann shift, the median of all
    ``cur_i - ref_j`` (a seeded sample of pairs above two million), with its
    distribution-free interval; ``detail["prob_superiority"]`` is
    ``U / (n_cur n_ref)``, the chance a current loss exceeds a reference one.
    """
    ref = _vector(losses_ref, "losses_ref")
    cur = _vector(losses_cur, "losses_cur")
    confidence = _probability(confidence, "confidence")
    n, m = cur.size, ref.size
    res = stats.mannwhitneyu(cur, ref, alternative="two-sided")
    diffs, exact = _pair_differences(cur, ref, seed=0)
    total = n * m
    k = math.floor(total / 2 - _z(confidence) * math.sqrt(total * (n + m + 1) / 12))
    effect, lo, hi = _order_statistics(diffs, total, k)
    return TestResult(
        name="mann_whitney",
        statistic=float(res.statistic),
        p_value=float(res.pvalue),
        effect=effect,
        ci_low=lo,
        ci_high=hi,
        n=n + m,
        detail={
            "n_ref": m,
            "n_cur": n,
            "prob_superiority": float(res.statistic) / total,
            "exact_hl": exact,
        },
    )


def bootstrap_mean_diff(
    losses_ref: npt.ArrayLike,
    losses_cur: npt.ArrayLike,
    *,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> TestResult:
    """Two-sample bootstrap of ``mean_cur - mean_ref`` with independent resamples of each.

    Percentile interval; the p-value is the shifted-null one of
    :func:`paired_bootstrap`.
    """
    ref = _vector(losses_ref, "losses_ref")
    cur = _vector(losses_cur, "losses_cur")
    n_boot = _count(n_boot, "n_boot", minimum=1)
    confidence = _probability(confidence, "confidence")
    rng = np.random.default_rng(seed)
    effect = float(cur.mean() - ref.mean())
    boot = _bootstrap_means(cur, n_boot, rng) - _bootstrap_means(ref, n_boot, rng)
    lo, hi = _percentile_ci(boot, confidence)
    se = float(boot.std(ddof=1)) if n_boot > 1 else 0.0
    return TestResult(
        name="bootstrap_mean_diff",
        statistic=_ratio(effect, se),
        p_value=_bootstrap_p(boot, effect),
        effect=effect,
        ci_low=lo,
        ci_high=hi,
        n=ref.size + cur.size,
        detail={"n_ref": ref.size, "n_cur": cur.size, "n_boot": n_boot, "seed": seed},
    )


def two_proportions(
    k_ref: int, n_ref: int, k_cur: int, n_cur: int, *, confidence: float = 0.95
) -> TestResult:
    """Two-proportion z-test (pooled variance) of a rate now against the reference.

    For error rates, missing rates, unknown-category rates.
    ``statistic = (p_cur - p_ref) / sqrt(p (1 - p) (1/n_ref + 1/n_cur))`` with the
    pooled ``p``, as statsmodels' ``proportions_ztest([k_cur, k_ref], [n_cur, n_ref])``;
    ``effect = p_cur - p_ref`` with an unpooled Wald interval. Both rates 0 (or
    both 1) give ``p_value = 1``.
    """
    n_ref = _count(n_ref, "n_ref", minimum=1)
    n_cur = _count(n_cur, "n_cur", minimum=1)
    k_ref = _count(k_ref, "k_ref", minimum=0)
    k_cur = _count(k_cur, "k_cur", minimum=0)
    if k_ref > n_ref:
        raise _problem("k_ref", f"an integer in [0, n_ref={n_ref}]", str(k_ref))
    if k_cur > n_cur:
        raise _problem("k_cur", f"an integer in [0, n_cur={n_cur}]", str(k_cur))
    confidence = _probability(confidence, "confidence")
    p_ref, p_cur = k_ref / n_ref, k_cur / n_cur
    pooled = (k_ref + k_cur) / (n_ref + n_cur)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / n_ref + 1 / n_cur))
    effect = p_cur - p_ref
    statistic = _ratio(effect, se0)
    p = 1.0 if se0 == 0 else float(2 * stats.norm.sf(abs(statistic)))
    se = math.sqrt(p_ref * (1 - p_ref) / n_ref + p_cur * (1 - p_cur) / n_cur)
    half = _z(confidence) * se
    return TestResult(
        name="two_proportions",
        statistic=statistic,
        p_value=p,
        effect=effect,
        ci_low=effect - half,
        ci_high=effect + half,
        n=n_ref + n_cur,
        detail={"p_ref": p_ref, "p_cur": p_cur, "n_ref": n_ref, "n_cur": n_cur},
    )
