"""Hypothesis tests: against scipy/statsmodels, calibrated under no change, powered as planned."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import signal, stats
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.oneway import anova_oneway as sm_anova_oneway
from statsmodels.stats.proportion import proportions_ztest

from sidecar import InputError
from sidecar.monitoring import (
    TestResult,
    anova_oneway,
    benjamini_hochberg,
    bootstrap_mean_diff,
    default_max_lag,
    diebold_mariano,
    f_test_variances,
    is_alarm,
    kruskal,
    mann_whitney,
    mcnemar_exact,
    paired_bootstrap,
    power_paired,
    required_n_mcnemar,
    required_n_paired,
    two_proportions,
    welch_anova,
    welch_t,
    wilcoxon_signed_rank,
)
from sidecar.monitoring._stats import with_adjusted


def _close(expected: Any) -> Any:
    """Equal to 1e-10 relative (1e-12 absolute near zero): the reference implementations agree."""
    return pytest.approx(expected, rel=1e-10, abs=1e-12)


ALPHA = 0.05


def _max_rate(runs: int, alpha: float = ALPHA) -> float:
    """The largest false-alarm rate a calibrated test shows over ``runs`` runs (3 MC sigmas)."""
    return alpha + 3 * math.sqrt(alpha * (1 - alpha) / runs)


def _min_power(runs: int, power: float) -> float:
    return power - 3 * math.sqrt(power * (1 - power) / runs)


def _rate(results: list[TestResult], alpha: float = ALPHA) -> float:
    return float(np.mean([r.p_value <= alpha for r in results]))


def _paired_losses(
    runs: int, n: int, *, shift: float = 0.0, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-request losses of two models on the same requests: a shared, skewed difficulty plus
    each model's own noise; model A's loss is larger by ``shift`` (differences have sd 1)."""
    rng = np.random.default_rng(seed)
    difficulty = rng.gamma(2.0, 1.0, size=(runs, n))
    noise = rng.normal(0.0, math.sqrt(0.5), size=(2, runs, n))
    return difficulty + noise[0] + shift, difficulty + noise[1]


# --------------------------------------------------------------------------- references


