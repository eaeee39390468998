"""The confusion matrix of the report, on integer codes, against scikit-learn and the row loop.

``confusion`` maps each distinct value to its class once and counts with
``np.bincount``; these tests pin it to ``sklearn.metrics.confusion_matrix``
and to the per-record dictionary loop it replaced, on the value mixes a
store hands back (numbers as float64, classes as int64, strings, Python
objects with missing values, labels outside the classes).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix

from sidecar.monitoring._outcomes import _plain, confusion


def _row_loop(y: Any, pred: Any, classes: Any) -> list[list[int]]:
    """The implementation before the codes: one dictionary lookup per record."""
    index = {c: i for i, c in enumerate(_plain(classes))}
    out = np.zeros((len(index), len(index)), dtype=np.int64)
    for t, p in zip(_plain(y), _plain(pred), strict=True):
        i, j = index.get(t), index.get(p)
        if i is not None and j is not None:
            out[i, j] += 1
    return out.tolist()


@pytest.mark.parametrize("k", [2, 3, 7])
def test_integer_classes_match_scikit_learn(k: int) -> None:
    rng = np.random.default_rng(k)
    y = rng.integers(0, k, 50_000)
    pred = np.where(rng.random(50_000) < 0.7, y, rng.integers(0, k, 50_000))
    classes = np.arange(k)
    got = confusion(y, pred.astype(np.float64), classes)  # a store hands predictions as float64
    assert got == confusion_matrix(y, pred, labels=classes).tolist()
    assert got == _row_loop(y, pred.astype(np.float64), classes)
    assert sum(map(sum, got)) == 50_000


def test_string_classes_and_values_outside_them_match_scikit_learn() -> None:
    rng = np.random.default_rng(3)
    names = np.array(["bad", "good", "unknown"])
    y = names[rng.integers(0, 3, 20_000)]
    pred = names[rng.integers(0, 3, 20_000)]
    classes = ["bad", "good"]  # "unknown" is no class: left out on either side
    got = confusion(y, pred, classes)
    assert got == confusion_matrix(y, pred, labels=classes).tolist()
    assert got == _row_loop(y, pred, classes)
    kept = int(np.sum((y != "unknown") & (pred != "unknown")))
    assert sum(map(sum, got)) == kept


def test_python_objects_with_missing_values_match_the_row_loop() -> None:
    rng = np.random.default_rng(4)
    pool = np.array(["a", "b", None, "c"], dtype=object)
    y = pool[rng.integers(0, 4, 5_000)]
    pred = pool[rng.integers(0, 4, 5_000)]
    classes = np.array(["a", "b", "c"], dtype=object)
    assert confusion(y, pred, classes) == _row_loop(y, pred, classes)


def test_numbers_match_across_types_as_python_values_do() -> None:
    y = np.array([1, 0, 1, 1], dtype=object)
    pred = np.array([1.0, 1.0, 0.0, True], dtype=object)
    assert confusion(y, pred, np.array([0, 1])) == [[0, 1], [1, 2]]
    assert confusion(y, pred, np.array([0, 1])) == _row_loop(y, pred, np.array([0, 1]))


def test_empty_and_mismatched_inputs() -> None:
    assert confusion([], [], ["a", "b"]) == [[0, 0], [0, 0]]
    with pytest.raises(ValueError, match="one entry each"):
        confusion([1, 0], [1], [0, 1])
