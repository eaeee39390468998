"""NumPy fast paths for the small scikit-learn models used as baselines.

scikit-learn spends ~100-300 µs per call on validation alone, which for a
single row is more than a linear model's arithmetic by a factor of a hundred.
For the baselines the sidecar fits (standardised logistic regression / ridge,
shallow trees) we read the fitted parameters once and evaluate them with plain
NumPy. A fast path is only used after it reproduced the estimator's own output
on a probe batch; anything else falls back to the estimator.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["compile_estimator"]

Fast = Callable[[np.ndarray], np.ndarray]


def compile_estimator(estimator: Any, task: str) -> Fast | None:
    """A function ``X -> probabilities`` (classifier) or ``X -> values`` (regressor), or None."""
    try:
        fast = _build(estimator, task)
        if fast is None or not _agrees(estimator, fast, task):
            return None
        return fast
    except Exception:  # an estimator we do not understand just keeps its own predict
        return None


def _build(estimator: Any, task: str) -> Fast | None:
    from scipy.special import expit
    from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    shift: np.ndarray | float = 0.0
    scale: np.ndarray | float = 1.0
    final = estimator
    if isinstance(estimator, Pipeline):
        *head, (_, final) = estimator.steps
        if len(head) > 1 or (head and not isinstance(head[0][1], StandardScaler)):
            return None
        if head:
            scaler = head[0][1]
            shift = scaler.mean_ if scaler.with_mean else 0.0
            scale = scaler.scale_ if scaler.with_std else 1.0
    if type(final) is LogisticRegression and task == "classification":
        W = np.atleast_2d(final.coef_) / scale
        b = final.intercept_ - W @ np.broadcast_to(shift, W.shape[1])
        if W.shape[0] == 1:
            w, c = W[0], float(b[0])

            def binary(X: np.ndarray) -> np.ndarray:
                p = expit(X @ w + c)
                return np.column_stack((1.0 - p, p))

            return binary
        WT = np.ascontiguousarray(W.T)

        def softmax(X: np.ndarray) -> np.ndarray:
            z: np.ndarray = X @ WT + b
            z -= z.max(axis=1, keepdims=True)
            np.exp(z, out=z)
            z /= z.sum(axis=1, keepdims=True)
            return z

        return softmax
    if type(final) in (Ridge, LinearRegression) and task == "regression":
        coef = np.asarray(final.coef_, dtype=np.float64)
        if coef.ndim != 1:
            return None
        w = coef / scale
        c = float(final.intercept_) - float(w @ np.broadcast_to(shift, w.shape[0]))
        return lambda X: X @ w + c
    if final is estimator and type(final) in (DecisionTreeClassifier, DecisionTreeRegressor):
        return _tree(final, task)
    return None


def _tree(estimator: Any, task: str) -> Fast | None:
    t = estimator.tree_
    if t.n_outputs != 1:
        return None
    left, right = t.children_left, t.children_right
    feature, threshold = t.feature, t.threshold
    depth = int(t.max_depth)
    if task == "classification":
        value = t.value[:, 0, :]
        value = value / value.sum(axis=1, keepdims=True)
    else:
        value = t.value[:, 0, 0]

    def predict(X: np.ndarray) -> np.ndarray:
        X32 = X.astype(np.float32)
        rows = np.arange(len(X))
        node = np.zeros(len(X), dtype=np.intp)
        for _ in range(depth):
            leaf = left[node] == -1
            go_left = X32[rows, np.maximum(feature[node], 0)] <= threshold[node]
            node = np.where(leaf, node, np.where(go_left, left[node], right[node]))
        return value[node]  # type: ignore[no-any-return]

    return predict


def _agrees(estimator: Any, fast: Fast, task: str) -> bool:
    n_features = int(estimator.n_features_in_)
    rng = np.random.default_rng(0)
    probe = rng.normal(size=(64, n_features)) * 3.0
    expected = (
        estimator.predict_proba(probe) if task == "classification" else estimator.predict(probe)
    )
    return bool(np.allclose(fast(probe), expected, rtol=1e-9, atol=1e-12))
