"""Prepare and score recent data against the candidate's classes, not the champion's.

:func:`adapters._base.prepare` and :func:`adapters._base.evaluate` read the
class labels from the champion's model. With ``new_classes`` the labels are
checked and encoded against the candidate's classes, and both models are
scored on the union of the two sets: :func:`prepare_for_classes` and
:func:`evaluate_on` do what those do, with the classes passed in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

import sidecar
from sidecar import AdapterError
from sidecar.monitoring import METRICS, MonitoringPlan

from ._base import HOLDOUT, MIN_ROWS, VALIDATION, TrainingData

__all__ = ["Padded", "evaluate_on", "prepare_for_classes"]


def prepare_for_classes(
    bundle: sidecar.Bundle,
    recent: sidecar.RecentData,
    classes: tuple[Any, ...],
    *,
    strategy: str,
) -> TrainingData:
    """Check ``recent`` and cut it by time, its labels encoded against ``classes``.

    The checks, the split and the messages are those of
    :func:`adapters._base.prepare`; only the classes differ.
    """
    records, labels, ts = _checked(recent, strategy)
    known = np.asarray(classes)
    codes = _codes(labels, known)
    values: np.ndarray = known[codes]
    X = np.asarray(bundle.preprocessing.transform(records), dtype=np.float64)
    n = len(records)
    order = np.argsort(ts, kind="stable")
    n_hold = max(1, round(n * HOLDOUT))
    n_val = max(1, round((n - n_hold) * VALIDATION))
    n_tr = n - n_hold - n_val
    tr, va, ho = order[:n_tr], order[n_tr : n - n_hold], order[n - n_hold :]
    missing = [_item(known[i]) for i in range(len(known)) if not np.any(codes[tr] == i)]
    if missing:
        raise AdapterError(
            f"the recent data has no example of class(es) {missing} in its train part (the "
            f"earliest {len(tr)} of {n} rows by time); {strategy} retrains on it, and a class "
            f"the model predicts ({[_item(c) for c in known]}) cannot be left out without "
            "misaligning `classes_`. Collect labelled examples of those classes, or use a "
            "wider window (--since)."
        )
    return TrainingData(
        task=bundle.task,
        classes=known,
        X_train=X[tr],
        y_train=values[tr],
        c_train=codes[tr],
        X_val=X[va],
        y_val=values[va],
        c_val=codes[va],
        X_hold=X[ho],
        y_hold=values[ho],
        c_hold=codes[ho],
        holdout_records=[dict(records[i]) for i in ho],
        holdout_labels=np.asarray(labels)[ho],
    )


def _checked(recent: Any, strategy: str) -> tuple[list[Any], np.ndarray, np.ndarray]:
    records = getattr(recent, "records", None)
    if records is None or not hasattr(recent, "labels") or not hasattr(recent, "ts"):
        raise AdapterError(
            "`recent` must be a sidecar.RecentData (records, labels, ts), e.g. from "
            f"sidecar.recent_data(bundle, store); got {type(recent).__name__}."
        )
    records = list(records)
    labels = np.asarray(recent.labels)
    ts = np.asarray(recent.ts, dtype=np.float64) if recent.ts is not None else None
    n = len(records)
    if labels.ndim != 1 or len(labels) != n:
        raise AdapterError(
            f"`recent.labels` must hold one label per record ({n}); got an array of shape "
            f"{labels.shape}. Check the label column."
        )
    if ts is None or ts.shape != (n,):
        got = None if ts is None else ts.shape
        raise AdapterError(
            f"`recent.ts` must hold one timestamp per record ({n}); got shape {got}."
        )
    if not np.isfinite(ts).all():
        i = int(np.argmin(np.isfinite(ts)))
        raise AdapterError(f"`recent.ts` must be finite epoch seconds; got {ts[i]} at index {i}.")
    if n < MIN_ROWS:
        raise AdapterError(
            f"{strategy} needs at least {MIN_ROWS} labelled recent rows (a train, a validation "
            f"and a holdout part, by time); got {n}. Collect more labels or widen the window "
            "(--since)."
        )
    return records, labels, ts


def _codes(labels: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Index of each label in ``classes``; refuse labels that are none of them."""
    lookup = {c: i for i, c in enumerate(classes.tolist())}
    codes = np.empty(len(labels), dtype=np.intp)
    unknown: dict[str, int] = {}
    for i, value in enumerate(labels.tolist()):
        key = _label_key(value)
        code = lookup.get(key) if key is not None else None
        if code is None:
            unknown[repr(value)] = unknown.get(repr(value), 0) + 1
            continue
        codes[i] = code
    if unknown:
        shown = ", ".join(f"{v} ({c}x)" for v, c in list(unknown.items())[:10])
        raise AdapterError(
            f"`recent.labels` must be classes the model knows {[_item(c) for c in classes]}; got "
            f"{shown}. Check the label column (and its type: 1 is not '1'); a new class needs "
            "a new model, not a retraining adapter."
        )
    return codes


def _label_key(value: Any) -> Any:
    """A hashable label; booleans, None and NaN are no class label."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return int(value) if value.is_integer() else value
    return value


def _item(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def evaluate_on(
    plan: MonitoringPlan,
    classes: Sequence[Any],
    predictor: Any,
    X: np.ndarray,
    y: np.ndarray,
) -> tuple[dict[str, float], list[str]]:
    """The plan's metrics of a classifier ``predictor`` on ``(X, y)``, its columns ``classes``.

    As :func:`adapters._base.evaluate` for a classifier: returns the metrics
    and notes on those that could not be computed.
    """
    out = predictor.infer(X)
    values: dict[str, float] = {}
    notes: list[str] = []
    known = np.asarray(classes)
    no_proba = []
    for name in (plan.primary_metric, *plan.secondary_metrics):
        spec = METRICS[name]
        if spec.needs_proba and out.probabilities is None and name != plan.primary_metric:
            no_proba.append(name)
            continue
        try:
            values[name] = float(spec.function(y, out.predictions, out.probabilities, known))
        except (ValueError, sidecar.InputError) as exc:
            if name == plan.primary_metric:
                raise AdapterError(
                    f"the plan's primary metric {name!r} cannot be computed on the holdout: {exc}"
                ) from exc
            notes.append(f"{name} not computed on the holdout: {exc}")
    if no_proba:
        notes.append(f"{', '.join(no_proba)} not computed: the model gives no probabilities")
    return values, notes


class Padded:
    """A predictor's output with its probability columns placed among ``union``'s classes."""

    def __init__(self, predictor: Any, union: tuple[Any, ...]) -> None:
        self.predictor = predictor
        self.columns = [union.index(c) for c in predictor.classes]
        self.width = len(union)

    def infer(self, X: np.ndarray) -> sidecar.ModelOutput:
        out = self.predictor.infer(X)
        proba = out.probabilities
        if proba is not None:
            padded = np.zeros((len(proba), self.width))
            padded[:, self.columns] = proba
            proba = padded
        return sidecar.ModelOutput(out.predictions, proba)
