"""Regularize: an overfit model is refitted with stronger regularization chosen on recent data."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.ensemble import (
    ExtraTreesClassifier,
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.linear_model import ElasticNet, Lasso, LogisticRegression, Ridge
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

import adapters
import sidecar
from tests.adapters import drift_worlds as worlds

Data = tuple[list[dict[str, Any]], Any]
Stronger = Callable[[dict[str, Any], dict[str, Any]], bool]


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Small models fit fastest on one thread, and do not thrash a busy test machine."""
    from threadpoolctl import threadpool_limits

    try:
        import torch
    except ImportError:  # pragma: no cover - torch is an optional extra
        torch = None
    before = torch.get_num_threads() if torch is not None else 0
    if torch is not None:
        torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        yield
    if torch is not None:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def few_noisy() -> tuple[Data, Data, Data]:
    """60 noisy training rows with 27 useless features, a reference, and 600 recent rows."""
    return (
        worlds.overfit_world(60, seed=1),
        worlds.overfit_world(120, seed=2),
        worlds.overfit_world(600, seed=3),
    )


@pytest.fixture(scope="module")
def few_noisy_regression() -> tuple[Data, Data, Data]:
    return (
        worlds.overfit_regression_world(60, seed=1),
        worlds.overfit_regression_world(120, seed=2),
        worlds.overfit_regression_world(600, seed=3),
    )


def _depth_or_leaf(old: dict[str, Any], new: dict[str, Any]) -> bool:
    deeper = old["max_depth"] is None or new["max_depth"] < old["max_depth"]
    return bool(deeper or new["min_samples_leaf"] > old["min_samples_leaf"])


CLASSIFIERS: dict[str, tuple[Callable[[], Any], Stronger]] = {
    "logistic_high_C": (
        lambda: LogisticRegression(C=1e4, max_iter=5000),
        lambda old, new: new["C"] < old["C"],
    ),
    "logistic_old_penalty_spelling": (
        lambda: LogisticRegression(penalty="l2", C=1e4, max_iter=5000),
        lambda old, new: new["C"] < old["C"] and new["penalty"] == "deprecated",
    ),
    "logistic_no_penalty": (
        lambda: LogisticRegression(C=np.inf, max_iter=5000),
        lambda old, new: np.isfinite(new["C"]),
    ),
    "deep_tree": (lambda: DecisionTreeClassifier(random_state=0), _depth_or_leaf),
    "random_forest": (
        lambda: RandomForestClassifier(n_estimators=30, random_state=0),
        _depth_or_leaf,
    ),
    "extra_trees": (
        lambda: ExtraTreesClassifier(n_estimators=30, random_state=0),
        _depth_or_leaf,
    ),
    "hist_gradient_boosting": (
        lambda: HistGradientBoostingClassifier(max_iter=40, min_samples_leaf=2, random_state=0),
        lambda old, new: (
            new["l2_regularization"] > old["l2_regularization"]
            or new["max_leaf_nodes"] < old["max_leaf_nodes"]
            or new["learning_rate"] < old["learning_rate"]
        ),
    ),
    "gradient_boosting": (
        lambda: GradientBoostingClassifier(n_estimators=50, max_depth=4, random_state=0),
        lambda old, new: (
            new["max_depth"] < old["max_depth"]
            or new["subsample"] < old["subsample"]
            or new["learning_rate"] < old["learning_rate"]
        ),
    ),
    "mlp": (
        lambda: MLPClassifier(hidden_layer_sizes=(64,), alpha=1e-6, max_iter=400, random_state=0),
        lambda old, new: new["alpha"] > old["alpha"],
    ),
}

REGRESSORS: dict[str, tuple[Callable[[], Any], Stronger]] = {
    "ridge": (lambda: Ridge(alpha=1e-6), lambda old, new: new["alpha"] > old["alpha"]),
    "lasso": (
        lambda: Lasso(alpha=1e-3, max_iter=50_000),
        lambda old, new: new["alpha"] > old["alpha"],
    ),
    "elastic_net": (
        lambda: ElasticNet(alpha=1e-3, max_iter=50_000),
        lambda old, new: new["alpha"] > old["alpha"],
    ),
    "deep_tree": (lambda: DecisionTreeRegressor(random_state=0), _depth_or_leaf),
    "mlp": (
        lambda: MLPRegressor(hidden_layer_sizes=(64,), alpha=1e-6, max_iter=400, random_state=0),
        lambda old, new: new["alpha"] > old["alpha"],
    ),
}


def _fit(model: Any, data: Data) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an MLP on 60 rows may stop at max_iter: on purpose
        return model.fit(worlds.features(data[0]), data[1])


def _bundle(model: Any, worlds_data: tuple[Data, Data, Data], task: str) -> sidecar.Bundle:
    train, reference, _ = worlds_data
    return worlds.wrap_world(_fit(model, train), train, reference, task=task)


