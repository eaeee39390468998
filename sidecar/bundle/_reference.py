"""What "normal" looked like: the reference a bundle carries for monitoring.

Format ``sidecar.reference/1`` -- two files in ``reference/``:

Raw values are kept in the model's terms (numbers converted from a declared
``input_unit`` to the ``unit``, categories recoded), so that monitoring
compares like with like across preprocessing versions.

``reference.json``
    ``format``, ``task``, ``n``, ``classes`` and ``sketches``: one per raw field
    (``raw``) and per preprocessed feature (``features``). A numeric sketch has
    ``count``, ``missing``, ``mean``, ``std``, ``min``, ``max``, ``quantiles``
    (101 values, the 0th to 100th percentile), ``histogram`` (``edges`` and
    ``counts``, 20 bins between min and max), ``n_negative``, ``n_zero``,
    ``integer`` (all values whole numbers) and ``max_abs``. A categorical sketch
    has ``count``, ``missing``, ``counts`` (the 1,000 most common values),
    ``other`` (the rest) and ``unknown_rate`` (share encoded to the default
    code). ``metrics`` holds each model's mean loss and error on the reference.

``arrays.npz`` (loaded with ``allow_pickle=False``)
    ``y``; ``features`` (the preprocessed matrix); ``raw:<field>`` for each
    numeric raw field (NaN where missing); for each model ``m`` in
    ``advanced`` and ``baseline``: ``m:prediction``, ``m:probabilities``
    (classifiers), ``m:loss`` (log loss for classifiers, squared error for
    regressors) and ``m:error`` (0/1 error, or absolute error).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import BundleError
from .._json import to_jsonable
from ..runtimes import ModelOutput
from ._safe import normalise_zip

__all__ = ["FORMAT", "Reference", "per_example_losses"]

FORMAT = "sidecar.reference/1"
_JSON = "reference.json"
_ARRAYS = "arrays.npz"
_MAX_CATEGORIES = 1000


@dataclass(frozen=True)
class Reference:
    """The reference sketches (``summary``) and arrays of a bundle."""

    summary: dict[str, Any]
    arrays: dict[str, np.ndarray]

    @classmethod
    def compute(
        cls,
        *,
        task: str,
        records: Sequence[Mapping[str, Any]],
        input_fields: Sequence[str],
        features: np.ndarray,
        feature_names: Sequence[str],
        categorical_fields: Sequence[str],
        unknown: Mapping[str, int],
        y: np.ndarray,
        outputs: Mapping[str, ModelOutput],
        classes: Sequence[Any] | None,
        canonical: Callable[[str, Sequence[Any]], list[Any]] | None = None,
    ) -> Reference:
        fields = list(input_fields)
        raw: dict[str, Any] = {}
        arrays: dict[str, np.ndarray] = {"y": _storable(y), "features": features}
        n = len(records)
        for name in fields:
            values = [r.get(name) for r in records]
            if canonical is not None:  # in the model's units and codes
                values = canonical(name, values)
            if name in categorical_fields:
                raw[name] = _categorical_sketch(values, unknown.get(name, 0), n)
            else:
                col = np.array([math.nan if v is None else float(v) for v in values])
                arrays[f"raw:{name}"] = col
                raw[name] = _numeric_sketch(col)
        feats = {str(k): _numeric_sketch(features[:, j]) for j, k in enumerate(feature_names)}
        metrics = {}
        for model, out in outputs.items():
            loss, error = per_example_losses(task, y, out, classes)
            arrays[f"{model}:prediction"] = _storable(out.predictions)
            if out.probabilities is not None:
                arrays[f"{model}:probabilities"] = out.probabilities
            arrays[f"{model}:loss"] = loss
            arrays[f"{model}:error"] = error
            metrics[model] = {"mean_loss": float(loss.mean()), "mean_error": float(error.mean())}
        summary = {
            "format": FORMAT,
            "task": task,
            "n": n,
            "classes": list(classes) if classes is not None else None,
            "sketches": {"raw": raw, "features": feats},
            "metrics": metrics,
        }
        return cls(summary=to_jsonable(summary), arrays=arrays)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / _JSON).write_text(json.dumps(self.summary, indent=1, sort_keys=True))
        with open(directory / _ARRAYS, "wb") as fh:
            np.savez_compressed(fh, **self.arrays)  # type: ignore[arg-type]
        normalise_zip(directory / _ARRAYS)

    @classmethod
    def load(cls, directory: Path) -> Reference:
        summary = json.loads((directory / _JSON).read_text())
        if summary.get("format") != FORMAT:
            raise BundleError(
                f"reference format must be {FORMAT!r}; got {summary.get('format')!r} "
                "(the bundle was made by another version of model-sidecar)."
            )
        with np.load(directory / _ARRAYS, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        return cls(summary=summary, arrays=arrays)


def per_example_losses(
    task: str, y: np.ndarray, out: ModelOutput, classes: Sequence[Any] | None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-example loss and error: log loss and 0/1 error, or squared and absolute error."""
    if task == "regression":
        resid = np.asarray(out.predictions, dtype=np.float64) - np.asarray(y, dtype=np.float64)
        return resid**2, np.abs(resid)
    error = (np.asarray(out.predictions) != np.asarray(y)).astype(np.float64)
    if out.probabilities is None or classes is None:
        return error.copy(), error
    lookup = {c: i for i, c in enumerate(classes)}
    idx = np.array([lookup.get(v, -1) for v in np.asarray(y).tolist()])
    p = np.where(idx >= 0, out.probabilities[np.arange(len(idx)), np.maximum(idx, 0)], 0.0)
    # Clipped at machine epsilon, as scikit-learn's log_loss does.
    return -np.log(np.clip(p, np.finfo(np.float64).eps, 1.0)), error


def _numeric_sketch(col: np.ndarray) -> dict[str, Any]:
    present = col[~np.isnan(col)]
    sketch: dict[str, Any] = {"count": int(col.size), "missing": int(col.size - present.size)}
    if present.size == 0:
        return sketch
    lo, hi = float(present.min()), float(present.max())
    counts, edges = np.histogram(present, bins=20, range=(lo, hi if hi > lo else lo + 1.0))
    sketch.update(
        mean=float(present.mean()),
        std=float(present.std()),
        min=lo,
        max=hi,
        quantiles=np.quantile(present, np.linspace(0, 1, 101)).tolist(),
        histogram={"edges": edges.tolist(), "counts": counts.tolist()},
        n_negative=int((present < 0).sum()),
        n_zero=int((present == 0).sum()),
        integer=bool(np.all(present == np.round(present))),
        max_abs=float(np.abs(present).max()),
    )
    return sketch


def _categorical_sketch(values: list[Any], unknown: int, n: int) -> dict[str, Any]:
    counts = Counter(str(v) for v in values if v is not None)
    top = counts.most_common(_MAX_CATEGORIES)
    return {
        "count": n,
        "missing": sum(v is None for v in values),
        "counts": dict(top),
        "other": sum(counts.values()) - sum(k for _, k in top),
        "unknown_rate": unknown / n if n else 0.0,
    }


def _storable(a: np.ndarray) -> np.ndarray:
    """An array ``np.savez`` can write without pickle (object arrays become strings)."""
    a = np.asarray(a)
    return a.astype(str) if a.dtype == object else a
