"""Drift tests: exact agreement with SciPy, calibration, power, materiality."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from scipy import stats

from sidecar import InputError
from sidecar.monitoring._drift import (
    chi2_homogeneity,
    is_material,
    ks_2samp_sorted,
    ks_drift,
    psi,
    relation_change,
    sort_reference,
)

ALPHA = 0.05
RUNS = 500
MC_SE = math.sqrt(ALPHA * (1 - ALPHA) / RUNS)


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


# --------------------------------------------------------------------------- KS vs scipy

Sampler = Callable[[np.random.Generator, int, int], tuple[np.ndarray, np.ndarray]]


def _normal(shift: float = 0.0) -> Sampler:
    return lambda rng, n1, n2: (rng.normal(size=n1), rng.normal(shift, 1.0, size=n2))


def _integers(high: int, shift: int = 0) -> Sampler:
    return lambda rng, n1, n2: (
        rng.integers(0, high, n1).astype(float),
        rng.integers(shift, high + shift, n2).astype(float),
    )


def _poisson(lam1: float, lam2: float) -> Sampler:
    return lambda rng, n1, n2: (
        rng.poisson(lam1, n1).astype(float),
        rng.poisson(lam2, n2).astype(float),
    )


def _shared(rng: np.random.Generator, n1: int, n2: int) -> tuple[np.ndarray, np.ndarray]:
    """The current window repeats reference values exactly: ties across the samples."""
    ref = rng.poisson(4, n1).astype(float)
    return ref, rng.choice(ref, n2)


KS_CASES = [
    ("one_each", 1, 1, _normal()),
    ("one_vs_seven", 1, 7, _normal()),
    ("equal_small", 50, 50, _normal(0.3)),
    ("unequal_small", 37, 53, _normal(0.5)),
    ("ties_poisson", 200, 350, _poisson(3, 3.3)),
    ("heavy_ties_0to3", 1000, 700, _integers(4)),
    ("ties_shared_values", 800, 300, _shared),
    ("disjoint", 40, 60, _integers(5, shift=10)),
    ("equal_n_ties", 3000, 3000, _poisson(10, 10.2)),
    ("exact_boundary", 10_000, 9_999, _poisson(5, 5.05)),
    ("asymptotic_ties", 20_000, 5_000, _integers(50)),
    ("asymptotic_continuous", 200_000, 1_000, _normal(0.05)),
    ("window_larger", 500, 12_000, _normal(0.1)),
]


@pytest.mark.parametrize(
    ("n1", "n2", "sampler"), [c[1:] for c in KS_CASES], ids=[c[0] for c in KS_CASES]
)
def test_ks_equals_scipy(n1: int, n2: int, sampler: Sampler) -> None:
    ref, cur = sampler(_rng(n1 * 31 + n2), n1, n2)
    expected = stats.ks_2samp(ref, cur)
    statistic, p_value = ks_2samp_sorted(np.sort(ref), cur)
    assert statistic == pytest.approx(float(expected.statistic), abs=1e-12)
    assert p_value == pytest.approx(float(expected.pvalue), abs=1e-12)


@pytest.mark.parametrize("n", [141, 1_000, 9_091, 90_909, 1_000_000, 2_000_000])
def test_kstwo_tail_equals_scipy_in_every_branch(n: int) -> None:
    from sidecar.monitoring._ks import _kstwo_sf

    # n d^2 below, across and beyond the vectorised range [2.2, 370), and d near 1/n, 1/2, 1
    grid = (0.05, 0.5, 1.0, 2.19, 2.2, 3.0, 8.0, 40.0, 150.0, 369.0, 371.0, 2_000.0)
    for nx2 in grid if n < 1_000_000 else (3.0,):  # scipy itself takes ~1 s a value there
        for d in (math.sqrt(nx2 / n), 0.9 / n, 1.5 / n, 0.49, 0.51, 0.999):
            expected = float(stats.kstwo.sf(d, n))
            assert _kstwo_sf(d, n) == pytest.approx(expected, rel=1e-8, abs=1e-300), (n, d)


def test_ks_equals_scipy_on_a_million_rows_against_a_large_reference() -> None:
    rng = _rng(11)
    ref = rng.normal(size=100_000)
    for shift in (0.0, 0.004, 0.008, 0.02):  # p from ~1 down to ~1e-30
        cur = rng.normal(shift, 1.0, size=1_000_000)
        expected = stats.ks_2samp(ref, cur)
        statistic, p_value = ks_2samp_sorted(np.sort(ref), cur)
        assert statistic == float(expected.statistic)
        assert p_value == pytest.approx(float(expected.pvalue), rel=1e-8, abs=1e-300)


def test_ks_equals_scipy_on_many_random_shapes() -> None:
    rng = _rng(7)
    for _ in range(300):
        n1, n2 = (int(v) for v in rng.integers(1, 400, 2))
        high = int(rng.integers(2, 30))
        ref = rng.integers(0, high, n1).astype(float)
        cur = rng.integers(0, high + int(rng.integers(0, 3)), n2).astype(float)
        expected = stats.ks_2samp(ref, cur)
        got = ks_2samp_sorted(np.sort(ref), cur)
        assert got == pytest.approx((expected.statistic, expected.pvalue), abs=1e-12)


def test_identical_samples_have_no_drift() -> None:
    ref = _rng(0).normal(size=300)
    assert ks_2samp_sorted(np.sort(ref), ref) == (0.0, 1.0)


@pytest.mark.parametrize(
    ("n_ref", "n_cur"), [(400, 250), (20_000, 2_000)], ids=["exact", "asymptotic"]
)
def test_ks_false_alarm_rate_is_alpha(n_ref: int, n_cur: int) -> None:
    rng = _rng(11)
    p = np.array(
        [
            ks_2samp_sorted(np.sort(rng.normal(size=n_ref)), rng.normal(size=n_cur))[1]
            for _ in range(RUNS)
        ]
    )
    rate = float((p <= ALPHA).mean())
    assert ALPHA - 3 * MC_SE <= rate <= ALPHA + 3 * MC_SE


def test_ks_detects_a_real_shift() -> None:
    rng = _rng(12)
    ref = np.sort(rng.normal(size=2000))
    p = [ks_2samp_sorted(ref, rng.normal(0.3, 1.0, size=500))[1] for _ in range(100)]
    assert np.mean(np.array(p) <= ALPHA) >= 0.95


# --------------------------------------------------------------------------- ks_drift, psi


def test_ks_drift_reports_a_scale_free_effect() -> None:
    rng = _rng(3)
    ref, cur = rng.normal(size=4000), rng.normal(0.5, 1.0, size=1000)
    in_metres = ks_drift("height", sort_reference(ref), cur)
    in_mm = ks_drift("height", sort_reference(ref * 1000), cur * 1000)
    assert in_metres.effect == pytest.approx(in_mm.effect, rel=1e-9)
    iqr = float(np.subtract(*np.quantile(ref, [0.75, 0.25])))
    assert in_metres.effect == pytest.approx(stats.wasserstein_distance(ref, cur) / iqr)
    assert in_metres.effect == pytest.approx(0.5 / 1.349, abs=0.06)
    assert in_metres.detail["scale"] == "iqr"
    assert in_metres.detail["psi"] == pytest.approx(psi(ref, cur))
    assert (in_metres.test, in_metres.effect_name, in_metres.kind) == (
        "ks",
        "wasserstein",
        "numeric",
    )
    assert in_metres.to_dict()["n_current"] == 1000


def test_ks_drift_drops_missing_and_falls_back_to_std() -> None:
    ref = np.array([0.0] * 90 + [1.0] * 10)  # IQR 0: mostly one value
    cur = np.array([0.0] * 70 + [1.0] * 30 + [math.nan] * 5)
    r = ks_drift("flag", sort_reference(ref), cur)
    assert r.detail["scale"] == "std"
    assert r.detail["n_missing"] == 5
    assert r.n_current == 100
    assert r.effect == pytest.approx(0.2 / 0.3)
    constant = ks_drift("const", np.zeros(10), np.ones(10))
    assert (constant.detail["scale"], constant.effect) == ("unit", 1.0)


def test_psi_matches_its_definition() -> None:
    rng = _rng(41)
    ref, cur = rng.poisson(6, 3000).astype(float), rng.poisson(7, 800).astype(float)
    inner = np.unique(np.quantile(ref, np.linspace(0, 1, 11))[1:-1])
    p = np.bincount(np.searchsorted(inner, ref, "right"), minlength=inner.size + 1) / ref.size
    q = np.bincount(np.searchsorted(inner, cur, "right"), minlength=inner.size + 1) / cur.size
    p, q = np.maximum(p, 1e-4), np.maximum(q, 1e-4)
    assert psi(ref, cur) == pytest.approx(float(np.sum((q - p) * np.log(q / p))), rel=1e-12)


def test_psi_is_near_zero_without_change_and_large_with_it() -> None:
    rng = _rng(4)
    ref = rng.normal(size=10_000)
    assert psi(ref, rng.normal(size=10_000)) < 0.01
    assert psi(ref, rng.normal(1.0, 1.0, size=10_000)) > 0.25
    ties = rng.integers(0, 3, 5000).astype(float)  # quantile edges collapse; still finite
    assert 0 <= psi(ties, rng.integers(0, 3, 5000).astype(float)) < 0.01
    assert math.isfinite(psi(ties, np.full(100, 7.0)))


# --------------------------------------------------------------------------- materiality


def test_a_million_rows_make_a_negligible_shift_significant_but_not_material() -> None:
    rng = _rng(5)
    ref = sort_reference(rng.normal(size=1_000_000))
    r = ks_drift("x", ref, rng.normal(0.01, 1.0, size=1_000_000))
    assert r.p_value < 1e-4
    assert r.effect < 0.1
    assert not is_material(r, min_effect=0.1)
    big = ks_drift("x", ref, rng.normal(0.5, 1.0, size=1_000))
    assert is_material(big, min_effect=0.1)


def test_is_material_ignores_nan_and_uses_magnitude() -> None:
    r = ks_drift("x", np.arange(10.0), np.arange(10.0) + 20)
    assert is_material(r, min_effect=0.5)
    nan = relation_change(np.ones(10), np.arange(10.0), np.arange(10.0), np.arange(10.0))
    assert math.isnan(nan.effect)
    assert not is_material(nan, min_effect=0.0)


# --------------------------------------------------------------------------- categorical

PROBS = np.array([0.3, 0.25, 0.2, 0.15, 0.07, 0.03])
LABELS = [f"c{i}" for i in range(PROBS.size)]


def _as_counts(row: np.ndarray) -> dict[str, int]:
    return {k: int(v) for k, v in zip(LABELS, row, strict=True)}


def _homogeneity_statistic(ref: np.ndarray, cur: np.ndarray) -> np.ndarray:
    """Pearson's chi-square of the 2 x K table, vectorised over runs (rows)."""
    table = np.stack([ref, cur], axis=1).astype(float)  # runs x 2 x K
    expected = table.sum(axis=2, keepdims=True) * table.sum(axis=1, keepdims=True)
    expected /= table.sum(axis=(1, 2), keepdims=True)
    return np.asarray(((table - expected) ** 2 / expected).sum(axis=(1, 2)))