@pytest.mark.parametrize("name", list(CLASSIFIERS), ids=list(CLASSIFIERS))
def test_overfit_classifier_gets_stronger_regularization(
    name: str, few_noisy: tuple[Data, Data, Data]
) -> None:
    make, stronger = CLASSIFIERS[name]
    bundle = _bundle(make(), few_noisy, "classification")
    before = bundle.advanced.estimator.get_params()
    result = adapters.regularize(bundle, worlds.recent(few_noisy[2]))
    report = result.report
    after = result.candidate.advanced.estimator.get_params()
    assert stronger(before, after), report.changes
    assert report.candidate["accuracy"] > report.champion["accuracy"]
    assert type(result.candidate.advanced.estimator) is type(bundle.advanced.estimator)
    assert bundle.advanced.estimator.get_params() == before  # the champion is untouched
    assert result.candidate.parent == bundle.version
    json.dumps(report.to_dict())


def test_an_infinite_C_is_reported_as_null(few_noisy: tuple[Data, Data, Data]) -> None:
    """Settings go through the one JSON policy (sidecar._json): a non-finite number is null."""
    bundle = _bundle(LogisticRegression(C=np.inf, max_iter=5000), few_noisy, "classification")
    report = adapters.regularize(bundle, worlds.recent(few_noisy[2])).report
    assert report.changes["C"]["from"] is None and np.isfinite(report.changes["C"]["to"])
    assert report.search[0]["current"] and report.search[0]["setting"]["C"] is None
    assert "C inf -> " in report.summary  # the summary still names the value
    as_json = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert as_json["what_changed"]["parameters"]["C"]["from"] is None


@pytest.mark.parametrize("name", list(REGRESSORS), ids=list(REGRESSORS))
def test_overfit_regressor_gets_stronger_regularization(
    name: str, few_noisy_regression: tuple[Data, Data, Data]
) -> None:
    make, stronger = REGRESSORS[name]
    bundle = _bundle(make(), few_noisy_regression, "regression")
    before = bundle.advanced.estimator.get_params()
    report = adapters.regularize(bundle, worlds.recent(few_noisy_regression[2])).report
    assert report.primary_metric == "median_absolute_error"
    assert report.improvement > 0
    changed = {k.split("__")[-1]: v["to"] for k, v in report.changes.items()}
    assert stronger(before, {**before, **changed}), report.changes


def test_pipeline_regularizes_its_final_step_only(few_noisy: tuple[Data, Data, Data]) -> None:
    pipeline = make_pipeline(StandardScaler(with_mean=False), LogisticRegression(C=1e4))
    bundle = _bundle(pipeline, few_noisy, "classification")
    result = adapters.regularize(bundle, worlds.recent(few_noisy[2]))
    new = result.candidate.advanced.estimator
    assert new.named_steps["logisticregression"].C < 1e4
    assert new.named_steps["standardscaler"].get_params() == {
        "copy": True,
        "with_mean": False,
        "with_std": True,
    }
    assert set(result.report.changes) <= {
        "logisticregression__C",
        "logisticregression__random_state",
    }
    assert "final step 'logisticregression'" in result.report.summary
    assert result.report.improved


def test_search_shows_the_current_setting_and_one_choice(
    few_noisy: tuple[Data, Data, Data],
) -> None:
    bundle = _bundle(DecisionTreeClassifier(random_state=0), few_noisy, "classification")
    report = adapters.regularize(bundle, worlds.recent(few_noisy[2])).report
    assert report.search[0]["current"] is True and report.search[0]["chosen"] is False
    assert report.search[0]["setting"] == {"max_depth": None, "min_samples_leaf": 1}
    chosen = [s for s in report.search if s["chosen"]]
    assert len(chosen) == 1
    assert chosen[0]["score"] == max(s["score"] for s in report.search[1:])
    assert report.n_train + report.n_validation + report.n_holdout == 600
    assert (report.n_train, report.n_validation, report.n_holdout) == (360, 120, 120)


def test_time_order_not_row_order_decides_the_split(few_noisy: tuple[Data, Data, Data]) -> None:
    bundle = _bundle(LogisticRegression(C=1e4, max_iter=5000), few_noisy, "classification")
    ordered = worlds.recent(few_noisy[2])
    shuffle = np.random.default_rng(0).permutation(len(ordered))
    shuffled = sidecar.RecentData(
        records=[ordered.records[i] for i in shuffle],
        labels=ordered.labels[shuffle],
        ts=ordered.ts[shuffle],
    )
    a = adapters.regularize(bundle, ordered)
    b = adapters.regularize(bundle, shuffled)
    assert a.report.champion == b.report.champion and a.report.candidate == b.report.candidate
    assert a.report.changes == b.report.changes
    assert a.candidate.reference.summary == b.candidate.reference.summary


def test_no_change_in_the_world_shows_no_material_gain() -> None:
    train, reference, recent = (
        worlds.overfit_world(2000, seed=1),
        worlds.overfit_world(300, seed=2),
        worlds.overfit_world(600, seed=3),
    )
    model = LogisticRegression(C=1.0, max_iter=2000)
    bundle = worlds.wrap_world(_fit(model, train), train, reference)
    report = adapters.regularize(bundle, worlds.recent(recent)).report
    assert not report.materially_better
    assert report.to_dict()["holdout"]["materially_better"] is False


