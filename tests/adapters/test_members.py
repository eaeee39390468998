"""Member replacement: ensembles meet a concept change, and the traps of their bookkeeping."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.ensemble import (
    BaggingClassifier,
    BaggingRegressor,
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
    VotingClassifier,
    VotingRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

import adapters
import sidecar
from adapters._members import SCORE_ROWS
from adapters._members_families import family_of
from tests.adapters import drift_worlds as worlds

Data = tuple[list[dict[str, Any]], Any]

# -- worlds ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sea_old() -> tuple[Data, Data]:
    """Training and reference rows of SEA concept theta = 8."""
    return worlds.sea(1200, theta=8.0, seed=1), worlds.sea(300, theta=8.0, seed=2)


@pytest.fixture(scope="module")
def sea_new() -> Data:
    """Recent rows after the concept moved to theta = 9.5."""
    return worlds.sea(1000, theta=9.5, seed=3)


@pytest.fixture(scope="module")
def plane_old() -> tuple[Data, Data]:
    """Regression: training and reference rows of the hyperplane at angle 0."""
    return (
        worlds.hyperplane_regression(1200, angle=0.0, seed=1),
        worlds.hyperplane_regression(300, angle=0.0, seed=2),
    )


@pytest.fixture(scope="module")
def plane_new() -> Data:
    return worlds.hyperplane_regression(1000, angle=1.2, seed=3)


def _voting(voting: str) -> VotingClassifier:
    return VotingClassifier(
        [
            ("lr", LogisticRegression()),
            ("tree", DecisionTreeClassifier(max_depth=6, random_state=0)),
            ("forest", RandomForestClassifier(n_estimators=15, random_state=0)),
        ],
        voting=voting,
    )


def _weighted_classifier(X: np.ndarray, y: np.ndarray) -> adapters.WeightedEnsemble:
    members = [
        LogisticRegression().fit(X, y),
        DecisionTreeClassifier(max_depth=6, random_state=0).fit(X, y),
        DecisionTreeClassifier(max_depth=3, random_state=1).fit(X, y),
    ]
    return adapters.WeightedEnsemble(members, [1.0, 2.0, 1.0], classes=[0, 1])


def _weighted_regressor(X: np.ndarray, y: np.ndarray) -> adapters.WeightedEnsemble:
    members = [
        Ridge().fit(X, y),
        DecisionTreeRegressor(max_depth=6, random_state=0).fit(X, y),
        DecisionTreeRegressor(max_depth=3, random_state=1).fit(X, y),
    ]
    return adapters.WeightedEnsemble(members, [1.0, 2.0, 1.0], task="regression")


def _fitted(make: Callable[[], Any]) -> Callable[[np.ndarray, np.ndarray], Any]:
    return lambda X, y: make().fit(X, y)


CLASSIFIERS: dict[str, Callable[[np.ndarray, np.ndarray], Any]] = {
    "random_forest": _fitted(lambda: RandomForestClassifier(n_estimators=40, random_state=0)),
    "extra_trees": _fitted(
        lambda: ExtraTreesClassifier(n_estimators=40, min_samples_leaf=2, random_state=0)
    ),
    "bagging": _fitted(
        lambda: BaggingClassifier(
            DecisionTreeClassifier(), n_estimators=30, oob_score=True, random_state=0
        )
    ),
    "voting_soft": _fitted(lambda: _voting("soft")),
    "voting_hard": _fitted(lambda: _voting("hard")),
    "gradient_boosting": _fitted(
        lambda: GradientBoostingClassifier(n_estimators=60, subsample=0.8, random_state=0)
    ),
    "weighted_ensemble": _weighted_classifier,
    "pipeline_forest": _fitted(
        lambda: make_pipeline(
            StandardScaler(), RandomForestClassifier(n_estimators=30, random_state=0)
        )
    ),
}

REGRESSORS: dict[str, Callable[[np.ndarray, np.ndarray], Any]] = {
    "random_forest": _fitted(lambda: RandomForestRegressor(n_estimators=30, random_state=0)),
    "extra_trees": _fitted(lambda: ExtraTreesRegressor(n_estimators=30, random_state=0)),
    "bagging": _fitted(
        lambda: BaggingRegressor(DecisionTreeRegressor(), n_estimators=20, random_state=0)
    ),
    "voting": _fitted(
        lambda: VotingRegressor(
            [("ridge", Ridge()), ("tree", DecisionTreeRegressor(max_depth=6, random_state=0))],
            weights=[1.0, 2.0],
        )
    ),
    "gradient_boosting": _fitted(
        lambda: GradientBoostingRegressor(n_estimators=60, random_state=0)
    ),
    "weighted_ensemble": _weighted_regressor,
}


def _bundle(make: Callable[..., Any], old: tuple[Data, Data], task: str) -> sidecar.Bundle:
    train, reference = old
    model = make(worlds.features(train[0]), np.asarray(train[1]))
    return worlds.wrap_world(model, train, reference, task=task)


# -- the candidate beats the champion after a concept change ---------------------------------


@pytest.mark.parametrize("name", list(CLASSIFIERS), ids=list(CLASSIFIERS))
def test_classifier_candidate_beats_champion_after_concept_change(
    name: str, sea_old: tuple[Data, Data], sea_new: Data
) -> None:
    bundle = _bundle(CLASSIFIERS[name], sea_old, "classification")
    result = adapters.replace_members(bundle, worlds.recent(sea_new))
    report = result.report
    assert report.strategy == "replace-members"
    assert report.candidate["accuracy"] > report.champion["accuracy"] + 0.02
    assert report.improved
    assert result.candidate.parent == bundle.version
    assert list(result.candidate.advanced.classes or ()) == [0, 1]
    _check_bookkeeping(bundle.advanced.estimator, result.candidate.advanced.estimator)


@pytest.mark.parametrize("name", list(REGRESSORS), ids=list(REGRESSORS))
def test_regressor_candidate_beats_champion_after_concept_change(
    name: str, plane_old: tuple[Data, Data], plane_new: Data
) -> None:
    bundle = _bundle(REGRESSORS[name], plane_old, "regression")
    result = adapters.replace_members(bundle, worlds.recent(plane_new))
    report = result.report
    assert report.primary_metric == "median_absolute_error"
    assert not report.higher_is_better
    assert (
        report.candidate["median_absolute_error"] < 0.8 * report.champion["median_absolute_error"]
    )
    assert report.improvement > 0
    _check_bookkeeping(bundle.advanced.estimator, result.candidate.advanced.estimator)


def _final(estimator: Any) -> Any:
    steps = getattr(estimator, "steps", None)
    return steps[-1][1] if steps else estimator


def _check_bookkeeping(champion: Any, candidate: Any) -> None:
    """Counts, stale attributes and classes of a candidate ensemble."""
    champion, candidate = _final(champion), _final(candidate)
    assert candidate is not champion
    if isinstance(candidate, GradientBoostingClassifier | GradientBoostingRegressor):
        assert candidate.estimators_.shape[0] == candidate.n_estimators_
        assert not hasattr(candidate, "oob_improvement_")
        assert candidate.warm_start == champion.warm_start
    elif isinstance(candidate, adapters.WeightedEnsemble):
        assert len(candidate.members) == len(champion.members)
        assert list(candidate.weights) == list(champion.weights)
    else:
        assert len(candidate.estimators_) == len(champion.estimators_)
        if hasattr(candidate, "n_estimators"):
            assert len(candidate.estimators_) == candidate.n_estimators
        for attr in ("oob_score_", "oob_decision_function_", "oob_prediction_"):
            assert not hasattr(candidate, attr)
    if hasattr(champion, "estimators_features_"):
        assert len(candidate.estimators_features_) == candidate.n_estimators
    if hasattr(champion, "named_estimators_"):
        assert list(candidate.named_estimators_.values()) == list(candidate.estimators_)
    if hasattr(champion, "classes_"):
        assert np.array_equal(candidate.classes_, champion.classes_)


# -- how each family is rebuilt --------------------------------------------------------------


def test_forest_keeps_its_size_and_drops_stale_attributes(sea_old: tuple[Data, Data]) -> None:
    train, reference = sea_old
    forest = RandomForestClassifier(n_estimators=40, oob_score=True, random_state=0)
    forest.fit(worlds.features(train[0]), train[1])
    champion_trees = list(forest.estimators_)
    bundle = worlds.wrap_world(forest, train, reference)
    recent = worlds.recent(worlds.sea(1000, theta=9.5, seed=4))
    result = adapters.replace_members(bundle, recent, k=30, max_new=6)
    new = result.candidate.advanced.estimator
    assert new.n_estimators == len(new.estimators_) == 40
    assert new.oob_score is False and not hasattr(new, "oob_score_")
    assert not hasattr(new, "estimators_samples_")  # old and new trees saw different data
    kept = [t for t in new.estimators_ if any(t is c for c in champion_trees)]
    assert len(kept) == 10
    assert len({id(t) for t in new.estimators_ if t not in kept}) == 6
    assert result.report.changes["slots_per_new_member"] == {"min": 5, "max": 5}
    # the champion is untouched
    assert forest.n_estimators == 40 and forest.estimators_ == champion_trees
    assert hasattr(forest, "oob_score_") and len(forest.estimators_samples_) == 40


def test_bagging_drops_seeds_and_keeps_features_aligned(sea_old: tuple[Data, Data]) -> None:
    train, reference = sea_old
    bagging = BaggingClassifier(
        DecisionTreeClassifier(), n_estimators=20, max_features=2, oob_score=True, random_state=0
    ).fit(worlds.features(train[0]), train[1])
    bundle = worlds.wrap_world(bagging, train, reference)
    result = adapters.replace_members(bundle, worlds.recent(worlds.sea(800, theta=9.5, seed=5)))
    new = result.candidate.advanced.estimator
    assert len(new.estimators_) == len(new.estimators_features_) == new.n_estimators == 20
    assert not hasattr(new, "estimators_samples_") and not hasattr(new, "oob_score_")
    assert hasattr(bagging, "oob_score_") and len(bagging.estimators_samples_) == 20
    for member, features in zip(new.estimators_, new.estimators_features_, strict=True):
        assert member.n_features_in_ == len(features) == 2


@pytest.mark.parametrize("name", ["random_forest", "voting_soft"])
def test_the_chosen_members_are_trained_again_on_the_most_recent_rows(
    name: str, sea_old: tuple[Data, Data], sea_new: Data
) -> None:
    bundle = _bundle(CLASSIFIERS[name], sea_old, "classification")
    recent = worlds.recent(sea_new)
    final = adapters.replace_members(bundle, recent, k=2)
    report = final.report
    rows_before_holdout = report.n_train + report.n_validation
    trained_on = report.changes.get("new_members_trained_on", report.changes.get("refitted_on"))
    assert trained_on == rows_before_holdout and report.changes["final_fit"] is True
    cheap = adapters.replace_members(bundle, recent, k=2, final_fit=False).report
    assert cheap.changes.get("new_members_trained_on", cheap.changes.get("refitted_on")) == (
        cheap.n_train
    )
    assert "most recent rows" in report.summary or "recent rows" in report.summary


def test_pool_choice_is_scored_as_the_candidate_predicts(
    sea_old: tuple[Data, Data], sea_new: Data
) -> None:
    """Without the final fit, the score recorded for the chosen k is the candidate's own there."""
    bundle = _bundle(CLASSIFIERS["random_forest"], sea_old, "classification")
    result = adapters.replace_members(bundle, worlds.recent(sea_new), final_fit=False)
    report = result.report
    records, labels = sea_new
    n_before_holdout = len(records) - report.n_holdout
    rows = slice(n_before_holdout - min(SCORE_ROWS, report.n_validation), n_before_holdout)
    accuracy = np.mean(result.candidate.predict(records[rows]).predictions == labels[rows])
    chosen = next(s for s in report.search if s["chosen"])
    assert report.n_validation == min(SCORE_ROWS, report.n_validation)
    assert chosen["score"] == pytest.approx(accuracy)


