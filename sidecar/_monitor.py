"""Reading what the store holds for a bundle into arrays for the (pure) monitoring code.

The store is read in chunks (``Store.iter_joined``), so memory grows with the
columns kept, never with the store's size beyond the window asked for.
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._bundle import Bundle
from ._errors import InputError
from .monitoring._diagnosis import Diagnosis
from .monitoring._inputs import ReferenceInputs, WindowData
from .monitoring._promotion import PromotionDecision
from .preprocessing import TabularPreprocessor
from .recording import Store

__all__ = [
    "RecentData",
    "diagnose",
    "load_window",
    "model_family",
    "promotion_decision",
    "recent_data",
    "reference_inputs",
]


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
    pre = bundle.preprocessing
    canonical = {f: raw[f] for f in fields}
    if isinstance(pre, TabularPreprocessor):
        # Compare in the model's units and codes (see Reference): a fixed unit or
        # code mix-up must not look like a fault any more.
        canonical = {f: pre.canonical_values(f, raw[f]) for f in fields}
    notes = []
    if skipped:
        notes.append(f"{skipped} records of other bundle versions were left out")
    raw_numeric = {
        f: np.array([math.nan if v is None else _number(v) for v in canonical[f]], dtype=np.float64)
        for f in numeric_fields
    }
    raw_categorical = {f: canonical[f] for f in fields if f in categorical}
    features, unknown = _features(bundle, raw, fields, len(ts), notes)
    flags: dict[str, np.ndarray] = {}
    if isinstance(pre, TabularPreprocessor):
        flags = {f: pre.unknown_mask(f, raw[f]) for f in raw_categorical}
    label_arr = _checked_labels(labels, bundle, notes)
    labelled = np.array([v is not None for v in label_arr], dtype=bool)
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
        unknown_flags=flags,
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


def _checked_labels(labels: list[Any], bundle: Bundle, notes: list[str]) -> np.ndarray:
    """Stored labels as the metrics read them; one they cannot score is left out and counted.

    ``/feedback`` refuses such labels today, but a store written by an older
    version, or by hand, may hold one: it must not fail the whole analysis.
    """
    from ._labels import MISSING, label_rule

    coerce, expected, allowed = label_rule(bundle.task, bundle.advanced.classes)
    out: list[Any] = []
    bad: dict[str, int] = {}
    for v in labels:
        if v is None:
            out.append(None)
            continue
        got = coerce(v)
        if got is MISSING or (allowed is not None and got not in allowed):
            key = repr(v)[:40]
            bad[key] = bad.get(key, 0) + 1
            out.append(None)
        else:
            out.append(got)
    if bad:
        shown = ", ".join(f"{k} ({n})" for k, n in sorted(bad.items(), key=lambda kv: -kv[1])[:5])
        notes.append(
            f"{sum(bad.values())} stored labels were left out: each label must be {expected}; "
            f"got {shown}"
        )
    return np.array(out, dtype=object)


def _labels_array(values: list[Any]) -> np.ndarray:
    arr = np.array(values, dtype=object)
    if arr.size and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return arr.astype(np.float64)
    return arr


def _proba(cells: list[Any]) -> np.ndarray | None:
    if not cells or any(c is None for c in cells):
        return None
    return np.array(json.loads("[" + ",".join(cells) + "]"), dtype=np.float64)


def reference_inputs(bundle: Bundle) -> ReferenceInputs:
    """The bundle's reference as the monitoring code reads it."""
    from .preprocessing import NumericColumn, TabularPreprocessor

    pre = bundle.preprocessing
    monotone: dict[str, str] = {}
    units: dict[str, str] = {}
    if isinstance(pre, TabularPreprocessor):
        for col in pre.columns:
            if isinstance(col, NumericColumn):
                monotone[col.name] = col.name  # an affine map with a positive slope
                if col.unit:
                    units[col.name] = col.unit  # canonical values are in the model's unit
    names = pre.feature_names_out or tuple(
        f"x{j}" for j in range(bundle.reference.arrays["features"].shape[1])
    )
    return ReferenceInputs.from_reference(
        bundle.reference.summary,
        bundle.reference.arrays,
        categorical_fields=pre.categorical_fields,
        feature_names=names,
        monotone_of=monotone,
        units=units,
    )


def model_family(bundle: Bundle) -> str:
    """``"ensemble"``, ``"neural"`` or ``"other"``: which retraining adapter fits the model."""
    if bundle.advanced.framework == "torch":
        return "neural"
    estimator = getattr(bundle.advanced, "estimator", None)
    steps = getattr(estimator, "steps", None)
    if steps:  # a Pipeline is the family of its final step
        estimator = steps[-1][1]
    if estimator is not None and (
        hasattr(estimator, "estimators_")
        or type(estimator).__name__.startswith(
            ("RandomForest", "ExtraTrees", "Bagging", "Voting", "GradientBoosting")
        )
    ):
        return "ensemble"
    return "other"


def diagnose(
    bundle: Bundle,
    store: Store | str,
    *,
    since: float | None = None,
    until: float | None = None,
    all_versions: bool = False,
) -> Diagnosis:
    """Diagnose what the store recorded for ``bundle`` in ``[since, until)``, as its plan says.

    >>> # sidecar.diagnose(bundle, "sqlite:///records.db").verdict  -> 'healthy', ...
    """
    from .monitoring._diagnosis import diagnose as run
    from .recording import open_store

    opened = open_store(store, create=False) if isinstance(store, str) else store
    try:
        window = load_window(bundle, opened, since=since, until=until, all_versions=all_versions)
    finally:
        if isinstance(store, str):
            opened.close()
    return run(
        plan=bundle.plan,
        reference=reference_inputs(bundle),
        window=window,
        model_family=model_family(bundle),
        since=since,
        until=until,
    )


