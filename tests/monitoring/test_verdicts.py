"""The verdict order at small and large n, its calibration, and a daily cron job.

Seeded arrays from ``sims`` go straight into ``diagnose`` (the public path,
wrap -> SQLite -> diagnose, is in ``test_river.py`` and ``test_scenarios.py``).
Default plans unless a test says otherwise: accuracy with min_effect 0.025
and bounds +-0.05 around the reference; the median absolute error with
min_effect 10 % of its reference value and bounds +-20 %.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any

import pytest

from sidecar.monitoring import Bounds, Diagnosis
from tests.monitoring import sims

ALARMS = {"overfitting", "data_drift", "concept_drift", "preprocessing_fault"}


def _mc(p: float, runs: int) -> float:
    """Three Monte Carlo standard errors of a rate ``p`` estimated from ``runs`` runs."""
    return 3 * math.sqrt(p * (1 - p) / runs)


#: what the calibration runs declare: the verdict's own test and one paired test, so that
#: hundreds of diagnoses stay cheap (the verdict reads no other)
LIGHT: dict[str, Any] = {
    "secondary_metrics": [],
    "tests": {"reference": ["welch"], "paired": ["mcnemar"], "windows": [], "drift": []},
}


def _clf(seed: int, **kw: Any) -> Diagnosis:
    ref, win = sims.classification(seed, **kw)
    return sims.diagnose_sim(sims.plan_for(ref), ref, win)


# --------------------------------------------------------------------------- each verdict

SIZES = pytest.mark.parametrize("n", [250, 2000, 20000], ids=["n250", "n2000", "n20000"])


@SIZES
def test_a_model_that_lost_its_edge_is_overfitting_at_any_n(n: int) -> None:
    d = _clf(1, n=n, acc=0.70)  # the baseline stays at 0.80
    assert d.verdict == "overfitting", d.reasons
    # the pure diagnosis names the verdict; the adapters' family rule names the adapter
    assert d.recommendation.action == "retrain" and d.recommendation.adapter is None


@SIZES
def test_both_models_worse_with_the_inputs_unchanged_is_concept_drift(n: int) -> None:
    d = _clf(2, n=n, acc=0.70, base_now=0.60)
    assert d.verdict == "concept_drift", d.reasons
    assert "did not move" in d.reasons[0]


@SIZES
def test_both_models_worse_with_moved_inputs_is_data_drift(n: int) -> None:
    d = _clf(3, n=n, acc=0.70, base_now=0.60, input_shift=1.0)
    assert d.verdict == "data_drift", d.reasons
    assert "x0" in d.reasons[0]


@SIZES
def test_better_than_the_plan_allows_is_a_pipeline_fault(n: int) -> None:
    d = _clf(4, n=n, acc_ref=0.80, acc=0.97)
    assert d.verdict == "preprocessing_fault", d.reasons
    assert d.bounds.suspiciously_good and "leakage" in d.reasons[0]


@pytest.mark.parametrize("n", [250, 1500, 20000], ids=["n250", "n1500", "n20000"])
def test_an_accurate_unchanged_model_is_healthy_from_a_few_hundred_labels(n: int) -> None:
    d = _clf(5, n=n, acc_ref=0.98)
    assert d.verdict == "healthy", d.reasons
    assert d.bounds.no_material_decline and "excludes a material decline" in d.reasons[0]
    assert d.bounds.decline_ci_high < 0.025


def test_below_the_floor_is_insufficient_data_whatever_the_labels_say() -> None:
    d = _clf(6, n=150, acc=0.30)  # a collapse, but 150 < min_labelled 200
    assert d.verdict == "insufficient_data"
    assert d.recommendation.detail == "wait for about 50 more labelled records before judging"


def test_an_open_question_names_the_interval_the_effect_and_the_labels_to_settle_it() -> None:
    d = _clf(1, n=300, acc_ref=0.85)  # unchanged, but 300 labels cannot rule out 0.025
    assert d.verdict == "insufficient_data", d.reasons
    text = d.reasons[0]
    assert re.search(r"90% interval \[[-+]\d\.\d+, \+\d\.\d+\]", text), text
    assert "cannot yet rule out a material decline of 0.025" in text
    more = int(re.search(r"about (\d+) more labels", text).group(1))  # type: ignore[union-attr]
    assert d.bounds.labels_to_settle == 300 + more
    assert f"wait for about {more} more" in d.recommendation.detail
    # ... and about that many labels of the same model settle it, most of the time.
    settled = Counter(_clf(70 + s, n=300 + more, acc_ref=0.85).verdict for s in range(12))
    assert settled["healthy"] >= 6 and not (set(settled) & ALARMS), settled


def test_a_reference_too_small_says_so_instead_of_a_number() -> None:
    """150 reference records at 90 % pin the reference accuracy only to +-0.04: no
    number of labels can rule out a 0.025 decline against it, and the answer says so."""
    ref, win = sims.classification(8, n_ref=150, n=3000, acc_ref=0.9)
    d = sims.diagnose_sim(sims.plan_for(ref), ref, win)
    assert d.verdict == "insufficient_data", d.reasons
    assert d.bounds.required_n_for_power is None and d.bounds.labels_to_settle is None
    assert d.reasons[0].endswith("the reference is too small for more labels to settle it")
    assert "a larger reference" in d.recommendation.detail


def test_a_significant_decline_within_the_bounds_is_healthy_and_says_why() -> None:
    d = _clf(9, n=20000, acc=0.865)  # 3.5 points down, bounds at 5
    assert d.verdict == "healthy", d.reasons
    assert "within the plan's acceptable bounds" in d.reasons[0]


def test_the_unchanged_regressor_with_one_huge_outlier_is_healthy() -> None:
    ref, win = sims.regression(10, n=3000, outlier=1e6)
    d = sims.diagnose_sim(sims.plan_for(ref), ref, win)
    assert d.verdict == "healthy", d.reasons
    assert not d.bounds.decayed_out_of_bounds
    assert d.metrics["advanced"]["mse"].value > 1e6  # the outlier is there, and harmless


# --------------------------------------------------------------------------- calibration


def test_equivalence_calls_an_unchanged_model_healthy_once_n_is_large() -> None:
    runs, alpha = 40, 0.05
    healthy = 0
    for seed in range(runs):
        ref, win = sims.classification(100 + seed, n_ref=8000, n=4000, acc_ref=0.9)
        plan = sims.plan_for(ref, **LIGHT)
        healthy += sims.diagnose_sim(plan, ref, win).verdict == "healthy"
    # at these sizes the one-sided test has power ~0.999 against no change
    assert healthy / runs >= 1 - alpha, healthy


@pytest.mark.parametrize("n", [300, 800], ids=["n300", "n800"])
def test_a_material_decline_is_called_healthy_at_most_alpha_of_the_time(n: int) -> None:
    """A decline of exactly min_effect, with no bounds to excuse it: 'healthy' only when
    the equivalence test errs, which it does in at most alpha of runs (below the power
    target, 1,153 labels here; beyond it a decline of exactly min_effect is missed with
    the plan's declared risk, 1 - power)."""
    runs, alpha = 150, 0.05
    healthy = 0
    for seed in range(runs):
        ref, win = sims.classification(200 + seed, n_ref=4000, n=n, acc_ref=0.9, acc=0.875)
        plan = sims.plan_for(ref, **LIGHT, bounds=Bounds())
        d = sims.diagnose_sim(plan, ref, win)
        assert d.bounds.required_n_for_power is None or n < d.bounds.required_n_for_power
        healthy += d.verdict == "healthy"
    assert healthy / runs <= alpha + _mc(alpha, runs), healthy


# --------------------------------------------------------------------------- a daily cron job


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_sixty_daily_diagnoses_of_an_unchanged_model_rarely_alarm(task: str) -> None:
    """``sidecar diagnose`` every day for 60 days, the model unchanged: 1,500 labels a
    day for the classifier (reference 2,000), 3,000 for the regressor (reference 1,500).
    False alarms stay within the plan's alpha share (<= 3 of 60), and most days are
    definite (healthy), not 'wait for labels'."""
    verdicts: Counter[str] = Counter()
    if task == "classification":
        ref, _ = sims.classification(7, n=2)  # one reference for the whole run
        plan = sims.plan_for(ref)
    else:  # the secondary metrics' bootstraps cost time and decide nothing
        ref, _ = sims.regression(7, n=2)
        plan = sims.plan_for(ref, secondary_metrics=[])
    for day in range(60):
        if task == "classification":
            _, win = sims.classification(1000 + day, n=1500, acc_ref=0.9)
        else:
            _, win = sims.regression(1000 + day, n=3000)
        verdicts[sims.diagnose_sim(plan, ref, win, seed=day).verdict] += 1
    alarms = sum(verdicts[v] for v in ALARMS)
    assert alarms <= 3, verdicts  # alpha = 0.05 of 60 days
    assert verdicts["healthy"] >= 45, verdicts
