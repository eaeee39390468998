"""`adapters.retrain` follows a diagnosis or a named strategy; shared helpers; public API."""

from __future__ import annotations

import doctest
import sys
import types
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import adapters
import sidecar
from adapters import _base, _data, _family, _members, _regularize, _retrain
from tests.adapters import drift_worlds as worlds

Data = tuple[list[dict[str, Any]], Any]


@pytest.fixture(scope="module")
def sea() -> tuple[Data, Data, Data]:
    """Old concept (train, reference) and 600 recent rows after a concept change."""
    return (
        worlds.sea(800, theta=8.0, seed=1),
        worlds.sea(200, theta=8.0, seed=2),
        worlds.sea(600, theta=9.5, seed=3),
    )


def _bundle(model: Any, sea: tuple[Data, Data, Data]) -> sidecar.Bundle:
    train, reference, _ = sea
    model.fit(worlds.features(train[0]), train[1])
    return worlds.wrap_world(model, train, reference)


@pytest.fixture(scope="module")
def forest(sea: tuple[Data, Data, Data]) -> sidecar.Bundle:
    return _bundle(RandomForestClassifier(n_estimators=20, random_state=0), sea)


@pytest.fixture(scope="module")
def logistic(sea: tuple[Data, Data, Data]) -> sidecar.Bundle:
    return _bundle(LogisticRegression(C=100.0), sea)


@pytest.fixture
def recent(sea: tuple[Data, Data, Data]) -> sidecar.RecentData:
    return worlds.recent(sea[2])


def _diagnosis(verdict: str, bundle: sidecar.Bundle, form: str) -> Any:
    if form == "dict":
        return {"verdict": verdict, "plan_sha256": bundle.plan.sha256}
    return SimpleNamespace(verdict=verdict, plan_sha256=bundle.plan.sha256)


# -- routing ---------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["dict", "object"])
@pytest.mark.parametrize(
    ("verdict", "model", "strategy"),
    [
        ("overfitting", "forest", "regularize"),
        ("concept_drift", "forest", "replace-members"),
        ("data_drift", "forest", "replace-members"),
        ("concept_drift", "logistic", "regularize"),
    ],
    ids=["overfit", "concept_ensemble", "data_ensemble", "concept_plain"],
)
def test_auto_follows_the_verdict(
    verdict: str,
    model: str,
    strategy: str,
    form: str,
    request: pytest.FixtureRequest,
    recent: sidecar.RecentData,
) -> None:
    bundle = request.getfixturevalue(model)
    result = adapters.retrain(bundle, recent, diagnosis=_diagnosis(verdict, bundle, form))
    assert result.report.strategy == strategy
    assert result.candidate.parent == bundle.version


def test_drift_on_a_neural_net_fine_tunes_the_head(
    forest: sidecar.Bundle, recent: sidecar.RecentData, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[dict[str, Any]] = []
    fake = types.ModuleType("adapters._finetune")

    def fine_tune_head(bundle: Any, data: Any, **kw: Any) -> str:
        calls.append({"bundle": bundle, "recent": data, **kw})
        return "tuned"

    fake.fine_tune_head = fine_tune_head  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "adapters._finetune", fake)
    monkeypatch.setattr(_retrain, "model_family", lambda bundle: "neural")
    out = adapters.retrain(forest, recent, diagnosis={"verdict": "data_drift"}, seed=3)
    assert out == "tuned"
    assert calls[0]["bundle"] is forest and calls[0]["seed"] == 3
    assert adapters.retrain(forest, recent, strategy="fine-tune-head") == "tuned"


def test_missing_fine_tune_adapter_is_an_adapter_error(
    forest: sidecar.Bundle, recent: sidecar.RecentData, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "adapters._finetune", None)
    with pytest.raises(sidecar.AdapterError, match="fine-tune-head adapter cannot be imported"):
        adapters.retrain(forest, recent, strategy="fine-tune-head")


