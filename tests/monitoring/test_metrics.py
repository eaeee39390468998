"""Metrics against scikit-learn, per-example losses, bootstrap intervals, outlier influence."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from sklearn import metrics as skm

from sidecar import InputError
from sidecar.monitoring import (
    LOSSES,
    METRICS,
    MetricValue,
    brier,
    f1,
    huber,
    log_loss,
    metric_with_ci,
    metrics_with_ci,
    mse,
    outlier_influence,
    per_example_loss,
    pinball,
    roc_auc,
    trimmed_mse,
)


def _close(expected: Any) -> Any:
    """Equal to 1e-10 relative (1e-12 absolute near zero): the reference implementations agree."""
    return pytest.approx(expected, rel=1e-10, abs=1e-12)


# --------------------------------------------------------------------------- data


def _classification(
    *, n: int, classes: list[Any], seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, a noisy but informative ``(n, k)`` probability matrix, and its argmax labels."""
    rng = np.random.default_rng(seed)
    k = len(classes)
    y_idx = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y_idx] += 1.5
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = np.asarray(classes)
    y_pred = labels[rng.integers(0, k, n)]  # independent of proba: exercises both paths
    return labels[y_idx], y_pred, proba


CLASSIFICATION_CASES = {
    "binary-int": [0, 1],
    "binary-str": ["ham", "spam"],
    "binary-unsorted": [1, 0],  # classes[1] = 0 is the positive class
    "multiclass-4": [0, 1, 2, 3],
    "multiclass-str": ["a", "b", "c"],
}


@pytest.fixture(params=list(CLASSIFICATION_CASES.values()), ids=list(CLASSIFICATION_CASES))
def clf(request: pytest.FixtureRequest) -> dict[str, Any]:
    classes = request.param
    y, y_pred, proba = _classification(n=300, classes=classes, seed=len(classes) + 7)
    return {"y": y, "y_pred": y_pred, "proba": proba, "classes": classes}


def _sklearn(name: str, c: dict[str, Any]) -> float:
    y, y_pred, proba, classes = c["y"], c["y_pred"], c["proba"], c["classes"]
    binary = len(classes) == 2
    order = np.argsort(classes)  # scikit-learn wants probability columns in sorted label order
    sorted_proba = proba[:, order]
    sorted_classes = list(np.asarray(classes)[order])
    if name == "accuracy":
        return float(skm.accuracy_score(y, y_pred))
    if name == "balanced_accuracy":
        return float(skm.balanced_accuracy_score(y, y_pred))
    if name == "f1":
        if binary:
            return float(skm.f1_score(y, y_pred, pos_label=classes[1], zero_division=0.0))
        return float(skm.f1_score(y, y_pred, average="macro", zero_division=0.0))
    if name == "log_loss":
        return float(skm.log_loss(y, y_proba=sorted_proba, labels=sorted_classes))
    if name == "brier":
        if binary:
            return float(skm.brier_score_loss(y, proba[:, 1], pos_label=classes[1]))
        return float(skm.brier_score_loss(y, sorted_proba, labels=sorted_classes))
    if name == "roc_auc":
        if binary:
            return float(skm.roc_auc_score(y == classes[1], proba[:, 1]))
        return float(skm.roc_auc_score(y, sorted_proba, multi_class="ovr", labels=sorted_classes))
    raise AssertionError(name)


CLASSIFICATION_METRICS = [n for n, s in METRICS.items() if s.task == "classification"]


@pytest.mark.parametrize("name", CLASSIFICATION_METRICS, ids=CLASSIFICATION_METRICS)
def test_classification_metric_matches_sklearn(name: str, clf: dict[str, Any]) -> None:
    spec = METRICS[name]
    ours = spec.function(clf["y"], clf["y_pred"], clf["proba"], clf["classes"])
    assert ours == _close(_sklearn(name, clf))


