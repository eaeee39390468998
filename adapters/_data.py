"""The recent data an adapter learns from: checked, ordered by time, preprocessed and cut.

An adapter learns from :class:`sidecar.RecentData` -- labelled records, oldest
first -- and never shuffles across time. The recent data is cut in three, by
time::

    |<------------- train (60%) ------------->|<- validation (20%) ->|<- holdout (20%) ->|
      fit candidate settings / new members       choose the setting     report only

The holdout -- the last 20% -- is touched only to report the champion's and
the candidate's metrics (the plan's primary and secondary metrics), and it
becomes the candidate's reference. Everything an adapter chooses it chooses on
the validation part.

>>> import numpy as np
>>> earlier, later = time_split([{"x": i} for i in range(10)], np.arange(10), np.arange(10.0))
>>> len(earlier), len(later), later.records[0]
(8, 2, {'x': 8})
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import sidecar
from sidecar import AdapterError
from sidecar.monitoring import METRICS

__all__ = [
    "HOLDOUT",
    "MIN_ROWS",
    "VALIDATION",
    "TrainingData",
    "evaluate",
    "higher_is_better",
    "prepare",
    "score",
    "selection_metric",
    "time_split",
]

#: The fewest labelled recent rows an adapter accepts: a train, a validation
#: and a holdout part of at least 10 rows each.
MIN_ROWS = 50
#: The share of the recent data (the latest) held out to report on.
HOLDOUT = 0.2
#: The share of what is left (the latest of it) used to choose a setting.
VALIDATION = 0.25


# --------------------------------------------------------------------------- splitting


def time_split(
    records: Sequence[Mapping[str, Any]],
    labels: Any,
    ts: Any,
    *,
    holdout: float = HOLDOUT,
) -> tuple[sidecar.RecentData, sidecar.RecentData]:
    """Split labelled records by time: the earlier ``1 - holdout`` and the latest ``holdout``.

    Rows are ordered by ``ts`` (stably, so equal times keep their order); the
    split never shuffles across time. Both parts hold at least one row.
    """
    if not (isinstance(holdout, int | float) and 0.0 < holdout < 1.0):
        raise AdapterError(f"`holdout` must be a float in (0, 1); got {holdout!r}.")
    y = np.asarray(labels)
    t = np.asarray(ts, dtype=np.float64)
    if not (len(records) == len(y) == len(t)):
        raise AdapterError(
            f"records, labels and ts must have the same length; got {len(records)}, {len(y)} "
            f"and {len(t)}."
        )
    if len(records) < 2:
        raise AdapterError(f"time_split needs at least 2 rows; got {len(records)}.")
    order = np.argsort(t, kind="stable")
    cut = min(max(1, round(len(order) * (1.0 - holdout))), len(order) - 1)
    parts = []
    for idx in (order[:cut], order[cut:]):
        parts.append(
            sidecar.RecentData(records=[dict(records[i]) for i in idx], labels=y[idx], ts=t[idx])
        )
    return parts[0], parts[1]


# --------------------------------------------------------------------------- prepared data


@dataclass(frozen=True)
class TrainingData:
    """Recent data checked, ordered by time, preprocessed and cut in train/validation/holdout.

    ``y_*`` hold the labels as the model's own class objects (classification)
    or floats (regression); ``c_*`` hold class indices into ``classes`` (for
    regression, the same floats). ``holdout_records``/``holdout_labels`` become
    the candidate's reference.
    """

    task: str
    classes: np.ndarray | None
    X_train: np.ndarray
    y_train: np.ndarray
    c_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    c_val: np.ndarray
    X_hold: np.ndarray
    y_hold: np.ndarray
    c_hold: np.ndarray
    holdout_records: list[dict[str, Any]]
    holdout_labels: np.ndarray
    notes: tuple[str, ...] = field(default=())

    @property
    def X_fit(self) -> np.ndarray:
        """Train and validation parts together: what a chosen setting is refitted on."""
        return np.concatenate([self.X_train, self.X_val])

    @property
    def y_fit(self) -> np.ndarray:
        return np.concatenate([self.y_train, self.y_val])

    @property
    def c_fit(self) -> np.ndarray:
        return np.concatenate([self.c_train, self.c_val])

    @property
    def n_classes(self) -> int:
        return 0 if self.classes is None else len(self.classes)


def prepare(
    bundle: sidecar.Bundle,
    recent: sidecar.RecentData,
    *,
    strategy: str,
    min_rows: int = MIN_ROWS,
    classes: Sequence[Any] | None = None,
) -> TrainingData:
    """Check ``recent`` against ``bundle`` and cut it by time; raise AdapterError naming the fix.

    Checks: one label (and one timestamp) per record; labels of the bundle's
    task -- finite numbers for a regressor, the model's own classes for a
    classifier (a label it does not know is refused, never appended); at least
    ``min_rows`` rows; and, for a classifier, every class in the train part,
    so nothing refitted can silently lose a column of ``classes_``.

    ``classes`` replaces the model's classes for a classifier whose candidate
    predicts other classes than the champion (fine-tuning with ``new_classes``).
    """
    records, labels, ts = _checked(recent, strategy, min_rows)
    n = len(records)
    task = bundle.task
    known = None
    if task == "classification":
        known = _classes_of(bundle) if classes is None else np.asarray(classes)
        codes = _class_codes(labels, known)
        values: np.ndarray = known[codes]
    elif classes is not None:
        raise AdapterError(f"`classes` is for a classifier; this bundle's task is {task!r}.")
    else:
        values = _regression_labels(labels)
        codes = values
    X = np.asarray(bundle.preprocessing.transform(records), dtype=np.float64)
    order = np.argsort(ts, kind="stable")
    n_hold = max(1, round(n * HOLDOUT))
    n_val = max(1, round((n - n_hold) * VALIDATION))
    n_tr = n - n_hold - n_val
    tr, va, ho = order[:n_tr], order[n_tr : n - n_hold], order[n - n_hold :]
    if known is not None:
        _check_train_classes(known, codes[tr], n, strategy)
    return TrainingData(
        task=task,
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


def _checked(
    recent: Any, strategy: str, min_rows: int
) -> tuple[list[Mapping[str, Any]], np.ndarray, np.ndarray]:
    """``recent``'s records, labels and timestamps, their shapes and count checked."""
    records = _records_of(recent)
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
    if n < min_rows:
        raise AdapterError(
            f"{strategy} needs at least {min_rows} labelled recent rows (a train, a validation "
            f"and a holdout part, by time); got {n}. Collect more labels or widen the window "
            "(--since)."
        )
    return records, labels, ts


