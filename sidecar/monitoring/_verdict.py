"""The verdict: the order in which the evidence is weighed, and the recommendation.

1. A preprocessing-health finding (no labels needed) -> ``preprocessing_fault``.
2. Fewer labels than the plan's hard floor ``min_labelled`` -> ``insufficient_data``.
3. Performance beyond the good side of the plan's bounds (its whole interval):
   leakage or a broken label feed -> ``preprocessing_fault``.
4. An alarm -- the advanced model's decline against its reference is
   significant after the plan's correction AND material, and the metric is on
   the bad side of a bound -- at *any* n above the floor: the test controls
   false alarms at every sample size. Why? ``overfitting`` (it lost its edge over
   the baseline, which did not get worse), else ``data_drift`` (the inputs
   moved), else ``concept_drift``.
5. ``healthy`` when the ``1 - 2 alpha`` interval of the decline lies below the
   plan's ``min_effect`` (two one-sided tests at alpha), when a significant
   decline stays within the bounds, or when n reached the plan's power target.
6. Otherwise ``insufficient_data``, naming the interval, the effect it cannot
   rule out, and about how many labels would settle it at the observed variance.

Power decides how many labels the *healthy* claim needs; it never holds back
an alarm that is already significant and material.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._plan import MonitoringPlan
from ._results import BoundsCheck, DriftResult, HealthFinding, TestResult, Verdict
from ._stats import is_alarm

__all__ = ["Recommendation", "decide", "recommend"]


def decide(
    plan: MonitoringPlan,
    *,
    n_labelled: int,
    health: Sequence[HealthFinding],
    bounds: BoundsCheck,
    tests: Mapping[str, TestResult],
    drift: Sequence[DriftResult],
    relations: Sequence[DriftResult],
) -> tuple[Verdict, list[str]]:
    """The verdict and the reasons for it, from corrected tests and the bounds check."""
    if health:
        return "preprocessing_fault", [h.message for h in health]
    if n_labelled < plan.min_labelled:
        return "insufficient_data", [
            f"{n_labelled} labelled records; the plan judges from {plan.min_labelled} on"
        ]
    if bounds.suspiciously_good:
        return "preprocessing_fault", [
            f"{plan.primary_metric} = {bounds.value:.4g} is better than the plan's "
            "acceptable range allows: check for leakage or a broken label feed"
        ]

    def alarm(name: str) -> bool:
        t = tests.get(name)
        return t is not None and is_alarm(t, alpha=plan.alpha, min_effect=plan.min_effect)

    adv_worse = alarm("advanced_vs_reference")
    no_bounds = plan.bounds.lower is None and plan.bounds.upper is None
    if adv_worse and (bounds.decayed_out_of_bounds or no_bounds):
        return _why(alarm("gap_vs_reference"), alarm("baseline_vs_reference"), drift, relations)
    decline = tests.get("advanced_vs_reference")
    if adv_worse and decline is not None:
        return "healthy", [
            f"the advanced model's loss rose by {decline.effect:+.4g} "
            f"(p_adj={decline.p_adjusted:.3g}), but {plan.primary_metric} = "
            f"{bounds.value:.4g} is within the plan's acceptable bounds"
        ]
    interval = f"[{bounds.decline_ci_low:+.4g}, {bounds.decline_ci_high:+.4g}]"
    if bounds.no_material_decline:
        return "healthy", [
            f"the advanced model's loss changed by {bounds.decline:+.4g}; its "
            f"{1 - 2 * plan.alpha:.0%} interval {interval} excludes a material decline "
            f"(min_effect {plan.min_effect:g}; equivalence p={bounds.equivalence_p:.3g})"
        ]
    power_n = bounds.required_n_for_power
    if power_n is not None and n_labelled >= power_n:
        return "healthy", [
            f"no significant and material decline in {n_labelled} labelled records, at least "
            f"the {power_n} the plan's power {plan.power:g} needs (loss change "
            f"{bounds.decline:+.4g}, {1 - 2 * plan.alpha:.0%} interval {interval})"
        ]
    return "insufficient_data", [_undecided(plan, n_labelled, bounds, interval)]


def _undecided(plan: MonitoringPlan, n: int, bounds: BoundsCheck, interval: str) -> str:
    text = (
        f"undecided on {n} labelled records: the advanced model's loss changed by "
        f"{bounds.decline:+.4g}, {1 - 2 * plan.alpha:.0%} interval {interval}, which cannot "
        f"yet rule out a material decline of {plan.min_effect:g}"
    )
    if math.isnan(bounds.decline):
        return f"undecided on {n} labelled records: no test of the decline could run"
    if bounds.decline >= plan.min_effect:
        text += " nor confirm one"
    settle = bounds.labels_to_settle
    if settle is None:
        return text + "; the reference is too small for more labels to settle it"
    return text + f"; about {max(settle - n, 1)} more labels would settle it"


def _why(
    edge_lost: bool,
    base_worse: bool,
    drift: Sequence[DriftResult],
    relations: Sequence[DriftResult],
) -> tuple[Verdict, list[str]]:
    if edge_lost and not base_worse:
        return "overfitting", [
            "the advanced model got worse than its reference and lost its edge over the "
            "baseline, while the baseline did not get worse"
        ]
    also = " and so did the baseline" if base_worse else ""
    moved = sorted({d.feature for d in drift if d.alarm})
    if moved:
        return "data_drift", [
            f"the advanced model got worse{also}, and the inputs moved: {', '.join(moved[:10])}"
        ]
    changed = sorted({r.feature for r in relations if r.alarm})
    where = f"; the relation to the target changed for {', '.join(changed)}" if changed else ""
    return "concept_drift", [
        f"the advanced model got worse{also} while the inputs did not move{where}"
    ]


@dataclass(frozen=True)
class Recommendation:
    """What to do: an action, the retraining adapter when one applies, and why."""

    action: str
    adapter: str | None
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "adapter": self.adapter, "detail": self.detail}


#: What each adapter does, as the recommendation says it.
_HOW = {
    "regularize": "refit the same model family with stronger regularization on recent data",
    "replace-members": "replace the worst ensemble members with members trained on recent data",
    "refit": "refit the model, same hyper-parameters, on recent data",
    "fine-tune-head": "fine-tune the head on recent data",
}


def recommend(
    verdict: Verdict,
    adapter: str | None,
    health: Sequence[HealthFinding],
    n_labelled: int,
    plan: MonitoringPlan,
    bounds: BoundsCheck,
) -> Recommendation:
    """The action for ``verdict``; ``adapter`` is the one the caller's family rule names.

    The diagnosis names the verdict only: which adapter repairs it for which model
    is the adapters' rule (``adapters.adapter_for``), passed in by the caller.
    """
    if verdict == "healthy":
        return Recommendation("none", None, "no action: performance is within the plan")
    if verdict == "insufficient_data":
        if n_labelled < plan.min_labelled:
            need: int | None = plan.min_labelled - n_labelled
        else:
            settle = bounds.labels_to_settle
            need = None if settle is None else max(settle - n_labelled, 1)
        detail = (
            f"wait for about {need} more labelled records before judging"
            if need is not None
            else "collect labels; the reference is too small to settle the question, "
            "so a larger reference (a new bundle version) is needed as well"
        )
        return Recommendation("collect labels", None, detail)
    if verdict == "preprocessing_fault":
        features = sorted({h.feature for h in health})
        detail = (
            f"fix the preprocessing of {', '.join(features)} (sidecar preprocessing swap); "
            "do not retrain"
            if features
            else "check the label feed and the features for leakage; do not retrain"
        )
        return Recommendation("fix preprocessing", None, detail)
    why = {
        "overfitting": "the model lost its edge over the baseline",
        "data_drift": "the inputs moved",
        "concept_drift": "the relation between inputs and target changed",
    }[verdict]
    how = _HOW.get(adapter or "", "retrain on recent labelled data")
    return Recommendation("retrain", adapter, f"{how}: {why}")