def test_label_metrics_use_argmax_of_proba_without_y_pred(clf: dict[str, Any]) -> None:
    argmax = np.asarray(clf["classes"])[clf["proba"].argmax(axis=1)]
    for name in ("accuracy", "balanced_accuracy", "f1"):
        fn = METRICS[name].function
        from_proba = fn(clf["y"], None, clf["proba"], clf["classes"])
        assert from_proba == fn(clf["y"], argmax, None, clf["classes"])


def test_binary_proba_may_be_one_column() -> None:
    y, _, proba = _classification(n=200, classes=[0, 1], seed=3)
    for fn in (log_loss, brier, roc_auc):
        assert fn(y, None, proba[:, 1], [0, 1]) == _close(fn(y, None, proba))


def test_log_loss_clips_like_sklearn() -> None:
    y = np.array([0, 1, 1, 0])
    proba = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    expected = skm.log_loss(y, y_proba=proba)
    assert math.isfinite(expected)
    assert log_loss(y, proba=proba) == _close(expected)


def test_f1_binary_without_positives_is_zero_as_sklearn() -> None:
    y = np.array([0, 0, 0])
    assert f1(y, [0, 0, 0], classes=[0, 1]) == 0.0


REGRESSION_REFERENCES: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "mse": skm.mean_squared_error,
    "rmse": skm.root_mean_squared_error,
    "mae": skm.mean_absolute_error,
    "median_absolute_error": skm.median_absolute_error,
    "pinball": lambda y, p: skm.mean_pinball_loss(y, p, alpha=0.5),
    "huber": lambda y, p: float(
        np.mean(np.where(np.abs(y - p) <= 1, 0.5 * (y - p) ** 2, np.abs(y - p) - 0.5))
    ),
    "trimmed_mse": lambda y, p: float(np.sort((y - p) ** 2)[: len(y) - len(y) // 100].mean()),
}


@pytest.mark.parametrize("name", list(REGRESSION_REFERENCES), ids=list(REGRESSION_REFERENCES))
def test_regression_metric_matches_reference(name: str) -> None:
    rng = np.random.default_rng(11)
    y = rng.normal(size=350)
    y_hat = y + rng.standard_t(3, size=350)
    ours = METRICS[name].function(y, y_hat, None, None)
    assert ours == _close(REGRESSION_REFERENCES[name](y, y_hat))


@pytest.mark.parametrize("q", [0.1, 0.5, 0.9], ids=["q10", "q50", "q90"])
def test_pinball_quantiles_match_sklearn(q: float) -> None:
    rng = np.random.default_rng(5)
    y, y_hat = rng.normal(size=100), rng.normal(size=100)
    expected = skm.mean_pinball_loss(y, y_hat, alpha=q)
    assert pinball(y, y_hat, quantile=q) == _close(expected)


def test_huber_delta_and_trimmed_mse_trim() -> None:
    r = np.array([0.5, -2.0, 4.0])
    assert huber(r, np.zeros(3), delta=2.0) == _close((0.125 + 2.0 + 6.0) / 3)
    # trim 0.34 of 3 rows drops floor(1.02) = 1 squared error: the 16
    assert trimmed_mse(r, np.zeros(3), trim=0.34) == _close((0.25 + 4.0) / 2)
    assert trimmed_mse(r, np.zeros(3), trim=0.0) == _close(mse(r, np.zeros(3)))


def test_registry_is_consistent() -> None:
    for name, spec in METRICS.items():
        assert spec.name == name
        assert spec.task in ("classification", "regression")
        assert spec.loss is None or spec.loss in LOSSES
    assert {n for n, s in METRICS.items() if s.higher_is_better} == {
        "accuracy",
        "balanced_accuracy",
        "f1",
        "roc_auc",
    }


# --------------------------------------------------------------------------- per-example losses


LOSS_METRICS = [n for n, s in METRICS.items() if s.loss is not None]


@pytest.mark.parametrize("name", LOSS_METRICS, ids=LOSS_METRICS)
def test_per_example_loss_mean_is_the_metric(name: str) -> None:
    spec = METRICS[name]
    if spec.task == "classification":
        y, y_pred, proba = _classification(n=120, classes=["x", "y", "z"], seed=2)
        args: tuple[Any, ...] = (y, y_pred, proba, ["x", "y", "z"])
    else:
        rng = np.random.default_rng(2)
        y = rng.normal(size=120)
        args = (y, y + rng.normal(size=120), None, None)
    losses = per_example_loss(name, *args)
    assert losses.shape == (120,)
    assert np.all(losses >= 0)
    expected = 1.0 - spec.function(*args) if name == "accuracy" else spec.function(*args)
    assert losses.mean() == _close(expected)
    if spec.loss != name:
        assert np.array_equal(per_example_loss(spec.loss or "", *args), losses)


def test_per_example_loss_rejects_metrics_that_are_not_means() -> None:
    with pytest.raises(InputError, match=r"`name` must be a loss .*; got 'rmse'"):
        per_example_loss("rmse", [1.0, 2.0], [1.0, 2.0])


# --------------------------------------------------------------------------- bootstrap intervals


@pytest.mark.parametrize(
    "name", ["accuracy", "log_loss", "roc_auc", "f1", "mae", "rmse", "median_absolute_error"]
)
def test_metric_with_ci_brackets_the_value(name: str) -> None:
    if METRICS[name].task == "classification":
        y, _, proba = _classification(n=200, classes=[0, 1], seed=9)
        args: tuple[Any, ...] = (y, None, proba, [0, 1])
    else:
        rng = np.random.default_rng(9)
        y = rng.normal(size=200)
        args = (y, y + rng.normal(size=200))
    result = metric_with_ci(name, *args, n_boot=300, seed=1)
    assert isinstance(result, MetricValue)
    assert result.value == pytest.approx(METRICS[name].function(*args, *([None] * (4 - len(args)))))
    assert result.ci_low < result.value < result.ci_high
    assert result.n == 200
    assert result.higher_is_better == METRICS[name].higher_is_better
    assert metric_with_ci(name, *args, n_boot=300, seed=1) == result  # seeded: reproducible


WEIGHTED_CASES = {
    "balanced_accuracy-3": ("balanced_accuracy", ["a", "b", "c"]),
    "f1-binary": ("f1", [0, 1]),
    "f1-macro": ("f1", ["a", "b", "c"]),
    "roc_auc-binary": ("roc_auc", [0, 1]),
    "roc_auc-ovr": ("roc_auc", ["a", "b", "c"]),
    "median_absolute_error": ("median_absolute_error", None),
    "median_absolute_error-odd": ("median_absolute_error", None),
    "trimmed_mse": ("trimmed_mse", None),
}


@pytest.mark.parametrize("name,classes", list(WEIGHTED_CASES.values()), ids=list(WEIGHTED_CASES))
def test_vectorised_bootstrap_equals_recomputing_on_resampled_rows(
    name: str, classes: list[Any] | None
) -> None:
    n, n_boot, seed = 151 if "odd" in name else 250, 200, 3
    if classes is not None:
        y, y_pred, proba = _classification(n=n, classes=classes, seed=seed)
        proba = np.round(proba, 2)  # ties in the scores
        proba /= proba.sum(axis=1, keepdims=True)
    else:
        rng = np.random.default_rng(seed)
        y, y_pred, proba = rng.normal(size=n), np.round(rng.normal(size=n), 1), None
    function = METRICS[name].function
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))  # the same draws
    boot = [function(y[i], y_pred[i], None if proba is None else proba[i], classes) for i in idx]
    expected = np.quantile(boot, [0.025, 0.975])
    result = metric_with_ci(name, y, y_pred, proba, classes, n_boot=n_boot, seed=seed)
    assert (result.ci_low, result.ci_high) == pytest.approx(tuple(expected), rel=1e-10)