def test_the_champion_bundle_is_not_overwritten(
    few_noisy: tuple[Data, Data, Data], tmp_path: Path
) -> None:
    path = _bundle(DecisionTreeClassifier(random_state=0), few_noisy, "classification").save(
        tmp_path / "champion"
    )
    before = worlds.bundle_digest(path)
    champion = sidecar.load(path)
    result = adapters.regularize(champion, worlds.recent(few_noisy[2]))
    candidate_path = result.candidate.save(tmp_path / "candidate")
    assert worlds.bundle_digest(path) == before
    assert sidecar.load(candidate_path).parent == champion.version
    with pytest.raises(sidecar.AdapterError, match="at least 50"):
        adapters.regularize(champion, worlds.recent(worlds.overfit_world(20, seed=4)))
    assert worlds.bundle_digest(path) == before


def test_unknown_estimator_names_the_supported_ones(few_noisy: tuple[Data, Data, Data]) -> None:
    bundle = _bundle(KNeighborsClassifier(), few_noisy, "classification")
    with pytest.raises(
        sidecar.AdapterError,
        match=r"does not support KNeighborsClassifier; it supports LogisticRegression, .*Ridge",
    ):
        adapters.regularize(bundle, worlds.recent(few_noisy[2]))


def test_wrong_label_values_are_refused(few_noisy_regression: tuple[Data, Data, Data]) -> None:
    bundle = _bundle(Ridge(alpha=1e-6), few_noisy_regression, "regression")
    records, y = few_noisy_regression[2]
    labels = y.astype(object)
    labels[3] = "12.5"
    recent = sidecar.RecentData(records=records, labels=labels, ts=np.arange(len(y), dtype=float))
    with pytest.raises(sidecar.AdapterError, match=r"finite numbers .* got '12.5' at index 3"):
        adapters.regularize(bundle, recent)


def test_task_mismatch_is_refused(few_noisy: tuple[Data, Data, Data]) -> None:
    bundle = _bundle(DecisionTreeClassifier(random_state=0), few_noisy, "regression")
    with pytest.raises(sidecar.AdapterError, match="task mismatch"):
        adapters.regularize(bundle, worlds.recent(few_noisy[2]))


# -- torch -----------------------------------------------------------------------------------

FACTORY = "tests.adapters.drift_worlds:make_dropout_mlp"


def _torch_bundle(few_noisy: tuple[Data, Data, Data], *, dropout: float = 0.0) -> sidecar.Bundle:
    torch = pytest.importorskip("torch")
    train, reference, _ = few_noisy
    kwargs = {"n_features": 30, "n_classes": 2, "hidden": 64, "dropout": dropout}
    torch.manual_seed(0)
    module = worlds.make_dropout_mlp(**kwargs)
    worlds.train_torch(module, worlds.features(train[0]), np.asarray(train[1]), epochs=300)
    return worlds.wrap_world(
        module,
        train,
        reference,
        model_options={"factory": FACTORY, "factory_kwargs": kwargs},
    )


def test_torch_module_gets_weight_decay_and_dropout(few_noisy: tuple[Data, Data, Data]) -> None:
    bundle = _torch_bundle(few_noisy)
    result = adapters.regularize(bundle, worlds.recent(few_noisy[2]), seed=0)
    report = result.report
    advanced: Any = result.candidate.advanced
    assert advanced.framework == "torch" and advanced.factory == FACTORY
    assert report.changes["weight_decay"]["to"] > 0
    assert {s["setting"]["dropout"] for s in report.search} == {0.0, 0.3}
    assert advanced.factory_kwargs["dropout"] == report.changes.get("dropout", {}).get("to", 0.0)
    assert report.candidate["accuracy"] > report.champion["accuracy"]
    assert len(report.search) == 6 and sum(bool(s["chosen"]) for s in report.search) == 1


def test_torch_candidate_round_trips(few_noisy: tuple[Data, Data, Data], tmp_path: Path) -> None:
    bundle = _torch_bundle(few_noisy, dropout=0.1)
    result = adapters.regularize(bundle, worlds.recent(few_noisy[2]))
    loaded = sidecar.load(result.candidate.save(tmp_path / "candidate"), trusted=[FACTORY])
    records = few_noisy[2][0][:50]
    assert np.allclose(loaded.predict_proba(records), result.candidate.predict_proba(records))


def test_torchscript_module_cannot_be_rebuilt(few_noisy: tuple[Data, Data, Data]) -> None:
    torch = pytest.importorskip("torch")
    train, reference, recent = few_noisy
    module = worlds.make_dropout_mlp(30, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(module.eval())
    bundle = worlds.wrap_world(scripted, train, reference)
    with pytest.raises(sidecar.AdapterError, match="TorchScript"):
        adapters.regularize(bundle, worlds.recent(recent))