@pytest.mark.parametrize("voting", ["soft", "hard"])
def test_family_combines_members_as_the_ensemble_predicts(
    voting: str, sea_old: tuple[Data, Data]
) -> None:
    train, _ = sea_old
    X, y = worlds.features(train[0]), np.asarray(train[1])
    for estimator in (_voting(voting).fit(X, y), _weighted_classifier(X, y)):
        family = family_of(estimator, 2)
        combined = family.combine(family.outputs(X[:200]))
        assert np.array_equal(np.argmax(combined, axis=1), estimator.predict(X[:200]))
        if family.soft:
            assert np.allclose(combined, estimator.predict_proba(X[:200]))


def test_voting_keeps_names_and_weights(sea_old: tuple[Data, Data], sea_new: Data) -> None:
    train, reference = sea_old
    voting = _voting("soft").set_params(weights=[1.0, 2.0, 3.0])
    voting.fit(worlds.features(train[0]), train[1])
    members = list(voting.estimators_)
    bundle = worlds.wrap_world(voting, train, reference)
    result = adapters.replace_members(bundle, worlds.recent(sea_new), k=1)
    new = result.candidate.advanced.estimator
    assert list(new.named_estimators_) == ["lr", "tree", "forest"]
    assert new.weights == [1.0, 2.0, 3.0]
    refitted = result.report.changes["refitted"]
    assert len(refitted) == 1
    changed = [
        name for name, m in new.named_estimators_.items() if m is not voting.named_estimators_[name]
    ]
    assert changed == refitted
    assert voting.estimators_ == members


