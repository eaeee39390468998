"""The alarm rule as the diagnosis uses it: calibrated, powered as declared, blind to trivia."""

from __future__ import annotations

import math

import numpy as np

from sidecar.monitoring import is_alarm, paired_bootstrap, required_n_paired, welch_t

ALPHA, POWER = 0.05, 0.8


def _mc(p: float, runs: int) -> float:
    return 3 * math.sqrt(p * (1 - p) / runs)


def test_no_change_alarms_at_most_alpha_and_the_smallest_effect_with_declared_power() -> None:
    delta, sd, runs = 0.1, 0.5, 400
    n = required_n_paired(min_effect=delta, sd=sd, alpha=ALPHA, power=POWER)
    rng = np.random.default_rng(0)
    null = effect = 0
    for run in range(runs):
        base = rng.normal(1.0, 0.3, n)
        null += is_alarm(
            paired_bootstrap(base + rng.normal(0, sd, n), base, n_boot=400, seed=run),
            alpha=ALPHA,
            min_effect=delta,
        )
        effect += is_alarm(
            paired_bootstrap(base + rng.normal(delta, sd, n), base, n_boot=400, seed=run),
            alpha=ALPHA,
            min_effect=delta,
        )
    assert null / runs <= ALPHA + _mc(ALPHA, runs)
    assert effect / runs >= POWER - _mc(POWER, runs)


def test_a_negligible_shift_on_a_million_rows_is_significant_but_not_an_alarm() -> None:
    rng = np.random.default_rng(1)
    ref = rng.normal(1.0, 0.5, 1_000_000)
    now = rng.normal(1.01, 0.5, 1_000_000)  # a tenth of the smallest effect that matters
    result = welch_t(ref, now)
    assert result.p_value < 1e-10
    assert not is_alarm(result, alpha=ALPHA, min_effect=0.1)
    assert is_alarm(result, alpha=ALPHA, min_effect=0.005)


def test_an_improvement_never_alarms() -> None:
    rng = np.random.default_rng(2)
    result = welch_t(rng.normal(1.0, 0.5, 5000), rng.normal(0.5, 0.5, 5000))
    assert result.p_value < 1e-10 and result.effect < 0
    assert not is_alarm(result, alpha=ALPHA, min_effect=0.1)


def test_error_segments_read_only_the_rows_given() -> None:
    """``rows`` picks the labelled rows of a window's features without copying the rest first."""
    from sidecar.monitoring import error_segments

    rng = np.random.default_rng(3)
    X = rng.normal(size=(5_000, 3))
    rows = np.flatnonzero(rng.random(5_000) < 0.6)
    err = ((X[rows, 0] > 1.0) | (rng.random(rows.size) < 0.05)).astype(float)
    names = ["age", "dose", "weight"]
    for max_fit in (None, 1_000):  # all labelled rows, and a sample of them
        given = error_segments(X, err, err * 0, feature_names=names, max_fit=max_fit, rows=rows)
        copied = error_segments(X[rows], err, err * 0, feature_names=names, max_fit=max_fit)
        assert given == copied and given[0].rule.startswith("age > ")
