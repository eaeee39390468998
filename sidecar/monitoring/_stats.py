"""Hypothesis tests on per-example losses, each a pure function returning a :class:`TestResult`.

Sign convention: ``effect`` is positive when the *first model* of a paired
comparison has the larger loss, and when the *current* window is worse than the
reference in a now-vs-reference comparison (``welch_t(losses_ref, losses_cur)``
reports ``mean_cur - mean_ref``). Across windows, the first group is the
reference and ``effect`` is how much the worst later window exceeds it.

Every test is two-sided. Deciding whether a result is an alarm is a separate
step (:func:`is_alarm`), after multiple-testing control
(:func:`benjamini_hochberg`, :func:`with_adjusted`).

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
import numbers
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats

from .._errors import FieldProblem, InputError, short_repr
from ._results import TestResult

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

FloatArray = npt.NDArray[np.float64]

#: Index elements drawn per bootstrap chunk (an (rows, n) int64 matrix: 32 MiB).
_CHUNK_ELEMENTS = 1 << 22
#: Above this many pairs, Hodges-Lehmann estimates use a seeded sample of pairs.
_MAX_PAIRS = 2_000_000


# --------------------------------------------------------------------------- validation


def _problem(field: str, expected: str, got: str) -> InputError:
    return InputError([FieldProblem(field, expected, got)])


def _vector(values: npt.ArrayLike, name: str, *, min_size: int = 1) -> FloatArray:
    """``values`` as a 1-D float array of finite numbers with at least ``min_size`` entries."""
    expected = "a 1-D array of finite numbers" + (
        f" with at least {min_size} values" if min_size > 1 else ""
    )
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise _problem(name, expected, short_repr(values)) from None
    if arr.ndim != 1:
        raise _problem(name, expected, f"an array of shape {arr.shape}")
    if arr.size < min_size:
        raise _problem(name, expected, f"{arr.size} values" if arr.size else "an empty array")
    finite = np.isfinite(arr)
    if not finite.all():
        i = int(np.argmin(finite))
        raise _problem(name, expected, f"{arr[i]} at index {i}")
    return arr


def _paired(
    a: npt.ArrayLike, b: npt.ArrayLike, names: tuple[str, str], *, min_size: int = 1
) -> tuple[FloatArray, FloatArray]:
    x = _vector(a, names[0], min_size=min_size)
    y = _vector(b, names[1], min_size=min_size)
    if x.size != y.size:
        raise _problem(
            names[1], f"the same length as `{names[0]}` ({x.size}, one per request)", str(y.size)
        )
    return x, y


def _probability(value: float, name: str, *, closed: bool = False) -> float:
    interval = "[0, 1]" if closed else "(0, 1)"
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    v = float(value) if ok else math.nan
    inside = (0.0 <= v <= 1.0) if closed else (0.0 < v < 1.0)
    if not inside:
        raise _problem(name, f"a float in {interval}", short_repr(value))
    return v


def _positive(value: float, name: str, *, allow_zero: bool = False) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    v = float(value) if ok else math.nan
    if not (math.isfinite(v) and (v >= 0 if allow_zero else v > 0)):
        form = "a finite float >= 0" if allow_zero else "a finite float > 0"
        raise _problem(name, form, short_repr(value))
    return v


def _count(value: int, name: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise _problem(name, f"an integer >= {minimum}", short_repr(value))
    return int(value)


# --------------------------------------------------------------------------- shared helpers


def _bootstrap_means(values: FloatArray, n_boot: int, rng: np.random.Generator) -> FloatArray:
    """Means of ``n_boot`` resamples of ``values``, drawn as (rows, n) index matrices in chunks."""
    n = values.size
    rows = max(1, min(n_boot, _CHUNK_ELEMENTS // n))
    out = np.empty(n_boot)
    for start in range(0, n_boot, rows):
        stop = min(n_boot, start + rows)
        idx = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = values[idx].mean(axis=1)
    return out


def _percentile_ci(boot: FloatArray, confidence: float) -> tuple[float, float]:
    tail = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(boot, [tail, 1.0 - tail])
    return float(lo), float(hi)


def _bootstrap_p(boot: FloatArray, estimate: float) -> float:
    """Two-sided p-value: the bootstrap distribution shifted to the null (mean 0).

    ``(1 + #{|boot - estimate| >= |estimate|}) / (n_boot + 1)``, which is never 0.
    """
    extreme = np.count_nonzero(np.abs(boot - estimate) >= abs(estimate))
    return float((1 + extreme) / (boot.size + 1))


def _ratio(num: float, den: float) -> float:
    """``num / den`` where a zero denominator gives 0 (for 0/0) or a signed infinity."""
    if den > 0:
        return num / den
    return 0.0 if num == 0 else math.copysign(math.inf, num)


def _order_statistics(values: FloatArray, total: int, k: int) -> tuple[float, float, float]:
    """Median and the k-th smallest / largest of ``total`` pair statistics (``values`` may be a
    uniform sample of them), for a Hodges-Lehmann estimate and its distribution-free interval."""
    m = values.size
    k = min(max(k, 1), (total + 1) // 2)
    lo_pos = round((k - 1) * (m - 1) / max(total - 1, 1))
    hi_pos = m - 1 - lo_pos
    part = np.partition(values, [lo_pos, hi_pos])
    return float(np.median(values)), float(part[lo_pos]), float(part[hi_pos])


def _walsh_averages(d: FloatArray, seed: int) -> tuple[FloatArray, bool]:
    """All ``(d_i + d_j) / 2`` for ``i <= j``, or a seeded sample of ``_MAX_PAIRS`` of them."""
    n = d.size
    if n * (n + 1) // 2 <= _MAX_PAIRS:
        i, j = np.triu_indices(n)
        return (d[i] + d[j]) / 2.0, True
    rng = np.random.default_rng(seed)
    i = rng.integers(0, n, _MAX_PAIRS)
    j = rng.integers(0, n, _MAX_PAIRS)
    return (d[i] + d[j]) / 2.0, False


def _pair_differences(x: FloatArray, y: FloatArray, seed: int) -> tuple[FloatArray, bool]:
    """All ``x_i - y_j``, or a seeded sample of ``_MAX_PAIRS`` of them."""
    if x.size * y.size <= _MAX_PAIRS:
        return (x[:, None] - y[None, :]).ravel(), True
    rng = np.random.default_rng(seed)
    return x[rng.integers(0, x.size, _MAX_PAIRS)] - y[rng.integers(0, y.size, _MAX_PAIRS)], False


def _z(confidence: float) -> float:
    return float(stats.norm.ppf(0.5 + confidence / 2.0))


# --------------------------------------------------------------------------- paired tests


def mcnemar_exact(
    correct_a: npt.ArrayLike, correct_b: npt.ArrayLike, *, confidence: float = 0.95
) -> TestResult:
    """Exact McNemar test: do two classifiers err on the same requests at the same rate?

    Only the discordant requests carry information: ``n_ab`` where only A is
    wrong and ``n_ba`` where only B is wrong. Under the null each discordant
    request is a fair coin, so the p-value is the exact two-sided binomial test
    of ``n_ab`` out of ``n_ab + n_ba`` at 1/2 (``statistic`` = the smaller
    count, as in statsmodels' ``mcnemar(exact=True)``).

    Parameters
    ----------
    correct_a, correct_b
        Per-request correctness (bool or 0/1) of models A and B on the same requests.
    confidence
        Level of the Wald interval for ``effect``.

    Returns
    -------
    TestResult
        ``effect`` = error rate of A minus error rate of B ``= (n_ab - n_ba) / n``.
    """
    a, b = _paired(correct_a, correct_b, ("correct_a", "correct_b"))
    for name, arr in (("correct_a", a), ("correct_b", b)):
        bad = (arr != 0) & (arr != 1)
        if bad.any():
            i = int(np.argmax(bad))
            raise _problem(name, "per-request correctness as bool or 0/1", f"{arr[i]} at index {i}")
    confidence = _probability(confidence, "confidence")
    n = a.size
    only_a_wrong = int(np.count_nonzero((a == 0) & (b == 1)))
    only_b_wrong = int(np.count_nonzero((a == 1) & (b == 0)))
    discordant = only_a_wrong + only_b_wrong
    p = 1.0 if discordant == 0 else float(stats.binomtest(only_a_wrong, discordant).pvalue)
    effect = (only_a_wrong - only_b_wrong) / n
    se = math.sqrt(max(discordant - (only_a_wrong - only_b_wrong) ** 2 / n, 0.0)) / n
    half = _z(confidence) * se
    return TestResult(
        name="mcnemar_exact",
        statistic=float(min(only_a_wrong, only_b_wrong)),
        p_value=min(p, 1.0),
        effect=effect,
        ci_low=effect - half,
        ci_high=effect + half,
        n=n,
        detail={"only_a_wrong": only_a_wrong, "only_b_wrong": only_b_wrong},
    )


def paired_bootstrap(
    loss_a: npt.ArrayLike,
    loss_b: npt.ArrayLike,
    *,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> TestResult:
    """Paired bootstrap of the mean per-request loss difference ``loss_a - loss_b``.

    Requests are resampled with replacement (pairs stay together). The
    interval is the percentile interval; the two-sided p-value comes from the
    bootstrap distribution shifted to mean zero:
    ``(1 + #{|d* - d| >= |d|}) / (n_boot + 1)``. ``statistic`` is the mean
    difference over its bootstrap standard error.
    """
    a, b = _paired(loss_a, loss_b, ("loss_a", "loss_b"))
    n_boot = _count(n_boot, "n_boot", minimum=1)
    confidence = _probability(confidence, "confidence")
    d = a - b
    effect = float(d.mean())
    boot = _bootstrap_means(d, n_boot, np.random.default_rng(seed))
    lo, hi = _percentile_ci(boot, confidence)
    se = float(boot.std(ddof=1)) if n_boot > 1 else 0.0
    return TestResult(
        name="paired_bootstrap",
        statistic=_ratio(effect, se),
        p_value=_bootstrap_p(boot, effect),
        effect=effect,
        ci_low=lo,
        ci_high=hi,
        n=d.size,
        detail={"n_boot": n_boot, "seed": seed, "bootstrap_se": se},
    )


def wilcoxon_signed_rank(
    loss_a: npt.ArrayLike,
    loss_b: npt.ArrayLike,
    *,
    zero_method: str = "wilcox",
    confidence: float = 0.95,
) -> TestResult:
    """Wilcoxon signed-rank test on the per-request differences ``loss_a - loss_b``.

    ``scipy.stats.wilcoxon`` on the differences (computed here, so equal
    losses give exact zeros). ``zero_method`` says what happens to requests
    with equal losses: ``"wilcox"`` (default) drops them, ``"pratt"`` ranks
    them and drops their ranks, ``"zsplit"`` splits their ranks between the
    signs. All-zero differences give ``p_value = 1``. With many ties (0/1
    losses) prefer :func:`mcnemar_exact`.

    ``effect`` is the Hodges-Lehmann estimate: the median of the Walsh
    averages ``(d_i + d_j) / 2, i <= j`` over all differences (zeros
    included); the interval is the distribution-free one between order
    statistics of the Walsh averages (normal approximation for the rank). Above
    two million pairs a seeded sample of pairs is used (``detail["exact_hl"]``).
    """
    a, b = _paired(loss_a, loss_b, ("loss_a", "loss_b"))
    if zero_method not in ("wilcox", "pratt", "zsplit"):
        raise _problem("zero_method", "one of 'wilcox', 'pratt', 'zsplit'", repr(zero_method))
    confidence = _probability(confidence, "confidence")
    d = a - b
    n = d.size
    if np.all(d == 0):
        statistic, p = 0.0, 1.0
    else:
        res = stats.wilcoxon(d, zero_method=zero_method)
        statistic, p = float(res.statistic), float(res.pvalue)
    walsh, exact = _walsh_averages(d, seed=0)
    total = n * (n + 1) // 2
    k = math.floor(total / 2 - _z(confidence) * math.sqrt(n * (n + 1) * (2 * n + 1) / 24))
    effect, lo, hi = _order_statistics(walsh, total, k)
    return TestResult(
        name="wilcoxon_signed_rank",
        statistic=statistic,
        p_value=p,
        effect=effect,
        ci_low=lo,
        ci_high=hi,
        n=n,
        detail={
            "zero_method": zero_method,
            "zeros": int(np.count_nonzero(d == 0)),
            "median_difference": float(np.median(d)),
            "mean_difference": float(d.mean()),
            "exact_hl": exact,
        },
    )


def default_max_lag(n: int) -> int:
    """``ceil(1.3 * sqrt(n))``, capped at ``n - 1``: Lazarus, Lewis, Stock & Watson (2018).

    Much wider than the Newey-West (1994) rule ``floor(4 (n/100)^(2/9))``, which
    leaves a Diebold-Mariano test over-sized under moderate autocorrelation
    (about 10% false alarms at 5% for AR(1) with phi = 0.5, n = 200); the
    fixed-b reference distribution pays for the wider window.
    """
    return max(0, min(n - 1, math.ceil(1.3 * math.sqrt(n))))


def _newey_west_lrv(d: FloatArray, lag: int) -> float:
    """Long-run variance of ``d``: Bartlett-weighted autocovariances (over n) up to ``lag``."""
    x = d - d.mean()
    n = x.size
    if lag == 0:
        return float(x @ x) / float(n)
    # All autocovariances up to ``lag`` at once through the FFT: O(n log n)
    # instead of O(n * lag) (the lag grows like sqrt(n)).
    size = 1 << (2 * n - 1).bit_length()
    spectrum = np.fft.rfft(x, size)
    acov = np.fft.irfft(spectrum * np.conj(spectrum), size)[: lag + 1] / n
    weights = 1.0 - np.arange(1, lag + 1) / (lag + 1)
    return float(acov[0] + 2.0 * float(weights @ acov[1:]))


def diebold_mariano(
    loss_a: npt.ArrayLike,
    loss_b: npt.ArrayLike,
    *,
    max_lag: int | None = None,
    fixed_b: bool = True,
    confidence: float = 0.95,
) -> TestResult:
    """Diebold-Mariano test for equal mean loss on an autocorrelated stream of requests.

    ``d = loss_a - loss_b`` in request order. ``statistic`` is the mean of
    ``d`` over its Newey-West standard error: Bartlett weights
    ``1 - k/(L+1)`` on the autocovariances up to lag ``L = max_lag``, no
    degrees-of-freedom correction (equal to statsmodels'
    ``OLS(d, ones).fit(cov_type="HAC", cov_kwds={"maxlags": L,
    "use_correction": False})`` t-value). The default ``L`` is
    :func:`default_max_lag`.

    With ``fixed_b`` (default) the p-value and interval use the fixed-b
    approximation of Sun (2014) for the Bartlett kernel with ``b = (L+1)/n``:
    ``|statistic| / exp(b/2)`` against Student t with ``1.5 / b`` degrees of
    freedom. It corrects the downward bias and the noise of the HAC variance
    that make the normal reference over-sized in samples of a few hundred;
    with ``fixed_b=False`` it is the classical normal reference. (The
    Harvey-Leybourne-Newbold factor for one-step forecasts, ``sqrt((n-1)/n)``
    with Student t(n-1), is the ``L = 0`` limit of the same idea.)
    """
    a, b = _paired(loss_a, loss_b, ("loss_a", "loss_b"), min_size=3)
    n = a.size
    if max_lag is None:
        lag = default_max_lag(n)
    else:
        if isinstance(max_lag, bool) or not isinstance(max_lag, int | np.integer):
            raise _problem("max_lag", f"an integer in [0, {n - 1}] or None", short_repr(max_lag))
        lag = int(max_lag)
        if not 0 <= lag <= n - 1:
            raise _problem("max_lag", f"an integer in [0, {n - 1}] or None", str(lag))
    confidence = _probability(confidence, "confidence")
    d = a - b
    effect = float(d.mean())
    lrv = _newey_west_lrv(d, lag)
    se = math.sqrt(max(lrv, 0.0) / n)
    statistic = _ratio(effect, se)
    detail: dict[str, Any] = {"max_lag": lag, "long_run_variance": lrv, "fixed_b": fixed_b}
    if fixed_b:
        bandwidth = (lag + 1) / n
        scale = math.exp(bandwidth / 2.0)
        df = 1.5 / bandwidth
        p = float(2.0 * stats.t.sf(abs(statistic) / scale, df))
        half = scale * float(stats.t.ppf(0.5 + confidence / 2.0, df)) * se
        detail.update(b=bandwidth, df=df, scale=scale)
    else:
        p = float(2.0 * stats.norm.sf(abs(statistic)))
        half = _z(confidence) * se
    return TestResult(
        name="diebold_mariano",
        statistic=statistic,
        p_value=min(p, 1.0),
        effect=effect,
        ci_low=effect - half,
        ci_high=effect + half,
        n=n,
        detail=detail,
    )


# --------------------------------------------------------------------------- two-sample tests


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


# --------------------------------------------------------------------------- across windows


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