@pytest.mark.parametrize(
    ("n_ref", "n_cur"), [(2000, 500), (1000, 1000), (500, 1500)], ids=["1.25x", "2x", "4x"]
)
def test_goodness_of_fit_is_inflated_by_one_plus_size_ratio(n_ref: int, n_cur: int) -> None:
    rng = _rng(n_ref + n_cur)
    ref = rng.multinomial(n_ref, PROBS, size=2000)
    cur = rng.multinomial(n_cur, PROBS, size=2000)
    # Goodness of fit: the window against the reference *proportions*, taken as exact.
    gof = stats.chisquare(cur, n_cur * ref / n_ref, axis=1).statistic
    homogeneity = _homogeneity_statistic(ref, cur)
    assert homogeneity.mean() == pytest.approx(PROBS.size - 1, rel=0.05)
    assert gof.mean() / homogeneity.mean() == pytest.approx(1 + n_cur / n_ref, rel=0.1)
    critical = stats.chi2.ppf(1 - ALPHA, PROBS.size - 1)
    assert (gof > critical).mean() > 2 * ALPHA  # goodness of fit: false alarms galore


def test_homogeneity_false_alarm_rate_is_alpha() -> None:
    rng = _rng(21)
    ref = rng.multinomial(1000, PROBS, size=RUNS)
    cur = rng.multinomial(1000, PROBS, size=RUNS)
    p = np.array(
        [
            chi2_homogeneity(_as_counts(r), _as_counts(c)).p_value
            for r, c in zip(ref, cur, strict=True)
        ]
    )
    rate = float((p <= ALPHA).mean())
    assert ALPHA - 3 * MC_SE <= rate <= ALPHA + 3 * MC_SE