def test_metric_with_ci_covers_the_true_mae() -> None:
    """Percentile-bootstrap coverage over many seeded windows is near the nominal level."""
    runs, n, confidence = 300, 200, 0.95
    errors = np.random.default_rng(17).normal(size=(runs, n))
    truth = math.sqrt(2 / math.pi)  # E|Z|
    covered = [
        (v := metric_with_ci("mae", e, np.zeros(n), n_boot=400, seed=i)).ci_low
        <= truth
        <= v.ci_high
        for i, e in enumerate(errors)
    ]
    assert np.mean(covered) >= confidence - 3 * math.sqrt(confidence * (1 - confidence) / runs)


def test_metric_with_ci_chunks_large_windows() -> None:
    rng = np.random.default_rng(4)
    y = rng.normal(size=30_000)  # 30k x 1000 indices: many chunks
    result = metric_with_ci("mse", y, np.zeros_like(y), n_boot=1000)
    se = y.var() * math.sqrt(2 / y.size)  # sd of the mean of chi-square(1) * var
    assert result.ci_high - result.ci_low == pytest.approx(2 * 1.96 * se, rel=0.1)


CLASSIFICATION_METRICS = ["accuracy", "balanced_accuracy", "f1", "log_loss", "brier", "roc_auc"]


def test_metrics_with_ci_equals_one_call_per_metric_below_the_threshold() -> None:
    y, y_pred, proba = _classification(n=400, classes=["a", "b", "c"], seed=5)
    boots = {name: 300 if name == "accuracy" else 120 for name in CLASSIFICATION_METRICS}
    together = metrics_with_ci(
        CLASSIFICATION_METRICS, y, y_pred, proba, ["a", "b", "c"], n_boot=boots, seed=2
    )
    for name in CLASSIFICATION_METRICS:
        alone = metric_with_ci(name, y, y_pred, proba, ["a", "b", "c"], n_boot=boots[name], seed=2)
        assert together[name] == alone, name