@pytest.mark.parametrize(
    "n,p_a,p_b,seed",
    [(40, 0.8, 0.8, 0), (200, 0.7, 0.9, 1), (500, 0.9, 0.85, 2), (15, 0.5, 0.5, 3)],
    ids=["small", "b-better", "a-better", "tiny"],
)
def test_mcnemar_matches_statsmodels(n: int, p_a: float, p_b: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = rng.random(n) < p_a, rng.random(n) < p_b
    table = [[np.sum(a & b), np.sum(a & ~b)], [np.sum(~a & b), np.sum(~a & ~b)]]
    expected = mcnemar(table, exact=True)
    result = mcnemar_exact(a, b)
    assert result.statistic == expected.statistic
    assert result.p_value == _close(expected.pvalue)
    assert result.effect == _close((1 - a.mean()) - (1 - b.mean()))
    assert result.ci_low < result.effect < result.ci_high


def test_mcnemar_without_discordant_pairs() -> None:
    result = mcnemar_exact([1, 0, 1], [1, 0, 1])
    assert (result.p_value, result.effect, result.statistic) == (1.0, 0.0, 0.0)


@pytest.mark.parametrize("zero_method", ["wilcox", "pratt", "zsplit"])
def test_wilcoxon_matches_scipy_and_hodges_lehmann(zero_method: str) -> None:
    rng = np.random.default_rng(4)
    a = np.round(rng.exponential(size=60), 1)
    b = np.round(rng.exponential(size=60), 1)
    result = wilcoxon_signed_rank(a, b, zero_method=zero_method)
    expected = stats.wilcoxon(a - b, zero_method=zero_method)
    assert result.statistic == _close(expected.statistic)
    assert result.p_value == _close(expected.pvalue)
    d = a - b
    walsh = [(d[i] + d[j]) / 2 for i in range(d.size) for j in range(i, d.size)]
    assert result.effect == _close(np.median(walsh))
    assert result.ci_low <= result.effect <= result.ci_high
    assert result.detail["zeros"] == int(np.sum(d == 0)) > 0


def test_wilcoxon_of_identical_losses() -> None:
    result = wilcoxon_signed_rank([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert (result.p_value, result.effect) == (1.0, 0.0)


def test_hodges_lehmann_samples_pairs_in_large_windows() -> None:
    """Above two million pairs a seeded sample of pairs stands in for all of them."""
    rng = np.random.default_rng(5)
    d = rng.exponential(size=2100) - 0.8  # 2.2 million Walsh averages
    i, j = np.triu_indices(d.size)
    exact = np.median((d[i] + d[j]) / 2)
    result = wilcoxon_signed_rank(d, np.zeros_like(d))
    assert result.detail["exact_hl"] is False
    assert result.effect == pytest.approx(exact, abs=0.005)
    ref, cur = rng.exponential(size=(2, 1500))
    two_sample = mann_whitney(ref, cur + 0.1)
    assert two_sample.detail["exact_hl"] is False
    assert two_sample.effect == pytest.approx(
        np.median(np.subtract.outer(cur + 0.1, ref)), abs=0.005
    )


def test_hodges_lehmann_ci_covers_the_shift() -> None:
    runs, n = 300, 80
    a, b = _paired_losses(runs, n, shift=0.3, seed=13)
    covered = [
        (r := wilcoxon_signed_rank(x, y)).ci_low <= 0.3 <= r.ci_high
        for x, y in zip(a, b, strict=True)
    ]
    assert np.mean(covered) >= _min_power(runs, 0.95)


@pytest.mark.parametrize("max_lag", [None, 0, 3, 12], ids=["default", "lag0", "lag3", "lag12"])
@pytest.mark.parametrize("use_correction", [False, True], ids=["plain", "df-corrected"])
def test_diebold_mariano_statistic_matches_statsmodels_hac(
    max_lag: int | None, use_correction: bool
) -> None:
    rng = np.random.default_rng(6)
    d = signal.lfilter([1.0], [1.0, -0.4], rng.normal(0.1, 1.0, 150))
    result = diebold_mariano(d, np.zeros_like(d), max_lag=max_lag, fixed_b=False)
    lag = default_max_lag(d.size) if max_lag is None else max_lag
    fit = sm.OLS(d, np.ones_like(d)).fit(
        cov_type="HAC", cov_kwds={"maxlags": lag, "use_correction": use_correction}
    )
    factor = math.sqrt((d.size - 1) / d.size) if use_correction else 1.0
    assert result.statistic * factor == _close(fit.tvalues[0])
    if not use_correction:
        assert result.p_value == _close(fit.pvalues[0])
    assert result.detail["max_lag"] == lag


def test_diebold_mariano_fixed_b_is_more_cautious() -> None:
    rng = np.random.default_rng(8)
    d = rng.normal(0.15, 1.0, 200)
    normal = diebold_mariano(d, np.zeros(200), fixed_b=False)
    fixed = diebold_mariano(d, np.zeros(200))
    assert fixed.statistic == normal.statistic
    assert fixed.p_value > normal.p_value
    assert fixed.ci_high - fixed.ci_low > normal.ci_high - normal.ci_low


def test_diebold_mariano_of_identical_losses() -> None:
    result = diebold_mariano([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0])
    assert (result.p_value, result.effect, result.statistic) == (1.0, 0.0, 0.0)


def test_default_max_lag() -> None:
    assert [default_max_lag(n) for n in (3, 100, 200, 1000)] == [2, 13, 19, 42]


def test_welch_t_matches_scipy_and_its_interval() -> None:
    rng = np.random.default_rng(10)
    ref, cur = rng.normal(1.0, 1.0, 80), rng.normal(1.3, 2.0, 50)
    result = welch_t(ref, cur, confidence=0.9)
    expected = stats.ttest_ind(cur, ref, equal_var=False)
    assert result.statistic == _close(expected.statistic)
    assert result.p_value == _close(expected.pvalue)
    v_ref, v_cur = ref.var(ddof=1) / ref.size, cur.var(ddof=1) / cur.size
    df = (v_ref + v_cur) ** 2 / (v_ref**2 / (ref.size - 1) + v_cur**2 / (cur.size - 1))
    half = stats.t.ppf(0.95, df) * math.sqrt(v_ref + v_cur)
    assert result.effect == _close(cur.mean() - ref.mean())
    assert (result.ci_low, result.ci_high) == _close((result.effect - half, result.effect + half))


def test_mann_whitney_matches_scipy_and_hodges_lehmann() -> None:
    rng = np.random.default_rng(12)
    ref, cur = rng.exponential(size=70), rng.exponential(size=50) + 0.4
    result = mann_whitney(ref, cur)
    expected = stats.mannwhitneyu(cur, ref, alternative="two-sided")
    assert result.statistic == _close(expected.statistic)
    assert result.p_value == _close(expected.pvalue)
    assert result.effect == _close(np.median(np.subtract.outer(cur, ref)))
    assert result.ci_low < result.effect < result.ci_high
    assert result.detail["prob_superiority"] > 0.5


@pytest.mark.parametrize(
    "k_ref,n_ref,k_cur,n_cur",
    [(10, 200, 25, 180), (0, 50, 3, 60), (30, 30, 28, 30), (123, 5000, 140, 4000)],
    ids=["moderate", "zero-ref", "near-one", "large"],
)
def test_two_proportions_matches_statsmodels(
    k_ref: int, n_ref: int, k_cur: int, n_cur: int
) -> None:
    result = two_proportions(k_ref, n_ref, k_cur, n_cur)
    z, p = proportions_ztest([k_cur, k_ref], [n_cur, n_ref])
    assert result.statistic == _close(z)
    assert result.p_value == _close(p)
    assert result.effect == _close(k_cur / n_cur - k_ref / n_ref)


def test_two_proportions_all_zero_rates() -> None:
    assert two_proportions(0, 100, 0, 100).p_value == 1.0


def _windows(seed: int, sizes: tuple[int, ...], sds: tuple[float, ...]) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [
        rng.normal(0.1 * i, sd, size) for i, (size, sd) in enumerate(zip(sizes, sds, strict=True))
    ]


def test_anova_oneway_matches_scipy_and_statsmodels() -> None:
    groups = _windows(14, (30, 40, 25, 50), (1.0, 1.0, 1.0, 1.0))
    result = anova_oneway(groups)
    expected = stats.f_oneway(*groups)
    assert result.statistic == _close(expected.statistic)
    assert result.p_value == _close(expected.pvalue)
    equal_var = sm_anova_oneway(groups, use_var="equal")
    assert result.p_value == _close(equal_var.pvalue)
    means = [g.mean() for g in groups]
    assert result.effect == _close(max(means[1:]) - means[0])


@pytest.mark.parametrize(
    "sizes,sds",
    [((30, 40, 25, 50), (1.0, 3.0, 0.5, 2.0)), ((5, 8), (1.0, 4.0)), ((200, 20, 60), (1, 1, 1))],
    ids=["4-unequal", "2-small", "3-equal-var"],
)
def test_welch_anova_matches_statsmodels(sizes: tuple[int, ...], sds: tuple[float, ...]) -> None:
    groups = _windows(15, sizes, sds)
    result = welch_anova(groups)
    expected = sm_anova_oneway(groups, use_var="unequal", welch_correction=True)
    assert result.statistic == _close(expected.statistic)
    assert result.p_value == _close(expected.pvalue)
    assert result.detail["df_den"] == _close(expected.df[1])


def test_welch_anova_with_two_groups_is_welch_t_squared() -> None:
    ref, cur = _windows(16, (30, 45), (1.0, 2.5))
    t = welch_t(ref, cur)
    f = welch_anova([ref, cur])
    assert f.statistic == _close(t.statistic**2)
    assert f.p_value == _close(t.p_value)


def test_welch_anova_without_variance_is_nan() -> None:
    result = welch_anova([[1.0, 1.0, 1.0], [0.0, 2.0, 1.0]])
    assert math.isnan(result.p_value)
    assert not is_alarm(result, alpha=0.05, min_effect=0.0)


def test_kruskal_matches_scipy() -> None:
    groups = _windows(17, (30, 40, 25), (1.0, 2.0, 1.0))
    result = kruskal(groups)
    expected = stats.kruskal(*groups)
    assert result.statistic == _close(expected.statistic)
    assert result.p_value == _close(expected.pvalue)


def test_constant_windows() -> None:
    same = [[2.0, 2.0], [2.0, 2.0, 2.0]]
    assert kruskal(same).p_value == 1.0
    assert anova_oneway(same).p_value == 1.0
    assert anova_oneway([[1.0, 1.0], [2.0, 2.0]]).p_value == 0.0


def test_f_test_variances() -> None:
    rng = np.random.default_rng(18)
    a, b = rng.normal(0, 2.0, 40), rng.normal(0, 1.0, 30)
    result = f_test_variances(a, b)
    ratio = a.var(ddof=1) / b.var(ddof=1)
    assert result.statistic == _close(ratio)
    assert result.p_value == _close(2 * stats.f.sf(ratio, 39, 29))
    assert result.effect == _close(ratio - 1)
    assert result.ci_low < result.effect < result.ci_high
    swapped = f_test_variances(b, a)
    assert swapped.p_value == _close(result.p_value)
    assert swapped.effect < 0


def test_benjamini_hochberg_matches_statsmodels() -> None:
    p = np.random.default_rng(19).uniform(size=40) ** 3
    expected = multipletests(p, method="fdr_bh")[1]
    np.testing.assert_allclose(benjamini_hochberg(p), expected, rtol=1e-10, atol=1e-12)


def test_benjamini_hochberg_leaves_nan_out() -> None:
    p = np.array([0.01, np.nan, 0.04, 0.03])
    adjusted = benjamini_hochberg(p)
    assert math.isnan(adjusted[1])
    np.testing.assert_allclose(adjusted[[0, 2, 3]], multipletests(p[[0, 2, 3]], method="fdr_bh")[1])
    assert benjamini_hochberg([]).shape == (0,)


def test_with_adjusted_fills_p_adjusted() -> None:
    results = [welch_t([1.0, 2.0, 3.0], [2.0, 3.0, 4.5]), welch_t([1.0, 2.0], [1.0, 2.5])]
    adjusted = with_adjusted(results, benjamini_hochberg([r.p_value for r in results]))
    assert [r.p_adjusted for r in adjusted] == pytest.approx(
        list(benjamini_hochberg([r.p_value for r in results]))
    )
    assert [r.p_value for r in adjusted] == [r.p_value for r in results]
    assert math.isnan(results[0].p_adjusted)  # the originals are untouched


@pytest.mark.parametrize(
    "p_value,p_adjusted,effect,expected",
    [
        (0.01, math.nan, 0.05, True),
        (0.01, math.nan, 0.01, False),  # significant, not material
        (0.20, math.nan, 0.50, False),  # material, not significant
        (0.01, 0.10, 0.05, False),  # the adjusted p-value decides
        (0.01, 0.04, 0.05, True),
        (0.01, math.nan, -0.50, False),  # an improvement never alarms
        (math.nan, math.nan, 0.50, False),
    ],
    ids=["alarm", "immaterial", "insignificant", "adjusted-away", "adjusted", "better", "nan"],
)
def test_is_alarm(p_value: float, p_adjusted: float, effect: float, expected: bool) -> None:
    result = TestResult("t", 0.0, p_value, effect, p_adjusted=p_adjusted)
    assert is_alarm(result, alpha=0.05, min_effect=0.03) is expected


def test_required_n_paired_and_power() -> None:
    n = required_n_paired(min_effect=0.2, sd=1.0, alpha=0.05, power=0.8)
    z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)
    assert n == math.ceil((z / 0.2) ** 2) == 197
    assert power_paired(n, min_effect=0.2, sd=1.0, alpha=0.05) >= 0.8
    assert power_paired(n - 3, min_effect=0.2, sd=1.0, alpha=0.05) < 0.8
    assert required_n_paired(min_effect=0.1, sd=1.0, alpha=0.05, power=0.8) > 4 * n - 4


# --------------------------------------------------------------------------- calibration


PAIRED_TESTS: dict[str, Callable[[np.ndarray, np.ndarray], TestResult]] = {
    "paired_bootstrap": lambda a, b: paired_bootstrap(a, b, n_boot=500),
    "wilcoxon": wilcoxon_signed_rank,
    "diebold_mariano": diebold_mariano,
    "diebold_mariano-normal-lag0": lambda a, b: diebold_mariano(a, b, max_lag=0, fixed_b=False),
}
PAIRED_RUNS = {"paired_bootstrap": 400}


@pytest.mark.parametrize("name", list(PAIRED_TESTS), ids=list(PAIRED_TESTS))
def test_paired_tests_are_calibrated_under_no_change(name: str) -> None:
    runs = PAIRED_RUNS.get(name, 1000)
    a, b = _paired_losses(runs, 200, seed=100)
    results = [PAIRED_TESTS[name](x, y) for x, y in zip(a, b, strict=True)]
    assert _rate(results) <= _max_rate(runs)
    assert _rate(results, 0.2) <= _max_rate(runs, 0.2)


def test_mcnemar_is_calibrated_under_no_change() -> None:
    runs, n = 1000, 200
    rng = np.random.default_rng(101)
    shared = rng.random((runs, n)) < 0.6  # both right on easy requests
    a = shared | (rng.random((runs, n)) < 0.5)
    b = shared | (rng.random((runs, n)) < 0.5)
    results = [mcnemar_exact(x, y) for x, y in zip(a, b, strict=True)]
    assert _rate(results) <= _max_rate(runs)


TWO_SAMPLE_TESTS: dict[str, Callable[[np.ndarray, np.ndarray], TestResult]] = {
    "welch_t": welch_t,
    "mann_whitney": mann_whitney,
    "bootstrap_mean_diff": lambda r, c: bootstrap_mean_diff(r, c, n_boot=500),
    "f_test_variances-normal": f_test_variances,
}


@pytest.mark.parametrize("name", list(TWO_SAMPLE_TESTS), ids=list(TWO_SAMPLE_TESTS))
def test_two_sample_tests_are_calibrated_under_no_change(name: str) -> None:
    runs = 400 if "bootstrap" in name else 1000
    rng = np.random.default_rng(102)
    if name.endswith("normal"):  # the F test assumes normal data
        ref, cur = rng.normal(size=(2, runs, 200))
    else:
        ref, cur = rng.gamma(2.0, 1.0, size=(2, runs, 200))
    results = [TWO_SAMPLE_TESTS[name](r, c) for r, c in zip(ref, cur, strict=True)]
    assert _rate(results) <= _max_rate(runs)


def test_two_proportions_is_calibrated_under_no_change() -> None:
    runs = 1000
    rng = np.random.default_rng(103)
    k_ref, k_cur = rng.binomial(400, 0.1, runs), rng.binomial(300, 0.1, runs)
    results = [two_proportions(int(r), 400, int(c), 300) for r, c in zip(k_ref, k_cur, strict=True)]
    assert _rate(results) <= _max_rate(runs)


WINDOW_TESTS: dict[str, Callable[[list[np.ndarray]], TestResult]] = {
    "anova_oneway": anova_oneway,
    "welch_anova": welch_anova,
    "kruskal": kruskal,
}


@pytest.mark.parametrize("name", list(WINDOW_TESTS), ids=list(WINDOW_TESTS))
def test_window_tests_are_calibrated_under_no_change(name: str) -> None:
    runs = 1000
    data = np.random.default_rng(104).gamma(2.0, 1.0, size=(runs, 4, 50))
    results = [WINDOW_TESTS[name](list(windows)) for windows in data]
    assert _rate(results) <= _max_rate(runs)


def test_diebold_mariano_keeps_its_size_on_autocorrelated_losses() -> None:
    """AR(1) loss differences (phi = 0.5): the naive t-test sees ~3x too little variance."""
    runs, n, phi = 1000, 1000, 0.5
    noise = np.random.default_rng(105).normal(size=(runs, n + 200))
    d = signal.lfilter([1.0], [1.0, -phi], noise, axis=1)[:, 200:]
    zeros = np.zeros(n)
    dm = _rate([diebold_mariano(x, zeros) for x in d])
    naive = float(np.mean(stats.ttest_1samp(d, 0.0, axis=1).pvalue <= ALPHA))
    assert dm <= _max_rate(runs)
    assert naive > 0.15


# --------------------------------------------------------------------------- power


POWERED: dict[str, tuple[Callable[[np.ndarray, np.ndarray], TestResult], float]] = {
    "paired_bootstrap": (lambda a, b: paired_bootstrap(a, b, n_boot=500), 1.0),
    # asymptotic relative efficiency 3/pi against the t-test on normal differences
    "wilcoxon": (wilcoxon_signed_rank, 3 / math.pi),
    "diebold_mariano-lag0": (lambda a, b: diebold_mariano(a, b, max_lag=0), 1.0),
}


@pytest.mark.parametrize("name", list(POWERED), ids=list(POWERED))
def test_paired_tests_have_the_planned_power(name: str) -> None:
    test, efficiency = POWERED[name]
    runs, min_effect, power = 400, 0.2, 0.8
    n = required_n_paired(min_effect=min_effect, sd=1.0, alpha=ALPHA, power=power)
    n = math.ceil(n / efficiency)
    a, b = _paired_losses(runs, n, shift=min_effect, seed=200)
    results = [test(x, y) for x, y in zip(a, b, strict=True)]
    assert _rate(results) >= _min_power(runs, power)
    assert np.mean([r.effect for r in results]) == pytest.approx(min_effect, abs=0.03)


def test_mcnemar_has_the_planned_power() -> None:
    runs, p_disc, min_effect, power = 400, 0.2, 0.05, 0.8
    n = required_n_mcnemar(p_discordant=p_disc, min_effect=min_effect, alpha=ALPHA, power=power)
    u = np.random.default_rng(201).random((runs, n))
    only_a_wrong = u < (p_disc + min_effect) / 2
    only_b_wrong = (u >= (p_disc + min_effect) / 2) & (u < p_disc)
    results = [mcnemar_exact(~x, ~y) for x, y in zip(only_a_wrong, only_b_wrong, strict=True)]
    assert _rate(results) >= _min_power(runs, power)


# --------------------------------------------------------------------------- error paths


ERROR_CASES: dict[str, tuple[Callable[[], Any], str]] = {
    "empty": (lambda: paired_bootstrap([], []), r"`loss_a` must be a 1-D array .*; got an empty"),
    "length-mismatch": (
        lambda: wilcoxon_signed_rank([1.0, 2.0], [1.0]),
        r"`loss_b` must be the same length as `loss_a` \(2, one per request\); got 1",
    ),
    "nan": (lambda: diebold_mariano([1, 2, 3], [1, math.nan, 3]), r"`loss_b` .*got nan at index 1"),
    "2-d": (lambda: welch_t(np.ones((2, 2)), [1.0, 2.0]), r"`losses_ref` .*shape \(2, 2\)"),
    "text": (lambda: mann_whitney("abc", [1.0]), r"`losses_ref` must be a 1-D array"),
    "too-short": (lambda: welch_t([1.0], [1.0, 2.0]), r"`losses_ref` .*at least 2 values; got 1"),
    "dm-too-short": (lambda: diebold_mariano([1, 2], [1, 2]), r"at least 3 values"),
    "max_lag": (
        lambda: diebold_mariano([1, 2, 3], [3, 2, 1], max_lag=5),
        r"`max_lag` must be an integer in \[0, 2\] or None; got 5",
    ),
    "correctness": (lambda: mcnemar_exact([1, 2], [1, 0]), r"`correct_a` must be .*0/1; got 2"),
    "zero_method": (lambda: wilcoxon_signed_rank([1.0], [2.0], zero_method="x"), r"`zero_method`"),
    "n_boot": (lambda: paired_bootstrap([1.0], [2.0], n_boot=0), r"`n_boot` must be an integer"),
    "k>n": (lambda: two_proportions(5, 4, 1, 4), r"`k_ref` must be an integer in \[0, n_ref=4\]"),
    "n0": (lambda: two_proportions(0, 0, 1, 4), r"`n_ref` must be an integer >= 1; got 0"),
    "one-group": (lambda: kruskal([[1.0, 2.0]]), r"`groups` must be a sequence of at least 2"),
    "group-nan": (lambda: anova_oneway([[1.0, 2.0], [1.0, math.nan]]), r"`groups\[1\]` .*nan"),
    "p-range": (lambda: benjamini_hochberg([0.5, 1.5]), r"`p_values` .*1.5 at index 1"),
    "adjusted-length": (
        lambda: with_adjusted([TestResult("t", 0.0, 0.1, 0.0)], [0.1, 0.2]),
        r"`adjusted` must be one adjusted p-value per result \(1\)",
    ),
    "alpha": (
        lambda: is_alarm(TestResult("t", 0.0, 0.1, 0.0), alpha=5, min_effect=0.1),
        r"`alpha` must be a float in \(0, 1\); got 5",
    ),
    "min_effect": (
        lambda: required_n_paired(min_effect=0, sd=1, alpha=0.05, power=0.8),
        r"`min_effect` must be a finite float > 0; got 0",
    ),
    "power": (
        lambda: required_n_paired(min_effect=0.1, sd=1, alpha=0.05, power=80),
        r"`power` must be a float in \(0, 1\)",
    ),
    "mcnemar-effect": (
        lambda: required_n_mcnemar(p_discordant=0.1, min_effect=0.2, alpha=0.05, power=0.8),
        r"`min_effect` must be a float below p_discordant",
    ),
}


@pytest.mark.parametrize("call,match", list(ERROR_CASES.values()), ids=list(ERROR_CASES))
def test_bad_input_names_the_argument(call: Callable[[], Any], match: str) -> None:
    with pytest.raises(InputError, match=match):
        call()


def test_results_serialise() -> None:
    result = diebold_mariano([1.0, 2.0, 3.0, 5.0], [1.0, 1.5, 2.0, 2.0])
    data = result.to_dict()
    assert data["name"] == "diebold_mariano"
    assert data["p_adjusted"] is None
    assert isinstance(data["detail"]["max_lag"], int)
