"""What the advanced model got right and wrong on the labelled records, for the report.

Classification: confusion matrices (rows: the true class, columns: the
predicted one) of both models on the window's labelled records, and of the
advanced model on the reference. Regression: residuals (prediction minus
truth) of the advanced model, binned on edges shared by the window and the
reference, their summaries, and a seeded sample of (prediction, residual)
points for a residual plot.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from ._inputs import ReferenceInputs, WindowData

__all__ = ["MAX_CLASSES", "confusion", "outcomes"]

#: Beyond this many classes the matrix is not drawn (the report says so).
MAX_CLASSES = 20
_BINS = 30
_POINTS = 600


def outcomes(reference: ReferenceInputs, window: WindowData, seed: int = 0) -> dict[str, Any]:
    """A JSON-able summary of the outcomes; ``{}`` when no record is labelled."""
    mask = np.asarray(window.labelled, dtype=bool)
    if not mask.any():
        return {}
    from ._label_evidence import _like

    y = np.asarray(window.labels)[mask]
    if reference.task == "classification" and reference.classes is not None:
        classes = list(reference.classes)
        if len(classes) > MAX_CLASSES:
            return {"kind": "confusion", "classes": _plain(classes), "too_many": True}
        y = _like(y, reference.y)
        return {
            "kind": "confusion",
            "classes": _plain(classes),
            "n": int(mask.sum()),
            "advanced": confusion(y, np.asarray(window.advanced)[mask], classes),
            "baseline": confusion(y, np.asarray(window.baseline)[mask], classes),
            "reference": confusion(reference.y, reference.advanced, classes),
        }
    truth = np.asarray(y, dtype=np.float64)
    pred = np.asarray(window.advanced, dtype=np.float64)[mask]
    now = pred - truth
    ref = np.asarray(reference.advanced, dtype=np.float64) - np.asarray(
        reference.y, dtype=np.float64
    )
    both = np.concatenate([now[np.isfinite(now)], ref[np.isfinite(ref)]])
    if len(both) == 0:
        return {}
    lo, hi = (float(v) for v in np.quantile(both, [0.005, 0.995]))
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, _BINS + 1)
    rng = np.random.default_rng(seed)
    keep = np.flatnonzero(np.isfinite(now))
    if len(keep) > _POINTS:
        keep = np.sort(rng.choice(keep, size=_POINTS, replace=False))
    return {
        "kind": "residuals",
        "n": int(mask.sum()),
        "edges": edges.tolist(),
        "advanced": _histogram(now, edges),
        "reference": _histogram(ref, edges),
        "summary": {"advanced": _summary(now), "reference": _summary(ref)},
        "points": {"predicted": pred[keep].tolist(), "residual": now[keep].tolist()},
    }


def confusion(y: npt.ArrayLike, pred: npt.ArrayLike, classes: npt.ArrayLike) -> list[list[int]]:
    """Counts of (true class, predicted class); labels outside ``classes`` are left out.

    Values match a class as Python values do (``1 == 1.0 == np.int64(1)``);
    the work is on integer codes (one lookup per distinct value, then
    ``np.bincount``), so a million records cost milliseconds.

    >>> confusion(["a", "b", "b"], ["a", "a", "b"], ["a", "b"])
    [[1, 0], [1, 1]]
    """
    index = {c: i for i, c in enumerate(_plain(classes))}
    k = len(index)
    true, got = _codes(y, index), _codes(pred, index)
    if len(true) != len(got):
        raise ValueError(f"y and pred must have one entry each; got {len(true)} and {len(got)}")
    ok = (true >= 0) & (got >= 0)
    counts = np.bincount(true[ok] * k + got[ok], minlength=k * k).reshape(k, k)
    return [[int(v) for v in row] for row in counts]


def _codes(values: npt.ArrayLike, index: dict[Any, int]) -> np.ndarray:
    """Each value's position in ``index`` (-1: not a class), looked up once per distinct value."""
    arr = np.asarray(values)
    try:
        uniq, inverse = np.unique(arr, return_inverse=True)
    except TypeError:  # values that do not order (None beside strings): factorise by hash
        seen: dict[Any, int] = {}
        inverse = np.fromiter(
            (seen.setdefault(v, len(seen)) for v in _plain(arr)), np.int64, len(arr)
        )
        lut = np.array([index.get(v, -1) for v in seen], dtype=np.int64)
        return lut[inverse] if len(arr) else np.zeros(0, np.int64)
    lut = np.array([index.get(v, -1) for v in _plain(uniq)], dtype=np.int64)
    return lut[np.asarray(inverse).reshape(-1)] if len(arr) else np.zeros(0, np.int64)


def _plain(values: Any) -> list[Any]:
    """Python scalars (numpy's ``np.int64(1)`` and ``1`` are then the same key)."""
    return [v.item() if isinstance(v, np.generic) else v for v in np.asarray(values).tolist()]


def _histogram(values: np.ndarray, edges: np.ndarray) -> list[int]:
    """Counts per bin; values beyond the edges go to the end bins (nothing is dropped)."""
    finite = values[np.isfinite(values)]
    counts, _ = np.histogram(np.clip(finite, edges[0], edges[-1]), bins=edges)
    return [int(c) for c in counts]


def _summary(values: np.ndarray) -> dict[str, float]:
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        return {"n": 0, "mean": math.nan, "sd": math.nan, "mae": math.nan}
    return {
        "n": len(finite),
        "mean": float(finite.mean()),
        "sd": float(finite.std(ddof=1)) if len(finite) > 1 else 0.0,
        "mae": float(np.abs(finite).mean()),
    }
