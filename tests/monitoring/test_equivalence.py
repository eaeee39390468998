"""Equivalence tests and sample sizes against statsmodels, and their calibration."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.weightstats import ttost_ind, ttost_paired

from sidecar.monitoring import (
    adjust,
    labels_to_settle,
    required_n_equivalence,
    tost_paired,
    tost_welch,
)


@pytest.mark.parametrize(
    ("n_ref", "n", "shift", "scale"),
    [(50, 80, 0.1, 2.0), (2000, 300, -0.2, 1.0), (400, 4000, 0.45, 0.5)],
    ids=["small", "big-reference", "big-window"],
)
def test_tost_welch_matches_statsmodels_ttost_ind_unequal(
    n_ref: int, n: int, shift: float, scale: float
) -> None:
    rng = np.random.default_rng(n)
    ref, cur = rng.normal(0, 1, n_ref), rng.normal(shift, scale, n)
    ours = tost_welch(ref, cur, low=-0.5, high=0.5, alpha=0.05)
    p, lower, upper = ttost_ind(cur, ref, -0.5, 0.5, usevar="unequal")
    assert ours.p_value == pytest.approx(float(p), rel=1e-9)
    assert ours.detail["p_low"] == pytest.approx(float(lower[1]), rel=1e-9)
    assert ours.detail["p_high"] == pytest.approx(float(upper[1]), rel=1e-9)
    assert ours.detail["df"] == pytest.approx(float(lower[2]), rel=1e-9)
    # the 90% interval lies inside (low, high) exactly when both one-sided tests reject
    inside = ours.ci_low > -0.5 and ours.ci_high < 0.5
    assert inside == (ours.p_value < 0.05)


def test_tost_paired_matches_statsmodels_ttost_paired() -> None:
    rng = np.random.default_rng(3)
    a = rng.exponential(1.0, 600)
    b = a - 0.05 + rng.normal(0, 0.4, 600)
    ours = tost_paired(a, b, low=-0.1, high=0.1, alpha=0.05)
    p, lower, upper = ttost_paired(a, b, -0.1, 0.1)
    assert ours.p_value == pytest.approx(float(p), rel=1e-9)
    assert ours.detail["p_low"] == pytest.approx(float(lower[1]), rel=1e-9)
    assert ours.detail["p_high"] == pytest.approx(float(upper[1]), rel=1e-9)


def test_a_one_sided_tost_ignores_improvements() -> None:
    rng = np.random.default_rng(4)
    ref, cur = rng.normal(1.0, 0.5, 2000), rng.normal(0.2, 0.5, 2000)  # much better now
    t = tost_welch(ref, cur, low=-math.inf, high=0.05, alpha=0.05)
    assert t.p_value < 1e-12 and t.detail["p_low"] == 0.0


@pytest.mark.parametrize(
    ("margin", "sd", "power"), [(0.2, 1.0, 0.8), (0.025, 0.3, 0.9)], ids=["cohen-d-0.2", "acc"]
)
def test_required_n_matches_statsmodels_normal_power(
    margin: float, sd: float, power: float
) -> None:
    ours = required_n_equivalence(margin=margin, sd=sd, alpha=0.05, power=power)
    # one-sample one-sided z-test (statsmodels: ratio=0)
    theirs = NormalIndPower().solve_power(
        effect_size=margin / sd, alpha=0.05, power=power, ratio=0, alternative="larger"
    )
    assert ours == math.ceil(theirs)
    # a reference as large as the window: the two-sample test with ratio 1
    two = NormalIndPower().solve_power(
        effect_size=margin / sd, alpha=0.05, power=power, ratio=1, alternative="larger"
    )
    n = math.ceil(two)
    assert required_n_equivalence(
        margin=margin, sd=sd, alpha=0.05, power=power, n_reference=n
    ) == pytest.approx(n, rel=0.01)


def test_a_reference_too_small_for_the_margin_gives_no_sample_size() -> None:
    # 171 reference records at sd 0.18 pin their own mean to +-0.014: 0.025 is out of reach
    assert (
        required_n_equivalence(margin=0.025, sd=0.18, alpha=0.05, power=0.8, n_reference=171)
        is None
    )
    assert (
        labels_to_settle(
            effect=0.01, sd=0.18, n=500, margin=0.025, alpha=0.05, ref_var_of_mean=0.18**2 / 171
        )
        is None
    )


def test_labels_to_settle_is_what_then_settles_it() -> None:
    """At the number it names, the same effect and spread settle the question."""
    sd, margin, alpha = 0.4, 0.025, 0.05
    z1, z2 = float(stats.norm.ppf(1 - alpha)), float(stats.norm.ppf(1 - alpha / 2))
    for effect in (0.0, 0.01, 0.04):
        n = labels_to_settle(effect=effect, sd=sd, n=200, margin=margin, alpha=alpha)
        assert n is not None and n > 200
        se = sd / math.sqrt(n)
        if effect < margin:
            assert effect + z1 * se <= margin + 1e-12
            assert effect + z1 * sd / math.sqrt(n - 1) > margin
        else:
            assert effect - z2 * se >= 0 > effect - z2 * sd / math.sqrt(n - 1)


@pytest.mark.parametrize("method", ["bonferroni", "fdr_bh"], ids=["bonferroni", "bh"])
def test_adjust_matches_statsmodels_multipletests(method: str) -> None:
    p = np.random.default_rng(5).uniform(0, 0.2, 25)
    name = {"bonferroni": "bonferroni", "fdr_bh": "benjamini_hochberg"}[method]
    np.testing.assert_allclose(adjust(p, name), multipletests(p, method=method)[1], rtol=1e-12)
    assert adjust(p, "none").tolist() == p.tolist()
    with pytest.raises(ValueError, match=r"`correction` must be one of .*got 'holm'"):
        adjust(p, "holm")


def test_tost_is_calibrated_at_the_margin_and_powered_at_zero() -> None:
    """A decline of exactly the margin is called equivalent in at most alpha of runs (plus
    Monte Carlo error), at small and large n; no decline is called equivalent with the
    power ``required_n_equivalence`` promises."""
    alpha, margin, sd, runs = 0.05, 0.025, 0.3, 1000
    rng = np.random.default_rng(6)
    mc = 3 * math.sqrt(alpha * (1 - alpha) / runs)
    for n in (200, 2000):
        hits = sum(
            tost_welch(
                rng.normal(0.1, sd, 4000), rng.normal(0.1 + margin, sd, n),
                low=-math.inf, high=margin, alpha=alpha,
            ).p_value <= alpha
            for _ in range(runs)
        )  # fmt: skip
        assert hits / runs <= alpha + mc, (n, hits)
    n = required_n_equivalence(margin=margin, sd=sd, alpha=alpha, power=0.8, n_reference=4000)
    assert n is not None
    hits = sum(
        tost_welch(
            rng.normal(0.1, sd, 4000), rng.normal(0.1, sd, n),
            low=-math.inf, high=margin, alpha=alpha,
        ).p_value <= alpha
        for _ in range(400)
    )  # fmt: skip
    assert abs(hits / 400 - 0.8) <= 3 * math.sqrt(0.16 / 400), (n, hits)


def test_bad_arguments_are_refused_naming_them() -> None:
    with pytest.raises(ValueError, match=r"`low` must be below `high`; got low=1, high=0"):
        tost_welch([1.0, 2.0], [1.0, 2.0], low=1, high=0, alpha=0.05)
    with pytest.raises(ValueError, match=r"`alpha` must be a float in \(0, 0.5\); got 0.7"):
        tost_paired([1.0, 2.0], [1.0, 2.0], low=-1, high=1, alpha=0.7)
    with pytest.raises(ValueError, match=r"need at least 2 values each; got 1 and 2"):
        tost_welch([1.0], [1.0, 2.0], low=-1, high=1, alpha=0.05)
    with pytest.raises(ValueError, match=r"same length >= 2; got shapes \(2,\) and \(3,\)"):
        tost_paired([1.0, 2.0], [1.0, 2.0, 3.0], low=-1, high=1, alpha=0.05)
