"""Module-level models for the CLI tests (a callable model must be importable by path)."""

from __future__ import annotations

import numpy as np

# The first preprocessed feature is the weight in kg; heavier means class 1.
THRESHOLD_KG = 80.0


def weight_rule(X: np.ndarray) -> np.ndarray:
    """Class probabilities ``[p(0), p(1)]`` from a logistic curve over the weight column."""
    X = np.asarray(X, dtype=np.float64)
    p1 = 1.0 / (1.0 + np.exp(-(X[:, 0] - THRESHOLD_KG) / 4.0))
    return np.column_stack([1.0 - p1, p1])