def test_boosting_cuts_the_tail_and_leaves_the_champion(
    sea_old: tuple[Data, Data], sea_new: Data
) -> None:
    train, reference = sea_old
    gb = GradientBoostingClassifier(n_estimators=40, random_state=0)
    gb.fit(worlds.features(train[0]), train[1])
    stages, state = gb.estimators_.copy(), gb._rng.get_state()[1].copy()
    bundle = worlds.wrap_world(gb, train, reference)
    result = adapters.replace_members(bundle, worlds.recent(sea_new), k=10)
    new = result.candidate.advanced.estimator
    assert new.n_estimators_ == new.estimators_.shape[0] == 40
    assert all(new.estimators_[i, 0] is stages[i, 0] for i in range(30))
    assert all(new.estimators_[i, 0] is not stages[i, 0] for i in range(30, 40))
    assert result.report.changes["kept_stages"] == 30
    assert gb.estimators_.shape[0] == 40 and np.array_equal(gb.estimators_, stages)
    assert np.array_equal(gb._rng.get_state()[1], state) and gb.warm_start is False


def test_choice_of_k_is_reported(sea_old: tuple[Data, Data], sea_new: Data) -> None:
    bundle = _bundle(CLASSIFIERS["random_forest"], sea_old, "classification")
    report = adapters.replace_members(bundle, worlds.recent(sea_new)).report
    ks = [s["k"] for s in report.search]
    assert ks == [0, 4, 10, 20, 30, 36, 40]
    assert report.search[0]["current"] and sum(bool(s["chosen"]) for s in report.search) == 1
    chosen = next(s for s in report.search if s["chosen"])
    assert chosen["score"] == max(s["score"] for s in report.search)
    assert report.changes["replaced"] == chosen["k"]
    json.dumps(report.to_dict())