def test_homogeneity_detects_a_real_shift() -> None:
    rng = _rng(22)
    moved = np.array([0.22, 0.25, 0.2, 0.15, 0.12, 0.06])
    p = [
        chi2_homogeneity(
            _as_counts(rng.multinomial(2000, PROBS)), _as_counts(rng.multinomial(1000, moved))
        ).p_value
        for _ in range(100)
    ]
    assert np.mean(np.array(p) <= ALPHA) >= 0.95


def _js(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon distance, base 2, from its definition."""
    m = (p + q) / 2
    return math.sqrt((stats.entropy(p, m, base=2) + stats.entropy(q, m, base=2)) / 2)


def test_homogeneity_merges_sparse_categories_and_reports_new_ones() -> None:
    ref = {"a": 600, "b": 300, "c": 94, "rare": 3, "rare2": 3}
    cur = {"a": 590, "b": 310, "c": 90, "rare": 2, "rare2": 4, "new": 4}
    r = chi2_homogeneity(ref, cur, feature="colour")
    assert sorted(r.detail["merged"]) == ["new", "rare", "rare2"]
    assert r.detail["dof"] == 3  # a, b, c, __other__
    assert r.detail["new_category_rate"] == pytest.approx(4 / 1000)
    merged = [[600, 300, 94, 6], [590, 310, 90, 10]]
    expected = stats.chi2_contingency(merged, correction=False)
    assert (r.statistic, r.p_value) == pytest.approx((expected.statistic, expected.pvalue))
    labels = sorted(set(ref) | set(cur))
    p_ref = np.array([ref.get(k, 0) for k in labels]) / 1000
    p_cur = np.array([cur.get(k, 0) for k in labels]) / 1000
    assert r.effect == pytest.approx(_js(p_ref, p_cur))
    assert (r.feature, r.effect_name, r.kind) == ("colour", "jensen_shannon", "categorical")


def test_homogeneity_merges_a_still_sparse_bucket_with_the_smallest_category() -> None:
    r = chi2_homogeneity({"a": 600, "b": 300, "c": 97, "rare": 3}, {"a": 150, "b": 80, "c": 22})
    assert sorted(r.detail["merged"]) == ["c", "rare"]
    assert r.detail["dof"] == 2


def test_homogeneity_of_one_category_is_no_evidence() -> None:
    r = chi2_homogeneity({"a": 10}, {"a": 3})
    assert (r.statistic, r.p_value, r.effect) == (0.0, 1.0, 0.0)


def test_a_large_sample_makes_a_small_categorical_shift_significant_not_material() -> None:
    r = chi2_homogeneity({"a": 500_000, "b": 500_000}, {"a": 505_000, "b": 495_000})
    assert r.p_value < 1e-6
    assert not is_material(r, min_effect=0.05)


# --------------------------------------------------------------------------- relation


def test_relation_change_is_calibrated_and_detects_a_flip() -> None:
    rng = _rng(31)
    p = []
    for _ in range(300):
        x_ref, x_cur = rng.normal(size=300), rng.normal(size=200)
        t_ref = 0.5 * x_ref + rng.normal(size=300)
        t_cur = 0.5 * x_cur + rng.normal(size=200)
        p.append(relation_change(x_ref, t_ref, x_cur, t_cur).p_value)
    se = math.sqrt(ALPHA * (1 - ALPHA) / 300)
    assert float(np.mean(np.array(p) <= ALPHA)) <= ALPHA + 3 * se
    x = rng.normal(size=500)
    flipped = relation_change(x, x + rng.normal(size=500), x, -x + rng.normal(size=500))
    assert flipped.p_value < 1e-10
    assert flipped.effect == pytest.approx(
        abs(flipped.detail["rho_current"] - flipped.detail["rho_reference"])
    )
    assert flipped.effect > 1.0


def test_relation_change_for_a_categorical_feature() -> None:
    rng = _rng(32)
    cats = np.array(["a", "b", "c", "d"])
    x_ref, x_cur = rng.choice(cats, 2000), rng.choice(cats, 1000)
    means = {"a": 0.0, "b": 1.0, "c": 2.0, "d": 3.0}
    t_ref = np.array([means[v] for v in x_ref]) + rng.normal(size=2000)
    # Same category differences, one overall shift: no change of the relation.
    shifted = np.array([means[v] for v in x_cur]) + 5 + rng.normal(size=1000)
    same = relation_change(x_ref, t_ref, x_cur, shifted, feature="site")
    assert same.p_value > 0.01
    assert same.effect < 0.05
    assert (same.kind, same.test) == ("categorical", "interaction_f")
    # The categories' effect on the loss is gone.
    gone = relation_change(x_ref, t_ref, x_cur, rng.normal(size=1000))
    assert gone.p_value < 1e-10
    assert gone.effect > 0.5
    assert gone.detail["df"] == [3, 2992]


def test_relation_change_interaction_matches_a_two_way_anova() -> None:
    rng = _rng(33)
    x_ref, x_cur = rng.choice(["a", "b", "c"], 60), rng.choice(["a", "b", "c"], 45)
    t_ref, t_cur = rng.normal(size=60), rng.normal(size=45) + (x_cur == "a")
    r = relation_change(x_ref, t_ref, x_cur, t_cur)
    # Reference: least squares of the additive and the full model on dummies.
    x = np.concatenate([x_ref, x_cur])
    t = np.concatenate([t_ref, t_cur])
    w = np.r_[np.zeros(60), np.ones(45)]
    dummies = np.column_stack([x == "b", x == "c"]).astype(float)
    additive = np.column_stack([np.ones_like(t), w, dummies])
    full = np.column_stack([additive, dummies * w[:, None]])
    rss = [
        float(np.sum((t - m @ np.linalg.lstsq(m, t, rcond=None)[0]) ** 2)) for m in (additive, full)
    ]
    f = ((rss[0] - rss[1]) / 2) / (rss[1] / (105 - 6))
    assert r.statistic == pytest.approx(f, rel=1e-9)
    assert r.p_value == pytest.approx(stats.f.sf(f, 2, 99), rel=1e-9)


# --------------------------------------------------------------------------- errors


def test_errors_name_the_argument() -> None:
    with pytest.raises(InputError, match=r"`ref_sorted` must be sorted ascending"):
        ks_2samp_sorted(np.array([2.0, 1.0]), np.array([1.0]))
    with pytest.raises(InputError, match=r"`ref_sorted` must be sorted ascending"):
        ks_2samp_sorted(np.array([1.0, math.nan]), np.array([1.0]))
    with pytest.raises(InputError, match=r"`cur` must be a non-empty array without NaN"):
        ks_2samp_sorted(np.array([1.0]), np.array([math.nan]))
    with pytest.raises(InputError, match=r"`cur` for feature 'x' must hold at least one"):
        ks_drift("x", np.array([1.0]), np.array([math.nan]))
    with pytest.raises(InputError, match=r"`ref_sorted` must be a 1-D array"):
        ks_2samp_sorted(np.ones((2, 2)), np.ones(2))
    with pytest.raises(InputError, match=r"`bins` must be an integer >= 2; got 1"):
        psi(np.ones(3), np.ones(3), bins=1)
    with pytest.raises(InputError, match=r"`ref_counts\['a'\]` must be a non-negative integer"):
        chi2_homogeneity({"a": -1}, {"a": 1})
    with pytest.raises(InputError, match=r"`cur_counts` must hold at least one counted value"):
        chi2_homogeneity({"a": 1}, {"a": 0})
    with pytest.raises(InputError, match=r"`cur_counts` must be a mapping"):
        chi2_homogeneity({"a": 1}, [1])  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"`x_cur` and `t_cur` must be 1-D arrays of the same"):
        relation_change(np.ones(5), np.ones(5), np.ones(5), np.ones(4))
    with pytest.raises(InputError, match=r"must hold at least 4 complete pairs; got 3"):
        relation_change(np.ones(5), np.ones(5), np.r_[1.0, 2, 3, math.nan], np.ones(4))
    with pytest.raises(InputError, match=r"`kind` must be 'numeric', 'categorical' or None"):
        relation_change(np.ones(5), np.ones(5), np.ones(5), np.ones(5), kind="ordinal")  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"`min_effect` must be a non-negative number; got -1"):
        is_material(ks_drift("x", np.arange(3.0), np.arange(3.0)), min_effect=-1)
