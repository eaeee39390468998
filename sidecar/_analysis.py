"""The store-backed analyses: diagnose a bundle's window, summarise its plan, decide a promotion.

Each reads its window through :mod:`sidecar._window` (one columnar scan of
the store) and hands arrays to the pure code in :mod:`sidecar.monitoring`.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import numpy as np

from ._errors import InputError
from ._window import checked_labels, load_window, predictions, probabilities, window_table
from .bundle._bundle import Bundle
from .monitoring._diagnosis import Diagnosis
from .monitoring._inputs import ReferenceInputs
from .monitoring._promotion import PromotionDecision
from .recording import Store

__all__ = [
    "diagnose",
    "plan_summary",
    "promotion_decision",
    "reference_inputs",
]


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
        adapter_for=_adapter_for(bundle),
        since=since,
        until=until,
    )


def _adapter_for(bundle: Bundle) -> Any:
    """The adapters' verdict -> strategy rule for this bundle (None without the adapters)."""
    try:
        from adapters import adapter_for
    except ImportError:  # pragma: no cover - adapters ships with the project
        return None
    return adapter_for(bundle)


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
    try:
        table = window_table(opened, since=since, until=until, bundle_version=champion.version)
    finally:
        if isinstance(store, str):
            opened.close()
    if "candidate_version" in table.column_names and table.num_rows:
        import pyarrow.compute as pc

        mask = pc.and_(
            pc.fill_null(pc.equal(table.column("candidate_version"), candidate.version), False),
            pc.is_valid(table.column("candidate_prediction")),
        )
        mask = pc.and_(mask, pc.greater_equal(table.column("label_kind"), 0))
        table = table.filter(mask)
    else:
        table = table.slice(0, 0)
    notes: list[str] = []
    labels = checked_labels(table, champion, notes)
    ref_y = champion.reference.arrays["y"]
    keep = np.array([v is not None for v in labels], dtype=bool)
    labels = labels[keep]
    if labels.size:
        with contextlib.suppress(TypeError, ValueError):
            labels = labels.astype(ref_y.dtype)
    table = table.filter(keep)
    return decide_promotion(
        plan=champion.plan,
        y=labels,
        champion=predictions(table, "advanced_prediction"),
        champion_proba=probabilities(table, "advanced_proba"),
        candidate=predictions(table, "candidate_prediction"),
        candidate_proba=probabilities(table, "candidate_proba"),
        classes=champion.advanced.classes,
        ts=table.column("ts").to_numpy(),
        champion_version=champion.version,
        candidate_version=candidate.version,
    )
