"""The arrays a diagnosis reads: the bundle's reference and a window of served records."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["ReferenceInputs", "WindowData"]


@dataclass(frozen=True)
class WindowData:
    """The records of one bundle in a time window, as arrays.

    ``labels`` holds ``None`` where no label has arrived; ``labelled`` is the
    mask. ``features`` is the raw input run through the bundle's preprocessing
    again (``None`` when it could not be); ``unknown`` counts, per categorical
    field, the values that preprocessing encoded to the unknown code.
    """

    ts: np.ndarray
    raw_numeric: Mapping[str, np.ndarray]
    raw_categorical: Mapping[str, Sequence[Any]]
    features: np.ndarray | None
    unknown: Mapping[str, int]
    advanced: np.ndarray
    advanced_proba: np.ndarray | None
    baseline: np.ndarray
    baseline_proba: np.ndarray | None
    labels: np.ndarray
    labelled: np.ndarray
    notes: Sequence[str] = field(default_factory=list)
    #: per categorical field, which records' values encoded to the unknown code
    unknown_flags: Mapping[str, np.ndarray] = field(default_factory=dict)
    #: per categorical field (optional), ``(codes, table)`` with
    #: ``raw_categorical[f] == table[codes]``: its values counted without a Python loop
    categorical_codes: Mapping[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.ts)


@dataclass(frozen=True)
class ReferenceInputs:
    """What "normal" looked like, taken from a bundle's reference part."""

    task: str
    classes: tuple[Any, ...] | None
    y: np.ndarray
    advanced: np.ndarray
    advanced_proba: np.ndarray | None
    baseline: np.ndarray
    baseline_proba: np.ndarray | None
    raw_numeric: Mapping[str, np.ndarray]
    sketches: Mapping[str, Mapping[str, Any]]
    features: np.ndarray
    feature_names: tuple[str, ...]
    categorical_fields: tuple[str, ...]
    #: the raw field behind each preprocessed feature when the feature is a
    #: monotone map of one numeric field (its drift is then that field's drift)
    monotone_of: Mapping[str, str] = field(default_factory=dict)
    #: declared units of numeric raw fields (they name the likely unit mix-up)
    units: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_reference(
        cls,
        summary: Mapping[str, Any],
        arrays: Mapping[str, np.ndarray],
        *,
        categorical_fields: Sequence[str],
        feature_names: Sequence[str],
        monotone_of: Mapping[str, str] | None = None,
        units: Mapping[str, str] | None = None,
    ) -> ReferenceInputs:
        raw = {k.removeprefix("raw:"): v for k, v in arrays.items() if k.startswith("raw:")}
        classes = summary.get("classes")
        return cls(
            task=str(summary["task"]),
            classes=None if classes is None else tuple(classes),
            y=arrays["y"],
            advanced=arrays["advanced:prediction"],
            advanced_proba=arrays.get("advanced:probabilities"),
            baseline=arrays["baseline:prediction"],
            baseline_proba=arrays.get("baseline:probabilities"),
            raw_numeric=raw,
            sketches=summary["sketches"]["raw"],
            features=arrays["features"],
            feature_names=tuple(feature_names),
            categorical_fields=tuple(categorical_fields),
            monotone_of=dict(monotone_of or {}),
            units=dict(units or {}),
        )
