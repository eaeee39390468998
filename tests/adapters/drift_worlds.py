"""Seeded worlds whose concept changes, for the retraining-adapter tests and benchmarks.

Each generator returns ``(records, labels)``: raw records (dicts of floats, the
form a bundle's tabular preprocessing takes) and their labels. A concept
change is the same generator with another concept parameter.

- :func:`sea`: SEA concepts (Street & Kim, 2001): three features uniform on
  [0, 10], the label says ``x1 + x2 <= theta``; ``x3`` is noise; a share of
  labels is flipped. A concept change moves ``theta`` (8, 9, 7, 9.5 in the
  original stream).
- :func:`sea3`: a three-class SEA (``x1 + x2`` below, between or above two
  cuts); moving the cuts is a concept change.
- :func:`hyperplane`: a rotating hyperplane: ``d`` features uniform on
  [-1, 1], the label says which side of the plane with normal at angle
  ``angle`` (in the plane of the first two features) a point lies on;
  rotating it is a concept change. :func:`hyperplane_regression` is its
  regression form (the signed distance plus noise).
- :func:`agrawal`: Agrawal-like loan records (salary, commission, age,
  education level, car, house value, years owned, loan) with two of the
  original classification functions; switching function is a concept change.
- :func:`overfit_world`: a few informative and many noise features -- the
  world in which a weakly regularized model trained on few rows overfits.

Also here: :func:`wrap_world` (a bundle from a fitted model and a world's
data), :func:`recent` (``sidecar.RecentData`` with increasing timestamps),
:func:`bundle_digest` (one hash over a saved bundle's files) and
:func:`make_dropout_mlp` (a torch factory with a ``dropout`` argument;
torch is imported only when it is called).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

import sidecar

Records = list[dict[str, Any]]


def _records(X: np.ndarray, names: Sequence[str]) -> Records:
    return [dict(zip(names, map(float, row), strict=True)) for row in X]


def _flip(y: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    flip = rng.random(len(y)) < noise
    return np.where(flip, 1 - y, y)


def sea_arrays(
    n: int, *, theta: float = 8.0, noise: float = 0.1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """SEA as arrays: ``X`` of shape ``(n, 3)`` and 0/1 labels."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(0.0, 10.0, size=(n, 3))
    y = (X[:, 0] + X[:, 1] <= theta).astype(np.int64)
    return X, _flip(y, noise, rng)


SEA_FIELDS = ("x1", "x2", "x3")


def sea(n: int, *, theta: float = 8.0, noise: float = 0.1, seed: int = 0) -> tuple[Records, Any]:
    """SEA concept ``theta``: records ``{x1, x2, x3}`` and labels 0/1."""
    X, y = sea_arrays(n, theta=theta, noise=noise, seed=seed)
    return _records(X, SEA_FIELDS), y


def sea3(
    n: int, *, cuts: tuple[float, float] = (7.0, 11.0), noise: float = 0.05, seed: int = 0
) -> tuple[Records, Any]:
    """A three-class SEA: class 0, 1 or 2 as ``x1 + x2`` falls below, between or above ``cuts``."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(0.0, 10.0, size=(n, 3))
    s = X[:, 0] + X[:, 1]
    y = np.digitize(s, cuts).astype(np.int64)
    noisy = rng.random(n) < noise
    y[noisy] = rng.integers(0, 3, int(noisy.sum()))
    return _records(X, SEA_FIELDS), y


def hyperplane(
    n: int, *, angle: float = 0.0, d: int = 4, noise: float = 0.05, seed: int = 0
) -> tuple[Records, Any]:
    """Rotating hyperplane: the side of the plane through 0 with normal at ``angle`` radians."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1.0, 1.0, size=(n, d))
    w = np.zeros(d)
    w[0], w[1] = np.cos(angle), np.sin(angle)
    w[2:] = 0.2
    y = (X @ w > 0).astype(np.int64)
    return _records(X, [f"h{j}" for j in range(d)]), _flip(y, noise, rng)


