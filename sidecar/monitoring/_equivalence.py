"""Equivalence: can the data *rule out* a material change? And how many labels would tell?

A significance test answers "is there a change?"; it controls false alarms at
every sample size. The opposite claim -- "nothing material changed" -- needs
its own test: two one-sided tests (TOST, Schuirmann 1987). The change is
within ``(low, high)`` at level ``alpha`` when both one-sided nulls
``change <= low`` and ``change >= high`` are rejected at ``alpha``, which is the
same as the ``1 - 2 alpha`` confidence interval lying inside ``(low, high)``.
For "no material *decline*" ``low`` is ``-inf`` (an improvement is no harm),
and only the upper test remains.

:func:`tost_welch` compares two independent samples (a model's losses now
against its reference losses; Welch-Satterthwaite degrees of freedom, as
``statsmodels.stats.weightstats.ttost_ind(..., usevar="unequal")``);
:func:`tost_paired` compares two models on the same requests (as
``ttost_paired``). :func:`required_n_equivalence` is the sample size at which
an unchanged model is called equivalent with the declared power, and
:func:`labels_to_settle` how many labels would settle an open question,
from the variance actually observed.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> ref, now = rng.normal(1.0, 0.5, 2000), rng.normal(1.0, 0.5, 1500)
>>> t = tost_welch(ref, now, low=-np.inf, high=0.1, alpha=0.05)
>>> t.p_value < 0.05, t.ci_high < 0.1
(True, True)
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy import stats

from ._results import TestResult

__all__ = ["labels_to_settle", "required_n_equivalence", "tost_paired", "tost_welch"]


def _one_sided(
    effect: float, se: float, df: float, low: float, high: float, alpha: float
) -> tuple[float, float, float, float, float]:
    """(p, p_low, p_high, ci_low, ci_high) of the TOST for ``effect`` with standard error ``se``."""
    dist = stats.t(df) if math.isfinite(df) else stats.norm()
    if se == 0:
        p_low = 0.0 if effect > low else 1.0
        p_high = 0.0 if effect < high else 1.0
        return max(p_low, p_high), p_low, p_high, effect, effect
    p_low = 0.0 if low == -math.inf else float(dist.sf((effect - low) / se))
    p_high = 0.0 if high == math.inf else float(dist.cdf((effect - high) / se))
    half = float(dist.ppf(1 - alpha)) * se
    return max(p_low, p_high), p_low, p_high, effect - half, effect + half


def _check(low: float, high: float, alpha: float) -> None:
    if not low < high:
        raise ValueError(f"`low` must be below `high`; got low={low}, high={high}.")
    if not 0 < alpha < 0.5:
        raise ValueError(f"`alpha` must be a float in (0, 0.5); got {alpha!r}.")


def tost_welch(
    losses_ref: npt.ArrayLike,
    losses_cur: npt.ArrayLike,
    *,
    low: float,
    high: float,
    alpha: float,
) -> TestResult:
    """TOST of ``mean_cur - mean_ref`` within ``(low, high)``, unequal variances.

    ``p_value`` is the larger one-sided p-value (at most ``alpha``: equivalent);
    ``ci_low``/``ci_high`` are the ``1 - 2 alpha`` Welch interval;
    ``detail`` has both one-sided p-values and the degrees of freedom.
    """
    _check(low, high, alpha)
    ref = np.asarray(losses_ref, dtype=np.float64)
    cur = np.asarray(losses_cur, dtype=np.float64)
    if ref.size < 2 or cur.size < 2:
        raise ValueError(
            "`losses_ref` and `losses_cur` need at least 2 values each; "
            f"got {ref.size} and {cur.size}."
        )
    v_ref, v_cur = float(ref.var(ddof=1)) / ref.size, float(cur.var(ddof=1)) / cur.size
    se = math.sqrt(v_ref + v_cur)
    denom = v_ref**2 / (ref.size - 1) + v_cur**2 / (cur.size - 1)
    df = (v_ref + v_cur) ** 2 / denom if denom > 0 else math.inf
    effect = float(cur.mean() - ref.mean())
    p, p_low, p_high, lo, hi = _one_sided(effect, se, df, low, high, alpha)
    return TestResult(
        name="tost_welch",
        statistic=(effect - high) / se if se > 0 else math.nan,
        p_value=p,
        effect=effect,
        ci_low=lo,
        ci_high=hi,
        n=ref.size + cur.size,
        alternative="equivalence",
        detail={"p_low": p_low, "p_high": p_high, "df": df, "se": se, "low": low, "high": high},
    )


def tost_paired(
    loss_a: npt.ArrayLike, loss_b: npt.ArrayLike, *, low: float, high: float, alpha: float
) -> TestResult:
    """TOST of the mean per-request difference ``a - b`` within ``(low, high)`` (paired t)."""
    _check(low, high, alpha)
    a = np.asarray(loss_a, dtype=np.float64)
    b = np.asarray(loss_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size < 2:
        raise ValueError(
            "`loss_a` and `loss_b` must be 1-D arrays of the same length >= 2; "
            f"got shapes {a.shape} and {b.shape}."
        )
    d = a - b
    se = float(d.std(ddof=1)) / math.sqrt(d.size)
    effect = float(d.mean())
    p, p_low, p_high, lo, hi = _one_sided(effect, se, d.size - 1.0, low, high, alpha)
    return TestResult(
        name="tost_paired",
        statistic=(effect - high) / se if se > 0 else math.nan,
        p_value=p,
        effect=effect,
        ci_low=lo,
        ci_high=hi,
        n=d.size,
        alternative="equivalence",
        detail={"p_low": p_low, "p_high": p_high, "se": se, "low": low, "high": high},
    )


def required_n_equivalence(
    *,
    margin: float,
    sd: float,
    alpha: float,
    power: float,
    n_reference: float = math.inf,
    sd_reference: float | None = None,
) -> int | None:
    """Labels at which an unchanged model's decline interval excludes ``margin`` with ``power``.

    One-sided normal approximation: ``(z_{1-alpha} + z_power) * se <= margin`` with
    ``se^2 = sd_reference^2 / n_reference + sd^2 / n``. ``None`` when no ``n`` is
    enough (the reference alone is too small to rule out ``margin``). With an
    infinite reference it is the one-sample ``((z_{1-alpha} + z_power) sd / margin)^2``.

    >>> required_n_equivalence(margin=0.1, sd=0.5, alpha=0.05, power=0.8)
    155
    """
    z = float(stats.norm.ppf(1 - alpha) + stats.norm.ppf(power))
    ref_var = 0.0 if math.isinf(n_reference) else (sd_reference or sd) ** 2 / n_reference
    room = (margin / z) ** 2 - ref_var
    if room <= 0:
        return None
    return max(2, math.ceil(sd**2 / room - 1e-9))


def labels_to_settle(
    *, effect: float, sd: float, n: int, margin: float, alpha: float, ref_var_of_mean: float = 0.0
) -> int | None:
    """About how many labels *in all* would settle an open question, at the observed variance.

    The observed change ``effect`` (per-example standard deviation ``sd`` over
    ``n`` labels) is taken at face value: below ``margin`` the question is when
    the ``1 - 2 alpha`` upper bound falls below ``margin`` (no material decline);
    at or above it, when the two-sided ``1 - alpha`` interval leaves zero (an
    alarm). ``ref_var_of_mean`` is the reference mean's variance, which more
    labels cannot shrink; ``None`` when it alone keeps the question open.
    """
    if sd <= 0 or not math.isfinite(effect):
        return n
    if effect < margin:
        z, gap = float(stats.norm.ppf(1 - alpha)), margin - effect
    else:
        z, gap = float(stats.norm.ppf(1 - alpha / 2)), effect
    room = (gap / z) ** 2 - ref_var_of_mean
    if room <= 0:
        return None
    return max(n, math.ceil(sd**2 / room))
