"""Small models, callables and seeded data sets shared by the tests.

Everything here is module-level so that it can be named by an import path
(``"tests.models:make_mlp_classifier"``) and pickled or loaded with skops.
torch is imported lazily, inside the torch factories only, so importing this
module never needs torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

__all__ = [
    "BASELINE_CONTROL",
    "CATEGORIES",
    "COLUMNS_NUMERIC",
    "ExplodingLogisticRegression",
    "FixedLinearClassifier",
    "controlled_baseline",
    "double_features",
    "linear_class_probabilities",
    "linear_regression_values",
    "make_classification_data",
    "make_mlp_classifier",
    "make_mlp_regressor",
    "make_regression_data",
    "preprocessing_columns",
    "softmax",
]

#: Numeric raw fields: (name, mean, std). ``age`` is rounded to whole years,
#: ``temp`` is centred on 0 so it has negative values.
COLUMNS_NUMERIC: tuple[tuple[str, float, float], ...] = (
    ("weight", 70.0, 12.0),  # kg
    ("height", 170.0, 9.0),  # cm
    ("age", 45.0, 14.0),  # whole years
    ("temp", 0.0, 1.0),  # a centred measurement
)
#: Values of the one categorical raw field, ``color``.
CATEGORIES: tuple[str, ...] = ("red", "green", "blue", "yellow")


# -- torch factories -------------------------------------------------------------


def make_mlp_classifier(n_features: int, n_classes: int, hidden: int = 16) -> Any:
    """A two-layer perceptron emitting ``n_classes`` logits."""
    import torch

    return torch.nn.Sequential(
        torch.nn.Linear(n_features, hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, n_classes),
    )


def make_mlp_regressor(n_features: int, hidden: int = 16) -> Any:
    """A two-layer perceptron emitting one value per row."""
    import torch

    return torch.nn.Sequential(
        torch.nn.Linear(n_features, hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, 1),
    )


# -- plain callables (models named by import path) ---------------------------------


def _fixed_weights(n_features: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1234 + 7 * n_features + n_out)
    return rng.normal(scale=0.05, size=(n_features, n_out)), rng.normal(size=n_out)


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def linear_class_probabilities(X: np.ndarray) -> np.ndarray:
    """Probabilities over 3 classes from a fixed (seeded) linear map, softmax-ed."""
    X = np.asarray(X, dtype=np.float64)
    W, b = _fixed_weights(X.shape[1], 3)
    return softmax(X @ W + b)


def linear_regression_values(X: np.ndarray) -> np.ndarray:
    """One value per row from a fixed (seeded) linear map."""
    X = np.asarray(X, dtype=np.float64)
    W, b = _fixed_weights(X.shape[1], 1)
    return (X @ W + b)[:, 0]


def double_features(X: np.ndarray) -> np.ndarray:
    """A function for a ``FunctionTransformer`` (skops does not trust it by default)."""
    return np.asarray(X, dtype=np.float64) * 2.0


# -- objects for the pickle runtime and for baselines -------------------------------


class FixedLinearClassifier:
    """Not a scikit-learn estimator: ``predict``/``predict_proba`` over fixed classes."""

    def __init__(self, classes: tuple[Any, ...] = (0, 1, 2)) -> None:
        self.classes_ = np.asarray(classes)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        W, b = _fixed_weights(X.shape[1], len(self.classes_))
        return softmax(X @ W + b)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_.take(self.predict_proba(X).argmax(axis=1))


class ExplodingLogisticRegression(LogisticRegression):
    """A logistic regression whose ``predict_proba`` raises on absurdly large inputs.

    It fits and predicts normally on ordinary data (so ``wrap`` can compute
    the reference), and fails only when some feature exceeds ``1e5``.
    """

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        if np.any(np.abs(np.asarray(X)) > 1e5):
            raise RuntimeError("baseline exploded on a huge value")
        return super().predict_proba(X)


# -- seeded data -------------------------------------------------------------------


def _records(rng: np.random.Generator, n: int) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Raw records and the standardised numeric matrix they came from."""
    cols = []
    for name, mean, std in COLUMNS_NUMERIC:
        col = rng.normal(mean, std, size=n)
        if name == "age":
            col = np.round(col).clip(18, 90)
        cols.append(col)
    raw = np.column_stack(cols)
    colors = rng.choice(len(CATEGORIES), size=n, p=[0.4, 0.3, 0.2, 0.1])
    records = []
    for i in range(n):
        rec: dict[str, Any] = {
            name: (int(raw[i, j]) if name == "age" else float(raw[i, j]))
            for j, (name, _, _) in enumerate(COLUMNS_NUMERIC)
        }
        rec["color"] = CATEGORIES[colors[i]]
        records.append(rec)
    means = np.array([m for _, m, _ in COLUMNS_NUMERIC])
    stds = np.array([s for _, _, s in COLUMNS_NUMERIC])
    z = np.column_stack([(raw - means) / stds, np.eye(len(CATEGORIES))[colors]])
    return records, z