def hyperplane_regression(
    n: int, *, angle: float = 0.0, d: int = 4, noise: float = 0.1, seed: int = 0
) -> tuple[Records, Any]:
    """The signed distance to the rotating hyperplane, scaled by 10, plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1.0, 1.0, size=(n, d))
    w = np.zeros(d)
    w[0], w[1] = np.cos(angle), np.sin(angle)
    w[2:] = 0.2
    y = 10.0 * (X @ w) + rng.normal(0.0, noise * 10.0, size=n)
    return _records(X, [f"h{j}" for j in range(d)]), y


AGRAWAL_FIELDS = (
    "salary",
    "commission",
    "age",
    "elevel",
    "car",
    "hvalue",
    "hyears",
    "loan",
)


def agrawal(
    n: int, *, function: int = 1, noise: float = 0.05, seed: int = 0
) -> tuple[Records, Any]:
    """Agrawal-like loan records; group "A" or "B" by the original function 1, 2 or 3.

    1: age < 40 or age >= 60.  2: by age band, a salary band.  3: by age
    band, an education band. (String labels, to exercise label handling.)
    """
    rng = np.random.default_rng(seed)
    salary = rng.uniform(20e3, 150e3, n)
    commission = np.where(salary >= 75e3, 0.0, rng.uniform(10e3, 75e3, n))
    age = rng.integers(20, 81, n).astype(float)
    elevel = rng.integers(0, 5, n).astype(float)
    car = rng.integers(1, 21, n).astype(float)
    hvalue = rng.uniform(50e3, 150e3, n) * (1 + rng.integers(0, 9, n))
    hyears = rng.integers(1, 31, n).astype(float)
    loan = rng.uniform(0.0, 500e3, n)
    young, middle = age < 40, (age >= 40) & (age < 60)
    if function == 1:
        a = young | (age >= 60)
    elif function == 2:
        a = np.where(
            young,
            (salary >= 50e3) & (salary <= 100e3),
            np.where(
                middle, (salary >= 75e3) & (salary <= 125e3), (salary >= 25e3) & (salary <= 75e3)
            ),
        )
    elif function == 3:
        a = np.where(
            young, elevel <= 1, np.where(middle, (elevel >= 1) & (elevel <= 3), elevel >= 2)
        )
    else:
        raise ValueError(f"`function` must be 1, 2 or 3; got {function!r}.")
    y = _flip(a.astype(np.int64), noise, rng)
    X = np.column_stack([salary, commission, age, elevel, car, hvalue, hyears, loan])
    return _records(X, AGRAWAL_FIELDS), np.where(y == 1, "A", "B")


def overfit_world(
    n: int, *, d: int = 30, informative: int = 3, noise: float = 0.15, seed: int = 0
) -> tuple[Records, Any]:
    """A linear concept on ``informative`` of ``d`` features, labels flipped with ``noise``."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = (X[:, :informative].sum(axis=1) > 0).astype(np.int64)
    return _records(X, [f"f{j:02d}" for j in range(d)]), _flip(y, noise, rng)


def overfit_regression_world(
    n: int, *, d: int = 30, informative: int = 3, noise: float = 1.0, seed: int = 0
) -> tuple[Records, Any]:
    """``y`` = the sum of ``informative`` of ``d`` features plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = X[:, :informative].sum(axis=1) + rng.normal(0.0, noise, n)
    return _records(X, [f"f{j:02d}" for j in range(d)]), y


# --------------------------------------------------------------------------- bundles


def preprocessing_for(records: Records) -> sidecar.TabularPreprocessor:
    """Plain numeric columns for every field of ``records`` (fitted)."""
    columns = [sidecar.NumericColumn(name=name) for name in records[0]]
    return sidecar.TabularPreprocessor(columns=columns).fit(records)


def features(records: Records) -> np.ndarray:
    """The matrix a world's plain numeric preprocessing emits (fields in order)."""
    return np.array([list(r.values()) for r in records], dtype=np.float64)


def wrap_world(
    model: Any,
    train: tuple[Records, Any],
    reference: tuple[Records, Any],
    *,
    task: str = "classification",
    **kw: Any,
) -> sidecar.Bundle:
    """A bundle of a fitted ``model`` with plain numeric preprocessing and a linear baseline."""
    kw.setdefault("preprocessing", preprocessing_for(train[0]))
    kw.setdefault("baseline", "linear")
    return sidecar.wrap(model, task=task, train=train, reference=reference, **kw)


def recent(data: tuple[Records, Any], *, start: float = 1.7e9) -> sidecar.RecentData:
    """``sidecar.RecentData`` of a world's rows, one second apart, oldest first."""
    records, labels = data
    ts = start + np.arange(len(records), dtype=np.float64)
    return sidecar.RecentData(records=list(records), labels=np.asarray(labels), ts=ts)


def bundle_digest(path: Path) -> str:
    """One sha256 over every file (relative path and bytes) of a saved bundle."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(file.relative_to(path).as_posix().encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()


# --------------------------------------------------------------------------- torch


def make_dropout_mlp(
    n_features: int, n_classes: int, hidden: int = 64, dropout: float = 0.0
) -> Any:
    """A two-hidden-layer perceptron with dropout, emitting ``n_classes`` logits."""
    import torch

    return torch.nn.Sequential(
        torch.nn.Linear(n_features, hidden),
        torch.nn.ReLU(),
        torch.nn.Dropout(dropout),
        torch.nn.Linear(hidden, hidden),
        torch.nn.ReLU(),
        torch.nn.Dropout(dropout),
        torch.nn.Linear(hidden, n_classes),
    )


def train_torch(module: Any, X: np.ndarray, y: np.ndarray, *, epochs: int, seed: int = 0) -> Any:
    """Full-batch Adam without weight decay: overfits few rows on purpose."""
    import torch

    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-2)
    xs = torch.from_numpy(X.astype(np.float32))
    ys = torch.from_numpy(np.asarray(y, dtype=np.int64))
    module.train()
    for _ in range(epochs):
        loss = torch.nn.functional.cross_entropy(module(xs), ys)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return module.eval()
