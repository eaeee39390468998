"""The change-point estimate: checked against statsmodels and brute force, calibrated, powered."""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.stats.diagnostic import breaks_cusumolsresid

from sidecar.monitoring import ChangePoint, change_point, cusum_test
from sidecar.monitoring._changepoint import best_split


@pytest.mark.parametrize("n", [10, 57, 400], ids=lambda n: f"n={n}")
def test_cusum_statistic_matches_statsmodels(n: int) -> None:
    x = np.random.default_rng(n).normal(size=n) + np.linspace(0, 1, n)
    expected = breaks_cusumolsresid(x - x.mean(), ddof=1)[0]
    assert cusum_test(x)[0] == pytest.approx(expected, rel=1e-12)


def test_the_small_sample_correction_only_lowers_the_p_value() -> None:
    x = np.random.default_rng(3).normal(size=30)
    asymptotic = breaks_cusumolsresid(x - x.mean(), ddof=1)[1]
    assert cusum_test(x)[1] < asymptotic


@pytest.mark.parametrize("seed", range(5))
def test_the_split_is_the_brute_force_maximum_likelihood_one(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(0, 1, 37), rng.normal(0.7, 1, 23)])
    # Gaussian mean shift, common variance: the split with the smallest within-segment SS
    sse = [
        np.sum((x[:k] - x[:k].mean()) ** 2) + np.sum((x[k:] - x[k:].mean()) ** 2)
        for k in range(1, len(x))
    ]
    assert best_split(x) == int(np.argmin(sse)) + 1


def _null(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "normal":
        return rng.normal(size=n)
    return (rng.random(n) < 0.2).astype(float)  # 0/1 losses of a classifier


@pytest.mark.parametrize("kind", ["normal", "zero-one"])
@pytest.mark.parametrize("n", [20, 100, 1000], ids=lambda n: f"n={n}")
def test_false_alarms_stay_near_alpha(kind: str, n: int) -> None:
    runs = 400
    alarms = sum(
        cusum_test(_null(kind, n, np.random.default_rng(seed)))[1] <= 0.05 for seed in range(runs)
    )
    assert 0.01 <= alarms / runs <= 0.075


@pytest.mark.parametrize(
    ("n", "shift"), [(60, 1.0), (400, 0.5), (3000, 0.2)], ids=["n=60", "n=400", "n=3000"]
)
def test_power_and_interval_coverage_on_a_known_change(n: int, shift: float) -> None:
    runs, at = 60, int(0.6 * n)
    found = covered = 0
    for seed in range(runs):
        rng = np.random.default_rng(seed)
        x = np.concatenate([rng.normal(0, 1, at), rng.normal(shift, 1, n - at)])
        c = change_point(x, alpha=0.05, seed=seed)
        found += c.significant
        covered += c.ci_low <= at <= c.ci_high
    assert found / runs >= 0.8
    assert covered / runs >= 0.85


def test_times_name_the_change_and_it_serialises() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, 300), rng.normal(2, 1, 300)])
    ts = 1000.0 + np.arange(600)
    c = change_point(x, ts=ts, seed=1)
    assert isinstance(c, ChangePoint)
    assert c.significant and c.ts == ts[c.index] and c.n_after == 600 - c.index
    assert abs(c.index - 300) <= 10 and c.ts_low is not None and c.ts_low <= c.ts
    assert c.to_dict()["significant"] is True


def test_long_streams_bootstrap_on_blocks() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, 30_000), rng.normal(0.1, 1, 20_000)])
    c = change_point(x, seed=0)
    assert c.significant and c.ci_low <= 30_000 <= c.ci_high


@pytest.mark.parametrize(
    ("losses", "kw", "match"),
    [
        ([1.0, 2.0], {}, "at least 4"),
        ([1.0, 2.0, np.nan, 1.0], {}, "must be finite"),
        ([1.0, 2.0, 3.0, 4.0], {"alpha": 1.5}, "alpha"),
        ([1.0, 2.0, 3.0, 4.0], {"ts": [1.0]}, "one time per loss"),
    ],
    ids=["short", "nan", "alpha", "ts"],
)
def test_bad_input_is_refused(losses: list[float], kw: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        change_point(losses, **kw)


def test_a_constant_stream_has_no_change() -> None:
    assert cusum_test(np.ones(50)) == (0.0, 1.0)


def test_the_diagnosis_names_when_the_change_began() -> None:
    from dataclasses import replace

    from tests.monitoring.sims import diagnose_sim, plan_for, regression

    ref, window = regression(0, n=1000)
    order = np.argsort(window.ts, kind="stable")
    advanced = np.asarray(window.advanced, dtype=np.float64).copy()
    advanced[order[600:]] += 1.5  # the model goes wrong from the 601st request on
    d = diagnose_sim(plan_for(ref), ref, replace(window, advanced=advanced))
    assert d.change is not None and d.change.significant
    assert abs(d.change.index - 600) <= 10 and d.change.ci_low <= d.change.index <= d.change.ci_high
    evidence = d.to_dict()["evidence"]["change_point"]
    assert evidence["index"] == d.change.index and evidence["ts"] == d.change.ts