def test_no_drift_is_no_material_gain(sea_old: tuple[Data, Data]) -> None:
    bundle = _bundle(CLASSIFIERS["random_forest"], sea_old, "classification")
    same = worlds.recent(worlds.sea(1000, theta=8.0, seed=6))
    report = adapters.replace_members(bundle, same).report
    assert abs(report.improvement) < report.min_effect
    assert not report.materially_better
    payload = report.to_dict()["holdout"]
    assert payload["materially_better"] is False
    assert payload["champion"]["accuracy"] == report.champion["accuracy"]


def test_progress_is_reported_in_order(sea_old: tuple[Data, Data], sea_new: Data) -> None:
    bundle = _bundle(CLASSIFIERS["random_forest"], sea_old, "classification")
    seen: list[tuple[str, float]] = []
    adapters.replace_members(
        bundle, worlds.recent(sea_new), progress=lambda s, f: seen.append((s, f))
    )
    fractions = [f for _, f in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(seen) >= 4


# -- classes ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def three_classes(tmp_path_factory: pytest.TempPathFactory) -> tuple[sidecar.Bundle, Path]:
    train, reference = worlds.sea3(1200, seed=1), worlds.sea3(300, seed=2)
    forest = RandomForestClassifier(n_estimators=20, random_state=0)
    forest.fit(worlds.features(train[0]), train[1])
    bundle = worlds.wrap_world(forest, train, reference)
    path = bundle.save(tmp_path_factory.mktemp("champion") / "bundle")
    return sidecar.load(path), path


def test_missing_class_is_refused_and_nothing_is_overwritten(
    three_classes: tuple[sidecar.Bundle, Path],
) -> None:
    bundle, path = three_classes
    before = worlds.bundle_digest(path)
    trees = list(bundle.advanced.estimator.estimators_)
    records, labels = worlds.sea3(900, cuts=(7.0, 11.0), seed=7)
    keep = labels != 2
    recent = worlds.recent(([r for r, k in zip(records, keep, strict=True) if k], labels[keep]))
    with pytest.raises(sidecar.AdapterError, match=r"no example of class\(es\) \[2\]"):
        adapters.replace_members(bundle, recent)
    assert worlds.bundle_digest(path) == before
    assert bundle.advanced.estimator.estimators_ == trees
    assert sidecar.load(path).version == bundle.version


def test_three_classes_keep_their_columns(three_classes: tuple[sidecar.Bundle, Path]) -> None:
    bundle, _ = three_classes
    recent = worlds.recent(worlds.sea3(900, cuts=(6.0, 12.0), seed=8))
    result = adapters.replace_members(bundle, recent)
    new = result.candidate.advanced.estimator
    assert list(new.classes_) == [0, 1, 2]
    assert all(t.n_classes_ == 3 for t in new.estimators_)
    proba = result.candidate.predict_proba(recent.records[:50])
    assert proba.shape == (50, 3) and np.allclose(proba.sum(axis=1), 1.0)
    assert result.report.improved


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (
            lambda y: np.where(y == 1, "yes", "no"),
            r"classes the model knows \[0, 1\]; got '(yes|no)' \(\d+x\)",
        ),
        (lambda y: y + 5, r"got [56] \(\d+x\), [56] \(\d+x\)"),
        (lambda y: y[:-3], r"one label per record \(1000\)"),
    ],
    ids=["strings_for_int_classes", "unknown_classes", "too_few_labels"],
)
def test_wrong_labels_are_refused(
    labels: Callable[[np.ndarray], np.ndarray],
    match: str,
    sea_old: tuple[Data, Data],
    sea_new: Data,
) -> None:
    bundle = _bundle(CLASSIFIERS["random_forest"], sea_old, "classification")
    records, y = sea_new
    recent = sidecar.RecentData(records=records, labels=labels(y), ts=np.arange(1000.0))
    with pytest.raises(sidecar.AdapterError, match=match):
        adapters.replace_members(bundle, recent)


