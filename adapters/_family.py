"""One model-family rule: which adapter repairs which verdict for which model.

The diagnosis (``sidecar.monitoring``) names the verdict only; this module
maps verdict x model family -> strategy, for ``retrain --strategy auto`` and for
the recommendation ``sidecar.diagnose`` shows (it passes :func:`adapter_for`).

=================  ================================  =====================
family             models                            drift strategy
=================  ================================  =====================
``ensemble``       what ``replace_members`` supports  ``replace-members``
``boosting``       ``HistGradientBoosting*``          ``refit``
``neural``         PyTorch modules                    ``fine-tune-head``
``other``          anything else                      ``regularize``
=================  ================================  =====================

``overfitting`` is always ``regularize``; ``data_drift`` and ``concept_drift``
take the family's drift strategy; the other verdicts name no adapter.

>>> strategy_for("concept_drift", "boosting"), strategy_for("overfitting", "ensemble")
('refit', 'regularize')
>>> strategy_for("healthy", "ensemble") is None
True
"""

from __future__ import annotations

from collections.abc import Callable

import sidecar

__all__ = ["DRIFT_STRATEGY", "FAMILIES", "adapter_for", "model_family", "strategy_for"]

FAMILIES = ("ensemble", "boosting", "neural", "other")
#: The adapter that repairs drift, per model family.
DRIFT_STRATEGY = {
    "ensemble": "replace-members",
    "boosting": "refit",
    "neural": "fine-tune-head",
    "other": "regularize",
}


def model_family(bundle: sidecar.Bundle) -> str:
    """The bundle's model family (see the table above); a Pipeline is its final step's."""
    if bundle.advanced.framework == "torch":
        return "neural"
    estimator = getattr(bundle.advanced, "estimator", None)
    if estimator is None:
        return "other"
    steps = getattr(estimator, "steps", None)
    if isinstance(steps, list) and steps:
        estimator = steps[-1][1]
    from ._members import SUPPORTED

    name = type(estimator).__name__
    if name in SUPPORTED or f"adapters.{name}" in SUPPORTED:
        return "ensemble"
    if name.startswith("HistGradientBoosting"):
        return "boosting"
    return "other"


def strategy_for(verdict: str, family: str, *, forced: bool = False) -> str | None:
    """The adapter for ``verdict`` and ``family``; None when the verdict calls for none.

    ``forced`` (``retrain --force`` on a healthy bundle) takes the family's drift strategy.
    """
    if family not in DRIFT_STRATEGY:
        raise ValueError(f"`family` must be one of {list(FAMILIES)}; got {family!r}.")
    if verdict == "overfitting":
        return "regularize"
    if verdict in ("data_drift", "concept_drift") or (forced and verdict == "healthy"):
        return DRIFT_STRATEGY[family]
    return None


def adapter_for(bundle: sidecar.Bundle) -> Callable[[str], str | None]:
    """``verdict -> strategy`` for this bundle: what ``sidecar.diagnose`` recommends with."""
    family = model_family(bundle)

    def pick(verdict: str) -> str | None:
        return strategy_for(verdict, family)

    return pick
