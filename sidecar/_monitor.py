"""Reading what the store holds for a bundle into arrays for the (pure) monitoring code.

The store is read in chunks (``Store.iter_joined``), so memory grows with the
columns kept, never with the store's size beyond the window asked for.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._bundle import Bundle
from ._errors import InputError
from .recording import Store

__all__ = ["WindowData", "load_window"]


@dataclass(frozen=True)
class WindowData:
    """The records of one bundle in ``[since, until)``, as arrays.

    ``labels`` holds ``None`` where no label has arrived; ``labelled`` is the mask.
    ``features`` is the raw input run through the bundle's preprocessing again
    (``None`` when it could not be, e.g. because privacy rules removed fields).
    """

    ts: np.ndarray
    raw_numeric: dict[str, np.ndarray]
    raw_categorical: dict[str, list[Any]]
    features: np.ndarray | None
    unknown: dict[str, int]
    advanced: np.ndarray
    advanced_proba: np.ndarray | None
    baseline: np.ndarray
    baseline_proba: np.ndarray | None
    labels: np.ndarray
    labelled: np.ndarray
    notes: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.ts)


def load_window(
    bundle: Bundle,
    store: Store,
    *,
    since: float | None = None,
    until: float | None = None,
    all_versions: bool = False,
    chunk_size: int = 50_000,
) -> WindowData:
    """Read the bundle's records in ``[since, until)`` (all its versions' if asked)."""
    version = bundle.version
    fields = list(bundle.preprocessing.input_fields)
    categorical = set(bundle.preprocessing.categorical_fields)
    numeric_fields = [f for f in fields if f not in categorical]
    ts: list[float] = []
    raw: dict[str, list[Any]] = {f: [] for f in fields}
    adv: list[Any] = []
    adv_p: list[Any] = []
    base: list[Any] = []
    base_p: list[Any] = []
    labels: list[Any] = []
    loads = json.loads
    skipped = 0
    for chunk in store.iter_joined(since=since, until=until, chunk_size=chunk_size):
        for row in chunk:
            if not all_versions and row["bundle_version"] != version:
                skipped += 1
                continue
            record = loads(row["raw"])
            for f in fields:
                raw[f].append(record.get(f))
            ts.append(row["ts"])
            adv.append(loads(row["advanced_prediction"]))
            adv_p.append(row["advanced_proba"])
            base.append(
                None if row["baseline_prediction"] is None else loads(row["baseline_prediction"])
            )
            base_p.append(row["baseline_proba"])
            labels.append(None if row["label"] is None else loads(row["label"]))
    notes = []
    if skipped:
        notes.append(f"{skipped} records of other bundle versions were left out")
    raw_numeric = {
        f: np.array([math.nan if v is None else _number(v) for v in raw[f]], dtype=np.float64)
        for f in numeric_fields
    }
    raw_categorical = {f: raw[f] for f in fields if f in categorical}
    features, unknown = _features(bundle, raw, fields, len(ts), notes)
    label_arr = np.array(labels, dtype=object)
    labelled = np.array([v is not None for v in labels], dtype=bool)
    return WindowData(
        ts=np.asarray(ts, dtype=np.float64),
        raw_numeric=raw_numeric,
        raw_categorical=raw_categorical,
        features=features,
        unknown=unknown,
        advanced=_labels_array(adv),
        advanced_proba=_proba(adv_p),
        baseline=_labels_array(base),
        baseline_proba=_proba(base_p),
        labels=label_arr,
        labelled=labelled,
        notes=notes,
    )


def _number(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _features(
    bundle: Bundle, raw: dict[str, list[Any]], fields: list[str], n: int, notes: list[str]
) -> tuple[np.ndarray | None, dict[str, int]]:
    if n == 0:
        return None, {}
    records = [{f: raw[f][i] for f in fields} for i in range(n)]
    try:
        # Stored records passed validation when served; a failure here means a
        # privacy rule removed a field, or the preprocessing changed since.
        X, report = bundle.preprocessing.transform_with_report(records)
    except InputError as exc:
        notes.append(f"the stored inputs could not be preprocessed again: {exc}")
        return None, {}
    return X, dict(report.unknown)


def _labels_array(values: list[Any]) -> np.ndarray:
    arr = np.array(values, dtype=object)
    if arr.size and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return arr.astype(np.float64)
    return arr


def _proba(cells: list[Any]) -> np.ndarray | None:
    if not cells or any(c is None for c in cells):
        return None
    return np.array(json.loads("[" + ",".join(cells) + "]"), dtype=np.float64)