def test_metrics_with_ci_leaves_out_what_is_undefined_and_refuses_bad_input() -> None:
    one_class = metrics_with_ci(["accuracy", "roc_auc"], [1, 1, 1], [1, 0, 1], [[0.2, 0.8]] * 3)
    assert list(one_class) == ["accuracy"]  # ROC AUC needs two classes
    assert list(metrics_with_ci(["log_loss", "f1"], [0, 1, 1], [0, 1, 0])) == ["f1"]  # no proba
    with pytest.raises(InputError, match="metrics of one task"):
        metrics_with_ci(["accuracy", "mse"], [0, 1], [0, 1])
    with pytest.raises(InputError, match="y_pred"):
        metrics_with_ci(["accuracy"], [0, 1, 1], [0, 1])


def test_metrics_with_ci_past_the_threshold_keeps_values_and_covers_the_truth() -> None:
    """Normal intervals for means of losses, a narrowed subsample bootstrap for the rest."""
    runs, n, confidence = 200, 6_000, 0.95
    truth_acc, covered = 0.8, {"accuracy": 0, "mse": 0, "median_absolute_error": 0}
    truth_mse, truth_median = 1.0, 0.6744897501960817  # N(0, 1): E e^2, median |e|
    for i in range(runs):
        rng = np.random.default_rng(1000 + i)
        y = rng.integers(0, 2, n)
        pred = np.where(rng.random(n) < truth_acc, y, 1 - y)
        acc = metrics_with_ci(["accuracy"], y, pred, seed=i, max_bootstrap_n=2_000)["accuracy"]
        assert acc.value == np.mean(y == pred) and acc.n == n
        e = rng.normal(size=n)
        reg = metrics_with_ci(
            ["mse", "median_absolute_error"],
            e,
            np.zeros(n),
            seed=i,
            max_bootstrap_n=2_000,
            subsample_n=1_500,
        )
        covered["accuracy"] += acc.ci_low <= truth_acc <= acc.ci_high
        covered["mse"] += reg["mse"].ci_low <= truth_mse <= reg["mse"].ci_high
        m = reg["median_absolute_error"]
        assert m.value == pytest.approx(np.median(np.abs(e)))
        covered["median_absolute_error"] += m.ci_low <= truth_median <= m.ci_high
    floor = confidence - 3 * math.sqrt(confidence * (1 - confidence) / runs)
    for name, hits in covered.items():
        assert floor <= hits / runs <= 1.0 - (1 - confidence) / 4, (name, hits / runs)


