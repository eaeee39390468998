"""One model-family rule (owned by adapters) and the cheap refit adapter for gradient boosting."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.ensemble import (
    AdaBoostClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.linear_model import LogisticRegression

import adapters
import sidecar
from tests.adapters import drift_worlds as worlds

Data = tuple[Any, Any]


@pytest.fixture(scope="module")
def sea() -> tuple[Data, Data, Data]:
    return (
        worlds.sea(1500, theta=8.0, seed=1),
        worlds.sea(300, theta=8.0, seed=2),
        worlds.sea(1500, theta=9.5, seed=3),
    )


def _bundle(model: Any, sea: tuple[Data, Data, Data]) -> sidecar.Bundle:
    train, reference, _ = sea
    model.fit(worlds.features(train[0]), train[1])
    return worlds.wrap_world(model, train, reference)


@pytest.mark.parametrize(
    ("verdict", "family", "strategy"),
    [
        ("overfitting", "ensemble", "regularize"),
        ("overfitting", "boosting", "regularize"),
        ("data_drift", "ensemble", "replace-members"),
        ("concept_drift", "boosting", "refit"),
        ("concept_drift", "neural", "fine-tune-head"),
        ("data_drift", "other", "regularize"),
        ("healthy", "ensemble", None),
        ("insufficient_data", "other", None),
        ("preprocessing_fault", "boosting", None),
    ],
)
def test_verdict_times_family_names_one_strategy(
    verdict: str, family: str, strategy: str | None
) -> None:
    assert adapters.strategy_for(verdict, family) == strategy


def test_an_unknown_family_is_refused() -> None:
    with pytest.raises(ValueError, match="`family` must be one of"):
        adapters.strategy_for("data_drift", "forest")


@pytest.mark.parametrize(
    ("model", "family"),
    [
        (RandomForestClassifier(n_estimators=5, random_state=0), "ensemble"),
        (HistGradientBoostingClassifier(max_iter=20, random_state=0), "boosting"),
        (LogisticRegression(), "other"),
        # these have estimators_ but replace-members cannot repair them: no false promise
        (AdaBoostClassifier(n_estimators=5, random_state=0), "other"),
    ],
    ids=["forest", "hgb", "logistic", "adaboost"],
)
def test_the_family_is_what_the_adapters_support(
    model: Any, family: str, sea: tuple[Data, Data, Data]
) -> None:
    assert adapters.model_family(_bundle(model, sea)) == family


def test_pure_diagnose_names_no_adapter_and_the_store_path_names_the_rule(
    sea: tuple[Data, Data, Data], tmp_path: Any
) -> None:
    from sidecar._analysis import reference_inputs
    from sidecar._window import load_window
    from sidecar.monitoring import diagnose

    bundle = _bundle(HistGradientBoostingClassifier(max_iter=30, random_state=0), sea)
    records, labels = sea[2]
    store = f"sqlite:///{tmp_path / 'r.db'}"
    from sidecar.recording import open_store

    opened = open_store(store)
    sidecar.replay(bundle, list(records), store=opened, labels=list(labels))
    opened.close()
    through_store = sidecar.diagnose(bundle, store)
    assert through_store.verdict in ("concept_drift", "data_drift")
    assert through_store.recommendation.adapter == "refit"
    opened = open_store(store, create=False)
    try:
        window = load_window(bundle, opened)
    finally:
        opened.close()
    pure = diagnose(plan=bundle.plan, reference=reference_inputs(bundle), window=window)
    assert pure.verdict == through_store.verdict
    assert pure.recommendation.action == "retrain" and pure.recommendation.adapter is None


def test_refit_recovers_a_boosted_model_after_a_concept_change(
    sea: tuple[Data, Data, Data],
) -> None:
    hgb = HistGradientBoostingClassifier(max_iter=60, learning_rate=0.2, random_state=0)
    bundle = _bundle(hgb, sea)
    recent = worlds.recent(sea[2])
    result = adapters.retrain(bundle, recent, diagnosis={"verdict": "concept_drift"})
    report = result.report
    assert report.strategy == "refit"
    assert report.candidate["accuracy"] > report.champion["accuracy"] + 0.05
    new = result.candidate.advanced.estimator
    assert new is not hgb and new.get_params() == hgb.get_params()
    assert report.changes["refitted_on"] == report.n_train + report.n_validation
    assert np.array_equal(new.classes_, hgb.classes_)


def test_refit_refuses_a_model_that_is_not_scikit_learn() -> None:
    class Fake:
        framework, estimator = "onnx", None

    class FakeBundle:
        advanced, task = Fake(), "classification"

    with pytest.raises(sidecar.AdapterError, match="supports scikit-learn models"):
        adapters.refit(FakeBundle(), None)  # type: ignore[arg-type]