@pytest.mark.parametrize(
    ("verdict", "match"),
    [
        ("preprocessing_fault", r"Fix the preprocessing \(sidecar preprocessing swap\)"),
        ("insufficient_data", "Collect labels"),
        ("healthy", r"nothing to repair. Pass force=True"),
        ("broken", "must carry a verdict, one of"),
    ],
)
def test_refusals_follow_the_verdict(
    verdict: str, match: str, forest: sidecar.Bundle, recent: sidecar.RecentData
) -> None:
    for strategy in ("auto", "replace-members"):
        with pytest.raises(sidecar.AdapterError, match=match):
            adapters.retrain(forest, recent, strategy=strategy, diagnosis={"verdict": verdict})


def test_healthy_retrains_when_forced(forest: sidecar.Bundle, recent: sidecar.RecentData) -> None:
    result = adapters.retrain(forest, recent, diagnosis={"verdict": "healthy"}, force=True)
    assert result.report.strategy == "replace-members"


def test_auto_needs_a_diagnosis(forest: sidecar.Bundle, recent: sidecar.RecentData) -> None:
    with pytest.raises(sidecar.AdapterError, match="strategy='auto' follows a diagnosis"):
        adapters.retrain(forest, recent)
    with pytest.raises(sidecar.AdapterError, match=r"`strategy` must be one of \['auto'"):
        adapters.retrain(forest, recent, strategy="retrain-everything")


def test_a_diagnosis_of_another_plan_is_refused(
    forest: sidecar.Bundle, recent: sidecar.RecentData
) -> None:
    diagnosis = {"verdict": "concept_drift", "plan_sha256": "0" * 64}
    with pytest.raises(sidecar.AdapterError, match="made under another monitoring plan"):
        adapters.retrain(forest, recent, diagnosis=diagnosis)


def test_explicit_strategy_needs_no_diagnosis(
    logistic: sidecar.Bundle, recent: sidecar.RecentData
) -> None:
    result = adapters.retrain(logistic, recent, strategy="regularize")
    assert result.report.strategy == "regularize"
    with pytest.raises(sidecar.AdapterError, match="does not support LogisticRegression"):
        adapters.retrain(logistic, recent, strategy="replace-members")


def test_model_family_sees_through_pipelines(sea: tuple[Data, Data, Data]) -> None:
    pipeline = make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=5))
    assert adapters.model_family(_bundle(pipeline, sea)) == "ensemble"
    assert adapters.model_family(_bundle(LogisticRegression(), sea)) == "other"


# -- the shared helpers ----------------------------------------------------------------------


def test_time_split_orders_by_time_and_holds_out_the_latest() -> None:
    ts = np.array([5.0, 1.0, 4.0, 2.0, 3.0, 9.0, 7.0, 8.0, 6.0, 0.0])
    records = [{"t": float(t)} for t in ts]
    earlier, later = adapters.time_split(records, ts * 10, ts)
    assert [r["t"] for r in earlier.records] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    assert [r["t"] for r in later.records] == [8.0, 9.0]
    assert later.labels.tolist() == [80.0, 90.0] and later.ts.tolist() == [8.0, 9.0]
    tied = adapters.time_split(records, ts, np.zeros(10), holdout=0.5)[1]
    assert [r["t"] for r in tied.records] == [9.0, 7.0, 8.0, 6.0, 0.0]  # stable on ties


@pytest.mark.parametrize(
    ("args", "kw", "match"),
    [
        (([{"a": 1}] * 3, [0, 1], [0, 1, 2]), {}, "same length; got 3, 2 and 3"),
        (([{"a": 1}], [0], [0]), {}, "at least 2 rows; got 1"),
        (([{"a": 1}] * 3, [0] * 3, [0, 1, 2]), {"holdout": 1.5}, r"`holdout` must be a float"),
    ],
    ids=["lengths", "one_row", "holdout"],
)
def test_time_split_rejects_bad_input(
    args: tuple[Any, ...], kw: dict[str, Any], match: str
) -> None:
    with pytest.raises(sidecar.AdapterError, match=match):
        adapters.time_split(*args, **kw)


