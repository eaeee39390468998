"""Hypothesis tests on per-example losses, each a pure function returning a :class:`TestResult`.

Sign convention: ``effect`` is positive when the *first model* of a paired
comparison has the larger loss, and when the *current* window is worse than the
reference in a now-vs-reference comparison (``welch_t(losses_ref, losses_cur)``
reports ``mean_cur - mean_ref``). Across windows, the first group is the
reference and ``effect`` is how much the worst later window exceeds it.

Every test is two-sided. Deciding whether a result is an alarm is a separate
step (:func:`is_alarm`), after multiple-testing control
(:func:`benjamini_hochberg`, :func:`with_adjusted`).

This module holds that decision and the sample-size planning, and gathers
every test under one name: the paired tests live in :mod:`._paired_tests`,
now-vs-reference tests in :mod:`._two_sample_tests`, tests across windows in
:mod:`._window_tests`, and what they share in :mod:`._stat_tools`.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> loss_baseline = rng.exponential(1.0, size=400)
>>> loss_advanced = loss_baseline - 0.2 + rng.normal(0, 0.5, size=400)
>>> result = paired_bootstrap(loss_baseline, loss_advanced, seed=0)
>>> result.p_value < 0.01, round(result.effect, 1), result.ci_low > 0
(True, 0.2, True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import numpy.typing as npt
from scipy import stats

from .._errors import short_repr
from ._paired_tests import (
    default_max_lag,
    diebold_mariano,
    mcnemar_exact,
    paired_bootstrap,
    wilcoxon_signed_rank,
)
from ._results import TestResult
from ._stat_tools import FloatArray, _count, _positive, _probability, _problem
from ._two_sample_tests import bootstrap_mean_diff, mann_whitney, two_proportions, welch_t
from ._window_tests import anova_oneway, f_test_variances, kruskal, welch_anova

__all__ = [
    "anova_oneway",
    "benjamini_hochberg",
    "bootstrap_mean_diff",
    "default_max_lag",
    "diebold_mariano",
    "f_test_variances",
    "is_alarm",
    "kruskal",
    "mann_whitney",
    "mcnemar_exact",
    "paired_bootstrap",
    "power_paired",
    "required_n_mcnemar",
    "required_n_paired",
    "two_proportions",
    "welch_anova",
    "welch_t",
    "wilcoxon_signed_rank",
    "with_adjusted",
]


# --------------------------------------------------------------------------- one decision


def benjamini_hochberg(p_values: npt.ArrayLike) -> FloatArray:
    """Benjamini-Hochberg adjusted p-values (``scipy.stats.false_discovery_control``).

    NaN p-values (tests that could not run) stay NaN and do not count towards
    the number of tests.

    >>> benjamini_hochberg([0.01, 0.04, 0.03, float("nan")]).round(3).tolist()
    [0.03, 0.04, 0.04, nan]
    """
    try:
        p = np.asarray(p_values, dtype=np.float64)
    except (TypeError, ValueError):
        raise _problem(
            "p_values", "a 1-D array of p-values in [0, 1]", short_repr(p_values)
        ) from None
    if p.ndim != 1:
        raise _problem("p_values", "a 1-D array of p-values in [0, 1]", f"shape {p.shape}")
    known = ~np.isnan(p)
    bad = known & ((p < 0) | (p > 1))
    if bad.any():
        i = int(np.argmax(bad))
        raise _problem("p_values", "a 1-D array of p-values in [0, 1]", f"{p[i]} at index {i}")
    out = np.full(p.shape, np.nan)
    if known.any():
        out[known] = stats.false_discovery_control(p[known], method="bh")
    return out


def with_adjusted(results: Sequence[TestResult], adjusted: npt.ArrayLike) -> list[TestResult]:
    """Copies of ``results`` with ``p_adjusted`` filled in, one adjusted p-value each."""
    adj = np.asarray(adjusted, dtype=np.float64)
    if adj.shape != (len(results),):
        raise _problem(
            "adjusted", f"one adjusted p-value per result ({len(results)})", f"shape {adj.shape}"
        )
    return [replace(r, p_adjusted=float(a)) for r, a in zip(results, adj, strict=True)]


def is_alarm(result: TestResult, *, alpha: float, min_effect: float) -> bool:
    """Significant AND material, in the "worse" direction.

    Significant: ``p_adjusted`` (or ``p_value`` when no correction was applied)
    is at most ``alpha`` and the effect points the worse way (``effect > 0``;
    an improvement never alarms). Material: the effect's interval reaches the
    plan's smallest effect that matters (``ci_high >= min_effect``; the point
    estimate when the test gives no interval) -- the data are consistent with a
    change that matters. A negligible shift measured on a million rows has a
    tight interval below ``min_effect`` and is not material; a change of
    exactly ``min_effect`` at the plan's sample size alarms with the plan's
    declared power (a point-estimate rule would give only about 50%).
    NaN p-values or effects never alarm.
    """
    alpha = _probability(alpha, "alpha")
    min_effect = _positive(min_effect, "min_effect", allow_zero=True)
    p = result.p_value if math.isnan(result.p_adjusted) else result.p_adjusted
    if math.isnan(p) or math.isnan(result.effect):
        return False
    reach = result.effect if math.isnan(result.ci_high) else result.ci_high
    return p <= alpha and result.effect > 0 and reach >= min_effect


# --------------------------------------------------------------------------- planning


def required_n_paired(*, min_effect: float, sd: float, alpha: float, power: float) -> int:
    """Pairs needed to detect a mean loss difference ``min_effect`` (two-sided, normal approx).

    ``n = ceil(((z_{1-alpha/2} + z_{power}) * sd / min_effect)^2)`` where ``sd`` is
    the standard deviation of the per-request loss differences.

    >>> required_n_paired(min_effect=0.2, sd=1.0, alpha=0.05, power=0.8)
    197
    """
    min_effect = _positive(min_effect, "min_effect")
    sd = _positive(sd, "sd")
    alpha = _probability(alpha, "alpha")
    power = _probability(power, "power")
    z = float(stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power))
    return max(2, math.ceil((z * sd / min_effect) ** 2 - 1e-9))


def power_paired(n: int, *, min_effect: float, sd: float, alpha: float) -> float:
    """Power of the two-sided paired z-test with ``n`` pairs against a true ``min_effect``."""
    n = _count(n, "n", minimum=1)
    min_effect = _positive(min_effect, "min_effect")
    sd = _positive(sd, "sd")
    alpha = _probability(alpha, "alpha")
    z = float(stats.norm.ppf(1 - alpha / 2))
    shift = min_effect * math.sqrt(n) / sd
    return float(stats.norm.cdf(shift - z) + stats.norm.cdf(-shift - z))


def required_n_mcnemar(
    *, p_discordant: float, min_effect: float, alpha: float, power: float
) -> int:
    """Requests needed for McNemar's test to detect an error-rate difference ``min_effect``.

    Connor (1987): with ``p_discordant`` the share of requests on which the two
    models disagree in correctness,
    ``n = (z_{1-alpha/2} sqrt(p_d) + z_{power} sqrt(p_d - min_effect^2))^2 / min_effect^2``.
    ``min_effect`` must be below ``p_discordant`` (only discordant requests move it).

    >>> required_n_mcnemar(p_discordant=0.2, min_effect=0.05, alpha=0.05, power=0.8)
    626
    """
    p_d = _probability(p_discordant, "p_discordant")
    min_effect = _positive(min_effect, "min_effect")
    if min_effect >= p_d:
        raise _problem("min_effect", f"a float below p_discordant ({p_d})", short_repr(min_effect))
    alpha = _probability(alpha, "alpha")
    power = _probability(power, "power")
    za = float(stats.norm.ppf(1 - alpha / 2))
    zb = float(stats.norm.ppf(power))
    n = (za * math.sqrt(p_d) + zb * math.sqrt(p_d - min_effect**2)) ** 2 / min_effect**2
    return max(2, math.ceil(n - 1e-9))