def _check_train_classes(
    classes: np.ndarray, train_codes: np.ndarray, n: int, strategy: str
) -> None:
    """Refuse a train part that lacks a class: a refit would lose that column."""
    missing = [classes[i] for i in range(len(classes)) if not np.any(train_codes == i)]
    if missing:
        shown = [_item(c) for c in missing]
        raise AdapterError(
            f"the recent data has no example of class(es) {shown} in its train part (the "
            f"earliest {len(train_codes)} of {n} rows by time); {strategy} retrains on it, and a "
            f"class the model predicts ({[_item(c) for c in classes]}) cannot be left out without "
            "misaligning `classes_`. Collect labelled examples of those classes, or use a "
            "wider window (--since)."
        )


def _records_of(recent: Any) -> list[Mapping[str, Any]]:
    records = getattr(recent, "records", None)
    if records is None or not hasattr(recent, "labels") or not hasattr(recent, "ts"):
        raise AdapterError(
            "`recent` must be a sidecar.RecentData (records, labels, ts), e.g. from "
            f"sidecar.recent_data(bundle, store); got {type(recent).__name__}."
        )
    return list(records)


def _item(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _classes_of(bundle: sidecar.Bundle) -> np.ndarray:
    classes = bundle.advanced.classes
    if classes is None or len(classes) < 2:
        raise AdapterError(
            "the bundle is a classifier but its advanced model names no classes (at least 2 "
            f"are needed); got {classes!r}. Re-wrap it with `classes=`."
        )
    return np.asarray(classes)


def _class_codes(labels: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Index of each label in ``classes``; refuse labels the model does not know."""
    lookup: dict[Any, int] = {}
    for i, c in enumerate(classes.tolist()):
        lookup[c] = i
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
    """A hashable label; None and NaN are no class label.

    Labels arrive typed as the classes (one rule at the door, ``sidecar._labels``),
    so a boolean is a label of a boolean classifier, never refused here.
    """
    if value is None:
        return None
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return int(value) if value.is_integer() else value
    return value


def _regression_labels(labels: np.ndarray) -> np.ndarray:
    bad = None
    values = labels.tolist()
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(float(v)):
            bad = i
            break
    if bad is not None:
        raise AdapterError(
            f"`recent.labels` must be finite numbers for a regression model; got "
            f"{values[bad]!r} at index {bad}. Check the label column."
        )
    return np.asarray(values, dtype=np.float64)


# --------------------------------------------------------------------------- scoring


def score(
    metric: str,
    data: TrainingData,
    y_codes: np.ndarray,
    predictions: np.ndarray,
    probabilities: np.ndarray | None,
) -> float:
    """``metric`` of predictions given as class indices (classification) or values."""
    spec = METRICS[metric]
    if data.task == "classification":
        classes = np.arange(data.n_classes)
        return float(spec.function(y_codes, predictions, probabilities, classes))
    return float(spec.function(y_codes, predictions, None, None))


def selection_metric(bundle: sidecar.Bundle, *, has_proba: bool) -> str:
    """The plan's primary metric, or accuracy when it needs probabilities the model lacks."""
    name = bundle.plan.primary_metric
    if METRICS[name].needs_proba and not has_proba:
        return "accuracy"
    return name


def higher_is_better(metric: str) -> bool:
    return METRICS[metric].higher_is_better


def evaluate(
    bundle: sidecar.Bundle,
    predictor: Any,
    X: np.ndarray,
    y: np.ndarray,
    *,
    classes: Sequence[Any] | None = None,
) -> tuple[dict[str, float], list[str]]:
    """The plan's primary and secondary metrics of ``predictor`` (a runtime) on ``(X, y)``.

    Returns the metrics and notes on those that could not be computed (e.g.
    ROC AUC on a holdout with one class). ``classes`` names a classifier's
    probability columns when they are not the bundle's model's (default).
    """
    out = predictor.infer(X)
    plan = bundle.plan
    values: dict[str, float] = {}
    notes: list[str] = []
    if bundle.task != "classification":
        known = None
    elif classes is None:
        known = np.asarray(bundle.advanced.classes)
    else:
        known = np.asarray(classes)
    no_proba = []
    for name in (plan.primary_metric, *plan.secondary_metrics):
        spec = METRICS[name]
        if spec.needs_proba and out.probabilities is None and name != plan.primary_metric:
            no_proba.append(name)
            continue
        try:
            if bundle.task == "classification":
                values[name] = float(spec.function(y, out.predictions, out.probabilities, known))
            else:
                values[name] = float(spec.function(y, out.predictions, None, None))
        except (ValueError, sidecar.InputError) as exc:
            if name == plan.primary_metric:
                raise AdapterError(
                    f"the plan's primary metric {name!r} cannot be computed on the holdout: {exc}"
                ) from exc
            notes.append(f"{name} not computed on the holdout: {exc}")
    if no_proba:
        notes.append(f"{', '.join(no_proba)} not computed: the model gives no probabilities")
    return values, notes
