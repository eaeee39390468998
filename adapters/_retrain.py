"""``retrain``: pick the adapter a diagnosis recommends, or the one named, and run it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sidecar
from sidecar import AdapterError
from sidecar._types import STRATEGIES
from sidecar.monitoring import VERDICTS

from ._base import Progress, RetrainResult
from ._family import model_family, strategy_for

__all__ = ["STRATEGIES", "VERDICTS", "retrain"]


def retrain(
    bundle: sidecar.Bundle,
    recent: sidecar.RecentData,
    *,
    strategy: str = "auto",
    diagnosis: Any = None,
    force: bool = False,
    progress: Progress | None = None,
    seed: int = 0,
) -> RetrainResult:
    """Retrain ``bundle`` on ``recent`` with the adapter ``strategy`` names or a diagnosis picks.

    ``strategy="auto"`` follows ``diagnosis`` (a ``sidecar.diagnose`` result
    or its ``to_dict()``) by the one model-family rule (:mod:`adapters._family`):
    ``overfitting`` -> regularize; ``data_drift`` / ``concept_drift`` -> replace
    members for an ensemble, a refit for histogram gradient boosting, fine-tune
    the head for a neural network, otherwise a regularized refit. Whatever the
    strategy, a diagnosis of ``preprocessing_fault`` or ``insufficient_data``
    refuses, and ``healthy`` refuses unless ``force=True``.

    Returns the candidate bundle -- a new version whose parent is ``bundle``
    -- and its training report; nothing is saved and the champion is unchanged.
    """
    if strategy not in STRATEGIES:
        raise AdapterError(f"`strategy` must be one of {list(STRATEGIES)}; got {strategy!r}.")
    verdict = None
    if diagnosis is not None:
        verdict = _verdict(bundle, diagnosis, force)
    if strategy == "auto":
        if verdict is None:
            raise AdapterError(
                "strategy='auto' follows a diagnosis; pass diagnosis=sidecar.diagnose(bundle, "
                "store) or name the strategy (regularize, replace-members, refit or "
                "fine-tune-head)."
            )
        strategy = strategy_for(verdict, model_family(bundle), forced=True) or "regularize"
    if strategy == "refit":
        from ._refit import refit

        return refit(bundle, recent, progress=progress, seed=seed)
    if strategy == "regularize":
        from ._regularize import regularize

        return regularize(bundle, recent, progress=progress, seed=seed)
    if strategy == "replace-members":
        from ._members import replace_members

        return replace_members(bundle, recent, progress=progress, seed=seed)
    try:
        from ._finetune import fine_tune_head
    except ImportError as exc:
        raise AdapterError(f"the fine-tune-head adapter cannot be imported: {exc}") from exc
    result: RetrainResult = fine_tune_head(bundle, recent, progress=progress, seed=seed)
    return result


def _verdict(bundle: sidecar.Bundle, diagnosis: Any, force: bool) -> str:
    if isinstance(diagnosis, Mapping):
        verdict, plan_sha = diagnosis.get("verdict"), diagnosis.get("plan_sha256")
    else:
        verdict = getattr(diagnosis, "verdict", None)
        plan_sha = getattr(diagnosis, "plan_sha256", None)
    if verdict not in VERDICTS:
        raise AdapterError(
            f"`diagnosis` must carry a verdict, one of {list(VERDICTS)}; got {verdict!r}."
        )
    if plan_sha is not None and plan_sha != bundle.plan.sha256:
        raise AdapterError(
            f"the diagnosis was made under another monitoring plan (sha256 {str(plan_sha)[:12]}"
            f"...) than this bundle's ({bundle.plan.sha256[:12]}...); diagnose this bundle again."
        )
    if verdict == "preprocessing_fault":
        raise AdapterError(
            "the diagnosis is preprocessing_fault: the pipeline, not the world, changed. Fix the "
            "preprocessing (sidecar preprocessing swap) instead of retraining."
        )
    if verdict == "insufficient_data":
        raise AdapterError(
            "the diagnosis is insufficient_data: there are too few labelled records to judge. "
            "Collect labels and diagnose again before retraining."
        )
    if verdict == "healthy" and not force:
        raise AdapterError(
            "the diagnosis is healthy: there is nothing to repair. Pass force=True (--force) to "
            "retrain anyway."
        )
    return str(verdict)