def make_classification_data(
    n_train: int = 150,
    n_ref: int = 60,
    seed: int = 0,
    labels: tuple[Any, ...] = (0, 1, 2),
) -> tuple[list[dict[str, Any]], np.ndarray, list[dict[str, Any]], np.ndarray]:
    """``(train_records, y_train, ref_records, y_ref)`` with 3 classes named ``labels``."""
    rng = np.random.default_rng(seed)
    records, z = _records(rng, n_train + n_ref)
    W = np.array(
        [
            [1.5, -0.5, 0.0],
            [0.0, 1.0, -1.0],
            [-1.0, 0.0, 1.0],
            [0.5, 0.5, -0.5],
            [1.0, 0.0, 0.0],
            [0.0, 1.0, 0.0],
            [0.0, 0.0, 1.0],
            [0.0, 0.0, 0.0],
        ]
    )
    scores = z @ W + rng.gumbel(scale=0.7, size=(len(z), 3))
    y = np.asarray(labels).take(scores.argmax(axis=1))
    return records[:n_train], y[:n_train], records[n_train:], y[n_train:]


def make_regression_data(
    n_train: int = 150, n_ref: int = 60, seed: int = 0
) -> tuple[list[dict[str, Any]], np.ndarray, list[dict[str, Any]], np.ndarray]:
    """``(train_records, y_train, ref_records, y_ref)`` with a noisy linear target."""
    rng = np.random.default_rng(seed + 100)
    records, z = _records(rng, n_train + n_ref)
    coef = np.array([2.0, -1.0, 0.5, 1.5, 0.0, 1.0, -1.0, 2.0])
    y = 10.0 + z @ coef + rng.normal(scale=0.3, size=len(z))
    return records[:n_train], y[:n_train], records[n_train:], y[n_train:]


def preprocessing_columns(**numeric_options: dict[str, Any]) -> list[Any]:
    """The columns of the data sets above, for a ``TabularPreprocessor``.

    ``numeric_options`` maps a numeric field to extra ``NumericColumn``
    arguments, e.g. ``weight={"unit": "kg"}``.
    """
    from sidecar import CategoricalColumn, NumericColumn

    cols: list[Any] = [
        NumericColumn(name=name, **numeric_options.get(name, {})) for name, _, _ in COLUMNS_NUMERIC
    ]
    cols.append(CategoricalColumn(name="color"))
    return cols


#: The environment variable naming the file that tells :func:`controlled_baseline`
#: how to behave (it is read on every call, so a test can change it mid-traffic).
BASELINE_CONTROL = "MODEL_SIDECAR_TEST_BASELINE_CONTROL"


def controlled_baseline(X: np.ndarray) -> np.ndarray:
    """A two-class baseline (a logistic curve over the first feature) that misbehaves on cue.

    The file named by ``$MODEL_SIDECAR_TEST_BASELINE_CONTROL`` holds one word:
    ``raise`` (a RuntimeError), ``hang`` (3 s asleep), ``spin`` (3 s of pure
    Python holding the GIL), ``crash`` (a segmentation fault: the whole process
    dies, as with a fault in native code); anything else, or no file, answers.
    """
    import os
    import time

    path = os.environ.get(BASELINE_CONTROL)
    mode = ""
    if path and os.path.exists(path):
        with open(path) as f:
            mode = f.read().strip()
    if mode == "raise":
        raise RuntimeError("the baseline broke")
    if mode == "hang":
        time.sleep(3.0)
    elif mode == "spin":
        stop = time.monotonic() + 3.0
        n = 0
        while time.monotonic() < stop:
            n += 1
    elif mode == "crash":
        import ctypes

        ctypes.string_at(0)  # reads address 0: SIGSEGV
    X = np.asarray(X, dtype=np.float64)
    p1 = 1.0 / (1.0 + np.exp(-(X[:, 0] - 15.0)))
    return np.column_stack([1.0 - p1, p1])
