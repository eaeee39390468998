"""The plan is what runs: every registered name is accepted, runs when declared, and only then."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from scipy import stats

from sidecar import PlanError
from sidecar.monitoring import (
    CORRECTIONS,
    DRIFT,
    PAIRED,
    REFERENCE,
    WINDOWS,
    MonitoringPlan,
    PlanTests,
    decide_promotion,
    paired_battery,
    registry_names,
)
from tests.monitoring import sims


@pytest.fixture(scope="module")
def world() -> tuple[Any, Any]:
    """A classifier over three daily windows, a shifted input so drift tests have work."""
    return sims.classification(11, n=900, days=3.0, input_shift=0.3)


def _names(plan: MonitoringPlan, world: tuple[Any, Any]) -> set[str]:
    d = sims.diagnose_sim(plan, *world)
    return {t.name for t in d.tests}


def test_the_plan_accepts_exactly_the_registered_names() -> None:
    schema = PlanTests.model_json_schema()["properties"]
    for family, names in registry_names().items():
        if family == "correction":
            assert tuple(schema[family]["enum"]) == names == CORRECTIONS
        else:
            items = schema[family]["items"]  # a one-name Literal is a `const`
            assert tuple(items.get("enum", [items.get("const")])) == names
    assert (tuple(PAIRED), tuple(REFERENCE), tuple(WINDOWS), DRIFT) == (
        registry_names()["paired"],
        registry_names()["reference"],
        registry_names()["windows"],
        registry_names()["drift"],
    )
    with pytest.raises(PlanError, match=r"`tests.windows.0`: Input should be 'anova'"):
        MonitoringPlan.from_mapping(
            {
                "task": "regression",
                "primary_metric": "mae",
                "min_effect": 1,
                "tests": {"windows": ["levene"]},
            }
        )


@pytest.mark.parametrize("name", list(WINDOWS), ids=list(WINDOWS))
def test_each_window_test_runs_when_declared_and_only_then(
    world: tuple[Any, Any], name: str
) -> None:
    plan = sims.plan_for(world[0], tests={"windows": [name]})
    names = _names(plan, world)
    assert {n for n in names if n.startswith("windows:")} == {f"windows:{name}"}


@pytest.mark.parametrize("name", list(REFERENCE), ids=list(REFERENCE))
def test_each_reference_test_runs_when_declared_and_decides_when_first(
    world: tuple[Any, Any], name: str
) -> None:
    plan = sims.plan_for(world[0], tests={"reference": [name]})
    d = sims.diagnose_sim(plan, *world)
    decisive = {t.name: t for t in d.tests}["advanced_vs_reference"]
    assert decisive.detail["test"] == {
        "welch": "welch_t", "mann_whitney": "mann_whitney", "bootstrap": "bootstrap_mean_diff"
    }[name]  # fmt: skip
    assert not any(t.name.startswith("advanced_vs_reference:") for t in d.tests)
    both = sims.plan_for(
        world[0], tests={"reference": [name, "welch" if name != "welch" else "bootstrap"]}
    )
    assert any(n.startswith("advanced_vs_reference:") for n in _names(both, world))


@pytest.mark.parametrize("name", list(PAIRED), ids=list(PAIRED))
def test_each_paired_test_runs_when_declared_and_only_then(
    world: tuple[Any, Any], name: str
) -> None:
    plan = sims.plan_for(world[0], tests={"paired": [name]})
    names = _names(plan, world)
    assert {n for n in names if n.startswith("paired:")} == {f"paired:{name}"}


def test_a_paired_test_that_does_not_apply_is_named_in_the_notes() -> None:
    ref, win = sims.regression(2, n=400)
    plan = sims.plan_for(ref, tests={"paired": ["mcnemar", "wilcoxon"]})
    d = sims.diagnose_sim(plan, ref, win)
    assert {t.name for t in d.tests if t.name.startswith("paired:")} == {"paired:wilcoxon"}
    assert any("mcnemar" in note and "did not apply" in note for note in d.notes), d.notes


@pytest.mark.parametrize("name", list(DRIFT), ids=list(DRIFT))
def test_each_drift_test_runs_when_declared_and_only_then(name: str) -> None:
    ref, win = sims.classification(12, n=600, input_shift=0.3)
    plan = sims.plan_for(ref, tests={"drift": [name]})
    d = sims.diagnose_sim(plan, ref, win)
    ran = {r.test for r in d.drift}
    assert ran == ({"ks"} if name == "ks" else set())  # the sims have numeric inputs only


def test_drift_ks_declared_is_the_only_drift_that_runs_on_numeric_inputs() -> None:
    ref, win = sims.classification(12, n=600, input_shift=0.3)
    d = sims.diagnose_sim(sims.plan_for(ref, tests={"drift": []}), ref, win)
    assert d.drift == () and d.to_dict()["evidence"]["features_drifted"] == []


@pytest.mark.parametrize("correction", list(CORRECTIONS), ids=list(CORRECTIONS))
def test_the_declared_correction_is_the_one_applied_to_every_family(
    world: tuple[Any, Any], correction: str
) -> None:
    plan = sims.plan_for(world[0], tests={"correction": correction})
    d = sims.diagnose_sim(plan, *world)
    for family in (list(d.tests), list(d.drift), list(d.relations)):
        p = np.array([r.p_value for r in family])
        adj = np.array([r.p_adjusted for r in family])
        expected = {
            "none": p,
            "bonferroni": np.minimum(1.0, p * len(p)),
            "benjamini_hochberg": stats.false_discovery_control(p, method="bh"),
        }[correction]
        np.testing.assert_allclose(adj, expected, rtol=1e-12)


def test_the_promotion_decision_runs_the_same_paired_battery_and_correction() -> None:
    rng = np.random.default_rng(13)
    n = 800
    y = rng.integers(0, 2, n)
    champ = np.where(rng.random(n) < 0.8, y, 1 - y)
    cand = np.where(rng.random(n) < 0.9, y, 1 - y)
    ts = np.arange(n, dtype=np.float64)
    for declared, correction in (
        (("mcnemar", "wilcoxon"), "none"),
        (("diebold_mariano",), "bonferroni"),
    ):
        ref, _ = sims.classification(0, n=10)
        plan = sims.plan_for(ref, tests={"paired": list(declared), "correction": correction})
        decision = decide_promotion(
            plan=plan, y=y, champion=champ, champion_proba=None, candidate=cand,
            candidate_proba=None, classes=(0, 1), ts=ts, champion_version="a",
            candidate_version="b",
        )  # fmt: skip
        loss_a, loss_b = (champ != y).astype(float), (cand != y).astype(float)
        battery = paired_battery(declared, loss_a, loss_b, loss="zero_one", ts=ts)
        assert [t.name for t in decision.tests] == [t.name for t in battery.results]
        assert [t.p_value for t in decision.tests] == [t.p_value for t in battery.results]
        if correction == "none":
            assert [t.p_adjusted for t in decision.tests] == [t.p_value for t in decision.tests]
        assert decision.deciding_test == f"paired:{declared[0]}"


@pytest.mark.parametrize("correction", list(CORRECTIONS), ids=list(CORRECTIONS))
def test_the_health_checks_use_the_declared_correction(correction: str) -> None:
    ref, win = sims.classification(14, n=1000)
    x1 = win.raw_numeric["x1"].copy()
    x1[: len(x1) // 3] = np.nan  # a third of x1 goes missing: a pipeline fault
    win = replace(win, raw_numeric={**win.raw_numeric, "x1": x1})
    d = sims.diagnose_sim(sims.plan_for(ref, tests={"correction": correction}), ref, win)
    found = {(h.feature, h.check): h for h in d.health}
    missing = found[("x1", "missing_rate")]
    p, adjusted = missing.p_value, missing.evidence["p_adjusted"]
    if correction == "none":
        assert adjusted == p
    elif correction == "bonferroni":
        m = adjusted / p
        assert m >= 2 and m == pytest.approx(round(m))  # p times the number of health tests
    else:
        assert p <= adjusted <= min(1.0, 20 * p)
    assert d.verdict == "preprocessing_fault"


def test_relations_run_when_declared_and_only_then() -> None:
    ref, win = sims.classification(14, n=900, input_shift=0.3)
    declared = sims.diagnose_sim(sims.plan_for(ref), ref, win)
    assert declared.relations and {r.test for r in declared.relations} == {"spearman_fisher_z"}
    none = sims.diagnose_sim(sims.plan_for(ref, tests={"relations": []}), ref, win)
    assert none.relations == ()


def test_the_healthy_equivalence_runs_when_declared_and_only_then() -> None:
    """An unchanged classifier on a typical day: TOST rules out the smallest effect; without
    the declared test `healthy` must wait for the power target."""
    ref, win = sims.classification(16, n=1500)
    declared = sims.diagnose_sim(sims.plan_for(ref), ref, win)
    assert not np.isnan(declared.bounds.equivalence_p)
    assert declared.verdict == "healthy"
    plan = sims.plan_for(ref, tests={"equivalence": ["tost_paired"]})
    undeclared = sims.diagnose_sim(plan, ref, win)
    assert np.isnan(undeclared.bounds.equivalence_p)
    assert undeclared.verdict == "insufficient_data"


def test_the_candidate_equivalence_runs_when_declared_and_only_then() -> None:
    rng = np.random.default_rng(16)
    n = 4000
    y = rng.integers(0, 2, n)
    champ = np.where(rng.random(n) < 0.85, y, 1 - y)
    cand = np.where(rng.random(n) < 0.85, y, 1 - y)  # no better
    ref, _ = sims.classification(0, n=10)
    verdicts = {}
    for declared in (["tost_welch", "tost_paired"], ["tost_welch"]):
        plan = sims.plan_for(ref, tests={"equivalence": declared}, power=0.99999)
        decision = decide_promotion(
            plan=plan, y=y, champion=champ, champion_proba=None, candidate=cand,
            candidate_proba=None, classes=(0, 1), ts=np.arange(n, dtype=np.float64),
            champion_version="a", candidate_version="b",
        )  # fmt: skip
        verdicts[len(declared)] = decision.decision
    assert verdicts == {2: "reject", 1: "insufficient_data"}


def test_later_tests_at_their_defaults_keep_a_plans_hash() -> None:
    """Plans hashed before `relations` and `equivalence` existed keep their sha256."""
    import hashlib
    import json

    plan = sims.plan_for(sims.classification(0, n=10)[0])
    data = plan.model_dump(mode="json")
    del data["tests"]["relations"], data["tests"]["equivalence"]
    old = json.dumps(data, sort_keys=True, separators=(",", ":"))
    assert plan.sha256 == hashlib.sha256(old.encode()).hexdigest()
    changed = MonitoringPlan.from_mapping({**plan.model_dump(), "tests": {"relations": []}})
    assert changed.sha256 != plan.sha256