def plan_summary(bundle: Bundle) -> dict[str, Any]:
    """The plan, its hash, the reference value and the sample size its declared power needs."""
    from .monitoring._diagnosis import reference_losses, required_n
    from .monitoring._metrics import metric_with_ci

    plan = bundle.plan
    ref = reference_inputs(bundle)
    adv, base, cap = reference_losses(plan, ref)
    value = metric_with_ci(
        plan.primary_metric, ref.y, ref.advanced, ref.advanced_proba, ref.classes, n_boot=1
    ).value
    return {
        "plan": plan.model_dump(mode="json"),
        "plan_sha256": plan.sha256,
        "loss": plan.loss + (f" (winsorised at {cap:.4g})" if plan.robust else ""),
        "reference_value": value,
        "paired_sd": float(np.std(adv - base, ddof=1)) if len(adv) > 1 else math.nan,
        "loss_sd": float(np.std(adv, ddof=1)) if len(adv) > 1 else math.nan,
        "n_reference": len(adv),
        "required_n": required_n(plan, adv, base),
    }


@dataclass(frozen=True)
class RecentData:
    """Labelled records from the store, oldest first: what a retraining adapter learns from."""

    records: list[dict[str, Any]]
    labels: np.ndarray
    ts: np.ndarray
    #: what was left out, and why (e.g. stored labels outside the classes)
    notes: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.records)


def recent_data(
    bundle: Bundle,
    store: Store | str,
    *,
    since: float | None = None,
    until: float | None = None,
    all_versions: bool = True,
) -> RecentData:
    """The labelled raw records the store holds in ``[since, until)``, in time order.

    Every version of the bundle counts by default (the world, not the model,
    is what the records describe); records whose raw fields were removed by a
    privacy rule are skipped, since no model can learn from them.
    """
    from .recording import open_store

    opened = open_store(store, create=False) if isinstance(store, str) else store
    fields = list(bundle.preprocessing.input_fields)
    records: list[dict[str, Any]] = []
    labels: list[Any] = []
    ts: list[float] = []
    version = bundle.version
    try:
        for chunk in opened.iter_joined(since=since, until=until):
            for row in chunk:
                if row["label"] is None or (not all_versions and row["bundle_version"] != version):
                    continue
                raw = json.loads(row["raw"])
                if any(f not in raw for f in fields):
                    continue
                records.append({f: raw[f] for f in fields})
                labels.append(json.loads(row["label"]))
                ts.append(float(row["ts"]))
    finally:
        if isinstance(store, str):
            opened.close()
    notes: list[str] = []
    checked = _checked_labels(labels, bundle, notes)  # one the model cannot learn is left out
    if notes:
        keep = [i for i, v in enumerate(checked.tolist()) if v is not None]
        records = [records[i] for i in keep]
        labels = [checked[i] for i in keep]
        ts = [ts[i] for i in keep]
    else:
        labels = checked.tolist()
    y = np.array(labels, dtype=object)
    if y.size and all(isinstance(v, int | float) and not isinstance(v, bool) for v in labels):
        y = y.astype(np.float64 if bundle.task == "regression" else np.int64)
    elif y.size and all(isinstance(v, str) for v in labels):
        y = y.astype(str)
    return RecentData(
        records=records, labels=y, ts=np.asarray(ts, dtype=np.float64), notes=tuple(notes)
    )


def promotion_decision(
    champion: Bundle,
    candidate: Bundle,
    store: Store | str,
    *,
    since: float | None = None,
    until: float | None = None,
) -> PromotionDecision:
    """Compare the candidate (in shadow) with the champion on the requests both answered."""
    from .monitoring._promotion import decide_promotion
    from .recording import open_store

    if candidate.task != champion.task:
        raise InputError(f"the candidate's task must be {champion.task!r}; got {candidate.task!r}.")
    opened = open_store(store, create=False) if isinstance(store, str) else store
    y: list[Any] = []
    champ: list[Any] = []
    champ_p: list[Any] = []
    cand: list[Any] = []
    cand_p: list[Any] = []
    ts: list[float] = []
    try:
        for chunk in opened.iter_joined(since=since, until=until):
            for row in chunk:
                if (
                    row["label"] is None
                    or row["candidate_version"] != candidate.version
                    or row["candidate_prediction"] is None
                    or row["bundle_version"] != champion.version
                ):
                    continue
                y.append(json.loads(row["label"]))
                champ.append(json.loads(row["advanced_prediction"]))
                champ_p.append(row["advanced_proba"])
                cand.append(json.loads(row["candidate_prediction"]))
                cand_p.append(row["candidate_proba"])
                ts.append(float(row["ts"]))
    finally:
        if isinstance(store, str):
            opened.close()
    ref_y = champion.reference.arrays["y"]
    labels = np.array(y, dtype=object)
    if labels.size:
        with contextlib.suppress(TypeError, ValueError):
            labels = labels.astype(ref_y.dtype)
    return decide_promotion(
        plan=champion.plan,
        y=labels,
        champion=_labels_array(champ),
        champion_proba=_proba(champ_p),
        candidate=_labels_array(cand),
        candidate_proba=_proba(cand_p),
        classes=champion.advanced.classes,
        ts=np.asarray(ts, dtype=np.float64),
        champion_version=champion.version,
        candidate_version=candidate.version,
    )