# -- refusals --------------------------------------------------------------------------------


def test_too_few_rows_names_the_minimum(sea_old: tuple[Data, Data]) -> None:
    bundle = _bundle(CLASSIFIERS["random_forest"], sea_old, "classification")
    with pytest.raises(
        sidecar.AdapterError, match=r"at least 50 labelled recent rows .*; got 30\."
    ):
        adapters.replace_members(bundle, worlds.recent(worlds.sea(30, seed=9)))


def test_unsupported_family_names_the_supported_ones(sea_old: tuple[Data, Data]) -> None:
    bundle = _bundle(_fitted(LogisticRegression), sea_old, "classification")
    with pytest.raises(
        sidecar.AdapterError,
        match="does not support LogisticRegression; it supports RandomForestClassifier",
    ):
        adapters.replace_members(bundle, worlds.recent(worlds.sea(300, seed=9)))


def test_task_mismatch_is_refused(sea_old: tuple[Data, Data]) -> None:
    bundle = _bundle(CLASSIFIERS["random_forest"], sea_old, "regression")
    with pytest.raises(
        sidecar.AdapterError, match="task mismatch: the bundle's task is 'regression'"
    ):
        adapters.replace_members(bundle, worlds.recent(worlds.sea(300, seed=9)))


@pytest.mark.parametrize("k", [0, 41, 2.5], ids=["zero", "too_many", "float"])
def test_k_out_of_range_is_refused(k: Any, sea_old: tuple[Data, Data], sea_new: Data) -> None:
    bundle = _bundle(CLASSIFIERS["random_forest"], sea_old, "classification")
    with pytest.raises(sidecar.AdapterError, match=r"`k` must be an integer in \[1, 40\]"):
        adapters.replace_members(bundle, worlds.recent(sea_new), k=k)


