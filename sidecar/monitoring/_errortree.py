"""Where does it fail? A shallow tree over the inputs that finds the segments where errors gather.

A decision tree is fitted on the preprocessed features to predict the
advanced model's per-example error (0/1 for a classifier, the loss for a
regressor); each leaf is a segment -- a conjunction of simple conditions --
reported with its support and both models' error there, worst first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .._errors import InputError
from ._results import _ToDict

__all__ = ["ErrorSegment", "error_segments"]


@dataclass(frozen=True)
class ErrorSegment(_ToDict):
    """One leaf of the error tree."""

    conditions: tuple[str, ...]
    support: int
    share: float
    advanced_error: float
    baseline_error: float

    @property
    def rule(self) -> str:
        return " and ".join(self.conditions) or "all records"


def error_segments(
    X: np.ndarray,
    advanced_error: np.ndarray,
    baseline_error: np.ndarray,
    *,
    feature_names: Sequence[str],
    max_depth: int = 3,
    min_share: float = 0.02,
    seed: int = 0,
    max_fit: int | None = None,
    rows: np.ndarray | None = None,
) -> list[ErrorSegment]:
    """Segments (tree leaves) ordered by how much advanced-model error they hold.

    ``rows``, when given, are the rows of ``X`` the errors belong to (the
    labelled records of a window): only those rows -- or, past ``max_fit``,
    a seeded sample of them -- are copied out of ``X``.

    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(600, 2))
    >>> err = ((X[:, 0] > 1.0) | (rng.random(600) < 0.05)).astype(float)
    >>> top = error_segments(X, err, err * 0, feature_names=["age", "dose"])[0]
    >>> top.rule.startswith("age > 0.9"), top.advanced_error > 0.9
    (True, True)
    """
    from sklearn.tree import DecisionTreeRegressor

    n = len(X) if rows is None else len(rows)
    if n == 0 or len(advanced_error) != n or len(baseline_error) != n:
        raise InputError(
            f"`X` (or `rows`), `advanced_error` and `baseline_error` must have the same non-zero "
            f"length; got {n}, {len(advanced_error)} and {len(baseline_error)}."
        )
    if X.shape[1] != len(feature_names):
        raise InputError(
            f"`feature_names` must name the {X.shape[1]} columns of X; got {len(feature_names)}."
        )
    scale = 1.0
    if max_fit is not None and n > max_fit:
        # A large window: the tree and its segments come from a seeded sample;
        # supports are scaled back to the whole window.
        pick = np.random.default_rng(seed).choice(n, size=max_fit, replace=False)
        X = X[pick if rows is None else rows[pick]]
        advanced_error, baseline_error = advanced_error[pick], baseline_error[pick]
        scale = n / max_fit
    elif rows is not None:
        X = X[rows]
    tree = DecisionTreeRegressor(
        max_depth=max_depth,
        min_samples_leaf=max(10, int(min_share * len(X))),
        random_state=seed,
    ).fit(X, advanced_error)
    t = tree.tree_
    leaves = tree.apply(X)
    segments = []
    for leaf in np.unique(leaves):
        mask = leaves == leaf
        segments.append(
            ErrorSegment(
                conditions=_path(t, int(leaf), feature_names),
                support=round(int(mask.sum()) * scale),
                share=float(mask.mean()),
                advanced_error=float(advanced_error[mask].mean()),
                baseline_error=float(baseline_error[mask].mean()),
            )
        )
    segments.sort(key=lambda s: (-s.advanced_error * s.support, -s.advanced_error))
    return segments


def _path(t: object, leaf: int, names: Sequence[str]) -> tuple[str, ...]:
    left = t.children_left  # type: ignore[attr-defined]
    right = t.children_right  # type: ignore[attr-defined]
    parent: dict[int, tuple[int, bool]] = {}
    for node in range(len(left)):
        if left[node] != -1:
            parent[int(left[node])] = (node, True)
            parent[int(right[node])] = (node, False)
    conditions: list[str] = []
    node = leaf
    while node in parent:
        up, is_left = parent[node]
        name = names[int(t.feature[up])]  # type: ignore[attr-defined]
        threshold = float(t.threshold[up])  # type: ignore[attr-defined]
        conditions.append(f"{name} {'<=' if is_left else '>'} {threshold:.4g}")
        node = up
    return tuple(reversed(conditions))