# --------------------------------------------------------------------------- outlier influence


def test_one_huge_error_moves_mse_not_the_median() -> None:
    rng = np.random.default_rng(21)
    errors = rng.normal(size=500)
    errors[123] = 30.0
    on_mse = outlier_influence(errors, metric="mse")
    on_median = outlier_influence(errors, metric="median_absolute_error")
    assert on_mse.relative_change > 0.10
    assert abs(on_median.relative_change) < 0.01
    assert on_mse.top_indices == (123,)
    assert on_mse.top_errors == (30.0,)
    assert on_mse.value_without_top_k == pytest.approx(np.mean(np.delete(errors, 123) ** 2))


@pytest.mark.parametrize(
    "metric", ["mse", "rmse", "mae", "median_absolute_error", "trimmed_mse", "huber", "mean"]
)
def test_outlier_influence_top_k(metric: str) -> None:
    errors = np.array([0.1, -5.0, 0.2, 3.0, -0.3, 0.0])
    result = outlier_influence(errors, metric=metric, k=2)
    assert result.top_indices == (1, 3)
    assert result.top_errors == (-5.0, 3.0)
    assert result.k == 2
    assert result.to_dict()["metric"] == metric


def test_outlier_influence_of_zero_errors_is_zero() -> None:
    assert outlier_influence(np.zeros(5)).relative_change == 0.0


# --------------------------------------------------------------------------- error paths


_accuracy = METRICS["accuracy"].function
_mae = METRICS["mae"].function

ERROR_CASES: dict[str, tuple[Callable[[], object], str]] = {
    "empty": (lambda: mse([], []), r"`y_true` must be a 1-D array of finite numbers; got an empty"),
    "length-mismatch": (
        lambda: mse([1.0, 2.0], [1.0]),
        r"`y_pred` must be the same length as `y_true` \(2, one per request\); got 1",
    ),
    "nan-target": (lambda: mse([1.0, math.nan], [1.0, 2.0]), r"`y_true` .*got nan at index 1"),
    "nan-label": (
        lambda: _accuracy([0.0, math.nan], [0, 1], None, None),
        r"`y_true` .*nan at index 1",
    ),
    "empty-labels": (lambda: _accuracy([], [], None, None), r"`y_true` must be a non-empty"),
    "unknown-metric": (
        lambda: metric_with_ci("auc", [0, 1], [0, 1]),
        r"`name` must be one of .*got 'auc'",
    ),
    "regression-needs-y_pred": (lambda: _mae([1.0], None, None, None), r"`y_pred` must be"),
    "missing-proba": (
        lambda: log_loss([0, 1], [0, 1]),
        r"`proba` must be predicted class probabilities",
    ),
    "proba-shape": (
        lambda: log_loss([0, 1], proba=np.ones((3, 2)) / 2),
        r"`proba` must be an array of shape \(2, 2\)",
    ),
    "proba-columns": (
        lambda: log_loss([0, 1], proba=np.ones((2, 3)) / 3),
        r"`classes` must be one label per column of `proba` \(3\)",
    ),
    "proba-not-normalised": (
        lambda: log_loss([0, 1], proba=[[0.5, 0.6], [0.5, 0.5]]),
        r"`proba` must be rows that sum to 1",
    ),
    "proba-out-of-range": (
        lambda: brier([0, 1], proba=[1.5, 0.5]),
        r"`proba` must be probabilities in \[0, 1\]",
    ),
    "unknown-label": (
        lambda: _accuracy(["a", "z"], ["a", "a"], None, ["a", "b"]),
        r"`y_true` must be labels among `classes`.*'z' at index 1",
    ),
    "duplicate-classes": (
        lambda: _accuracy([0], [0], None, [0, 0]),
        r"`classes` must be at least 2 distinct",
    ),
    "auc-one-class": (
        lambda: roc_auc([1, 1, 1], proba=[0.2, 0.5, 0.9], classes=[0, 1]),
        r"`y_true` must be labels of at least 2 classes for roc_auc",
    ),
    "n_boot": (
        lambda: metric_with_ci("mse", [1.0], [1.0], n_boot=0),
        r"`n_boot` must be an integer >= 1; got 0",
    ),
    "confidence": (
        lambda: metric_with_ci("mse", [1.0], [1.0], confidence=95),
        r"`confidence` must be a float in \(0, 1\)",
    ),
    "trim": (lambda: trimmed_mse([1.0], [1.0], trim=1.0), r"`trim` must be a float in \[0, 1\)"),
    "delta": (lambda: huber([1.0], [1.0], delta=0), r"`delta` must be a finite float > 0"),
    "outlier-k": (
        lambda: outlier_influence([1.0, 2.0], k=2),
        r"`k` must be an integer in \[1, 1\]",
    ),
    "outlier-metric": (
        lambda: outlier_influence([1.0, 2.0], metric="r2"),
        r"`metric` must be one of",
    ),
    "outlier-nan": (lambda: outlier_influence([1.0, math.inf]), r"`errors` .*got inf at index 1"),
}