def test_regression_labels_must_be_numbers(plane_old: tuple[Data, Data], plane_new: Data) -> None:
    bundle = _bundle(REGRESSORS["random_forest"], plane_old, "regression")
    records, y = plane_new
    bad = y.astype(object)
    bad[17] = float("nan")
    recent = sidecar.RecentData(records=records, labels=bad, ts=np.arange(len(y), dtype=float))
    with pytest.raises(sidecar.AdapterError, match=r"finite numbers .* got nan at index 17"):
        adapters.replace_members(bundle, recent)


# -- the project's own ensemble --------------------------------------------------------------


def test_weighted_ensemble_matches_members_by_label() -> None:
    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    a = LogisticRegression().fit(X, ["x", "y", "z", "z"])
    b = DecisionTreeClassifier().fit(X, ["z", "y", "y", "z"])  # knows only y and z
    ensemble = adapters.WeightedEnsemble([a, b], [1.0, 1.0], classes=["z", "y", "x"])
    proba = ensemble.predict_proba(X)
    expected = np.zeros((4, 3))
    expected[:, [2, 1, 0]] += a.predict_proba(X)
    expected[:, [1, 0]] += b.predict_proba(X)
    assert np.allclose(proba, expected / 2)
    assert list(ensemble.predict(X)) == [["z", "y", "x"][i] for i in proba.argmax(axis=1)]
    assert ensemble.fit(X, None) is ensemble


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"weights": [1.0]}, r"`weights` must be 2 finite non-negative numbers"),
        ({"weights": [0.0, 0.0]}, r"not all zero"),
        ({"classes": ["only"]}, r"`classes` must name at least 2 distinct class labels"),
        ({"task": "ranking"}, r"`task` must be 'classification' or 'regression'"),
    ],
    ids=["weights_length", "zero_weights", "one_class", "task"],
)
def test_weighted_ensemble_rejects_bad_parameters(kwargs: dict[str, Any], match: str) -> None:
    X = np.array([[0.0], [1.0]])
    member = LogisticRegression().fit(X, [0, 1])
    params: dict[str, Any] = {"members": [member, member], "weights": [1, 1], "classes": [0, 1]}
    params.update(kwargs)
    with pytest.raises(sidecar.AdapterError, match=match):
        adapters.WeightedEnsemble(**params).predict(X)


def test_weighted_ensemble_saves_with_skops_and_loads_as_a_trusted_type(
    sea_old: tuple[Data, Data], sea_new: Data, tmp_path: Path
) -> None:
    # The project's own adapters package is trusted like scikit-learn itself.
    bundle = _bundle(CLASSIFIERS["weighted_ensemble"], sea_old, "classification")
    result = adapters.replace_members(bundle, worlds.recent(sea_new))
    path = result.candidate.save(tmp_path / "candidate")
    loaded = sidecar.load(path)
    assert isinstance(loaded.advanced.estimator, adapters.WeightedEnsemble)
    assert loaded.version == result.candidate.version
    records = sea_new[0][:100]
    assert np.allclose(loaded.predict_proba(records), result.candidate.predict_proba(records))