def test_non_finite_timestamps_are_refused(
    forest: sidecar.Bundle, sea: tuple[Data, Data, Data]
) -> None:
    records, labels = sea[2]
    ts = np.arange(len(records), dtype=float)
    ts[4] = np.nan
    recent = sidecar.RecentData(records=records, labels=labels, ts=ts)
    with pytest.raises(sidecar.AdapterError, match=r"finite epoch seconds; got nan at index 4"):
        adapters.replace_members(forest, recent)


def test_recent_must_be_recent_data(forest: sidecar.Bundle) -> None:
    with pytest.raises(sidecar.AdapterError, match=r"must be a sidecar.RecentData"):
        adapters.regularize(forest, [{"x1": 1.0}])  # type: ignore[arg-type]


def test_bad_records_are_an_input_error(forest: sidecar.Bundle) -> None:
    records = [{"x1": 1.0, "x2": 2.0, "x3": 3.0}] * 60
    records = [*records[:-1], {"x1": 1.0, "x2": "heavy", "x3": 3.0}]
    recent = sidecar.RecentData(records=records, labels=np.zeros(60, int), ts=np.arange(60.0))
    with pytest.raises(sidecar.InputError, match="x2"):
        adapters.replace_members(forest, recent)


def test_report_to_dict_says_what_changed(
    forest: sidecar.Bundle, recent: sidecar.RecentData
) -> None:
    report = adapters.replace_members(forest, recent).report
    payload = report.to_dict()
    assert set(payload) == {
        "strategy",
        "wall_time_s",
        "train_time_s",
        "parent_version",
        "what_changed",
        "n_train",
        "n_validation",
        "n_holdout",
        "holdout",
        "search",
        "notes",
        "window",
    }
    assert payload["what_changed"]["summary"] == report.summary
    assert payload["what_changed"]["parameters"]["replaced"] == report.changes["replaced"]
    assert payload["holdout"]["improvement"] == pytest.approx(report.improvement)
    assert payload["parent_version"] == forest.version
    assert 0 < report.train_time_s <= report.wall_time_s


# -- the public surface ----------------------------------------------------------------------


def test_all_lists_exactly_the_public_api() -> None:
    public = {
        name
        for name, value in vars(adapters).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert set(adapters.__all__) == public
    assert {
        "RetrainResult",
        "TrainingReport",
        "WeightedEnsemble",
        "regularize",
        "replace_members",
        "retrain",
        "time_split",
    } <= public


@pytest.mark.parametrize(
    "module", [_base, _data, _family, _members, _regularize, _retrain], ids=lambda m: m.__name__
)
def test_doctests(module: types.ModuleType) -> None:
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


@pytest.mark.parametrize("strategy", ["replace-members", "refit"])
def test_the_candidate_baseline_and_reference_come_from_the_same_window(
    strategy: str, forest: sidecar.Bundle, recent: sidecar.RecentData
) -> None:
    result = adapters.retrain(forest, recent, strategy=strategy)
    report, candidate = result.report, result.candidate
    old, new = forest.baseline.estimator, candidate.baseline.estimator
    assert new is not old and type(new) is type(old)
    assert new.get_params(deep=False).keys() == old.get_params(deep=False).keys()
    X = worlds.features(recent.records[: report.n_train + report.n_validation])
    y = np.asarray(recent.labels)[: report.n_train + report.n_validation]
    from sklearn.base import clone

    expected = clone(old).fit(X, y).predict_proba(X)
    np.testing.assert_allclose(new.predict_proba(X), expected, rtol=1e-6)
    assert len(candidate.reference.arrays["y"]) == report.n_holdout
    assert any("baseline" in n and "refitted" in n for n in report.notes)


def test_the_same_data_and_seed_give_the_same_candidate_version(
    forest: sidecar.Bundle, recent: sidecar.RecentData
) -> None:
    """The refitted baseline saves to the same bytes (skops' object ids are renumbered)."""
    first = adapters.retrain(forest, recent, strategy="refit").candidate
    again = adapters.retrain(forest, recent, strategy="refit").candidate
    assert first.version == again.version