@pytest.mark.parametrize("call,match", list(ERROR_CASES.values()), ids=list(ERROR_CASES))
def test_bad_input_names_the_argument(call: Callable[[], object], match: str) -> None:
    with pytest.raises(InputError, match=match):
        call()


@pytest.mark.parametrize(
    "values",
    [
        np.array([0, 1, 2, 1, 0]),
        np.array([0.0, 2.0, 1.0]),
        np.array([0, 1], dtype=np.uint8),
        np.array([0.0, 1.5]),  # not a class: refused
        np.array([0, 3]),  # beyond the classes: refused
        np.array([-1, 0]),
    ],
    ids=["int", "float", "uint8", "fraction", "above", "negative"],
)
def test_encoding_labels_0_to_k_by_cast_is_the_binary_search(values: np.ndarray) -> None:
    """The cast for classes 0..k-1 gives the general path's positions, and the same refusal."""
    from sidecar.monitoring._metric_data import _encode, _encode_range

    classes = np.array([0, 1, 2])
    shuffled = np.array([2, 0, 1])  # not 0..k-1 in order: the general path
    assert _encode_range(values, shuffled) is None
    try:
        want = shuffled[_encode(values, shuffled, "y")]  # the value at each found position
    except InputError:
        with pytest.raises(InputError, match="labels among `classes`"):
            _encode(values, classes, "y")
        assert _encode_range(values, classes) is None
        return
    fast = _encode_range(values, classes)
    assert fast is not None
    np.testing.assert_array_equal(fast, want)
    np.testing.assert_array_equal(_encode(values, classes, "y"), want)


@pytest.mark.parametrize("k", [1, 2, 3, 7, 8, 11])
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.bool_])
def test_row_sums_are_numpys_to_the_bit(k: int, dtype: Any) -> None:
    from sidecar.monitoring._metric_data import row_sums

    rng = np.random.default_rng(k)
    scale = rng.choice([1e-9, 1.0, 1e9], size=(5000, k))
    a = (rng.random((5000, k)) * scale).astype(dtype) if dtype != np.bool_ else scale > 1
    got, want = row_sums(a), a.sum(axis=1)
    assert got.dtype == want.dtype
    assert got.tobytes() == want.tobytes()
