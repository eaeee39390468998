"""The tiny baseline model the sidecar fits for free."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from .._errors import InputError

__all__ = ["BaselineKind", "fit_baseline"]

BaselineKind = Literal["auto", "linear", "tree"]


def fit_baseline(
    X: np.ndarray, y: np.ndarray, *, task: str, kind: BaselineKind = "auto", random_state: int = 0
) -> Any:
    """Fit a light, interpretable model on the preprocessed training matrix.

    ``"linear"`` (what ``"auto"`` picks): standardised logistic regression for
    classification, standardised ridge for regression. ``"tree"``: a decision
    tree of depth 4. Both predict a row in microseconds, so the shadow costs a
    small fraction of the advanced model.
    """
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    if kind not in ("auto", "linear", "tree"):
        raise InputError(
            f"`baseline` must be 'auto', 'linear', 'tree' or a fitted model; got {kind!r}."
        )
    if len(X) != len(y):
        raise InputError(
            f"the training labels must have one entry per record ({len(X)}); got {len(y)}."
        )
    model: Any
    if task == "classification":
        if len(np.unique(y)) < 2:
            raise InputError("the training labels must hold at least two classes; got one.")
        if kind == "tree":
            model = DecisionTreeClassifier(max_depth=4, random_state=random_state)
        else:
            model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    elif kind == "tree":
        model = DecisionTreeRegressor(max_depth=4, random_state=random_state)
    else:
        model = make_pipeline(StandardScaler(), Ridge(alpha=1.0))
    return model.fit(X, y)
